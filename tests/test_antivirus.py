"""Antivirus exclusions: parsers, the winreg reader, change detection, failures, real processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.fakes.winreg import REG_SZ, FakeRegistry
from support.processes import stop_pid, wait_for
from support.promtool import check_metrics
from minerwatch import config as config_module
from minerwatch.antivirus import describe_exclusions
from minerwatch.antivirus.clamav import parse_clamd
from minerwatch.antivirus.defender_windows import parse_reg_export
from minerwatch.antivirus.mdatp_linux import parse_mdatp
from minerwatch.antivirus.model import Exclusion, SourceError
from minerwatch.app import Options, build_context
from minerwatch.collectors.antivirus import AntivirusCollector
from minerwatch.config import ConfigError
from minerwatch.host.proc_reader import ProcFacts
from minerwatch.collectors.base import Context

PREFS = r"HKLM\SOFTWARE\Microsoft\Windows Defender\Exclusions"
POLICIES = r"HKLM\SOFTWARE\Policies\Microsoft\Windows Defender\Exclusions"
CLAMD = "etc/clamav/clamd.conf"
MDATP = "etc/opt/microsoft/mdatp/managed/mdatp_managed.json"
WIN_ENV = {"ProgramData": "C:\\ProgramData", "SystemRoot": "C:\\Windows"}


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Host:
    """A host root in a temporary directory, a config file, and the collector over them."""

    def __init__(self, tmp_path: Path, winreg=None, config_text: str = "", interval: float = 60):
        self.root = tmp_path / "root"
        self.root.mkdir(exist_ok=True)
        self.config_file = tmp_path / "minerwatch.yml"
        self.config_file.write_text(config_text or f"antivirus:\n  interval: {interval}\n")
        self.clock, self.wall = Clock(), Clock(1_700_000_000.0)
        self.context = Context(config=config_module.load(str(self.config_file)))
        self.collector = AntivirusCollector(
            self.context, root=str(self.root), winreg=winreg, environ=WIN_ENV, clock=self.clock, wall_clock=self.wall
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def scrape(self, advance: float = 60) -> str:
        self.clock.now += advance
        self.wall.now += advance
        return generate_latest(self.registry).decode()

    def value(self, name: str, **labels):
        return self.registry.get_sample_value(name, labels)

    @property
    def watcher(self):
        return self.collector.watcher


def facts(exe="", cwd="", comm="x", user="bob") -> ProcFacts:
    return ProcFacts(pid=1, start_time=0.0, comm=comm, exe=exe, cwd=cwd, user=user)


def kinds(reading):
    return sorted((e.kind, e.value) for e in reading.exclusions)


# -- ClamAV ---------------------------------------------------------------------------------------
CLAMD_CONF = """\
# Comment lines start with a hash
LocalSocket /run/clamav/clamd.ctl
  ExcludePath ^/proc/
