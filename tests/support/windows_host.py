"""`minerwatch serve` on a fixture Windows desk: the real command line over the faithful fakes of
psutil (Windows backend), pywin32 and winreg, for the Windows end-to-end test.

    MINERWATCH_FIXTURE_DESK=miner|clean MINERWATCH_FIXTURE_CLOCK=fixed|live \
    PYTHONPATH=tests python -m support.windows_host serve --web.listen-address=127.0.0.1:PORT ...

The desks:
- miner: bob's XMRig renamed `svchost.exe` in `C:\\Users\\bob\\AppData\\Roaming\\Microsoft`, busy
  on 4 cores, its `config.json` beside it (a Stratum pool URL and a wallet); a Defender path
  exclusion for that folder (in the registry, and the 5007 event that added it in Defender's
  log); WinRing0 loaded (service `WinRing0_1_2_0`, running); SeLockMemoryPrivilege granted to
  BUILTIN\\Users and to bob.
- clean: the same desk and the same office work, none of those.

How the fakes reach the exporter, with the fewest changes to what runs:
- pywin32: the fake modules go into sys.modules under pywin32's names, so `minerwatch.windows.load()`
  imports them as it would import the real ones;
- winreg: the fake registry goes into sys.modules as `winreg` (what `registry_module()` imports);
- psutil: `--process.reader=psutil` builds `minerwatch.host.proc_reader.PsutilReader()`; that name
  is bound here to the reader over the fake host, with platform "win32" and the host's file view;
- the desk's disk: `miner_config.find_psutil` (the config look on Windows) is bound to the desk's
  files (`opener`, `stat`), the parameters it has for this, since a path such as C:\\Users\\...
  means nothing to this machine's open().
These two attributes are all that is replaced: the real psutil stays `psutil` for everything
else, and sys.platform stays "linux" (the collectors that would read the Linux machine are not run).

Clocks: "fixed" (the golden file) fixes the exporter's clocks as support.e2e_serve does, and the
miner's CPU times follow the fixed wall clock; "live" (the Prometheus run) leaves the real clocks,
so the miner's CPU times grow with time, and the exclusion is added while the desk runs: when the
file named by MINERWATCH_FIXTURE_TRIGGER appears (the test creates it once Prometheus has seen the
desk without it, as an exclusion added on a running desk is seen).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from support.fakes.psutil_windows import FakeWindowsHost, WinProcess, filetime, system_processes
from support.fakes.win32 import FakeService, FakeWindows, event_xml, modules
from support.fakes.winreg import REG_DWORD, FakeRegistry
from support.wallets import MONERO_WALLET

BOOT_TIME = 1_764_576_000  # 2025-12-01T08:00:00Z (13:00 in Astana): the desk was switched on
NOW = BOOT_TIME + 4 * 3600  # the wall clock of the fixed run
MONOTONIC = 50_000.0  # never moves in the fixed run: a second scan reuses the first one's rates

MINER_DIR = "C:\\Users\\bob\\AppData\\Roaming\\Microsoft"
MINER_EXE = MINER_DIR + "\\svchost.exe"
MINER_CONFIG = MINER_DIR + "\\config.json"
MINER_PID = 7312
BOB_SID = "S-1-5-21-1004336348-1177238915-682003330-1107"
USERS_SID = "S-1-5-32-545"
CONFIG_JSON = """{
    "autosave": true,
    "cpu": {"enabled": true, "huge-pages": true, "max-threads-hint": 100},
    "randomx": {"1gb-pages": false, "wrmsr": true},
    "pools": [
        {
            "url": "stratum+tcp://pool.supportxmr.com:3333",
            "user": "%s",
            "pass": "PC-0417",
            "keepalive": true,
            "tls": false
        }
    ]
}
""" % MONERO_WALLET
DEFENDER = "HKLM\\SOFTWARE\\Microsoft\\Windows Defender"
EXCLUSION_PATHS = "SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\Paths"
CHANNEL = "Microsoft-Windows-Windows Defender/Operational"
RUNNING = 4
SERVICE_ACCOUNTS = ("NT AUTHORITY", "SYSTEM")
BOB = ("MINISTRY", "bob")


class BusyProcess(WinProcess):
    """A process whose user time grows with the clock: `cores` CPUs busy since it started."""

    def __init__(self, *args, cores: float, clock: Callable[[], float], **kwargs):
        self.cores, self.clock = cores, clock
        super().__init__(*args, **kwargs)

    @property
    def user_time(self) -> int:
        started = (self.created - filetime(0)) / 10_000_000
        return self._base_user + round(self.cores * max(0.0, self.clock() - started) * 10_000_000)

    @user_time.setter
    def user_time(self, value: int) -> None:
        self._base_user = value


def office_processes(boot: float) -> list:
    """What bob's desk runs besides Windows itself: Explorer, Outlook, Word, Edge, 1C."""
    created = filetime(boot + 120)
    session = dict(account=BOB, access="all", cwd="C:\\Users\\bob\\",
                   environ={"USERPROFILE": "C:\\Users\\bob", "APPDATA": "C:\\Users\\bob\\AppData\\Roaming"})
    return [
        WinProcess(1040, "C:\\Windows\\System32\\svchost.exe", created=filetime(boot + 12), access="limited",
                   cmdline=["C:\\Windows\\system32\\svchost.exe", "-k", "netsvcs", "-p"], threads=40,
                   account=SERVICE_ACCOUNTS, user_time=30 * 10_000_000, wset=60 << 20),
        WinProcess(4410, "C:\\Windows\\explorer.exe", created=created, cmdline=["C:\\Windows\\Explorer.EXE"],
                   threads=70, user_time=45 * 10_000_000, wset=120 << 20, **session),
        WinProcess(5220, "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE", created=created + 600_000_000,
                   cmdline=["C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"], threads=55,
                   user_time=300 * 10_000_000, wset=400 << 20, **session),
        WinProcess(5604, "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", created=created + 900_000_000,
                   cmdline=["C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "/n",
                            "C:\\Users\\bob\\Documents\\report.docx"], threads=30,
                   user_time=120 * 10_000_000, wset=250 << 20, **session),
        WinProcess(6100, "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
                   created=created + 300_000_000,
                   cmdline=["C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe"], threads=45,
                   user_time=600 * 10_000_000, wset=300 << 20, **session),
        WinProcess(6680, "C:\\Program Files\\1cv8\\8.3.24.1467\\bin\\1cv8.exe", created=created + 1_200_000_000,
                   cmdline=["C:\\Program Files\\1cv8\\8.3.24.1467\\bin\\1cv8.exe", "ENTERPRISE"], threads=25,
                   user_time=200 * 10_000_000, wset=350 << 20, **session),
    ]


