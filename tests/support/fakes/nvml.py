"""A fake NVML for tests: pynvml's functions, return types and exceptions, over GPUs described in Python.

`FakeNvml(gpus)` stands in for the `pynvml` module: the same function names and parameter names
(tests/test_gpu.py checks them against the real module), pynvml's own ctypes structures and
friendly objects as return values, pynvml's own exception classes (NVMLError_NotSupported, ...),
and pynvml's constants. Only the C library underneath is replaced, so code that works here works
unchanged on a real GPU. Handles are real `c_nvmlDevice_t` pointers, opaque as in pynvml.

Units are NVML's: milliwatts, millijoules, MHz, percent, bytes, timestamps in microseconds.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

import pynvml

GIB = 1024 ** 3


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA GeForce RTX 3080"
    serial: Optional[str] = None  # None: NotSupported, as on consumer boards
    memory_total: int = 10 * GIB
    memory_used: int = 300 * 1024 ** 2
    gpu_util: int = 0  # percent
    memory_util: int = 0  # percent
    power_mw: int = 20_000
    energy_mj: int = 0
    power_limit_mw: int = 320_000
    temperature_c: int = 40
    sm_clock_mhz: int = 210
    memory_clock_mhz: int = 405
    fan_percent: int = 30
    compute: List[Tuple[int, Optional[int]]] = field(default_factory=list)  # (pid, used bytes or None)
    graphics: List[Tuple[int, Optional[int]]] = field(default_factory=list)
    process_samples: List[Tuple[int, int, int, int]] = field(default_factory=list)  # (pid, ts, sm%, mem%)
    utilization_samples: Optional[List[Tuple[int, int]]] = field(default_factory=list)  # (ts, %); None: NotSupported
    power_samples: Optional[List[Tuple[int, int]]] = field(default_factory=list)  # (ts, mW); None: NotSupported
    unsupported: Set[str] = field(default_factory=set)  # pynvml function names answering NotSupported
    failing: Dict[str, int] = field(default_factory=dict)  # function name -> NVML_ERROR_* it answers
    lose_on: Optional[str] = None  # the GPU falls off the bus when this function is called
    lost: bool = False


def _raise(code: int):
    raise pynvml.NVMLError(code)  # pynvml maps the code to its own subclass


class FakeNvml:
    """One fake driver with its GPUs; an instance replaces the `pynvml` module."""

    def __init__(self, gpus: Iterable[FakeGpu] = (), init_error: Optional[int] = None,
                 driver_version: str = "550.54.15", missing: Iterable[str] = (), process_names=None,
                 no_process_samples: int = pynvml.NVML_ERROR_NOT_FOUND):
        self.gpus = list(gpus)
        self.init_error = init_error  # an NVML_ERROR_* code nvmlInit answers, e.g. LIBRARY_NOT_FOUND
        self.driver_version = driver_version
        self.missing = set(missing)  # C symbols this "driver" lacks, e.g. ..._v3 on R470
        self.process_names = dict(process_names or {})  # pid -> name for nvmlSystemGetProcessName
        # What nvmlDeviceGetProcessUtilization's size query answers without samples: NOT_FOUND as
        # documented, or NVML_SUCCESS with a count of 0, which pynvml raises as NVMLError(0).
        self.no_process_samples = no_process_samples
        self.refcount = 0
        self.calls: List[str] = []  # names of the functions called, in order
        # Handles: pointers to distinct opaque structs, kept alive here.
        self._structs = [pynvml.struct_c_nvmlDevice_t() for _ in range(64)]

    # -- plumbing -----------------------------------------------------------------------------
    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.missing:
            _raise(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        if self.refcount == 0:
            _raise(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle, name: str) -> FakeGpu:
        self._enter(name)
        try:
            address = ctypes.addressof(handle.contents)
        except (AttributeError, TypeError, ValueError):
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        for i, gpu in enumerate(self.gpus):
            if ctypes.addressof(self._structs[i]) == address:
                break
        else:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if gpu.lose_on == name:
            gpu.lost = True
        if gpu.lost:
            _raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        if name in gpu.unsupported:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if name in gpu.failing:
            _raise(gpu.failing[name])
        return gpu

    # -- life cycle ---------------------------------------------------------------------------
    def nvmlInitWithFlags(self, flags):
        self.calls.append("nvmlInitWithFlags")
        if self.init_error is not None:
            _raise(self.init_error)
        self.refcount += 1
        return None

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        self.nvmlInitWithFlags(0)
        return None

    def nvmlShutdown(self):
        self._enter("nvmlShutdown")
        self.refcount -= 1
        return None

    # -- system -------------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self):
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetProcessName(self, pid):
        self._enter("nvmlSystemGetProcessName")
        if pid not in self.process_names:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        return self.process_names[pid]

    def nvmlDeviceGetCount(self):
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            _raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        return ctypes.pointer(self._structs[index])

    # -- device identity ----------------------------------------------------------------------
    def nvmlDeviceGetIndex(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetIndex")
        return self.gpus.index(gpu)

    def nvmlDeviceGetUUID(self, handle):
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle):
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetSerial(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetSerial")
        if gpu.serial is None:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.serial

    # -- device values ------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return pynvml.c_nvmlUtilization_t(gpu=gpu.gpu_util, memory=gpu.memory_util)

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        free = gpu.memory_total - gpu.memory_used
        if not version:
            return pynvml.c_nvmlMemory_t(total=gpu.memory_total, free=free, used=gpu.memory_used)
        return pynvml.c_nvmlMemory_v2_t(version=version, total=gpu.memory_total, reserved=0, free=free,
                                        used=gpu.memory_used)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetTemperature(self, handle, sensor):
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    def nvmlDeviceGetClockInfo(self, handle, type):
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return gpu.sm_clock_mhz
        if type == pynvml.NVML_CLOCK_MEM:
            return gpu.memory_clock_mhz
        _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetFanSpeed(self, handle):
        return self._gpu(handle, "nvmlDeviceGetFanSpeed").fan_percent

    # -- processes ----------------------------------------------------------------------------
    @staticmethod
    def _infos(entries):
        # As pynvml: ctypes struct -> friendly object, "not available" memory -> None.
        out = []
        for pid, used in entries:
            struct = pynvml.c_nvmlProcessInfo_t(
                pid=pid,
                usedGpuMemory=pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None else used,
                gpuInstanceId=pynvml.NVML_VALUE_NOT_AVAILABLE_uint.value,
                computeInstanceId=pynvml.NVML_VALUE_NOT_AVAILABLE_uint.value,
            )
            obj = pynvml.nvmlStructToFriendlyObject(struct)
            if obj.usedGpuMemory == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                obj.usedGpuMemory = None
            out.append(obj)
        return out

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle):
        return self._infos(self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses_v2").compute)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle):
        return self._infos(self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses_v3").compute)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        try:
            return self.nvmlDeviceGetComputeRunningProcesses_v3(handle)
        except pynvml.NVMLError_FunctionNotFound:  # as pynvml's throwOnVersionMismatch
            raise pynvml.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does "
                                                  "not match the NVML lib version.") from None

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle):
        return self._infos(self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses_v2").graphics)

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle):
        return self._infos(self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses_v3").graphics)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        try:
            return self.nvmlDeviceGetGraphicsRunningProcesses_v3(handle)
        except pynvml.NVMLError_FunctionNotFound:
            raise pynvml.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does "
                                                  "not match the NVML lib version.") from None

    def nvmlDeviceGetProcessUtilization(self, handle, timeStamp):
        gpu = self._gpu(handle, "nvmlDeviceGetProcessUtilization")
        fresh = [s for s in gpu.process_samples if s[1] > timeStamp]
        if not fresh:
            _raise(self.no_process_samples)
        out = []
        for pid, ts, sm, mem in fresh:
            out.append(pynvml.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=ts, smUtil=sm, memUtil=mem,
                                                               encUtil=0, decUtil=0))
        return out

    def nvmlDeviceGetSamples(self, device, sampling_type, timeStamp):
        gpu = self._gpu(device, "nvmlDeviceGetSamples")
        if sampling_type == pynvml.NVML_GPU_UTILIZATION_SAMPLES:
            buffer = gpu.utilization_samples
        elif sampling_type == pynvml.NVML_TOTAL_POWER_SAMPLES:
            buffer = gpu.power_samples
        else:
            buffer = None
        if buffer is None:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        fresh = [(ts, v) for ts, v in buffer if ts > timeStamp]
        if not fresh:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        samples = (pynvml.c_nvmlSample_t * len(fresh))()
        for sample, (ts, value) in zip(samples, fresh):
            sample.timeStamp = ts
            sample.sampleValue.uiVal = value
        # pynvml returns (the value type as an int, a list sliced from the ctypes array)
        return (pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, samples[0:len(fresh)])


# pynvml's constants, exception classes and structures, as attributes of the fake "module".
for _name in dir(pynvml):
    if _name.startswith(("NVML_", "NVMLError", "NVMLLibraryMismatchError", "c_nvml", "struct_c_nvml")):
        setattr(FakeNvml, _name, getattr(pynvml, _name))
FakeNvml.nvmlFriendlyObject = pynvml.nvmlFriendlyObject
