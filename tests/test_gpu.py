"""The gpu collector: NVML through a faithful fake (and the real pynvml without driver), joined with
the real process table; units, labels, flatness, unsupported values, lost GPUs, caps, promtool."""

from __future__ import annotations

import ast
import inspect
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.fakes.nvml import GIB, FakeGpu, FakeNvml
from support.processes import wait_for
from support.promtool import check_metrics
from minerwatch import config as config_module
from minerwatch.collectors.gpu import GpuCollector
from minerwatch.config import Config, ConfigError
from minerwatch.host.proc_reader import ProcfsReader, user_name
from minerwatch.detection.process_table import ProcessSettings
from minerwatch.collectors.base import CollectorRunner, Context

EXPORTER = Path(__file__).resolve().parent.parent / "exporter" / "minerwatch"
SOURCES = [EXPORTER / "host" / "gpu_reader.py", EXPORTER / "collectors" / "gpu.py"]
MIB = 1024 ** 2


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Scrape:
    """One collect(), with its samples by (name, labels) and its text exposition."""

    def __init__(self, collector):
        self.families = list(collector.collect())
        self.samples = {}
        for family in self.families:
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, metric, /, **labels):
        return self.samples.get((metric, frozenset(labels.items())))

    def series(self, name):
        return {frozenset(k[1]): v for k, v in self.samples.items() if k[0] == name}

    def names(self):
        return {name for name, _ in self.samples}

    def text(self) -> str:
        families = self.families

        class Once:
            def collect(self):
                return families

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Once())
        return generate_latest(registry).decode()


def make(gpus=(), table=None, clock=None, config=None, **fake_kw):
    fake = FakeNvml(gpus, **fake_kw)
    context = Context(config=config or Config(), processes=table)
    return GpuCollector(context, nvml=fake, clock=clock or Clock()), fake


def gpu_labels(index, uuid):
    return {"gpu": str(index), "uuid": uuid}