def windows_machine(miner: bool) -> FakeWindows:
    """Services and LSA rights: an office PC's drivers; with the miner WinRing0 and the grants."""
    machine = FakeWindows()
    machine.add_service(FakeService("disk", "System32\\drivers\\disk.sys", state=RUNNING, start_type=0))
    machine.add_service(FakeService("Tcpip", "\\SystemRoot\\System32\\drivers\\tcpip.sys", state=RUNNING))
    machine.add_service(FakeService("WinDefend", "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\"
                                    "4.18.24090.11-0\\MsMpEng.exe\"", service_type=0x10, state=RUNNING,
                                    start_type=2, start_name="LocalSystem"))
    machine.add_service(FakeService(
        "minerwatch", "\"C:\\Program Files\\minerwatch\\minerwatch.exe\" service", service_type=0x10,
        state=RUNNING, start_type=2, start_name="LocalSystem", failure_actions_flag=True,
        failure_actions={"ResetPeriod": 86400, "RebootMsg": None, "Command": None,
                         "Actions": ((1, 60000), (1, 60000), (1, 60000))}))
    machine.channels[CHANNEL] = []
    machine.accounts["S-1-5-18"] = ("SYSTEM", "NT AUTHORITY", 5)  # who Defender's events name
    if miner:
        machine.add_service(FakeService("WinRing0_1_2_0", "\\??\\" + MINER_DIR + "\\WinRing0x64.sys",
                                        state=RUNNING))
        machine.grant("SeLockMemoryPrivilege", USERS_SID, "Users", "BUILTIN", 4)
        machine.grant("SeLockMemoryPrivilege", BOB_SID, "bob", "MINISTRY", 1)
    return machine


def registry() -> FakeRegistry:
    """Defender as shipped: tamper protection on (5), real-time protection on, no exclusion."""
    reg = FakeRegistry()
    reg.set_value(DEFENDER + "\\Features", "TamperProtection", 5, REG_DWORD)
    reg.set_value(DEFENDER + "\\Real-Time Protection", "DisableRealtimeMonitoring", 0, REG_DWORD)
    for sub in ("Paths", "Processes", "Extensions", "IpAddresses"):
        reg.create_key(DEFENDER + "\\Exclusions\\" + sub)
    return reg


