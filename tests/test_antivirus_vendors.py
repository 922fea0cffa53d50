"""Exclusions vendors recommend for their own programs (1C, SQL Server, Veeam) flag nothing for
those programs, and still flag anything else they cover; real processes under the 1C folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.fakes.winreg import FakeRegistry
from support.processes import stop_pid, wait_for
from minerwatch import config as config_module
from minerwatch.antivirus import describe_exclusions
from minerwatch.antivirus.model import GLOB, PATH, PROCESS, Exclusion
from minerwatch.antivirus.sources import FileSource
from minerwatch.antivirus.vendors import (
    SHIPPED, VendorExclusions, VendorListError, parse_vendor_list, shipped_vendors,
)
from minerwatch.antivirus.watcher import ExclusionWatcher
from minerwatch.app import Options, build_context
from minerwatch.collectors.antivirus import AntivirusCollector
from minerwatch.collectors.base import Context
from minerwatch.data import shipped_lines
from minerwatch.detection.signatures import _in_temp_dir
from minerwatch.host.proc_reader import ProcFacts

PREFS = r"HKLM\SOFTWARE\Microsoft\Windows Defender\Exclusions"
SUPPORT = Path(__file__).parent / "support"
RPHOST_WIN = "C:\\Program Files\\1cv8\\8.3.24.1342\\bin\\rphost.exe"
SQLSERVR = "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\Binn\\sqlservr.exe"
VEEAM = "C:\\Program Files\\Veeam\\Backup and Replication\\Backup\\Veeam.Backup.Service.exe"


def facts(exe="", cwd="C:\\Windows\\system32", comm="x") -> ProcFacts:
    return ProcFacts(pid=1, start_time=0.0, comm=comm, exe=exe, cwd=cwd, user="bob")


def defender_watcher(tmp_path, *paths, processes=()):
    reg = FakeRegistry()
    for value in paths:
        reg.set_value(PREFS + r"\Paths", value)
    for value in processes:
        reg.set_value(PREFS + r"\Processes", value)
    config_file = tmp_path / "minerwatch.yml"
    config_file.write_text("antivirus:\n  interval: 60\n")
    (tmp_path / "root").mkdir(exist_ok=True)
    collector = AntivirusCollector(Context(config=config_module.load(str(config_file))),
                                   root=str(tmp_path / "root"), winreg=reg, environ={"SystemRoot": "C:\\Windows", "ProgramFiles": "C:\\Program Files"})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    generate_latest(registry)  # one scrape reads the sources
    return collector.watcher


def test_shipped_list_names_its_sources_and_every_vendor():
    text = "".join(shipped_lines(SHIPPED))
    for source in ("antivirus-and-sql-server", "kb1999", "1C:Enterprise 8.3 Administrator Guide"):
        assert source in text
    vendors = {e.vendor for e in parse_vendor_list(shipped_lines(SHIPPED), SHIPPED)}
    assert vendors == {"1c", "mssql", "veeam"}


def test_a_bad_vendor_line_names_file_and_line():
    with pytest.raises(VendorListError, match=r"^extra.txt:2: expected VENDOR program\|folder\|process VALUE"):
        parse_vendor_list(["# ok\n", "1c binary C:\\x.exe\n"], "extra.txt")


def test_defender_vendor_exclusions_flag_only_other_programs(tmp_path):
    w = defender_watcher(
        tmp_path, "C:\\Program Files\\1cv8", "C:\\Program Files\\Veeam\\", "C:\\Tools",
        processes=["rphost.exe", "sqlservr.exe"],
    )
    # The vendors' own programs under the exclusions they recommend: no signal.
    assert w.match(facts(exe=RPHOST_WIN)) is None
    assert w.match(facts(exe=RPHOST_WIN.upper())) is None  # Windows paths are case-insensitive
    assert w.match(facts(exe="C:\\Program Files\\1cv8\\8.3.24.1342\\bin\\1cv8c.exe")) is None
    assert w.match(facts(exe=SQLSERVR)) is None
    assert w.match(facts(exe=VEEAM)) is None
    # Another program dropped into the vendor's folder: flagged.
    foreign = w.match(facts(exe="C:\\Program Files\\1cv8\\8.3.24.1342\\bin\\xmrig.exe"))
    assert foreign.signal == "av_excluded" and "C:\\Program Files\\1cv8" in foreign.reason
    # The vendor's process name elsewhere: flagged (the name is not the program).
    assert w.match(facts(exe="C:\\Users\\bob\\AppData\\Roaming\\rphost.exe")).signal == "av_excluded"
    assert w.match(facts(exe="C:\\Users\\bob\\sqlservr.exe")).signal == "av_excluded"
    # Only the comm is known (exe unreadable): the name alone never makes it the vendor's.
    assert w.match(facts(exe="", comm="rphost.exe")).signal == "av_excluded"
    # 1C's process-name exclusion over a program of another vendor: not 1C's recommendation.
    assert w.match(facts(exe="C:\\Program Files\\Veeam\\rphost.exe")).reason.endswith("(name)")
    # A second, non-vendor exclusion covering the same program still flags it.
    assert w.match(facts(exe=RPHOST_WIN, cwd="C:\\Tools\\job")).reason.endswith("(working directory)")


def test_broader_than_recommended_still_flags(tmp_path):
    w = defender_watcher(tmp_path, "C:\\Program Files", "C:\\Program Files\\Microsoft SQL Server")
    assert w.match(facts(exe=RPHOST_WIN)).signal == "av_excluded"
    # Microsoft recommends the process and the data folders, not the whole installation folder.
    assert w.match(facts(exe=SQLSERVR)).signal == "av_excluded"


def test_full_path_process_exclusion_and_data_folder(tmp_path):
    w = defender_watcher(tmp_path, "%ProgramFiles%\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA",
                         processes=[SQLSERVR, "C:\\Program Files\\1cv8\\*\\bin\\worker.exe"])
    data = "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA"
    assert w.match(facts(exe=SQLSERVR, cwd=data)) is None  # %ProgramFiles% as Windows sets it
    assert w.match(facts(exe="C:\\Windows\\notepad.exe", cwd=data)).signal == "av_excluded"
    assert w.match(facts(exe="C:\\Program Files\\1cv8\\8.3.24\\bin\\worker.exe")).signal == "av_excluded"


def test_linux_clamav_and_mdatp_vendor_paths(tmp_path):
    root = tmp_path / "root"
    clamd = root / "etc/clamav/clamd.conf"
    clamd.parent.mkdir(parents=True)
    clamd.write_text("ExcludePath ^/opt/1cv8/\nOnAccessExcludePath /var/opt/mssql\nExcludePath ^/opt/veeam.*\n")
    watcher = ExclusionWatcher([FileSource("clamd", "/etc/clamav/clamd.conf", str(root))], environ={})
    watcher.refresh()
    rphost = "/opt/1cv8/x86_64/8.3.24.1342/rphost"
    assert watcher.match(facts(exe=rphost, cwd="/home/usr1cv8")) is None
    assert watcher.match(facts(exe="/opt/mssql/bin/sqlservr", cwd="/var/opt/mssql")) is None
    assert watcher.match(facts(exe="/opt/1cv8/x86_64/8.3.24.1342/xmrig", cwd="/")).signal == "av_excluded"
    assert watcher.match(facts(exe="/usr/bin/python3", cwd="/var/opt/mssql/data")).signal == "av_excluded"
    # a regex broader than a folder is not the vendor's, even over the vendor's program
    assert watcher.match(facts(exe="/opt/veeam/transport/veeamtransport", cwd="/")).signal == "av_excluded"


def test_vendor_list_is_injectable_and_empty_means_every_exclusion_flags():
    exclusion = Exclusion("defender", PATH, "C:\\Program Files\\1cv8", GLOB, windows=True)
    assert shipped_vendors({}).vendor_of(exclusion, RPHOST_WIN) == "1c"
    assert VendorExclusions([]).vendor_of(exclusion, RPHOST_WIN) == ""
    by_name = Exclusion("defender", PROCESS, "RPHOST.EXE", GLOB, windows=True)
    assert shipped_vendors({}).vendor_of(by_name, RPHOST_WIN) == "1c"
    assert shipped_vendors({}).vendor_of(by_name, "C:\\Temp\\rphost.exe") == ""


# -- real processes ------------------------------------------------------------------------------
def rerooted_1c_list(tmp_path: Path) -> VendorExclusions:
    """The shipped 1C lines for Linux, with /opt/1cv8 moved under tmp_path (the test cannot
    install into /opt): what is tested is the shipped entry, not a copy written for the test."""
    lines = [line.replace(" /opt/1cv8", f" {tmp_path}/opt/1cv8") for line in shipped_lines(SHIPPED)
             if line.startswith("1c ") and " /opt/1cv8" in line or line.startswith("1c process ")]
    assert any(" program " in line for line in lines)
    return VendorExclusions(parse_vendor_list(lines, SHIPPED), {})


@pytest.fixture
def install_root():
    """A folder outside every temp folder (an executable there is exe_in_temp_dir, which is not
    what this test is about): the repository's git-ignored test-output/, or, where the checkout
    itself lies in /tmp (a CI clone), the home folder or /var/lib; removed afterwards."""
    repo_output = Path(__file__).resolve().parent.parent / "test-output"
    for base in (repo_output, Path.home().resolve(), Path("/var/lib")):
        if not _in_temp_dir(f"{base}/x") and os.access(base.parent if base == repo_output else base, os.W_OK):
            break
    else:
        pytest.skip("no writable folder outside the temp folders")
    base.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=".minerwatch-test-vendor-", dir=base))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def busy():
    started = []

    def start(exe: Path, *args: str) -> subprocess.Popen:
        # A copy of this Python under the vendor's path, so that /proc/PID/exe is that path.
        exe.parent.mkdir(parents=True, exist_ok=True)
        if not exe.exists():  # a second process may run the same program
            shutil.copy2(os.path.realpath(sys.executable), exe)
        env = {"PYTHONHOME": sys.base_prefix, "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen([str(exe), str(SUPPORT / "fakeminer.py"), *args, "--duration", "60"],
                                cwd=exe.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe") == str(exe), what="the copy running")
        return proc

    yield start
    for proc in started:
        stop_pid(proc)


def test_real_1c_server_under_its_exclusion_is_not_flagged_a_miner_there_is(tmp_path, install_root, busy):
    bin_dir = install_root / "opt/1cv8/x86_64/8.3.24.1342"
    clamd = tmp_path / "clamd.conf"
    clamd.write_text(f"OnAccessExcludePath {install_root}/opt/1cv8\n")
    config_file = tmp_path / "minerwatch.yml"
    config_file.write_text("process:\n  suspect_busy_cores: 0.05\n  busy_probe_interval_seconds: 0\n"
                           "antivirus:\n  defaults: false\n")
    server = busy(bin_dir / "rphost")  # burns CPU, plain command line: a busy 1C worker
    # (no -o: the stand-in only burns; the pool URL sits where XMRig's option parser would not see it)
    miner = busy(bin_dir / "rphost", "--donate-level", "1", "--algo", "rx/0", "stratum+tcp://pool.supportxmr.com:3333")
    dropped = busy(bin_dir / "worker")  # another program in the vendor's folder
    time.sleep(1.0)  # they accumulate CPU time (two cores shared with the rest of the suite)

    context = build_context(Options(config_file=str(config_file), procfs="/proc"))
    watcher = ExclusionWatcher([FileSource("clamd", str(clamd))], environ={}, vendors=rerooted_1c_list(install_root))
    context.processes.add_signal_source(watcher)
    snapshot = context.processes.scan()
    views = snapshot.by_pid()

    # The 1C worker: no av_excluded, so not suspect, so no per-pid series and no critical alert
    # (MinerwatchExcludedProcessBusy and the critical MinerwatchProcessCpuSustained need them).
    assert "av_excluded" not in views[server.pid].signals and not views[server.pid].suspect
    # The same program with a miner's command line: its identity signals page, exclusion or not.
    assert {"pool_url", "miner_cmdline"} <= set(views[miner.pid].signals) and views[miner.pid].suspect
    # A program the vendor does not ship, in the excluded folder: av_excluded, suspect while busy.
    assert "av_excluded" in views[dropped.pid].signals
    assert views[dropped.pid].suspect, views[dropped.pid].cpu_cores

    lines = describe_exclusions(context)
    assert any(line.startswith(f"pid {dropped.pid} ") and "no signal" not in line for line in lines)
    assert any(line.startswith(f"pid {miner.pid} ") and "recommended by 1c" in line for line in lines)
