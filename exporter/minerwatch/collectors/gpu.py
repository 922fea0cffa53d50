"""GPU collector: NVIDIA GPUs through NVML, and the processes on them joined with the process table.

A GPU miner (Ethash, KawPow) holds the GPU flat at 100% and at its power cap and keeps the memory
controller busy; games and ML training dip. The spread series (max - min over the samples NVML
took since the last scrape) let a rule tell the two apart. Without driver or GPU the collector
exports `minerwatch_gpu_up 0` and `minerwatch_gpu_devices 0` and nothing else; a value a GPU does
not support is left out, never exported as 0.

Sample output:
    minerwatch_gpu_up 1
    minerwatch_gpu_devices 1
    minerwatch_gpu_device_up{gpu="0",uuid="GPU-5f1c..."} 1
    minerwatch_gpu_info{driver_version="550.54.15",gpu="0",model="NVIDIA GeForce RTX 3080",serial="",uuid="GPU-5f1c..."} 1
    minerwatch_gpu_utilization_ratio{gpu="0",uuid="GPU-5f1c..."} 1
    minerwatch_gpu_power_watts{gpu="0",uuid="GPU-5f1c..."} 319.8
    minerwatch_gpu_utilization_spread_ratio{gpu="0",uuid="GPU-5f1c..."} 0
    minerwatch_gpu_processes{gpu="0",uuid="GPU-5f1c..."} 1
    minerwatch_gpu_process_suspect{gpu="0",name="xmrig",pid="4242",user="alice",uuid="GPU-5f1c..."} 1
    minerwatch_gpu_process_energy_joules_total{gpu="0",name="xmrig",pid="4242",user="alice",uuid="GPU-5f1c..."} 9120.5
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from minerwatch.host.gpu_reader import DEFAULT_RETRY_SECONDS, GpuProcess, GpuReading, NvmlReader, PynvmlLoader
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.yaml_file import Node, section_fields
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric

GPU = ["gpu", "uuid"]
PROCESS = GPU + ["pid", "name", "user"]

# Reader value key -> (family name, help, counter). Units are in the names, values in base units.
DEVICE_VALUES: Tuple[Tuple[str, str, str, bool], ...] = (
    ("utilization_ratio", "minerwatch_gpu_utilization_ratio",
     "Share of the last sample period in which a kernel ran on the GPU (SM utilization).", False),
    ("memory_utilization_ratio", "minerwatch_gpu_memory_utilization_ratio",
     "Share of the last sample period in which device memory was read or written.", False),
    ("memory_used_bytes", "minerwatch_gpu_memory_used_bytes", "Device memory allocated.", False),
    ("memory_total_bytes", "minerwatch_gpu_memory_total_bytes", "Device memory in all.", False),
    ("power_watts", "minerwatch_gpu_power_watts", "Power drawn by the GPU board.", False),
    ("energy_joules", "minerwatch_gpu_energy_joules",
     "Energy the GPU used since the driver was loaded.", True),
    ("power_limit_watts", "minerwatch_gpu_power_limit_watts", "Power limit the GPU enforces now.", False),
    ("temperature_celsius", "minerwatch_gpu_temperature_celsius", "GPU core temperature.", False),
    ("sm_clock_hertz", "minerwatch_gpu_sm_clock_hertz", "Current SM clock.", False),
    ("memory_clock_hertz", "minerwatch_gpu_memory_clock_hertz", "Current memory clock.", False),
    ("fan_speed_ratio", "minerwatch_gpu_fan_speed_ratio",
     "Fan speed as a share of its maximum (may exceed 1 on some boards).", False),
)

SPREADS: Tuple[Tuple[str, str, str], ...] = (
    ("utilization_spread_ratio", "minerwatch_gpu_utilization_spread_ratio",
     "Max minus min of SM utilization over the samples NVML took since the last scrape; "
     "near 0 means flat (a miner), games and training dip."),
    ("power_spread_watts", "minerwatch_gpu_power_spread_watts",
     "Max minus min of power draw over the samples NVML took since the last scrape."),
)

@dataclass(frozen=True)
class GpuSettings:
    init_retry_seconds: float = DEFAULT_RETRY_SECONDS  # how often to retry nvmlInit without driver


def read_settings(node: Optional[Node]) -> GpuSettings:
    """The `gpu:` section of the config file; errors name file, line and key."""
    fields = section_fields(node, ("init_retry_seconds",))
    return GpuSettings(**{key: child.number(minimum=1.0) for key, child in fields.items()})


def _default_nvml():
    """pynvml, imported on the first scrape that finds the NVML library (gpu_reader.PynvmlLoader);
    without the package the reader reports it once and exports minerwatch_gpu_up 0."""
    return PynvmlLoader()


@dataclass
class _Row:
    """One process on one GPU, joined with the process table."""

    gpu: GpuReading
    pid: int
    name: str
    user: str
    suspect: bool
    contexts: List[GpuProcess]
    sm_ratio: Optional[float]
    memory_ratio: Optional[float]

    @property
    def busy(self) -> Tuple[float, float]:
        memory = sum(c.used_memory_bytes or 0 for c in self.contexts)
        return (self.sm_ratio or 0.0, memory)


@register
class GpuCollector(Collector):
    name = "gpu"
    help = "NVIDIA GPUs through NVML: load, power, flatness and the processes on them."

    def __init__(self, context: Context, nvml=None, clock: Callable[[], float] = time.monotonic):
        super().__init__(context)
        settings = context.config.gpu
        # NVML is initialised on the first scrape, not here: listing collectors loads no library.
        self.reader = NvmlReader(nvml if nvml is not None else _default_nvml(), clock=clock,
                                 retry_seconds=settings.init_retry_seconds)
        self._busy: Dict[int, float] = {}  # pid -> its largest share of one GPU's SM time
        self._energy: Dict[str, float] = {}  # GPU uuid -> its energy counter at the last scrape
        self._process_joules: Dict[Tuple[str, int], float] = {}  # (uuid, pid) -> apportioned
        if context.processes is not None:  # a GPU miner under a weak signal is suspect too
            context.processes.add_busy_source(self)

    def busy_shares(self) -> Dict[int, float]:
        """Each process's share of a GPU's SM time in the last scrape (the largest, if on several
        GPUs); the process table decides how much is busy."""
        return self._busy

    def close(self) -> None:
        self.reader.close()

    def collect(self) -> Iterable[Metric]:
        reading = self.reader.read()
        yield GaugeMetricFamily(
            "minerwatch_gpu_up", "1 if NVML is initialised and answering, 0 without driver or GPU library.",
            value=1 if reading.up else 0,
        )
        yield GaugeMetricFamily(
            "minerwatch_gpu_devices", "NVIDIA GPUs NVML reports (0 when NVML is down).", value=len(reading.gpus)
        )
        if reading.up:
            yield from self._devices(reading)
            yield from self._processes(reading)
        else:
            self._busy = {}
        errors = CounterMetricFamily(
            "minerwatch_gpu_read_errors", "NVML queries that failed other than 'not supported', by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(self.reader.errors.items()):
            errors.add_metric([reason], count)
        if errors.samples:
            yield errors

    def _devices(self, reading) -> Iterable[Metric]:
        device_up = GaugeMetricFamily(
            "minerwatch_gpu_device_up",
            "1 if the GPU answered this scrape; 0 if it is lost (fell off the bus) or unreachable.",
            labels=GPU,
        )
        info = GaugeMetricFamily(
            "minerwatch_gpu_info", "A constant 1 labelled by the GPU's model, serial and the driver version.",
            labels=GPU + ["model", "driver_version", "serial"],
        )
        values = {
            key: (CounterMetricFamily if counter else GaugeMetricFamily)(name, help, labels=GPU)
            for key, name, help, counter in DEVICE_VALUES
        }
        spreads = {key: GaugeMetricFamily(name, help, labels=GPU) for key, name, help in SPREADS}
        for gpu in reading.gpus:
            labels = [str(gpu.index), gpu.uuid]
            device_up.add_metric(labels, 1 if gpu.up else 0)
            if not gpu.up:
                continue
            info.add_metric(labels + [gpu.model, reading.driver_version, gpu.serial], 1)
            for key, value in gpu.values.items():
                values[key].add_metric(labels, value)
            for key, value in gpu.spreads.items():
                spreads[key].add_metric(labels, value)
        for family in [device_up, info, *values.values(), *spreads.values()]:
            if family.samples:
                yield family

    def _join(self, reading) -> List[_Row]:
        table = self.context.processes
        rows: List[_Row] = []
        for gpu in reading.gpus:
            if not gpu.up or not gpu.processes:
                continue
            by_pid: Dict[int, List[GpuProcess]] = {}
            for proc in gpu.processes:
                by_pid.setdefault(proc.pid, []).append(proc)
            for pid, contexts in by_pid.items():
                view = table.lookup(pid) if table is not None else None
                if view is not None:
                    name, user, suspect = view.name, view.user, view.suspect
                else:  # not in our PID namespace or just started: NVML's name, no verdict
                    name, user, suspect = self.reader.process_name(pid), "", False
                util = gpu.process_utilization
                sample = util.get(pid) if util is not None else None
                sm = memory = None
                if util is not None:  # readable: no sample means no use since the last scrape
                    sm = sample.sm_ratio if sample else 0.0
                    memory = sample.memory_ratio if sample else 0.0
                rows.append(_Row(gpu, pid, name, user, suspect, contexts, sm, memory))
        return rows

    def _processes(self, reading) -> Iterable[Metric]:
        rows = self._join(reading)
        busy: Dict[int, float] = {}
        for row in rows:
            busy[row.pid] = max(busy.get(row.pid, 0.0), row.sm_ratio or 0.0)
        self._busy = busy
        count = GaugeMetricFamily(
            "minerwatch_gpu_processes", "Processes with a compute or graphics context on the GPU.", labels=GPU
        )
        suspects = GaugeMetricFamily(
            "minerwatch_gpu_process_suspects",
            "Processes on the GPU the process table calls suspect (per-process series are capped).",
            labels=GPU,
        )
        for gpu in reading.gpus:
            if gpu.up and gpu.processes is not None:
                labels = [str(gpu.index), gpu.uuid]
                count.add_metric(labels, len({p.pid for p in gpu.processes}))
                suspects.add_metric(labels, sum(1 for r in rows if r.gpu is gpu and r.suspect))

        memory = GaugeMetricFamily(
            "minerwatch_gpu_process_memory_used_bytes", "GPU memory a process's context holds, by context type.",
            labels=PROCESS + ["type"],
        )
        sm = GaugeMetricFamily(
            "minerwatch_gpu_process_utilization_ratio",
            "Share of SM time the process used over the samples since the last scrape.", labels=PROCESS,
        )
        mem_util = GaugeMetricFamily(
            "minerwatch_gpu_process_memory_utilization_ratio",
            "Share of memory-controller time the process used over the samples since the last scrape.",
            labels=PROCESS,
        )
        suspect = GaugeMetricFamily(
            "minerwatch_gpu_process_suspect", "1 if the process table calls the process on the GPU suspect.",
            labels=PROCESS,
        )
        energy = CounterMetricFamily(
            "minerwatch_gpu_process_energy",
            "Estimated GPU energy of a suspect process while watched: the GPU's NVML energy since the "
            "last scrape times the process's share of the SM time used on that GPU.",
            labels=PROCESS, unit="joules",
        )
        # Bounded like the process collector: suspects first, then the busiest; never all PIDs.
        rows.sort(key=lambda r: (not r.suspect, [-x for x in r.busy], r.gpu.index, r.pid))
        rows = rows[: self.context.config.process.max_suspects]
        joules = self._apportion_energy(reading, rows)
        for row in rows:
            labels = [str(row.gpu.index), row.gpu.uuid, str(row.pid), row.name, row.user]
            for ctx in row.contexts:
                if ctx.used_memory_bytes is not None:
                    memory.add_metric(labels + [ctx.type], ctx.used_memory_bytes)
            if row.sm_ratio is not None:
                sm.add_metric(labels, row.sm_ratio)
                mem_util.add_metric(labels, row.memory_ratio)
            suspect.add_metric(labels, 1 if row.suspect else 0)
            if (row.gpu.uuid, row.pid) in joules:
                energy.add_metric(labels, joules[(row.gpu.uuid, row.pid)])
        for family in (count, suspects, memory, sm, mem_util, suspect, energy):
            if family.samples:
                yield family

    def _apportion_energy(self, reading, rows: List[_Row]) -> Dict[Tuple[str, int], float]:
        """Add each suspect's share of its GPU's energy since the last scrape; forget the rest.

        The share is the process's SM time over all SM time on that GPU in the interval (the way
        the CPU side shares RAPL energy): a GPU busy only with a miner charges it all its energy.
        """
        deltas: Dict[str, float] = {}
        for gpu in reading.gpus:
            now = gpu.values.get("energy_joules") if gpu.up else None
            if now is None:
                continue
            last = self._energy.get(gpu.uuid)
            self._energy[gpu.uuid] = now
            if last is not None and now >= last:  # a reload of the driver restarts the counter
                deltas[gpu.uuid] = now - last
        sm_total: Dict[str, float] = {}
        for row in rows:
            sm_total[row.gpu.uuid] = sm_total.get(row.gpu.uuid, 0.0) + (row.sm_ratio or 0.0)
        kept: Dict[Tuple[str, int], float] = {}
        for row in rows:
            if not row.suspect or "energy_joules" not in row.gpu.values:
                continue
            key = (row.gpu.uuid, row.pid)
            value = self._process_joules.get(key, 0.0)
            total = sm_total.get(row.gpu.uuid, 0.0)
            if total > 0:
                value += deltas.get(row.gpu.uuid, 0.0) * (row.sm_ratio or 0.0) / total
            kept[key] = value
        self._process_joules = kept
        return kept