# -- the fake stays pynvml --------------------------------------------------------------------
def _nvml_names():
    """Every nvml*/NVML* name the collector's modules take from the NVML module (attributes, and
    names looked up with getattr)."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                name = node.value
            else:
                continue
            if name.lower().startswith("nvml") and name != "nvml" and not name.startswith("NvmlRead"):
                names.add(name)
    return names


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_collector_uses_only_real_pynvml_names_with_the_fakes_signatures():
    names = _nvml_names()
    assert {"nvmlInit", "nvmlDeviceGetSamples", "nvmlDeviceGetProcessUtilization",
            "NVMLError_GpuIsLost", "NVML_CLOCK_SM"} <= names
    fake = FakeNvml()
    for name in sorted(names):
        assert hasattr(pynvml, name), f"{name} is not in pynvml"
        real = getattr(pynvml, name)
        assert hasattr(fake, name), f"the fake lacks {name}"
        if inspect.isfunction(real):
            assert _params(getattr(fake, name)) == _params(real), name
        else:
            assert getattr(fake, name) is real, name  # constants and exception classes are pynvml's


def test_every_fake_function_is_a_pynvml_function_with_the_same_parameters():
    for name, member in inspect.getmembers(FakeNvml, inspect.isfunction):
        if name.startswith("nvml"):
            assert inspect.isfunction(getattr(pynvml, name, None)), f"pynvml has no {name}"
            assert _params(getattr(FakeNvml(), name)) == _params(getattr(pynvml, name)), name


def test_fake_returns_pynvml_types_and_raises_pynvml_errors():
    fake = FakeNvml([FakeGpu("GPU-a", compute=[(7, None)], process_samples=[(7, 5, 90, 10)],
                             power_samples=[(5, 1000)])])
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(handle, pynvml.c_nvmlDevice_t)
    assert isinstance(fake.nvmlDeviceGetMemoryInfo(handle), pynvml.c_nvmlMemory_t)
    assert isinstance(fake.nvmlDeviceGetUtilizationRates(handle), pynvml.c_nvmlUtilization_t)
    (info,) = fake.nvmlDeviceGetComputeRunningProcesses(handle)
    assert isinstance(info, pynvml.nvmlFriendlyObject)
    assert set(vars(info)) == {f[0] for f in pynvml.c_nvmlProcessInfo_t._fields_}
    assert info.usedGpuMemory is None  # as pynvml turns NVML_VALUE_NOT_AVAILABLE into None
    (sample,) = fake.nvmlDeviceGetProcessUtilization(handle, 0)
    assert isinstance(sample, pynvml.c_nvmlProcessUtilizationSample_t)
    value_type, samples = fake.nvmlDeviceGetSamples(handle, pynvml.NVML_TOTAL_POWER_SAMPLES, 0)
    assert value_type == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and isinstance(samples, list)
    assert isinstance(samples[0], pynvml.c_nvmlSample_t) and samples[0].sampleValue.uiVal == 1000
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetProcessUtilization(handle, 5)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetSerial(handle)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(1)


# -- no driver, no GPU ------------------------------------------------------------------------
def test_real_pynvml_without_driver_exports_up_0_and_retries_init(monkeypatch, caplog):
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # a machine with a driver: this test is about machines without one
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine")
    attempts = []
    real_init = pynvml.nvmlInit

    def counting_init():
        attempts.append(1)
        return real_init()

    monkeypatch.setattr(pynvml, "nvmlInit", counting_init)
    clock = Clock()
    collector = GpuCollector(Context(config=Config()), nvml=pynvml, clock=clock)
    caplog.set_level(logging.INFO, logger="minerwatch.gpu")
    for _ in range(3):
        scrape = Scrape(collector)
        assert scrape.value("minerwatch_gpu_up") == 0
        assert scrape.value("minerwatch_gpu_devices") == 0
        assert scrape.names() == {"minerwatch_gpu_up", "minerwatch_gpu_devices"}
        clock.now += 20
    assert len(attempts) == 1  # within the retry interval: no new attempt
    clock.now += 1  # 61 s after the first attempt
    Scrape(collector)
    assert len(attempts) == 2
    logged = [r for r in caplog.records if r.name == "minerwatch.gpu"]
    assert len(logged) == 1 and "Library Not Found" in logged[0].getMessage()  # once, not every scrape
    collector.close()  # never initialised: nothing to shut down, no error


def test_driver_loaded_after_boot_is_picked_up_on_retry():
    clock = Clock()
    collector, fake = make([FakeGpu("GPU-a")], clock=clock, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    assert Scrape(collector).value("minerwatch_gpu_up") == 0
    fake.init_error = None  # the driver is installed
    clock.now += 30
    assert Scrape(collector).value("minerwatch_gpu_up") == 0  # not yet retried
    clock.now += 31
    scrape = Scrape(collector)
    assert scrape.value("minerwatch_gpu_up") == 1 and scrape.value("minerwatch_gpu_devices") == 1
    assert fake.calls.count("nvmlInit") == 2
    collector.close()
    assert fake.refcount == 0 and fake.calls[-1] == "nvmlShutdown"


def test_missing_pynvml_package_is_up_0(monkeypatch):
    import minerwatch.collectors.gpu as gpu_module

    monkeypatch.setattr(gpu_module, "_default_nvml", lambda: None)
    scrape = Scrape(GpuCollector(Context(config=Config())))
    assert scrape.value("minerwatch_gpu_up") == 0 and scrape.value("minerwatch_gpu_devices") == 0


def test_zero_gpus():
    collector, fake = make([])
    scrape = Scrape(collector)
    assert scrape.value("minerwatch_gpu_up") == 1
    assert scrape.value("minerwatch_gpu_devices") == 0
    assert scrape.names() == {"minerwatch_gpu_up", "minerwatch_gpu_devices"}
    assert fake.calls.count("nvmlInit") == 1
    Scrape(collector)
    assert fake.calls.count("nvmlInit") == 1  # initialised once, not per scrape


def test_nvml_gone_mid_run_is_up_0_then_initialised_again():
    collector, fake = make([FakeGpu("GPU-a")])
    assert Scrape(collector).value("minerwatch_gpu_up") == 1
    fake.refcount = 0  # the library lost its state (driver reloaded): calls answer Uninitialized
    assert Scrape(collector).value("minerwatch_gpu_up") == 0
    assert Scrape(collector).value("minerwatch_gpu_up") == 1  # re-initialised on the next scrape
    assert fake.calls.count("nvmlInit") == 2


# -- two GPUs: a miner and an idle one --------------------------------------------------------
@pytest.fixture
def process_table():
    from minerwatch.detection.process_table import ProcessTable
    from minerwatch.detection.signatures import Signatures

    return ProcessTable(ProcfsReader(), Signatures())


def start_miner(spawn):
    miner = spawn.start("xmrig", ["--threads", "0", "--duration", "120", "--donate-level", "1"])
    wait_for(lambda: Path(f"/proc/{miner.pid}/comm").read_text().strip() == "xmrig", what="miner exec")
    return miner


def two_gpus(miner_pid: int):
    mining = FakeGpu(
        "GPU-11111111-2222-3333-4444-555555555555", name="NVIDIA GeForce RTX 3080", serial=None,
        gpu_util=100, memory_util=93, memory_used=5 * GIB, power_mw=320_000, power_limit_mw=320_000,
        energy_mj=123_456_789, temperature_c=71, sm_clock_mhz=1710, memory_clock_mhz=9501, fan_percent=85,
        compute=[(miner_pid, 4800 * MIB)],
        process_samples=[(miner_pid, 1_000_000 + i * 166_000, 100, 93) for i in range(6)],
        utilization_samples=[(1_000_000 + i * 166_000, 100) for i in range(6)],
        power_samples=[(1_000_000 + i * 20_000, 320_000 - (i % 2) * 400) for i in range(50)],
    )
    idle = FakeGpu(
        "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", name="NVIDIA RTX A2000", serial="1324021012345",
        gpu_util=3, memory_util=1, memory_used=180 * MIB, memory_total=6 * GIB, power_mw=9_500,
        power_limit_mw=70_000, energy_mj=5_000, temperature_c=38, sm_clock_mhz=210, memory_clock_mhz=405,
        fan_percent=30,
        graphics=[(os.getpid(), 12 * MIB)],
        # a game or a training job: busy, then dips
        utilization_samples=[(2_000_000 + i * 166_000, v) for i, v in enumerate([95, 97, 40, 5, 90, 96])],
        power_samples=[(2_000_000 + i * 20_000, v) for i, v in enumerate([60_000, 61_000, 25_000, 9_000])],
    )
    return mining, idle


def test_two_gpus_miner_flat_at_cap_and_idle_gpu(spawn, process_table):
    miner = start_miner(spawn)
    process_table.scan()  # the process collector's scan, which the gpu collector reads
    mining, idle = two_gpus(miner.pid)
    collector, fake = make([mining, idle], table=process_table)
    scrape = Scrape(collector)
    g0, g1 = gpu_labels(0, mining.uuid), gpu_labels(1, idle.uuid)

    assert scrape.value("minerwatch_gpu_up") == 1
    assert scrape.value("minerwatch_gpu_devices") == 2
    assert scrape.value("minerwatch_gpu_device_up", **g0) == 1
    assert scrape.value("minerwatch_gpu_info", **g0, model="NVIDIA GeForce RTX 3080",
                        driver_version="550.54.15", serial="") == 1
    assert scrape.value("minerwatch_gpu_info", **g1, model="NVIDIA RTX A2000",
                        driver_version="550.54.15", serial="1324021012345") == 1
    # units: percent -> ratio, mW -> W, mJ -> J, MHz -> Hz
    assert scrape.value("minerwatch_gpu_utilization_ratio", **g0) == 1.0
    assert scrape.value("minerwatch_gpu_memory_utilization_ratio", **g0) == pytest.approx(0.93)
    assert scrape.value("minerwatch_gpu_memory_used_bytes", **g0) == 5 * GIB
    assert scrape.value("minerwatch_gpu_memory_total_bytes", **g0) == 10 * GIB
    assert scrape.value("minerwatch_gpu_power_watts", **g0) == pytest.approx(320.0)
    assert scrape.value("minerwatch_gpu_power_limit_watts", **g0) == pytest.approx(320.0)
    assert scrape.value("minerwatch_gpu_energy_joules_total", **g0) == pytest.approx(123_456.789)
    assert scrape.value("minerwatch_gpu_temperature_celsius", **g0) == 71
    assert scrape.value("minerwatch_gpu_sm_clock_hertz", **g0) == 1_710_000_000
    assert scrape.value("minerwatch_gpu_memory_clock_hertz", **g0) == 9_501_000_000
    assert scrape.value("minerwatch_gpu_fan_speed_ratio", **g0) == pytest.approx(0.85)
    assert scrape.value("minerwatch_gpu_utilization_ratio", **g1) == pytest.approx(0.03)
    assert scrape.value("minerwatch_gpu_power_watts", **g1) == pytest.approx(9.5)

    # flatness: the miner's samples barely move, the other GPU's dip
    assert scrape.value("minerwatch_gpu_utilization_spread_ratio", **g0) == 0
    assert scrape.value("minerwatch_gpu_power_spread_watts", **g0) == pytest.approx(0.4)
    assert scrape.value("minerwatch_gpu_utilization_spread_ratio", **g1) == pytest.approx(0.92)
    assert scrape.value("minerwatch_gpu_power_spread_watts", **g1) == pytest.approx(52.0)

    # per-process join with the process table: name and user of the real processes
    me = user_name(os.getuid())
    miner_labels = dict(g0, pid=str(miner.pid), name="xmrig", user=me)
    assert scrape.value("minerwatch_gpu_process_suspect", **miner_labels) == 1
    assert scrape.value("minerwatch_gpu_process_memory_used_bytes", **miner_labels, type="compute") == 4800 * MIB
    assert scrape.value("minerwatch_gpu_process_utilization_ratio", **miner_labels) == 1.0
    assert scrape.value("minerwatch_gpu_process_memory_utilization_ratio", **miner_labels) == pytest.approx(0.93)
    own_name = Path("/proc/self/comm").read_text().strip()
    own_labels = dict(g1, pid=str(os.getpid()), name=own_name, user=me)
    assert scrape.value("minerwatch_gpu_process_suspect", **own_labels) == 0
    assert scrape.value("minerwatch_gpu_process_memory_used_bytes", **own_labels, type="graphics") == 12 * MIB
    assert scrape.value("minerwatch_gpu_process_utilization_ratio", **own_labels) == 0  # no sample: not used
    assert scrape.value("minerwatch_gpu_processes", **g0) == 1
    assert scrape.value("minerwatch_gpu_processes", **g1) == 1
    assert scrape.value("minerwatch_gpu_process_suspects", **g0) == 1
    assert scrape.value("minerwatch_gpu_process_suspects", **g1) == 0
    assert "minerwatch_gpu_read_errors_total" not in scrape.names()


def test_spread_covers_only_the_samples_since_the_last_scrape(spawn, process_table):
    mining, idle = two_gpus(os.getpid())
    collector, fake = make([mining, idle], table=process_table)
    g1 = gpu_labels(1, idle.uuid)
    assert Scrape(collector).value("minerwatch_gpu_utilization_spread_ratio", **g1) == pytest.approx(0.92)
    # the dip is behind us: new samples are flat
    idle.utilization_samples += [(3_000_000 + i * 166_000, 99) for i in range(5)]
    idle.process_samples = [(os.getpid(), 3_000_000, 60, 20)]
    scrape = Scrape(collector)
    assert scrape.value("minerwatch_gpu_utilization_spread_ratio", **g1) == 0
    assert "minerwatch_gpu_power_spread_watts" not in {n for n, l in scrape.samples if dict(l) == g1}
    own = dict(g1, pid=str(os.getpid()), name=Path("/proc/self/comm").read_text().strip(),
               user=user_name(os.getuid()))
    assert scrape.value("minerwatch_gpu_process_utilization_ratio", **own) == pytest.approx(0.6)
    # one new sample says nothing about flatness: left out until a second arrives
    idle.utilization_samples.append((4_000_000, 10))
    assert Scrape(collector).value("minerwatch_gpu_utilization_spread_ratio", **g1) is None
    idle.utilization_samples.append((4_166_000, 90))
    assert Scrape(collector).value("minerwatch_gpu_utilization_spread_ratio", **g1) == pytest.approx(0.8)


def test_promtool_accepts_the_output(spawn, process_table, promtool):
    miner = start_miner(spawn)
    process_table.scan()
    mining, idle = two_gpus(miner.pid)
    idle.failing["nvmlDeviceGetTemperature"] = pynvml.NVML_ERROR_NO_PERMISSION  # adds the error counter
    collector, fake = make([mining, idle, FakeGpu("GPU-lost", lose_on="nvmlDeviceGetUUID")],
                           table=process_table)
    scrape = Scrape(collector)
    assert "minerwatch_gpu_read_errors_total" in scrape.names()
    check_metrics(promtool, scrape.text())
    # without driver
    collector, fake = make([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    check_metrics(promtool, Scrape(collector).text())


# -- what devices do not support, and what goes wrong -----------------------------------------
def test_unsupported_values_are_absent_not_zero():
    gpu = FakeGpu(
        "GPU-dc", name="NVIDIA H200", serial="1650924060000",
        unsupported={"nvmlDeviceGetFanSpeed", "nvmlDeviceGetTotalEnergyConsumption",
                     "nvmlDeviceGetProcessUtilization", "nvmlDeviceGetGraphicsRunningProcesses_v3"},
        utilization_samples=None, power_samples=[(1, 100_000), (2, 101_000)],
        compute=[(4242, 1 * GIB)],
    )
    collector, fake = make([gpu], process_names={4242: "/opt/train/bin/python3"})
    scrape = Scrape(collector)
    g = gpu_labels(0, "GPU-dc")
    for name in ("minerwatch_gpu_fan_speed_ratio", "minerwatch_gpu_energy_joules_total",
                 "minerwatch_gpu_utilization_spread_ratio", "minerwatch_gpu_process_utilization_ratio",
                 "minerwatch_gpu_process_memory_utilization_ratio"):
        assert name not in scrape.names(), name
    assert scrape.value("minerwatch_gpu_power_spread_watts", **g) == pytest.approx(1.0)
    assert scrape.value("minerwatch_gpu_temperature_celsius", **g) == 40
    assert scrape.value("minerwatch_gpu_device_up", **g) == 1
    # a process the table does not know (no table here): NVML's name, no verdict
    labels = dict(g, pid="4242", name="python3", user="")
    assert scrape.value("minerwatch_gpu_process_memory_used_bytes", **labels, type="compute") == GIB
    assert scrape.value("minerwatch_gpu_process_suspect", **labels) == 0
    assert scrape.value("minerwatch_gpu_processes", **g) == 1
    assert "minerwatch_gpu_read_errors_total" not in scrape.names()  # not supported is not an error


def test_failing_value_is_absent_counted_and_logged_once(caplog):
    gpu = FakeGpu("GPU-a", failing={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NO_PERMISSION})
    collector, fake = make([gpu])
    caplog.set_level(logging.INFO, logger="minerwatch.gpu")
    Scrape(collector)
    scrape = Scrape(collector)
    assert "minerwatch_gpu_power_watts" not in scrape.names()
    assert scrape.value("minerwatch_gpu_power_limit_watts", **gpu_labels(0, "GPU-a")) == 320
    assert scrape.value("minerwatch_gpu_read_errors_total", reason="no_permission") == 2
    assert len([r for r in caplog.records if "power_watts" in r.getMessage()]) == 1


@pytest.mark.parametrize("answer", [pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_SUCCESS])
def test_no_process_samples_means_unused_whatever_the_driver_answers(answer):
    gpu = FakeGpu("GPU-a", compute=[(10, MIB)])
    collector, fake = make([gpu], no_process_samples=answer)
    scrape = Scrape(collector)
    assert scrape.value("minerwatch_gpu_process_utilization_ratio", **gpu_labels(0, "GPU-a"), pid="10",
                        name="", user="") == 0
    assert "minerwatch_gpu_read_errors_total" not in scrape.names()


def test_no_processes_and_unreadable_process_lists():
    readable = FakeGpu("GPU-a")
    unreadable = FakeGpu("GPU-b", unsupported={"nvmlDeviceGetComputeRunningProcesses_v3",
                                               "nvmlDeviceGetGraphicsRunningProcesses_v3"})
    scrape = Scrape(make([readable, unreadable])[0])
    assert scrape.value("minerwatch_gpu_processes", **gpu_labels(0, "GPU-a")) == 0
    assert scrape.value("minerwatch_gpu_processes", **gpu_labels(1, "GPU-b")) is None  # unknown, not 0


def test_old_driver_without_v3_symbols_falls_back_to_v2():
    gpu = FakeGpu("GPU-a", compute=[(10, 100)], graphics=[(11, 200)])
    collector, fake = make([gpu], missing={"nvmlDeviceGetComputeRunningProcesses_v3",
                                           "nvmlDeviceGetGraphicsRunningProcesses_v3"})
    scrape = Scrape(collector)
    memory = scrape.series("minerwatch_gpu_process_memory_used_bytes")
    assert sorted(memory.values()) == [100, 200]
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in fake.calls
    assert "minerwatch_gpu_read_errors_total" not in scrape.names()


def test_gpu_lost_mid_scrape_drops_that_gpu_only():
    lost = FakeGpu("GPU-lost", gpu_util=100, compute=[(10, GIB)], lose_on="nvmlDeviceGetPowerUsage")
    healthy = FakeGpu("GPU-ok", gpu_util=50)
    collector, fake = make([lost, healthy])
    scrape = Scrape(collector)  # the GPU falls off the bus halfway through its reading
    g0, g1 = gpu_labels(0, "GPU-lost"), gpu_labels(1, "GPU-ok")
    assert scrape.value("minerwatch_gpu_up") == 1
    assert scrape.value("minerwatch_gpu_devices") == 2
    assert scrape.value("minerwatch_gpu_device_up", **g0) == 0
    assert scrape.value("minerwatch_gpu_device_up", **g1) == 1
    assert scrape.value("minerwatch_gpu_utilization_ratio", **g1) == 0.5
    on_lost = {n for (n, labels) in scrape.samples if ("uuid", "GPU-lost") in labels}
    assert on_lost == {"minerwatch_gpu_device_up"}  # even values read before the loss are dropped

    # later scrapes, through the runner: no exception out, the lost GPU named by its known uuid
    runner = CollectorRunner([collector])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(runner)
    text = generate_latest(registry).decode()
    assert 'minerwatch_scrape_collector_success{collector="gpu"} 1.0' in text
    assert 'minerwatch_gpu_device_up{gpu="0",uuid="GPU-lost"} 0.0' in text
    assert 'minerwatch_gpu_utilization_ratio{gpu="1",uuid="GPU-ok"} 0.5' in text


def test_gpu_lost_before_its_uuid_was_ever_read():
    collector, fake = make([FakeGpu("GPU-x", lose_on="nvmlDeviceGetUUID")])
    scrape = Scrape(collector)
    assert scrape.value("minerwatch_gpu_device_up", gpu="0", uuid="") == 0
    assert 'minerwatch_gpu_device_up{gpu="0",uuid=""} 0.0' in scrape.text()


# -- cardinality ------------------------------------------------------------------------------
class StubTable:
    """The process table's lookup interface, for a cap test with many PIDs."""

    def __init__(self, views):
        self.views = views

    def lookup(self, pid):
        return self.views.get(pid)

    def add_busy_source(self, source):
        pass