ExcludePath ^/opt/miner[[:digit:]]+/
OnAccessExcludePath /srv/build
OnAccessExcludePath "/home/bob/My Tools"
OnAccessExcludeUname clamav
OnAccessExcludeUID 1001
OnAccessExcludeRootUID yes
"""


def test_clamd_conf_is_parsed_like_clamd():
    reading = parse_clamd(CLAMD_CONF.encode(), "clamd.conf")
    assert kinds(reading) == [
        ("path", "/home/bob/My Tools"), ("path", "/srv/build"), ("path", "^/opt/miner[[:digit:]]+/"),
        ("path", "^/proc/"), ("user", "clamav"), ("user", "uid 0"), ("user", "uid 1001"),
    ]
    where = {e.value: e.where for e in reading.exclusions}
    assert where["^/proc/"] == "clamd.conf:3"


def test_clamd_example_file_excludes_nothing():
    # clamd refuses to start while the Example line is there (Fedora ships scan.conf like this).
    assert parse_clamd(b"Example\nExcludePath ^/opt/\n", "scan.conf").exclusions == []


def test_clamav_regex_and_directory_cover_processes(tmp_path):
    host = Host(tmp_path)
    host.write(CLAMD, CLAMD_CONF)
    host.scrape()
    match = host.watcher.match(facts(exe="/opt/miner42/xmrig", cwd="/"))
    assert match.signal == "av_excluded"
    assert match.reason == "clamav path exclusion ^/opt/miner[[:digit:]]+/ (executable)"
    # the regex names the directory with its slash; a process sitting in it still matches
    assert host.watcher.match(facts(exe="/usr/bin/python3", cwd="/opt/miner7")).reason.endswith("(working directory)")
    assert host.watcher.match(facts(exe="/usr/bin/make", cwd="/srv/build/src")) is not None
    assert host.watcher.match(facts(exe="/home/bob/My Tools/t", cwd="/")) is not None
    assert host.watcher.match(facts(exe="/usr/bin/bash", cwd="/srv/buildroot")) is None
    assert host.watcher.match(facts(exe="/opt/minerX/xmrig", cwd="/")) is None
    # user exclusions are counted, never matched (clamonacc's guide excludes root and clamav)
    assert host.watcher.match(facts(exe="/usr/sbin/cron", cwd="/", user="root")) is None
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 4
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="user") == 3
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) == 1


# -- Defender for Endpoint on Linux ---------------------------------------------------------------
MDATP_JSON = """{
  "antivirusEngine": {
    "enforcementLevel": "real_time",
    "exclusionsMergePolicy": "admin_only",
    "exclusions": [
      {"$type": "excludedPath", "isDirectory": true, "path": "/opt/tools/"},
      {"$type": "excludedPath", "isDirectory": true, "path": "/home/*/git"},
      {"$type": "excludedPath", "isDirectory": false, "path": "/var/log/system.log"},
      {"$type": "excludedFileExtension", "extension": ".bin"},
      {"$type": "excludedFileName", "name": "xmrig"},
      {"$type": "excludedFileName", "name": "/usr/local/bin/worker"},
      {"$type": "excludedSomethingNew", "value": "ignored"}
    ]
  },
  "exclusionSettings": {
    "exclusions": [{"$type": "excludedPath", "isDirectory": true, "path": "/srv/ml", "scopes": ["epp"]}]
  }
}"""


def test_mdatp_managed_json(tmp_path):
    reading = parse_mdatp(MDATP_JSON.encode(), "mdatp_managed.json")
    assert kinds(reading) == [
        ("extension", ".bin"), ("path", "/home/*/git"), ("path", "/opt/tools/"), ("path", "/srv/ml"),
        ("path", "/var/log/system.log"), ("process", "/usr/local/bin/worker"), ("process", "xmrig"),
    ]
    assert reading.local_merged is False

    host = Host(tmp_path)
    host.write(MDATP, MDATP_JSON)
    host.scrape()
    w = host.watcher
    assert w.match(facts(exe="/opt/tools/x/miner", cwd="/")).reason == "mdatp path exclusion /opt/tools/ (executable)"
    assert w.match(facts(exe="/usr/bin/python3", cwd="/home/alice/git/proj")) is not None  # * is one folder
    assert w.match(facts(exe="/usr/bin/python3", cwd="/home/alice/src/git")) is None
    assert w.match(facts(exe="/home/bob/.cache/xmrig", cwd="/")).reason == "mdatp process exclusion xmrig (name)"
    assert w.match(facts(exe="/home/bob/.cache/XMRIG", cwd="/")) is None  # Linux names are case-sensitive
    assert w.match(facts(exe="/usr/local/bin/worker", cwd="/")) is not None
    assert w.match(facts(exe="/tmp/payload.bin", cwd="/")).reason == "mdatp extension exclusion .bin (extension)"
    assert w.match(facts(exe="/srv/ml/train", cwd="/")) is not None
    assert host.value("minerwatch_antivirus_exclusions", product="mdatp", kind="path") == 4
    assert host.value("minerwatch_antivirus_exclusions", product="mdatp", kind="process") == 2
    assert host.value("minerwatch_antivirus_local_exclusions_merged", product="mdatp", source="/" + MDATP) == 0


# -- Defender on Windows --------------------------------------------------------------------------
def defender_registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.set_value(PREFS + r"\Paths", "C:\\Miners\\")
    reg.set_value(PREFS + r"\Paths", "%ProgramData%\\Cache\\*\\bin")
    reg.set_value(PREFS + r"\Processes", "svchost32.exe")
    reg.set_value(PREFS + r"\Extensions", ".xyz", "0", REG_SZ)  # some tools write REG_SZ "0"
    reg.set_value(PREFS + r"\IpAddresses", "10.1.2.3")
    reg.set_value(POLICIES + r"\Paths", "D:\\Shared\\Tools")
    reg.set_value(POLICIES + r"\Processes", "C:\\Apps\\*\\worker.exe")
    return reg


def test_defender_registry_both_keys(tmp_path):
    reg = defender_registry()
    host = Host(tmp_path, winreg=reg)
    host.scrape()
    w = host.watcher
    match = w.match(facts(exe="c:\\miners\\xmrig\\XMRig.exe", cwd="C:\\"))
    assert match.reason == "defender path exclusion C:\\Miners\\ (executable)"
    assert w.match(facts(exe="C:\\Windows\\notepad.exe", cwd="C:\\MINERS")) is not None  # case-insensitive
    assert w.match(facts(exe="C:/ProgramData/Cache/abc/bin/x.exe", cwd="C:\\")) is not None  # %VAR% and *
    assert w.match(facts(exe="C:\\ProgramData\\Cache\\a\\b\\bin\\x.exe", cwd="C:\\")) is None  # * is one folder
    assert w.match(facts(exe="C:\\Users\\bob\\SVCHOST32.EXE", cwd="C:\\")).reason.endswith("(name)")
    extension = w.match(facts(exe="C:\\Users\\bob\\m.XYZ", cwd="C:\\"))
    assert extension.reason == "defender extension exclusion .xyz (extension)"
    assert w.match(facts(exe="D:\\Shared\\Tools\\t.exe", cwd="C:\\")) is not None  # from the Policies key
    assert w.match(facts(exe="C:\\Apps\\v2\\worker.exe", cwd="C:\\")) is not None
    assert w.match(facts(exe="C:\\Apps\\v2\\other.exe", cwd="C:\\")) is None
    assert w.match(facts(exe="C:\\MinersX\\a.exe", cwd="C:\\")) is None

    assert host.value("minerwatch_antivirus_exclusions", product="defender", kind="path") == 3
    assert host.value("minerwatch_antivirus_exclusions", product="defender", kind="process") == 2
    assert host.value("minerwatch_antivirus_exclusions", product="defender", kind="extension") == 1
    assert host.value("minerwatch_antivirus_exclusions", product="defender", kind="ip") == 1
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=PREFS) == 1
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=POLICIES) == 1
    # every key was opened read-only in the 64-bit view
    assert reg.opened and all(access == reg.KEY_READ | reg.KEY_WOW64_64KEY for _, access in reg.opened)


def test_defender_missing_key_is_quiet(tmp_path, caplog):
    reg = FakeRegistry()  # no Defender at all
    host = Host(tmp_path, winreg=reg)
    with caplog.at_level(logging.DEBUG, logger="minerwatch.antivirus"):
        text = host.scrape()
    assert "product=\"defender\"" not in text
    assert caplog.records == []
    # a policy key alone is enough for the product to show, the missing preferences key is silent
    reg.set_value(POLICIES + r"\Paths", "C:\\X")
    host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=POLICIES) == 1
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=PREFS) is None


def test_defender_access_denied_keeps_last_good(tmp_path, caplog):
    reg = defender_registry()
    host = Host(tmp_path, winreg=reg)
    host.scrape()
    reg.deny(PREFS)
    with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
        host.scrape()
        host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=PREFS) == 0
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=POLICIES) == 1
    assert host.value("minerwatch_antivirus_exclusions", product="defender", kind="path") == 3
    assert host.watcher.match(facts(exe="C:\\Miners\\x.exe", cwd="C:\\")) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1  # once per distinct problem, not once per scrape
    assert "access denied" in messages[0] and PREFS in messages[0]
    reg.allow(PREFS)
    host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=PREFS) == 1


def test_defender_denied_from_the_start(tmp_path, caplog):
    reg = defender_registry()
    reg.deny(PREFS + r"\Paths")  # the Exclusions key opens, its Paths subkey does not
    host = Host(tmp_path, winreg=reg)
    with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
        host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=PREFS) == 0
    assert "Exclusions\\Paths: access denied" in caplog.text


def test_reg_export_file(tmp_path):
    text = (
        "Windows Registry Editor Version 5.00\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions]\r\n"
        '"DisableAutoExclusions"=dword:00000000\r\n\r\n'
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\Paths]\r\n"
        '"C:\\\\Miners\\\\"=dword:00000000\r\n'
        '"C:\\\\Users\\\\bob\\\\AppData\\\\Local\\\\Temp\\\\x"=hex(b):00,00,00,00,\\\r\n'
        "  00,00,00,00\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows Defender\\Exclusions\\Processes]\r\n"
        '"xmrig.exe"=dword:00000000\r\n'
    )
    data = b"\xff\xfe" + text.encode("utf-16-le")  # as `reg export` writes it
    reading = parse_reg_export(data, "defender.reg")
    assert kinds(reading) == [
        ("path", "C:\\Miners\\"), ("path", "C:\\Users\\bob\\AppData\\Local\\Temp\\x"), ("process", "xmrig.exe"),
    ]
    assert all(e.windows for e in reading.exclusions)
    with pytest.raises(SourceError, match=r"^defender.reg:1: not a registry export"):
        parse_reg_export(b"hello\n", "defender.reg")
    with pytest.raises(SourceError, match=r'^defender.reg:3: expected "name"=data'):
        parse_reg_export(b"REGEDIT4\n[HKLM\\x\\Windows Defender\\Exclusions\\Paths]\nC:\\x=1\n", "defender.reg")


def test_reg_export_as_configured_source(tmp_path):
    reg_file = tmp_path / "defender.reg"
    reg_file.write_text(
        "Windows Registry Editor Version 5.00\n\n"
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\Paths]\n"
        '"C:\\\\Miners"=dword:00000000\n'
    )
    host = Host(tmp_path, config_text=f"antivirus:\n  sources:\n    - format: defender_reg\n      path: {reg_file}\n")
    host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="defender", source=str(reg_file)) == 1
    assert host.watcher.match(facts(exe="C:\\Miners\\m.exe")) is not None


# -- malformed sources: source_up 0, a log line, the last good set kept ---------------------------
@pytest.mark.parametrize(
    "rel, good, bad, message",
    [
        (MDATP, MDATP_JSON, '{"antivirusEngine": {"exclusions": [}', f"/{MDATP}:1: invalid JSON"),
        (MDATP, MDATP_JSON, '{"antivirusEngine": {"exclusions": [{"$type": "excludedPath"}]}}',
         f"/{MDATP}: antivirusEngine.exclusions[0].path: must be a non-empty string"),
        (CLAMD, CLAMD_CONF, CLAMD_CONF + "OnAccessExcludePath\n",
         f"/{CLAMD}:10: OnAccessExcludePath: expected 'Option value'"),
        (CLAMD, CLAMD_CONF, CLAMD_CONF + "\nExcludePath ^/opt/(miner\n",
         f"/{CLAMD}:11: ExcludePath: invalid regular expression '^/opt/(miner'"),
    ],
    ids=["broken-json", "json-missing-field", "clamd-no-value", "clamd-bad-regex"],
)
def test_malformed_file_keeps_last_good(tmp_path, caplog, promtool, rel, good, bad, message):
    host = Host(tmp_path)
    path = host.write(rel, good)
    host.scrape()
    product = "mdatp" if rel == MDATP else "clamav"
    before = host.value("minerwatch_antivirus_exclusions", product=product, kind="path")
    assert before > 0
    path.write_text(bad)
    with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
        text = host.scrape()
        host.scrape()  # the same broken file is not re-parsed nor re-logged
    assert host.value("minerwatch_antivirus_source_up", product=product, source="/" + rel) == 0
    assert host.value("minerwatch_antivirus_exclusions", product=product, kind="path") == before
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product=product) == 0
    assert [message in r.getMessage() for r in caplog.records] == [True], caplog.text
    assert host.watcher.match(facts(exe="/opt/tools/a" if rel == MDATP else "/srv/build/a")) is not None
    check_metrics(promtool, text)
    path.write_text(good)
    host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product=product, source="/" + rel) == 1


def test_directory_in_place_of_the_file_is_a_failure(tmp_path, caplog, promtool):
    host = Host(tmp_path)
    (host.root / CLAMD).mkdir(parents=True)  # fails for root too, unlike a chmod
    with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
        text = host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) == 0
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 0
    assert f"/{CLAMD}: cannot read: Is a directory" in caplog.text
    check_metrics(promtool, text)


def test_unreadable_file_is_a_failure(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    host = Host(tmp_path)
    path = host.write(CLAMD, CLAMD_CONF)
    path.chmod(0)
    with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
        host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) == 0
    assert "Permission denied" in caplog.text


def test_unreadable_directory_is_a_failure(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("root traverses any directory")
    host = Host(tmp_path)
    host.write(CLAMD, CLAMD_CONF)
    (host.root / "etc/clamav").chmod(0)
    try:
        with caplog.at_level(logging.ERROR, logger="minerwatch.antivirus"):
            host.scrape()
    finally:
        (host.root / "etc/clamav").chmod(0o755)
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) == 0


# -- change detection -----------------------------------------------------------------------------
def test_change_detection(tmp_path, caplog):
    host = Host(tmp_path)
    path = host.write(CLAMD, "OnAccessExcludePath /srv/build\n")
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="clamav") == 0  # first read
    assert host.value("minerwatch_antivirus_exclusion_last_change_timestamp_seconds", product="clamav") == 0
    generation = host.watcher.generation

    path.write_text("# touched, same exclusions\nOnAccessExcludePath /srv/build\n")
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="clamav") == 0
    assert host.watcher.generation == generation  # the process table is not asked again

    path.write_text("OnAccessExcludePath /srv/build\nOnAccessExcludePath /home/bob/.cache/miner\n")
    with caplog.at_level(logging.WARNING, logger="minerwatch.antivirus"):
        host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="clamav") == 1
    assert host.value("minerwatch_antivirus_exclusion_last_change_timestamp_seconds", product="clamav") == host.wall.now
    assert host.watcher.generation == generation + 1
    assert "added [path /home/bob/.cache/miner] removed []" in caplog.text

    path.unlink()  # removing the file removes its exclusions: a change too, then quiet
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="clamav") == 2
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) is None
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") is None


def test_registry_change_detection(tmp_path):
    reg = defender_registry()
    host = Host(tmp_path, winreg=reg)
    host.scrape()
    reg.set_value(PREFS + r"\Paths", "C:\\Users\\Public\\svc\\")
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="defender") == 1
    assert host.watcher.match(facts(exe="C:\\Users\\Public\\svc\\svc.exe")) is not None
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="defender") == 1


def test_file_appearing_after_start_is_a_change(tmp_path, promtool):
    host = Host(tmp_path)
    host.scrape()
    text = host.scrape()
    assert "product=" not in text  # nothing installed: no series at all, quietly
    check_metrics(promtool, text)
    host.write(CLAMD, "ExcludePath ^/var/tmp/\n")
    host.scrape()
    assert host.value("minerwatch_antivirus_exclusion_changes_total", product="clamav") == 1


def test_sources_are_read_at_most_once_per_interval(tmp_path):
    host = Host(tmp_path)
    path = host.write(CLAMD, "OnAccessExcludePath /a\n")
    host.scrape()
    path.write_text("OnAccessExcludePath /a\nOnAccessExcludePath /b\n")
    host.scrape(advance=10)  # within the 60 s interval: not looked at
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 1
    host.watcher.refresh()  # the process table's refresh() obeys the same interval
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 1
    host.scrape(advance=50)
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 2


# -- real processes through the real process table ------------------------------------------------
@pytest.fixture
def processes(tmp_path):
    started = []

    def start(cwd: Path, busy: bool = False) -> subprocess.Popen:
        code = "while True: pass" if busy else "import time; time.sleep(60)"
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_pid(proc)


def test_real_busy_process_under_an_exclusion_is_suspect(tmp_path, processes):
    excluded = (tmp_path / "Tools").resolve()
    elsewhere = (tmp_path / "Documents").resolve()
    excluded.mkdir()
    elsewhere.mkdir()
    config_file = tmp_path / "minerwatch.yml"
    clamd = tmp_path / "clamd.conf"
    clamd.write_text(f"OnAccessExcludePath {excluded}\n")
    # A low busy threshold: the test host has two cores shared with the rest of the suite.
    config_file.write_text("process:\n  suspect_busy_cores: 0.2\n"
                           f"antivirus:\n  defaults: false\n  sources:\n    - format: clamd\n      path: {clamd}\n")
    # Plain python processes: nothing but the exclusion can make one suspect, and only while busy
    # (an idle backup agent under an exclusion is normal).
    inside, busy, outside = processes(excluded), processes(excluded, busy=True), processes(elsewhere)
    for proc in (inside, busy):
        wait_for(lambda: os.readlink(f"/proc/{proc.pid}/cwd") == str(excluded), what="child in its cwd")
    time.sleep(0.5)  # the busy one accumulates CPU time
    wait_for(lambda: os.readlink(f"/proc/{outside.pid}/cwd") == str(elsewhere), what="child in its cwd")

    context = build_context(Options(config_file=str(config_file), procfs="/proc"))  # as `serve` builds it
    collector = AntivirusCollector(context, winreg=None)
    snapshot = context.processes.scan()

    view = snapshot.by_pid()[inside.pid]
    assert view.signals["av_excluded"] == f"clamav path exclusion {excluded} (working directory)"
    assert not view.suspect
    busy_view = snapshot.by_pid()[busy.pid]
    assert "av_excluded" in busy_view.signals and busy_view.suspect, busy_view.cpu_cores
    other = snapshot.by_pid()[outside.pid]
    assert "av_excluded" not in other.signals and not other.suspect

    lines = describe_exclusions(context)  # for suspects only
    assert f"pid {busy.pid} ({view.name}): clamav path exclusion {excluded} covers its working directory " \
           f"[{clamd}:1]" in lines
    assert not any(f"pid {inside.pid} " in line for line in lines)
    assert not any(str(outside.pid) in line for line in lines)
    assert collector.watcher in context.processes.signal_sources


# -- configuration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("antivirus:\n  sources:\n    - format: clamdx\n      path: /etc/clamd.conf\n",
         "{f}:3: antivirus.sources[0].format: unknown format 'clamdx' "
         "(known: clamd, defender_reg, defender_registry, mdatp_json)"),
        ("antivirus:\n  sources:\n    - path: /etc/clamd.conf\n",
         "{f}:3: antivirus.sources[0]: needs a format (one of: clamd, defender_reg, defender_registry, mdatp_json)"),
        ("antivirus:\n  sources:\n    - format: clamd\n",
         "{f}:3: antivirus.sources[0]: format clamd needs a path"),
        ("antivirus:\n  sources:\n    - format: clamd\n      path: etc/clamd.conf\n",
         "{f}:4: antivirus.sources[0].path: must be an absolute path"),
        ("antivirus:\n  sources:\n    - format: defender_registry\n      path: /x\n",
         "{f}:4: antivirus.sources[0].path: format defender_registry reads the live registry and takes no path"),
        ("antivirus:\n  sources:\n    - {format: clamd, path: /a, pth: /b}\n",
         "{f}:3: antivirus.sources[0].pth: unknown key (known: format, path)"),
        ("antivirus:\n  interval: -1\n", "{f}:2: antivirus.interval: must be a number >= 0"),
        ("antivirus:\n  defaults: maybe\n", "{f}:2: antivirus.defaults: must be true or false"),
        ("antivirus:\n  source: []\n", "{f}:2: antivirus.source: unknown key (known: defaults, interval, sources)"),
        ("antivirus: [1]\n", "{f}:1: antivirus: must be a mapping"),
    ],
)
def test_config_errors(tmp_path, text, message):
    path = tmp_path / "minerwatch.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:  # when the file is read, whichever collectors run
        config_module.load(str(path))
    assert str(err.value) == message.format(f=path)


def test_empty_section_and_no_config_mean_defaults(tmp_path):
    path = tmp_path / "minerwatch.yml"
    path.write_text("antivirus:\n")
    AntivirusCollector(Context(config=config_module.load(str(path))), root=str(tmp_path), winreg=None)
    AntivirusCollector(Context(config=config_module.Config()), root=str(tmp_path), winreg=None)


def test_configured_source_in_addition_to_defaults(tmp_path):
    extra = tmp_path / "other-clamd.conf"
    extra.write_text("OnAccessExcludePath /opt/x\n")
    host = Host(tmp_path, config_text=f"antivirus:\n  sources:\n    - format: clamd\n      path: {extra}\n")
    host.write(CLAMD, "OnAccessExcludePath /opt/y\n")
    host.scrape()
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source=str(extra)) == 1
    assert host.value("minerwatch_antivirus_source_up", product="clamav", source="/" + CLAMD) == 1
    assert host.value("minerwatch_antivirus_exclusions", product="clamav", kind="path") == 2


# -- exposition -----------------------------------------------------------------------------------
def test_exposition_passes_promtool(tmp_path, promtool):
    reg = defender_registry()
    host = Host(tmp_path, winreg=reg)
    host.write(CLAMD, CLAMD_CONF)
    host.write(MDATP, MDATP_JSON)
    host.scrape()
    reg.set_value(PREFS + r"\Paths", "E:\\New")
    reg.deny(POLICIES)
    text = host.scrape()
    assert 'minerwatch_antivirus_exclusion_changes_total{product="defender"} 1.0' in text
    assert f'minerwatch_antivirus_source_up{{product="defender",source="{PREFS}"}} 1.0'.replace("\\", "\\\\") in text
    check_metrics(promtool, text)


def test_collector_is_registered_by_name():
    assert AntivirusCollector.name == "antivirus" and AntivirusCollector.default_enabled
    assert Exclusion("clamav", "path", "/x").describe() == "clamav path exclusion /x"
