"""Windows signals on fakes shaped like pywin32 and winreg: MSR driver services, SeLockMemoryPrivilege,
Defender exclusion events (5007), tamper and real-time protection, the service's own recovery."""

from __future__ import annotations

import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.fakes.win32 import FakeService, FakeWindows, event_xml, modules
from support.fakes.winreg import FakeRegistry
from support.promtool import check_metrics
from minerwatch.collectors.tuning import TuningCollector
from minerwatch.collectors.windows import WindowsCollector
from minerwatch.config import Config
from minerwatch.collectors.base import Context
from minerwatch.windows import ReadFailed
from minerwatch.windows.defender_events import CHANNEL, ExclusionEventReader, parse_event, parse_time
from minerwatch.windows.drivers import MsrDriverReader, family_of
from minerwatch.windows.privileges import LockMemoryReader

RUNNING, STOPPED = 4, 1
BOB = "S-1-5-21-1004336348-1177238915-682003330-1107"
EXCL = r"HKLM\SOFTWARE\Microsoft\Windows Defender\Exclusions"


def win32_of(machine: FakeWindows) -> types.SimpleNamespace:
    return types.SimpleNamespace(**modules(machine))


def expose(collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def office_pc() -> FakeWindows:
    """A desktop with a few ordinary drivers, as EnumServicesStatus lists them."""
    machine = FakeWindows()
    machine.add_service(FakeService("disk", r"System32\drivers\disk.sys", state=RUNNING, start_type=0))
    machine.add_service(FakeService("Tcpip", r"\SystemRoot\System32\drivers\tcpip.sys", state=RUNNING))
    machine.add_service(FakeService("Spooler", r"C:\Windows\System32\spoolsv.exe", service_type=0x10, state=RUNNING))
    return machine


# -- MSR driver services ------------------------------------------------------------------------------
def test_driver_families_by_image_name_then_service_name():
    assert family_of("WinRing0_1_2_0", r"\??\C:\Users\bob\AppData\Local\Temp\WinRing0x64.sys") == "winring0"
    assert family_of("R0Monitor", r'"C:\Program Files\HWMon\WINRING0X64.SYS"') == "winring0"  # renamed service
    assert family_of("RwDrv", r"C:\Tools\RwDrv.sys") == "rwdrv"
    assert family_of("cpuz152", r"\??\C:\Windows\temp\cpuz152_x64.sys") == "cpuz"
    assert family_of("WinRing0_1_2_0", "") == "winring0"  # path unreadable: the name XMRig uses
    assert family_of("disk", r"System32\drivers\disk.sys") is None


def test_winring0_running_while_xmrig_mines_is_exported_with_its_path(promtool):
    machine = office_pc()
    machine.add_service(FakeService("WinRing0_1_2_0", r"\??\C:\Users\bob\AppData\Local\Temp\WinRing0x64.sys",
                                    state=RUNNING))
    registry = expose(TuningCollector(Context(config=Config(), sysfs="/nonexistent"), win32=win32_of(machine)))
    text = generate_latest(registry).decode()
    check_metrics(promtool, text)
    get = registry.get_sample_value
    assert get("minerwatch_tuning_msr_driver_services", {"driver": "winring0", "state": "running"}) == 1
    assert get("minerwatch_tuning_msr_driver_services", {"driver": "winring0", "state": "stopped"}) == 0
    assert get("minerwatch_tuning_msr_driver_services", {"driver": "rwdrv", "state": "running"}) == 0
    assert get("minerwatch_tuning_msr_driver_service_info", {
        "service": "WinRing0_1_2_0", "driver": "winring0", "state": "running",
        "path": r"\??\C:\Users\bob\AppData\Local\Temp\WinRing0x64.sys"}) == 1
    assert get("minerwatch_tuning_source_up", {"source": "msr_drivers"}) == 1
    assert machine.open_handles == 0  # every SCM and service handle closed


def test_driver_paths_are_looked_up_once_per_service_and_forgotten_when_removed():
    machine = office_pc()
    reader = MsrDriverReader(win32_of(machine).win32service)
    calls = []
    real = reader.w.QueryServiceConfig
    reader.w.QueryServiceConfig = lambda h: calls.append(h.target.name) or real(h)
    reader.read()
    reader.read()
    assert sorted(calls) == ["Tcpip", "disk"]  # drivers only, once each
    del machine.services["tcpip"]
    assert reader.read() == [] and "Tcpip" not in reader._paths


def test_hostile_service_names_are_made_safe_and_capped(promtool):
    machine = office_pc()
    for i in range(25):
        machine.add_service(FakeService(f"WinRing0_{i}\n\x1b[2J", rf"C:\x\{i}\WinRing0x64.sys"))
    registry = expose(TuningCollector(Context(config=Config()), win32=win32_of(machine)))
    text = generate_latest(registry).decode()
    check_metrics(promtool, text)
    assert registry.get_sample_value("minerwatch_tuning_msr_driver_services",
                                     {"driver": "winring0", "state": "stopped"}) == 25
    assert text.count("minerwatch_tuning_msr_driver_service_info{") == 10
    assert "\x1b" not in text and "WinRing0_0\\\\n\\\\x1b[2J" in text


def test_service_manager_denied_is_source_down_not_a_failed_scrape(caplog):
    machine = office_pc()
    machine.denied.add("OpenSCManager")
    collector = TuningCollector(Context(config=Config()), win32=win32_of(machine))
    registry = expose(collector)
    generate_latest(registry)
    generate_latest(registry)
    assert registry.get_sample_value("minerwatch_tuning_source_up", {"source": "msr_drivers"}) == 0
    assert registry.get_sample_value("minerwatch_tuning_msr_driver_services",
                                     {"driver": "winring0", "state": "running"}) is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["cannot read msr_drivers: service control manager: OpenSCManager: Access is denied. (code 5)"]


# -- SeLockMemoryPrivilege ------------------------------------------------------------------------------
def test_nobody_holds_lock_pages_on_a_fresh_windows():
    machine = office_pc()
    registry = expose(TuningCollector(Context(config=Config()), win32=win32_of(machine)))
    generate_latest(registry)
    for kind in ("user", "broad_group", "service", "system"):
        assert registry.get_sample_value("minerwatch_tuning_lock_memory_privilege_holders", {"kind": kind}) == 0
    assert registry.get_sample_value("minerwatch_tuning_source_up", {"source": "lock_memory_privilege"}) == 1


def test_an_ordinary_user_holding_lock_pages_is_told_apart_from_sql_server(promtool):
    machine = office_pc()
    right = "SeLockMemoryPrivilege"
    machine.grant(right, "S-1-5-80-3880718306-3832830129-1677859214-2598158968-1052248003", "MSSQLSERVER",
                  "NT SERVICE", 5)
    machine.grant(right, BOB, "bob", "MINISTRY", 1)
    machine.grant(right, "S-1-5-32-545", "Users", "BUILTIN", 4)
    machine.grant(right, "S-1-5-21-1004336348-1177238915-682003330-1999", "", "")  # deleted account
    holders = LockMemoryReader(win32_of(machine).win32security).read()
    assert [(h.kind, h.account) for h in holders] == [
        ("broad_group", "BUILTIN\\Users"), ("service", "NT SERVICE\\MSSQLSERVER"), ("unknown", ""),
        ("user", "MINISTRY\\bob")]
    registry = expose(TuningCollector(Context(config=Config()), win32=win32_of(machine)))
    check_metrics(promtool, generate_latest(registry).decode())
    get = registry.get_sample_value
    assert get("minerwatch_tuning_lock_memory_privilege_holders", {"kind": "user"}) == 1
    assert get("minerwatch_tuning_lock_memory_privilege_holders", {"kind": "service"}) == 1
    assert get("minerwatch_tuning_lock_memory_privilege_holder_info",
               {"account": "MINISTRY\\bob", "sid": BOB, "kind": "user"}) == 1


def test_lsa_denied_raises_a_one_line_reason():
    machine = office_pc()
    machine.denied.add("LsaOpenPolicy")
    with pytest.raises(ReadFailed, match=r"^local security policy: LsaOpenPolicy: Access is denied. \(code 5\)$"):
        LockMemoryReader(win32_of(machine).win32security).read()


# -- Defender exclusion events (5007) ---------------------------------------------------------------------
def added(record, value, time="2026-11-30T09:15:02.1234567Z", sid="S-1-5-18", sub="Paths", policy=False):
    key = EXCL.replace("SOFTWARE\\", "SOFTWARE\\Policies\\") if policy else EXCL
    return event_xml(record, 5007, time, sid, {
        "Product Name": "Microsoft Defender Antivirus", "Product Version": "4.18.24090.11",
        "Old Value": "", "New Value": f"{key}\\{sub}\\{value} = 0x0"})


def removed(record, value, time="2026-11-30T10:00:00Z", sub="Paths"):
    return event_xml(record, 5007, time, "S-1-5-18", {"Old Value": f"{EXCL}\\{sub}\\{value} = 0x0", "New Value": ""})


def other_setting(record):
    return event_xml(record, 5007, "2026-11-30T08:00:00Z", "S-1-5-18", {
        "Old Value": r"HKLM\SOFTWARE\Microsoft\Windows Defender\Scan\AvgCPULoadFactor = 0x32",
        "New Value": r"HKLM\SOFTWARE\Microsoft\Windows Defender\Scan\AvgCPULoadFactor = 0x14"})


def test_parse_5007_added_removed_policy_and_other_settings():
    event = parse_event(added(7, r"C:\Users\bob\AppData\Roaming\svc"))
    assert (event.action, event.kind, event.value, event.source, event.record_id) == (
        "added", "path", r"C:\Users\bob\AppData\Roaming\svc", "local", 7)
    assert event.time == pytest.approx(parse_time("2026-11-30T09:15:02Z") + 0.1234567)
    assert parse_event(removed(8, "xmrig.exe", sub="Processes")).action == "removed"
    assert parse_event(added(9, "xmrig.exe", sub="Processes", policy=True)).source == "policy"
    assert parse_event(added(10, "10.1.2.3", sub="IpAddresses")).kind == "ip"
    assert parse_event(other_setting(11)) is None
    assert parse_event("<not xml") is None


def test_events_before_start_are_evidence_later_ones_are_counted(promtool):
    machine = FakeWindows()
    machine.accounts["S-1-5-18"] = ("SYSTEM", "NT AUTHORITY", 5)
    machine.accounts[BOB] = ("bob", "MINISTRY", 1)
    # added while the exporter was stopped: still found at start
    machine.log_event(CHANNEL, added(100, r"C:\Users\bob\miner", sid=BOB))
    machine.log_event(CHANNEL, other_setting(101))
    registry = expose(WindowsCollector(Context(config=Config()), win32=win32_of(machine), winreg=None))
    text = generate_latest(registry).decode()
    check_metrics(promtool, text)
    get = registry.get_sample_value
    assert get("minerwatch_windows_defender_exclusion_events_total", {"action": "added"}) == 0
    assert get("minerwatch_windows_defender_exclusion_last_event_timestamp_seconds",
               {"action": "added"}) == pytest.approx(parse_time("2026-11-30T09:15:02.1234567Z"))
    assert get("minerwatch_windows_defender_exclusion_event_timestamp_seconds", {
        "action": "added", "kind": "path", "exclusion": r"C:\Users\bob\miner", "source": "local",
        "user": "MINISTRY\\bob"}) is not None

    machine.log_event(CHANNEL, added(102, "xmrig.exe", "2026-11-30T11:00:00Z", sub="Processes"))
    machine.log_event(CHANNEL, removed(103, r"C:\Users\bob\miner", "2026-11-30T11:05:00Z"))
    generate_latest(registry)
    assert get("minerwatch_windows_defender_exclusion_events_total", {"action": "added"}) == 1
    assert get("minerwatch_windows_defender_exclusion_events_total", {"action": "removed"}) == 1
    assert get("minerwatch_windows_defender_exclusion_event_timestamp_seconds", {
        "action": "added", "kind": "process", "exclusion": "xmrig.exe", "source": "local",
        "user": "NT AUTHORITY\\SYSTEM"}) == parse_time("2026-11-30T11:00:00Z")
    generate_latest(registry)  # nothing new: nothing counted twice
    assert get("minerwatch_windows_defender_exclusion_events_total", {"action": "added"}) == 1


def test_event_reader_pages_through_batches_and_resumes_after_the_last_record():
    machine = FakeWindows()
    for i in range(1, 151):
        machine.log_event(CHANNEL, added(i, rf"C:\dir{i}"))
    reader = ExclusionEventReader(win32_of(machine).win32evtlog, batch=64)
    assert len(reader.read()) == 150 and reader.last_record == 150
    assert reader.read() == []
    machine.log_event(CHANNEL, other_setting(151))
    assert reader.read() == [] and reader.last_record == 151  # the cursor moves past other settings


def test_no_defender_log_exports_no_event_series_and_denied_is_source_down(caplog):
    machine = FakeWindows()  # no Defender channel at all (another antivirus, or Server Core)
    registry = expose(WindowsCollector(Context(config=Config()), win32=win32_of(machine), winreg=None))
    text = generate_latest(registry).decode()
    assert "exclusion_events_total" not in text
    assert registry.get_sample_value("minerwatch_windows_source_up", {"source": "defender_event_log"}) == 1
    machine.channels[CHANNEL] = []
    machine.denied.add("EvtQuery")
    generate_latest(registry)
    assert registry.get_sample_value("minerwatch_windows_source_up", {"source": "defender_event_log"}) == 0
    assert "EvtQuery: Access is denied. (code 5)" in caplog.text


# -- tamper protection, real-time protection ------------------------------------------------------------
FEATURES = r"HKLM\SOFTWARE\Microsoft\Windows Defender\Features"
REALTIME = r"HKLM\SOFTWARE\Microsoft\Windows Defender\Real-Time Protection"
REALTIME_POLICY = r"HKLM\SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection"


@pytest.mark.parametrize("tamper,local,policy,expect_tamper,expect_realtime", [
    (5, None, None, 1, 1),  # the default: both on
    (4, None, None, 0, 1),  # tamper protection turned off
    (0, 1, None, 0, 0),  # Set-MpPreference -DisableRealtimeMonitoring $true
    (5, 0, 1, 1, 0),  # Group Policy turns scanning off: the policy wins
])
def test_defender_switches(tamper, local, policy, expect_tamper, expect_realtime, promtool):
    reg = FakeRegistry()
    reg.set_value(FEATURES, "TamperProtection", tamper)
    reg.create_key(REALTIME)
    if local is not None:
        reg.set_value(REALTIME, "DisableRealtimeMonitoring", local)
    if policy is not None:
        reg.set_value(REALTIME_POLICY, "DisableRealtimeMonitoring", policy)
    registry = expose(WindowsCollector(Context(config=Config()), win32=None, winreg=reg))
    check_metrics(promtool, generate_latest(registry).decode())
    assert registry.get_sample_value("minerwatch_windows_defender_tamper_protection_enabled") == expect_tamper
    assert registry.get_sample_value("minerwatch_windows_defender_realtime_protection_enabled") == expect_realtime


def test_no_defender_in_the_registry_says_nothing_rather_than_off():
    registry = expose(WindowsCollector(Context(config=Config()), win32=None, winreg=FakeRegistry()))
    generate_latest(registry)
    assert registry.get_sample_value("minerwatch_windows_defender_tamper_protection_enabled") is None
    assert registry.get_sample_value("minerwatch_windows_defender_realtime_protection_enabled") is None
    assert registry.get_sample_value("minerwatch_windows_source_up", {"source": "defender_registry"}) == 1


# -- the service's own settings --------------------------------------------------------------------------
def test_service_set_to_manual_and_recovery_removed_shows_before_it_is_stopped():
    machine = FakeWindows()
    ours = FakeService("minerwatch", r'"C:\Program Files\minerwatch\minerwatch.exe" service', service_type=0x10,
                       state=RUNNING, start_type=2, start_name="LocalSystem",
                       failure_actions={"ResetPeriod": 86400, "RebootMsg": None, "Command": None,
                                        "Actions": ((1, 5000), (1, 5000), (1, 60000))},
                       failure_actions_flag=True)
    machine.add_service(ours)
    registry = expose(WindowsCollector(Context(config=Config()), win32=win32_of(machine), winreg=None))
    generate_latest(registry)
    assert registry.get_sample_value("minerwatch_windows_service_autostart") == 1
    assert registry.get_sample_value("minerwatch_windows_service_restart_on_failure") == 1
    ours.start_type, ours.failure_actions = 3, None  # sc.exe config minerwatch start= demand; sc.exe failure ... reset
    generate_latest(registry)
    assert registry.get_sample_value("minerwatch_windows_service_autostart") == 0
    assert registry.get_sample_value("minerwatch_windows_service_restart_on_failure") == 0
    assert machine.open_handles == 0


def test_off_windows_the_collector_exports_nothing():
    assert generate_latest(expose(WindowsCollector(Context(config=Config()), win32=None, winreg=None))) == b""