def add_exclusion(reg: FakeRegistry, machine: FakeWindows, when: float) -> None:
    """What `Add-MpPreference -ExclusionPath` does: the registry value, and event 5007."""
    reg.set_value("HKLM\\" + EXCLUSION_PATHS, MINER_DIR, 0, REG_DWORD)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(when))
    machine.log_event(CHANNEL, event_xml(1, 5007, stamp, "S-1-5-18", {
        "Product Name": "Microsoft Defender Antivirus", "Product Version": "4.18.24090.11",
        "Old Value": "", "New Value": f"HKLM\\{EXCLUSION_PATHS}\\{MINER_DIR} = 0x0"}))


def add_exclusion_on(trigger: str, reg: FakeRegistry, machine: FakeWindows) -> None:
    """Live run: bob adds the exclusion when `trigger` exists (polled: the desk's own time)."""
    while not os.path.exists(trigger):
        time.sleep(0.2)
    add_exclusion(reg, machine, time.time())


def desk(miner: bool, boot: float, clock: Callable[[], float]) -> Tuple[FakeWindowsHost, FakeWindows, FakeRegistry]:
    """One desk: (psutil's view of it, pywin32's, the registry), no exclusion yet."""
    processes = system_processes(boot) + office_processes(boot)
    files = []
    if miner:
        # bob logged on at boot + 2 min; the miner started from his Run key a minute later
        processes.append(BusyProcess(
            MINER_PID, MINER_EXE, created=filetime(boot + 180), cores=4.0, clock=clock, threads=9,
            wset=2_400 << 20, cmdline=[MINER_EXE], cwd=MINER_DIR + "\\", account=BOB,
            environ={"USERPROFILE": "C:\\Users\\bob", "APPDATA": "C:\\Users\\bob\\AppData\\Roaming"}))
        files.append(MINER_CONFIG)
    return FakeWindowsHost(processes, boot_time=boot, files=files), windows_machine(miner), registry()


def contents(miner: bool) -> Dict[str, bytes]:
    """What the desk's files hold, by lower-cased path (NTFS compares names so)."""
    return {MINER_CONFIG.lower(): CONFIG_JSON.encode()} if miner else {}


def opener(host: FakeWindowsHost, files: Dict[str, bytes]) -> Callable[[str, int], Optional[bytes]]:
    """`read_regular(path, limit)` on the desk's disk: at most `limit` bytes, None where the
    service account cannot read the file."""
    def read(path: str, limit: int) -> Optional[bytes]:
        try:
            host.stat(path)
        except OSError:
            return None
        return files.get(path.lower(), b"")[:limit]
    return read


def install(host: FakeWindowsHost, machine: FakeWindows, reg: FakeRegistry, files: Dict[str, bytes]) -> None:
    """Put the fakes behind the exporter's seams (see the module docstring)."""
    for name, module in modules(machine).items():
        sys.modules[name] = module
    sys.modules["winreg"] = reg
    from minerwatch.detection import miner_config
    from minerwatch.host import proc_reader

    # the config look on Windows reads the desk's disk, not this one
    miner_config.find_psutil = functools.partial(miner_config.find_psutil, opener=opener(host, files), stat=host.stat)

    class FixtureReader(proc_reader.PsutilReader):
        def __init__(self):
            super().__init__(host.module(), platform="win32", file_stat=host.stat)

    proc_reader.PsutilReader = FixtureReader


def main(argv) -> None:
    miner = os.environ.get("MINERWATCH_FIXTURE_DESK", "miner") == "miner"
    live = os.environ.get("MINERWATCH_FIXTURE_CLOCK", "fixed") == "live"
    from minerwatch import cli
    from minerwatch.app import Clocks

    if live:
        host, machine, reg = desk(miner, time.time() - 4 * 3600, time.time)
        install(host, machine, reg, contents(miner))
        trigger = os.environ.get("MINERWATCH_FIXTURE_TRIGGER")
        if miner and trigger:
            threading.Thread(target=add_exclusion_on, args=(trigger, reg, machine), daemon=True).start()
        cli.main(argv)
        return
    host, machine, reg = desk(miner, BOOT_TIME, lambda: NOW)
    if miner:
        add_exclusion(reg, machine, BOOT_TIME + 170)  # just before the miner started
    install(host, machine, reg, contents(miner))
    cli.main(argv, obj=Clocks(monotonic=lambda: MONOTONIC, wall=lambda: NOW))


def fixture_config() -> Path:
    """The desk's config file (tests/fixtures/e2e-windows.yml)."""
    return Path(__file__).resolve().parent.parent / "fixtures" / "e2e-windows.yml"


if __name__ == "__main__":
    main(sys.argv[1:])
