"""Host and tuning collectors on fixture trees (and the host one live)."""

import os

from prometheus_client import CollectorRegistry, generate_latest

from support.promtool import check_metrics
from minerwatch.collectors.host import HostCollector, parse_proc_stat, read_psutil
from minerwatch.collectors.tuning import TuningCollector
from minerwatch.config import Config
from minerwatch.collectors.base import Context


def expose(collector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_parse_proc_stat():
    modes, cpus = parse_proc_stat("cpu  100 2 30 400 5 6 7 8 9 10\ncpu0 1\ncpu1 2\nintr 5\n", 100)
    assert modes == {"user": 1.0, "nice": 0.02, "system": 0.3, "idle": 4.0, "iowait": 0.05, "irq": 0.06,
                     "softirq": 0.07, "steal": 0.08}
    assert cpus == 2


def test_host_live_and_portable_agree(promtool):
    text = expose(HostCollector(Context(config=Config())))
    check_metrics(promtool, text)
    assert f"minerwatch_host_cpus {float(os.cpu_count())}" in text
    modes, cpus = read_psutil()
    assert cpus == os.cpu_count() and modes["idle"] > 0


def make_sysfs(root, pages, msr):
    for size_kb, count in pages.items():
        d = root / f"kernel/mm/hugepages/hugepages-{size_kb}kB"
        d.mkdir(parents=True)
        (d / "nr_hugepages").write_text(f"{count}\n")
    (root / "module").mkdir(parents=True, exist_ok=True)
    if msr is not None:
        (root / "module/msr/parameters").mkdir(parents=True)
        if msr != "absent":
            (root / "module/msr/parameters/allow_writes").write_text(msr + "\n")
    return str(root)


def tuning(sysfs):
    return expose(TuningCollector(Context(config=Config(), sysfs=sysfs)))


def test_tuned_for_randomx(tmp_path, promtool):
    text = tuning(make_sysfs(tmp_path, {2048: 1280, 1048576: 3}, "on"))
    check_metrics(promtool, text)
    assert 'minerwatch_tuning_hugepages_reserved_pages{page_size_bytes="2097152"} 1280.0' in text
    assert 'minerwatch_tuning_hugepages_reserved_pages{page_size_bytes="1073741824"} 3.0' in text
    from prometheus_client.parser import text_string_to_metric_families

    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["minerwatch_tuning_hugepages_reserved_bytes"] == 1280 * 2**21 + 3 * 2**30
    assert "minerwatch_tuning_msr_module_loaded 1.0" in text
    assert "minerwatch_tuning_msr_writes_allowed 1.0" in text


def test_untuned_desktop(tmp_path):
    text = tuning(make_sysfs(tmp_path, {2048: 0}, None))
    assert "minerwatch_tuning_hugepages_reserved_bytes 0.0" in text
    assert "minerwatch_tuning_msr_module_loaded 0.0" in text
    assert "minerwatch_tuning_msr_writes_allowed 0.0" in text


def test_msr_write_modes(tmp_path):
    assert "minerwatch_tuning_msr_writes_allowed 0.0" in tuning(make_sysfs(tmp_path / "a", {}, "off"))
    # "default" still lets writes through (the kernel only logs them); old kernels have no switch.
    assert "minerwatch_tuning_msr_writes_allowed 1.0" in tuning(make_sysfs(tmp_path / "b", {}, "default"))
    assert "minerwatch_tuning_msr_writes_allowed 1.0" in tuning(make_sysfs(tmp_path / "c", {}, "absent"))


def test_no_sysfs_is_quietly_empty(tmp_path):
    assert tuning(str(tmp_path)) == ""