def test_per_process_series_are_capped_suspects_first_then_busiest():
    views = {pid: SimpleNamespace(name=f"p{pid}", user="bob", suspect=pid == 109) for pid in range(100, 112)}
    gpu0 = FakeGpu("GPU-a", compute=[(pid, MIB) for pid in range(100, 106)],
                   process_samples=[(pid, 10, pid - 100, 0) for pid in range(100, 106)])
    gpu1 = FakeGpu("GPU-b", compute=[(pid, MIB) for pid in range(106, 112)],
                   process_samples=[(pid, 10, pid - 90, 0) for pid in range(106, 112)])
    collector, fake = make([gpu0, gpu1], table=StubTable(views),
                           config=Config(process=ProcessSettings(max_suspects=3)))
    scrape = Scrape(collector)
    pids = sorted(int(dict(labels)["pid"]) for labels in scrape.series("minerwatch_gpu_process_suspect"))
    # 109 (suspect, 19% busy) first, then the busiest: 111 (21%), 110 (20%)
    assert pids == [109, 110, 111]
    for name in ("minerwatch_gpu_process_memory_used_bytes", "minerwatch_gpu_process_utilization_ratio"):
        assert len(scrape.series(name)) == 3
    # the counts are never capped
    assert scrape.value("minerwatch_gpu_processes", **gpu_labels(0, "GPU-a")) == 6
    assert scrape.value("minerwatch_gpu_processes", **gpu_labels(1, "GPU-b")) == 6
    assert scrape.value("minerwatch_gpu_process_suspects", **gpu_labels(1, "GPU-b")) == 1


