"""Assembles the exporter from options: config, the shared process table, the enabled collectors."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional

from minerwatch import __version__, config as config_module
from minerwatch.detection.allowlist import Allowlist
from minerwatch.serving.metrics import GaugeMetricFamily, Metric, Registry
from minerwatch.host.proc_reader import default_reader
from minerwatch.detection.process_table import ProcessTable
from minerwatch.collectors import available
from minerwatch.collectors.base import Collector, CollectorRunner, Context
from minerwatch.serving.config_hashes import ConfigHashes
from minerwatch.serving.self_metrics import ProcessMetrics, PythonInfo
from minerwatch.detection.signatures import Signatures

log = logging.getLogger("minerwatch")


@dataclass(frozen=True)
class Clocks:
    """The clocks the process table measures recent CPU use with. A caller of the CLI may pass
    fixed ones as click's context object (`cli.main(argv, obj=Clocks(...))`): the golden
    end-to-end test does, so that the exporter's output on a fixture tree is reproducible."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


@dataclass
class Options:
    """Everything the command line decides; None means 'use the config file or the default'."""

    config_file: Optional[str] = None
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"
    state_dir: str = ""  # --state.dir; "" = investigation/custody.default_state_dir(rootfs)
    collectors: Dict[str, bool] = field(default_factory=dict)  # name -> explicitly on/off
    disable_defaults: bool = False
    top_k: Optional[int] = None
    max_suspects: Optional[int] = None
    reader: str = "auto"  # auto | procfs | psutil
    clocks: Clocks = field(default_factory=Clocks)


def enabled_collectors(options: Options) -> List[str]:
    names = []
    for name, cls in available().items():
        default = cls.default_enabled and not options.disable_defaults
        if not options.collectors.get(name, default):
            continue
        if not cls.applies():
            if options.collectors.get(name):
                log.warning("collector %s asked for but not available on this host; not run", name)
            continue
        names.append(name)
    return names


def build_context(options: Options) -> Context:
    """Config (flags applied) and the process table; raises ConfigError on a bad config file."""
    config = config_module.load(options.config_file)
    # --collector.process.top-k and --collector.process.max-suspects win over the file
    flags = {"top_k": options.top_k, "max_suspects": options.max_suspects}
    given = {key: value for key, value in flags.items() if value is not None}
    if given:
        config = replace(config, process=replace(config.process, **given))
    if options.reader == "psutil":
        from minerwatch.host.proc_reader import PsutilReader  # here: psutil only where asked for (memory)

        reader = PsutilReader()
    else:
        reader = default_reader(options.procfs)
    table = ProcessTable(reader, Signatures.from_settings(config.signatures), Allowlist(config.allowlist),
                         config.process, clock=options.clocks.monotonic, wall_clock=options.clocks.wall)
    return Context(config=config, procfs=options.procfs, sysfs=options.sysfs, rootfs=options.rootfs,
                   state_dir=options.state_dir, processes=table)


def build_collectors(context: Context, names: Iterable[str]) -> List[Collector]:
    """The named collectors; if one cannot be built, those built already are closed (a reload
    that fails must not leave their threads and sockets behind)."""
    registered = available()
    built: List[Collector] = []
    try:
        for name in names:
            built.append(registered[name](context))
    except BaseException:
        close_collectors(built)
        raise
    return built


def close_collectors(collectors: Iterable[Collector]) -> None:
    for collector in collectors:
        try:
            collector.close()
        except Exception:
            log.exception("closing collector %s failed", collector.name)


class BuildInfo:
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "minerwatch_build_info",
            "A metric with a constant 1 labelled by the version of minerwatch and Python.",
            labels=["version", "pythonversion"],
        )
        family.add_metric([__version__, platform.python_version()], 1)
        yield family

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def build_registry(runner: CollectorRunner) -> Registry:
    registry = Registry()
    registry.register(BuildInfo())
    registry.register(runner)
    registry.register(ConfigHashes(runner))  # what configuration the runner's collectors run with
    # The exporter's own CPU and memory (process_*), as every Prometheus exporter exposes them.
    registry.register(ProcessMetrics())
    registry.register(PythonInfo())
    return registry
