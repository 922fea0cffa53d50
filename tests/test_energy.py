"""Energy: RAPL from a fake sysfs tree (this machine exposes none), its wrap, the apportioning to a
suspect process (exact on a fake /proc, within measured bounds on a real busy process), the
CPU-time model with a real process, and the GPU's NVML energy shared by SM time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.fakes.nvml import FakeGpu
from support.processes import wait_for
from support.promtool import check_metrics
from minerwatch.host import rapl
from minerwatch.app import Options, build_context
from minerwatch.collectors.energy import DEFAULT_CPU_WATTS_PER_CORE, EnergyCollector
from minerwatch.collectors.host import busy_seconds, read_cpu
from minerwatch.config import ConfigError
from minerwatch.config import load as load_config
from minerwatch.host.proc_reader import ProcfsReader, user_name
from support.procfs import TICKS, FakeProcess, build, stat_line
from test_gpu import make as make_gpu

RANGE_UJ = 262_143_328_850  # the common max_energy_range_uj


def rapl_tree(root: Path, packages: dict, with_range: bool = True) -> Path:
    """A sysfs tree with one powercap zone per package (and a sub-zone that must not be added)."""
    base = root / "sys" / "class" / "powercap"
    for index, energy_uj in packages.items():
        zone = base / f"intel-rapl:{index}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(f"package-{index}\n")
        (zone / "energy_uj").write_text(f"{energy_uj}\n")
        if with_range:
            (zone / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
        core = base / f"intel-rapl:{index}:0"
        core.mkdir(exist_ok=True)
        (core / "name").write_text("core\n")
        (core / "energy_uj").write_text("999999999\n")
    return root / "sys"


def set_energy(sysfs: Path, index: int, energy_uj: int) -> None:
    (sysfs / "class" / "powercap" / f"intel-rapl:{index}" / "energy_uj").write_text(f"{energy_uj}\n")


def scrape(collector) -> dict:
    """{(name, frozenset(labels)): value} of one collect()."""
    out = {}
    for family in collector.collect():
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict, metric: str, **labels):
    return samples.get((metric, frozenset(labels.items())))


# -- RAPL reading and wrap ----------------------------------------------------------------------
def test_packages_are_summed_subzones_are_not(tmp_path):
    sysfs = rapl_tree(tmp_path, {0: 1_000_000, 1: 5_000_000})
    zones = rapl.read_zones(str(sysfs))
    assert [(z.name, z.energy_uj, z.max_energy_range_uj) for z in zones] == [
        ("package-0", 1_000_000, RANGE_UJ), ("package-1", 5_000_000, RANGE_UJ)]
    counter = rapl.EnergyCounter()
    assert counter.update(zones) == 0.0  # the first reading is the baseline
    set_energy(sysfs, 0, 3_000_000)
    set_energy(sysfs, 1, 5_500_000)
    assert counter.update(rapl.read_zones(str(sysfs))) == pytest.approx(2.5)
    assert counter.joules == pytest.approx(2.5)


def test_a_wrapped_counter_adds_the_distance_through_the_range(tmp_path):
    sysfs = rapl_tree(tmp_path, {0: RANGE_UJ - 4_000_000})
    counter = rapl.EnergyCounter()
    counter.update(rapl.read_zones(str(sysfs)))
    set_energy(sysfs, 0, 6_000_000)  # wrapped: 4 J to the top, then 6 J
    assert counter.update(rapl.read_zones(str(sysfs))) == pytest.approx(10.0)


def test_without_a_range_a_decrease_is_a_reset_and_adds_nothing(tmp_path):
    sysfs = rapl_tree(tmp_path, {0: 50_000_000}, with_range=False)
    counter = rapl.EnergyCounter()
    counter.update(rapl.read_zones(str(sysfs)))
    set_energy(sysfs, 0, 1_000_000)
    assert counter.update(rapl.read_zones(str(sysfs))) == 0.0
    set_energy(sysfs, 0, 3_000_000)
    assert counter.update(rapl.read_zones(str(sysfs))) == pytest.approx(2.0)


def test_no_zone_or_an_unreadable_counter_is_unavailable(tmp_path):
    with pytest.raises(rapl.RaplUnavailable, match="no RAPL package zone"):
        rapl.read_zones(str(tmp_path))
    sysfs = rapl_tree(tmp_path, {0: 1})
    energy = sysfs / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    energy.mkdir()  # root reads any file, so unreadable is made with a directory in its place
    with pytest.raises(rapl.RaplUnavailable, match="energy_uj"):
        rapl.read_zones(str(sysfs))


# -- apportioning on a fake /proc: exact ---------------------------------------------------------
def cpu_line(user, system, idle):
    return f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0"


def test_rapl_energy_is_shared_by_busy_cpu_time_exactly(tmp_path):
    miner = FakeProcess(4242, "xmrig", ["xmrig", "--donate-level", "1"], exe="/usr/bin/xmrig", utime=1000)
    office = FakeProcess(4243, "soffice.bin", ["soffice.bin"], exe="/usr/lib/soffice.bin", utime=50)
    procfs = build(tmp_path, [miner, office], cpu_line=cpu_line(5000, 1000, 90000))
    sysfs = rapl_tree(tmp_path, {0: 10_000_000})
    context = build_context(Options(procfs=str(procfs), sysfs=str(sysfs), reader="procfs"))
    context.processes.scan()
    collector = EnergyCollector(context)
    scrape(collector)  # baselines

    # 4 CPU-seconds busy on the host, 1 of them the miner's; the packages used 200 J.
    miner.utime += TICKS
    (procfs / "4242" / "stat").write_text(stat_line(miner))
    (procfs / "stat").write_text(f"{cpu_line(5000 + 3 * TICKS, 1000 + TICKS, 90100)}\nbtime 1700000000\n")
    set_energy(sysfs, 0, 210_000_000)
    samples = scrape(collector)
    labels = dict(pid="4242", name="xmrig", user=user_name(os.getuid()), method="rapl")
    assert value(samples, "minerwatch_host_energy_joules_total", method="rapl") == pytest.approx(200.0)
    assert value(samples, "minerwatch_process_energy_joules_total", **labels) == pytest.approx(50.0)
    # the benign process is not suspect: no series, whatever its CPU
    assert not [k for k in samples if k[0] == "minerwatch_process_energy_joules_total"
                and ("pid", "4243") in k[1]]

    # The counter wraps: 262,143,328,850 uJ range, from 210 J to 30 J is 262,143.1 J... of
    # which the miner had all the busy time this interval.
    miner.utime += 2 * TICKS
    (procfs / "4242" / "stat").write_text(stat_line(miner))
    (procfs / "stat").write_text(f"{cpu_line(5000 + 5 * TICKS, 1000 + TICKS, 90200)}\nbtime 1700000000\n")
    set_energy(sysfs, 0, 30_000_000)
    samples = scrape(collector)
    wrapped = (RANGE_UJ - 210_000_000 + 30_000_000) / 1e6
    assert value(samples, "minerwatch_host_energy_joules_total", method="rapl") == pytest.approx(200.0 + wrapped)
    assert value(samples, "minerwatch_process_energy_joules_total", **labels) == pytest.approx(50.0 + wrapped)


def test_cpu_model_without_rapl_is_cpu_seconds_times_watts_per_core(tmp_path):
    miner = FakeProcess(4242, "xmrig", ["xmrig"], exe="/usr/bin/xmrig", utime=30 * TICKS, stime=6 * TICKS)
    procfs = build(tmp_path, [miner], cpu_line=cpu_line(100 * TICKS, 20 * TICKS, 1000 * TICKS))
    config = tmp_path / "config.yml"
    config.write_text("energy:\n  cpu_watts_per_core: 15\n")
    context = build_context(Options(config_file=str(config), procfs=str(procfs), sysfs=str(tmp_path / "nosys"),
                                    reader="procfs"))
    context.processes.scan()
    samples = scrape(EnergyCollector(context))
    assert value(samples, "minerwatch_host_energy_joules_total", method="cpu_model") == pytest.approx(120 * 15)
    assert value(samples, "minerwatch_process_energy_joules_total", pid="4242", name="xmrig",
                 user=user_name(os.getuid()), method="cpu_model") == pytest.approx(36 * 15)
    assert value(samples, "minerwatch_energy_model_cpu_core_watts") == 15


@pytest.mark.parametrize("body, message", [
    ("energy:\n  cpu_watts_per_core: .nan\n", "config.yml:2: energy.cpu_watts_per_core: must be a finite number"),
    ("energy:\n  cpu_watts_per_core: 5000\n", "config.yml:2: energy.cpu_watts_per_core: must be a number"),
    ("energy:\n  watts: 5\n", "config.yml:2: energy.watts: unknown key"),
])
def test_energy_config_errors_name_file_line_and_key(tmp_path, body, message):
    config = tmp_path / "config.yml"
    config.write_text(body)
    with pytest.raises(ConfigError) as err:
        EnergyCollector(build_context(Options(config_file=str(config))))
    assert str(err.value).replace(str(tmp_path) + "/", "").startswith(message)


# -- real processes --------------------------------------------------------------------------------
def start_burner(spawn):
    miner = spawn.start("xmrig", ["--threads", "1", "--duration", "60"])
    wait_for(lambda: Path(f"/proc/{miner.pid}/comm").read_text().strip() == "xmrig", what="miner exec")
    return miner


def cpu_of(pid: int) -> float:
    return ProcfsReader().stat(pid).cpu_seconds


def host_busy() -> float:
    return busy_seconds(read_cpu("/proc")[0])


def test_rapl_share_of_a_real_busy_process_lies_within_the_measured_bounds(tmp_path, spawn):
    miner = start_burner(spawn)
    sysfs = rapl_tree(tmp_path, {0: 0})
    context = build_context(Options(sysfs=str(sysfs)))
    wait_for(lambda: any(v.pid == miner.pid for v in context.processes.scan().suspects), what="suspect")
    collector = EnergyCollector(context)
    outer = (cpu_of(miner.pid), host_busy())
    scrape(collector)
    inner = (cpu_of(miner.pid), host_busy())
    time.sleep(1.5)
    set_energy(sysfs, 0, 100_000_000)  # 100 J over the interval
    inner_end = (cpu_of(miner.pid), host_busy())
    samples = scrape(collector)
    outer_end = (cpu_of(miner.pid), host_busy())

    got = value(samples, "minerwatch_process_energy_joules_total", pid=str(miner.pid), name="xmrig",
                user=user_name(os.getuid()), method="rapl")
    # The collector's own interval lies between the inner and the outer one the test measured.
    low = 100 * (inner_end[0] - inner[0]) / (outer_end[1] - outer[1])
    high = 100 * min((outer_end[0] - outer[0]) / (inner_end[1] - inner[1]), 1.0)
    assert low - 1e-6 <= got <= high + 1e-6, (low, got, high)
    assert got > 0 and low > 0  # the burner ran in the interval (its share depends on the host's load)


def test_cpu_model_with_a_real_process(spawn, promtool):
    miner = start_burner(spawn)
    context = build_context(Options(sysfs="/nonexistent"))
    wait_for(lambda: any(v.pid == miner.pid for v in context.processes.scan().suspects), what="suspect")
    time.sleep(1.0)
    collector = EnergyCollector(context)
    before = cpu_of(miner.pid)
    samples = scrape(collector)
    after = cpu_of(miner.pid)
    got = value(samples, "minerwatch_process_energy_joules_total", pid=str(miner.pid), name="xmrig",
                user=user_name(os.getuid()), method="cpu_model")
    assert before * DEFAULT_CPU_WATTS_PER_CORE <= got <= after * DEFAULT_CPU_WATTS_PER_CORE
    assert got > 0

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    check_metrics(promtool, generate_latest(registry).decode())


# -- GPU: NVML energy shared by SM time ----------------------------------------------------------
def test_gpu_energy_is_shared_by_sm_time_among_suspects(spawn):
    from minerwatch.detection.process_table import ProcessTable
    from minerwatch.detection.signatures import Signatures

    miner = start_burner(spawn)
    table = ProcessTable(ProcfsReader(), Signatures())
    wait_for(lambda: any(v.pid == miner.pid for v in table.scan().suspects), what="suspect")
    gpu = FakeGpu(
        "GPU-11111111-2222-3333-4444-555555555555", energy_mj=1_000_000,
        compute=[(miner.pid, 1 << 30), (os.getpid(), 1 << 20)],
        process_samples=[(miner.pid, 1_000_000 + i * 166_000, 75, 80) for i in range(6)]
        + [(os.getpid(), 1_000_050 + i * 166_000, 25, 5) for i in range(6)],
    )
    collector, _ = make_gpu([gpu], table=table)
    labels = dict(gpu="0", uuid=gpu.uuid, pid=str(miner.pid), name="xmrig", user=user_name(os.getuid()))
    first = scrape(collector)
    assert value(first, "minerwatch_gpu_process_energy_joules_total", **labels) == 0.0
    gpu.energy_mj += 400_000  # 400 J since the last scrape
    gpu.process_samples = [(pid, t + 2_000_000, sm, mem) for pid, t, sm, mem in gpu.process_samples]
    second = scrape(collector)
    # the miner used 75 of the 100 points of SM time on that GPU
    assert value(second, "minerwatch_gpu_process_energy_joules_total", **labels) == pytest.approx(300.0)
    own = dict(labels, pid=str(os.getpid()), name=Path("/proc/self/comm").read_text().strip())
    assert value(second, "minerwatch_gpu_process_energy_joules_total", **own) is None  # not suspect
