"""Reads NVIDIA GPUs through NVML (the `pynvml` module of nvidia-ml-py) into values in base units.

Knows nothing of Prometheus: `NvmlReader.read()` returns plain dataclasses that the gpu collector
turns into metric families. The NVML module is a parameter so tests pass a fake with the same
functions, return types and exceptions.

What may go wrong, and what the reader does:
- no library / no driver (LibraryNotFound, DriverNotLoaded): `up` False, init retried at most
  every `retry_seconds` (a driver installed after boot is picked up), the reason logged once;
- a value a device does not support (NotSupported): left out, never reported as 0;
- a GPU lost mid-scrape (GpuIsLost, ResetRequired): that GPU's reading is dropped, `up` False;
- NVML gone mid-scrape (Uninitialized, DriverNotLoaded, version mismatch after a driver
  upgrade): `up` False, NVML shut down and initialised again on the next scrape;
- any other NVML error on one value: that value left out, counted by reason, logged once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from minerwatch.text import host_text

log = logging.getLogger("minerwatch.gpu")

DEFAULT_RETRY_SECONDS = 60.0


@dataclass
class GpuProcess:
    pid: int
    type: str  # "compute" or "graphics"
    used_memory_bytes: Optional[int]  # None where NVML cannot tell (Windows WDDM, some drivers)


@dataclass
class ProcessUtilization:
    sm_ratio: float  # share of the SM time this process used since the last scrape, 0..1
    memory_ratio: float  # share of memory-controller time, 0..1


@dataclass
class GpuReading:
    index: int
    uuid: str = ""
    up: bool = True  # False: lost or unreachable; then nothing else below is filled
    model: str = ""
    serial: str = ""  # "" where NVML does not support it (most consumer boards)
    values: Dict[str, float] = field(default_factory=dict)  # key -> value in base units
    processes: Optional[List[GpuProcess]] = None  # None: neither process list readable
    process_utilization: Optional[Dict[int, ProcessUtilization]] = None  # None: not readable
    spreads: Dict[str, float] = field(default_factory=dict)  # flatness, key -> max - min


@dataclass
class NvmlReading:
    up: bool  # NVML initialised and answering
    driver_version: str = ""
    gpus: List[GpuReading] = field(default_factory=list)


class _Lost(Exception):
    """The GPU fell off the bus or needs a reset: drop its reading for this scrape."""


class _Down(Exception):
    """NVML itself stopped answering: mark it down and initialise it again."""


_MISSING = object()  # not supported or failed: leave the value out
_EMPTY = object()  # NVML has no samples since the timestamp given

# Scalar values: key -> (read from NVML, factor to base units). Keys name the metric families in
# collectors/gpu.py. NVML units: mW, mJ, MHz, percent, degrees Celsius, bytes.
_SCALARS: Tuple[Tuple[str, Callable, float], ...] = (
    ("power_watts", lambda n, h: n.nvmlDeviceGetPowerUsage(h), 1e-3),
    ("energy_joules", lambda n, h: n.nvmlDeviceGetTotalEnergyConsumption(h), 1e-3),
    ("power_limit_watts", lambda n, h: n.nvmlDeviceGetEnforcedPowerLimit(h), 1e-3),
    ("temperature_celsius", lambda n, h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU), 1.0),
    ("sm_clock_hertz", lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM), 1e6),
    ("memory_clock_hertz", lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM), 1e6),
    ("fan_speed_ratio", lambda n, h: n.nvmlDeviceGetFanSpeed(h), 1e-2),
)

# Sample buffers for the flatness signal: key -> (sampling type, factor to base units).
_SPREADS: Tuple[Tuple[str, Callable, float], ...] = (
    ("utilization_spread_ratio", lambda n: n.NVML_GPU_UTILIZATION_SAMPLES, 1e-2),  # percent
    ("power_spread_watts", lambda n: n.NVML_TOTAL_POWER_SAMPLES, 1e-3),  # mW
)

_VALUE_FIELDS = (  # nvmlValue_t union member by NVML_VALUE_TYPE_*
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)


def error_reason(exc: BaseException) -> str:
    """A metric label for an NVML error: NVMLError_NoPermission -> no_permission."""
    name = type(exc).__name__
    if name == "NVMLLibraryMismatchError":
        return "library_mismatch"
    parts = name.split("_", 1)  # pynvml's classes: NVMLError_<CamelCase>; NVMLError itself: unknown
    if len(parts) == 1:
        return "unknown"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parts[1]).lower()


LIBRARY_NOT_FOUND = "NVML Shared Library Not Found"  # pynvml's own words for it


def nvml_library_names():
    """Where pynvml loads the NVML library from, in its order."""
    if sys.platform.startswith("win"):
        return [os.path.join(os.getenv("WINDIR", "C:/Windows"), "System32/nvml.dll"),
                os.path.join(os.getenv("ProgramFiles", "C:/Program Files"), "NVIDIA Corporation/NVSMI/nvml.dll")]
    return ["libnvidia-ml.so.1"]


class PynvmlLoader:
    """Imports pynvml only once the NVML library itself loads. Most office PCs have no NVIDIA
    driver, and the module costs about 2.5 MiB of RSS for as long as the exporter runs; trying
    to load the library (what nvmlInit does first) costs a failed dlopen."""

    def __init__(self, names=None):
        self.names = names

    def installed(self) -> bool:
        return "pynvml" in sys.modules or importlib.util.find_spec("pynvml") is not None

    def __call__(self):
        """The pynvml module; OSError (pynvml's reason) while no library can be loaded."""
        if "pynvml" not in sys.modules:  # already imported (or a test's fake in its place): use it
            import ctypes

            for name in self.names or nvml_library_names():
                try:
                    ctypes.CDLL(name)
                    break
                except OSError:
                    continue
            else:
                raise OSError(LIBRARY_NOT_FOUND)
        import pynvml

        return pynvml


class NvmlReader:
    def __init__(self, nvml, clock: Callable[[], float] = time.monotonic,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS):
        # nvml: the pynvml module (or a fake of it); None: the package is not installed; a
        # PynvmlLoader: imported once the library loads (the first try is on the first scrape)
        self._load: Optional[PynvmlLoader] = None
        if isinstance(nvml, PynvmlLoader):
            self._load, nvml = (nvml if nvml.installed() else None), None
        self.nvml = nvml
        self._clock = clock
        self.retry_seconds = retry_seconds
        self.initialised = False
        self._next_init = 0.0  # clock time of the next nvmlInit attempt
        self.errors: Counter = Counter()  # reason -> NVML errors on single values, cumulative
        self._problem: Optional[str] = None  # the last "NVML unavailable" reason logged
        self._logged: set = set()  # (what, reason) pairs and lost GPUs already logged
        self._uuids: Dict[int, str] = {}  # index -> uuid, to name a GPU that is lost
        self._static: Dict[str, Tuple[str, str]] = {}  # uuid -> (model, serial)
        self._seen: Dict[Tuple[str, str], int] = {}  # (gpu, buffer) -> last sample timestamp
        if nvml is not None:
            self._bind(nvml)

    def _bind(self, nvml) -> None:
        self.nvml = nvml
        if nvml is not None:
            # pynvml's own classes (or the fake's, which are the same objects)
            self._lost = (nvml.NVMLError_GpuIsLost, nvml.NVMLError_ResetRequired)
            self._down = (nvml.NVMLError_Uninitialized, nvml.NVMLError_DriverNotLoaded,
                          nvml.NVMLError_LibRmVersionMismatch)

    # -- NVML life cycle ----------------------------------------------------------------------
    def _unavailable(self, reason: str, level: int = logging.INFO) -> None:
        # No driver is a quiet, expected outcome on most office PCs: info, once per reason.
        if reason != self._problem:
            log.log(level, "NVIDIA GPUs not readable: %s", reason)
            self._problem = reason

    def _ensure_init(self) -> bool:
        if self.initialised:
            return True
        if self.nvml is None and self._load is None:
            self._unavailable("python package nvidia-ml-py (pynvml) not installed")
            return False
        now = self._clock()
        if now < self._next_init:
            return False
        if self.nvml is None:
            try:
                self._bind(self._load())
            except OSError as exc:  # no library yet: what nvmlInit would have said, retried alike
                self._next_init = now + self.retry_seconds
                self._unavailable(f"nvmlInit: {exc}")
                return False
        try:
            self.nvml.nvmlInit()
        except (self.nvml.NVMLError, OSError) as exc:
            self._next_init = now + self.retry_seconds
            self._unavailable(f"nvmlInit: {exc}")
            return False
        self.initialised = True
        if self._problem is not None:
            log.info("NVML initialised")
            self._problem = None
        return True

    def _restart(self, reason: str) -> None:
        """NVML stopped answering: shut down now, initialise again on the next scrape."""
        self.close()
        self._next_init = self._clock()
        self._unavailable(reason, logging.WARNING)

    def close(self) -> None:
        if self.initialised:
            self.initialised = False
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # already gone (driver unloaded): nothing left to release

    # -- reading ------------------------------------------------------------------------------
    def read(self) -> NvmlReading:
        if not self._ensure_init():
            return NvmlReading(up=False)
        nvml = self.nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._restart(f"nvmlDeviceGetCount: {exc}")
            return NvmlReading(up=False)
        reading = NvmlReading(up=True)
        try:
            reading.driver_version = nvml.nvmlSystemGetDriverVersion()
        except nvml.NVMLError as exc:
            self._note_error("driver_version", exc)
        try:
            reading.gpus = [self._read_gpu(index) for index in range(count)]
        except _Down as exc:
            self._restart(str(exc))
            return NvmlReading(up=False)
        return reading

    def _note_error(self, what: str, exc: BaseException) -> None:
        reason = error_reason(exc)
        self.errors[reason] += 1
        if (what, reason) not in self._logged:
            self._logged.add((what, reason))
            log.warning("NVML cannot read %s: %s", what, exc)

    def _call(self, what: str, fn, *args, fallback=None, none_found=False):
        """fn(*args), or _MISSING when not supported or failing; raises _Lost and _Down.

        fallback: an older version of fn, for drivers that lack the symbol pynvml calls.
        none_found: NotFound means "no samples since then", answered as _EMPTY.
        """
        nvml = self.nvml
        try:
            return fn(*args)
        except self._lost as exc:
            raise _Lost(str(exc)) from None
        except self._down as exc:
            raise _Down(f"{what}: {exc}") from None
        except nvml.NVMLError_NotSupported:
            return _MISSING
        except nvml.NVMLError_NotFound as exc:
            if none_found:
                return _EMPTY
            self._note_error(what, exc)
        except nvml.NVMLLibraryMismatchError as exc:
            if fallback is not None:
                return self._call(what, fallback, *args, none_found=none_found)
            self._note_error(what, exc)
        except nvml.NVMLError as exc:
            if exc.value == nvml.NVML_SUCCESS and none_found:
                return _EMPTY  # pynvml raises NVMLError(0) when a size query finds nothing
            self._note_error(what, exc)
        return _MISSING

    def _read_gpu(self, index: int) -> GpuReading:
        gpu = GpuReading(index=index, uuid=self._uuids.get(index, ""))
        try:
            self._fill(gpu)
        except _Lost as exc:
            if ("lost", index) not in self._logged:
                self._logged.add(("lost", index))
                log.warning("GPU %d (%s) lost: %s", index, gpu.uuid or "uuid unknown", exc)
            return GpuReading(index=index, uuid=gpu.uuid, up=False)
        self._logged.discard(("lost", index))  # back after a reset: log a new loss again
        return gpu

    def _fill(self, gpu: GpuReading) -> None:
        nvml = self.nvml
        handle = self._call("device handle", nvml.nvmlDeviceGetHandleByIndex, gpu.index)
        if handle is _MISSING:  # e.g. no permission on this device node
            gpu.up = False
            return
        uuid = self._call("uuid", nvml.nvmlDeviceGetUUID, handle)
        if uuid is not _MISSING:
            gpu.uuid = self._uuids[gpu.index] = uuid
        static = self._static.get(gpu.uuid)
        if static is None:
            model = self._call("name", nvml.nvmlDeviceGetName, handle)
            serial = self._call("serial", nvml.nvmlDeviceGetSerial, handle)
            static = ("" if model is _MISSING else model, "" if serial is _MISSING else serial)
            if gpu.uuid:
                self._static[gpu.uuid] = static
        gpu.model, gpu.serial = static

        values = gpu.values
        rates = self._call("utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        if rates is not _MISSING:
            values["utilization_ratio"] = rates.gpu / 100.0
            values["memory_utilization_ratio"] = rates.memory / 100.0
        memory = self._call("memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not _MISSING:
            values["memory_used_bytes"] = float(memory.used)
            values["memory_total_bytes"] = float(memory.total)
        for key, read, factor in _SCALARS:
            value = self._call(key, read, nvml, handle)
            if value is not _MISSING:
                values[key] = value * factor

        ident = gpu.uuid or str(gpu.index)  # keys the sample timestamps of this GPU
        gpu.processes = self._processes(handle)
        gpu.process_utilization = self._process_utilization(ident, handle)
        for key, sampling, factor in _SPREADS:
            spread = self._spread(ident, key, handle, sampling(nvml))
            if spread is not None:
                gpu.spreads[key] = spread * factor

    def _processes(self, handle) -> Optional[List[GpuProcess]]:
        out: Dict[Tuple[int, str], GpuProcess] = {}
        readable = False
        nvml = self.nvml
        for kind, latest, older in (
            ("compute", nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetComputeRunningProcesses_v2),
            ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses_v2),
        ):
            # pynvml calls the _v3 symbol; drivers before R510 have only _v2.
            infos = self._call(f"{kind} processes", latest, handle, fallback=older)
            if infos is _MISSING:
                continue
            readable = True
            for info in infos:
                # One process may hold several contexts (MIG instances): one entry, memory summed.
                key = (info.pid, kind)
                proc = out.get(key)
                if proc is None:
                    out[key] = GpuProcess(info.pid, kind, info.usedGpuMemory)
                elif info.usedGpuMemory is not None:
                    proc.used_memory_bytes = (proc.used_memory_bytes or 0) + info.usedGpuMemory
        return list(out.values()) if readable else None

    def _process_utilization(self, ident: str, handle) -> Optional[Dict[int, ProcessUtilization]]:
        nvml = self.nvml
        last = self._seen.get((ident, "process"), 0)
        samples = self._call("process utilization", nvml.nvmlDeviceGetProcessUtilization, handle, last,
                             none_found=True)
        if samples is _MISSING:
            return None
        if samples is _EMPTY:
            return {}  # no process used the GPU since the last scrape
        sums: Dict[int, List[float]] = {}
        newest = last
        for s in samples:
            if s.timeStamp <= last or s.smUtil > 100 or s.memUtil > 100:
                continue  # stale, or not available (0xffffffff)
            acc = sums.setdefault(s.pid, [0.0, 0.0, 0])
            acc[0] += s.smUtil
            acc[1] += s.memUtil
            acc[2] += 1
            newest = max(newest, s.timeStamp)
        self._seen[(ident, "process")] = newest
        return {pid: ProcessUtilization(sm / n / 100.0, mem / n / 100.0) for pid, (sm, mem, n) in sums.items()}

    def _spread(self, ident: str, key: str, handle, sampling: int) -> Optional[float]:
        """max - min of the samples NVML took since the last spread (the whole buffer at first)."""
        nvml = self.nvml
        last = self._seen.get((ident, key), 0)
        got = self._call(key, nvml.nvmlDeviceGetSamples, handle, sampling, last, none_found=True)
        if got is _MISSING or got is _EMPTY:
            return None  # not supported, or no sample since the last scrape
        value_type, samples = got
        member = next((m for name, m in _VALUE_FIELDS if getattr(nvml, name) == value_type), None)
        fresh = [s for s in samples if s.timeStamp > last]
        if member is None or len(fresh) < 2:
            return None  # one sample says nothing about flatness; keep the window open
        values = [getattr(s.sampleValue, member) for s in fresh]
        self._seen[(ident, key)] = max(s.timeStamp for s in fresh)
        return float(max(values) - min(values))

    def process_name(self, pid: int) -> str:
        """NVML's name for a process the process table does not know (another PID namespace)."""
        if not self.initialised:
            return ""
        try:
            name = self.nvml.nvmlSystemGetProcessName(pid)
        except Exception:  # NVMLError, or pynvml's strict decoding of a path that is not UTF-8
            return ""
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        return host_text(os.path.basename(name), 255) if name else ""