# -- configuration ----------------------------------------------------------------------------
def test_config_sets_the_init_retry_interval(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("gpu:\n  init_retry_seconds: 300\n")
    clock = Clock()
    collector, fake = make([], clock=clock, config=config_module.load(str(path)),
                           init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    Scrape(collector)
    clock.now += 299
    Scrape(collector)
    assert fake.calls.count("nvmlInit") == 1
    clock.now += 1
    Scrape(collector)
    assert fake.calls.count("nvmlInit") == 2


@pytest.mark.parametrize("body, message", [
    ("gpu:\n  init_retry_seconds: 0\n", "config.yml:2: gpu.init_retry_seconds: must be a number >= 1"),
    ("gpu:\n  retry: 5\n", "config.yml:2: gpu.retry: unknown key (known: init_retry_seconds)"),
])
def test_config_errors_name_file_line_and_key(tmp_path, body, message):
    path = tmp_path / "config.yml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        make([], config=config_module.load(str(path)))
    assert str(err.value) == str(tmp_path / message)


def test_gpu_busy_counts_as_busy_for_weak_signals(tmp_path):
    """A GPU miner uses little CPU: under a weak signal (here a script run from a temp folder,
    like a miner under an antivirus exclusion) it is suspect once it keeps a GPU busy."""
    import subprocess
    import sys

    from minerwatch.detection.process_table import ProcessTable
    from minerwatch.detection.signatures import Signatures

    script = tmp_path / "job.py"  # tmp_path lies under /tmp
    script.write_text("import time\ntime.sleep(120)\n")
    job = subprocess.Popen([sys.executable, str(script)])
    try:
        wait_for(lambda: str(script) in Path(f"/proc/{job.pid}/cmdline").read_text(), what="job exec")
        context = Context(config=Config(), processes=ProcessTable(ProcfsReader(), Signatures()))
        view = context.processes.scan().by_pid()[job.pid]
        assert "exe_in_temp_dir" in view.signals and not view.suspect  # idle on the CPU

        gpu = FakeGpu(
            "GPU-11111111-2222-3333-4444-555555555555", gpu_util=97,
            compute=[(job.pid, 900 * MIB), (os.getpid(), 100 * MIB)],
            process_samples=[(job.pid, 1_000_000 + i * 166_000, 97, 60) for i in range(6)]
            + [(os.getpid(), 1_000_100 + i * 166_000, 90, 10) for i in range(6)],
        )
        collector = GpuCollector(context, nvml=FakeNvml([gpu]), clock=Clock())
        Scrape(collector)
        assert collector.busy_shares() == {job.pid: pytest.approx(0.97), os.getpid(): pytest.approx(0.90)}
        snap = context.processes.scan()
        assert snap.by_pid()[job.pid].suspect
        assert not snap.by_pid()[os.getpid()].suspect  # busy on the GPU, but no weak signal
        scrape = Scrape(collector)
        labels = dict(gpu_labels(0, gpu.uuid), pid=str(job.pid), name=view.name, user=view.user)
        assert scrape.value("minerwatch_gpu_process_suspect", **labels) == 1
    finally:
        job.kill()
        job.wait()
