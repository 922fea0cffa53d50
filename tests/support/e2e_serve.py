"""`minerwatch` as the golden end-to-end test runs it: the real command line, with the
fixture host's two GPUs behind the fake NVML and the clocks fixed.

    PYTHONPATH=tests python -m support.e2e_serve serve --web.listen-address=127.0.0.1:PORT ...

The fake NVML replaces the `pynvml` module (what the gpu collector imports), and the clocks go
to `minerwatch.cli.main` as click's context object (`minerwatch.app.Clocks`); everything else is
the exporter as shipped: its flags, config loading, collectors, registry and HTTP server.
"""

from __future__ import annotations

import sys

import pynvml

from support.fakes.nvml import GIB, FakeGpu, FakeNvml

BOOT_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z, the btime of tests/fixtures/e2e/proc/stat
NOW = BOOT_TIME + 10_000  # the wall clock of the run: the processes' CPU use follows from it
MONOTONIC = 50_000.0  # never moves: a second scan reuses the first one's rates
MIB = 1024 ** 2
T0 = 1_767_235_000_000_000  # NVML sample timestamps, microseconds


def gpus():
    """GPU 0 mines (t-rex, pid 6001) flat at its power cap; GPU 1 renders (blender, pid 7100)
    beside a process of another PID namespace (99999), cannot say its power limit (no
    permission) and has no fan (a passively cooled board)."""
    miner = FakeGpu(
        uuid="GPU-6b2c1e3a-0f4d-4c1b-9a7e-1d2f3a4b5c6d", name="NVIDIA GeForce RTX 3070",
        memory_total=8 * GIB, memory_used=5300 * MIB, gpu_util=100, memory_util=88,
        power_mw=219_600, energy_mj=412_345_678, power_limit_mw=220_000, temperature_c=71,
        sm_clock_mhz=1905, memory_clock_mhz=7000, fan_percent=78,
        compute=[(6001, 5100 * MIB)],
        process_samples=[(6001, T0 + 1_000_000, 99, 88), (6001, T0 + 2_000_000, 99, 87)],
        utilization_samples=[(T0 + 1_000_000, 100), (T0 + 2_000_000, 100), (T0 + 3_000_000, 99)],
        power_samples=[(T0 + 1_000_000, 219_100), (T0 + 2_000_000, 219_900), (T0 + 3_000_000, 219_600)],
    )
    render = FakeGpu(
        uuid="GPU-0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a", name="NVIDIA A2", serial="1652221012345",
        memory_total=16 * GIB, memory_used=2100 * MIB, gpu_util=35, memory_util=12,
        power_mw=41_300, energy_mj=98_765_432, temperature_c=48, sm_clock_mhz=1440, memory_clock_mhz=6251,
        graphics=[(7100, 800 * MIB)], compute=[(7100, 900 * MIB), (99999, None)],
        process_samples=[(7100, T0 + 1_000_000, 30, 10), (7100, T0 + 2_000_000, 40, 12)],
        utilization_samples=[(T0 + 1_000_000, 20), (T0 + 2_000_000, 65), (T0 + 3_000_000, 35)],
        power_samples=[(T0 + 1_000_000, 30_000), (T0 + 2_000_000, 58_000), (T0 + 3_000_000, 41_300)],
        unsupported={"nvmlDeviceGetFanSpeed"},
        failing={"nvmlDeviceGetEnforcedPowerLimit": pynvml.NVML_ERROR_NO_PERMISSION},
    )
    return [miner, render]


def main(argv) -> None:
    sys.modules["pynvml"] = FakeNvml(gpus(), driver_version="550.54.15",
                                     process_names={99999: "/usr/bin/python3"})
    from minerwatch import cli
    from minerwatch.app import Clocks

    cli.main(argv, obj=Clocks(monotonic=lambda: MONOTONIC, wall=lambda: NOW))


if __name__ == "__main__":
    main(sys.argv[1:])
