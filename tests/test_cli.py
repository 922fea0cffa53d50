"""The command line: exact one-line errors with exit status 2, --version, help, scan's exit status."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from minerwatch import __version__
from support.procfs import FakeProcess, build
from support.repo import offline
from test_process_table import MINER, COMPILER, IDLE


def run(*args):
    if args and args[0] in ("serve", "scan") and "--help" not in args:
        args = (args[0], *offline(args[1:]))
    return subprocess.run([sys.executable, "-m", "minerwatch", *args], capture_output=True, text=True, timeout=60)


def test_version():
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"minerwatch {__version__}\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "--web.listen-address=9789"],
         "minerwatch: error: Invalid value for '--web.listen-address': '9789' is not HOST:PORT "
         "(for example :9789 or 127.0.0.1:9789) (see 'minerwatch serve --help')"),
        (["serve", "--collector.nosuch"],
         "minerwatch: error: No such option '--collector.nosuch'. (Did you mean one of: '--collector.gpu', "
         "'--collector.host', '--collector.windows'?) (see 'minerwatch serve --help')"),
        (["serve", "--log.level=loud"],
         "minerwatch: error: Invalid value for '--log.level': 'loud' is not one of 'debug', 'info', 'warn', "
         "'error'. (see 'minerwatch serve --help')"),
        (["serve", "--collector.process.top-k=-1"],
         "minerwatch: error: Invalid value for '--collector.process.top-k': -1 is not in the range x>=0. "
         "(see 'minerwatch serve --help')"),
        (["serve", "--web.telemetry-path=metrics"],
         "minerwatch: error: Invalid value for '--web.telemetry-path': must start with / and not be / itself "
         "(see 'minerwatch serve --help')"),
        (["scan", "--config.file=/nonexistent/minerwatch.yml"],
         "minerwatch: error: /nonexistent/minerwatch.yml: cannot read: No such file or directory"),
        (["scan", "--interval=inf"],
         "minerwatch: error: Invalid value for '--interval': inf is not in the range 0<=x<=3600. "
         "(see 'minerwatch scan --help')"),
        (["scan", "--interval=nan"],
         "minerwatch: error: Invalid value for '--interval': nan is not a finite number. (see 'minerwatch scan --help')"),
        (["nosuchcommand"], "minerwatch: error: No such command 'nosuchcommand'. (see 'minerwatch --help')"),
        (["serve", "--web.max-requests=-1"],
         "minerwatch: error: Invalid value for '--web.max-requests': -1 is not in the range x>=0. "
         "(see 'minerwatch serve --help')"),
        (["serve", "--collector.timeout=0"],
         "minerwatch: error: Invalid value for '--collector.timeout': 0.0 is not in the range 0.1<=x<=300. "
         "(see 'minerwatch serve --help')"),
        (["serve", "--collector.timeout=nan"],
         "minerwatch: error: Invalid value for '--collector.timeout': nan is not a finite number. "
         "(see 'minerwatch serve --help')"),
    ],
)
def test_bad_flags_one_line_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr == message + "\n"


def test_bad_config_file_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("process:\n  top_k: lots\n")
    result = run("serve", f"--config.file={cfg}", "--web.listen-address=127.0.0.1:0")
    assert (result.returncode, result.stderr) == (
        2, f"minerwatch: error: {cfg}:2: process.top_k: must be an integer from 0 to 100\n")


def test_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = run("serve", f"--web.listen-address=127.0.0.1:{s.getsockname()[1]}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("minerwatch: error: cannot listen on 127.0.0.1:")


def test_every_command_has_help():
    for command in ([], ["serve"], ["scan"]):
        result = run(*command, "--help")
        assert result.returncode == 0 and "Usage: minerwatch" in result.stdout
    assert "--collector.process / --no-collector.process" in run("serve", "--help").stdout


def test_scan_on_a_host_with_a_miner(tmp_path):
    proc = build(tmp_path, [MINER, COMPILER, IDLE])
    result = run("scan", f"--path.procfs={proc}", "--interval=0", "--no-collector.tuning")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1 suspect process(es) among 3:"
    row = lines[3].split()
    assert row[:3] == ["100", row[1], "xmrig"] and "pool_url" in row[4]
    assert "-p <redacted>" in result.stdout and "secret" not in result.stdout
    assert any(l.strip().startswith("why: pool_url:") for l in lines)

    result = run("scan", f"--path.procfs={proc}", "--interval=0", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert [s["pid"] for s in report["suspects"]] == [100]
    assert {"miner_name", "pool_url", "wallet_address"} <= set(report["suspects"][0]["signals"])


def test_scan_on_a_clean_host_exits_0(tmp_path):
    proc = build(tmp_path, [COMPILER, IDLE])
    result = run("scan", f"--path.procfs={proc}", "--interval=0")
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, "No suspect process among 2.")


def test_scan_with_the_portable_reader_finds_a_live_miner(spawn):
    miner = spawn.start("xmrig", ["--donate-level", "1", "--duration", "30"])
    result = run("scan", "--process.reader=psutil", "--interval=0.5", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    (found,) = [s for s in report["suspects"] if s["pid"] == miner.pid]
    with open(os.path.realpath(sys.executable), "rb") as f:
        assert found["exe_sha256"] == hashlib.sha256(f.read()).hexdigest()


def test_scan_shows_the_antivirus_exclusion_covering_a_suspect(tmp_path):
    miner = FakeProcess(**{**MINER.__dict__, "cwd": "/opt/tools"})
    proc = build(tmp_path, [miner, IDLE])
    clamd = tmp_path / "clamd.conf"
    clamd.write_text("LocalSocket /run/clamav/clamd.ctl\nOnAccessExcludePath /opt/tools\n")
    cfg = tmp_path / "minerwatch.yml"
    cfg.write_text(f"antivirus:\n  defaults: false\n  sources:\n    - {{format: clamd, path: {clamd}}}\n"
                   "network:\n  resolve_max_names: 0\n")
    result = run("scan", f"--path.procfs={proc}", "--interval=0", f"--config.file={cfg}")
    assert result.returncode == 1, result.stderr
    assert "Antivirus exclusions covering suspects:" in result.stdout
    line = result.stdout.split("Antivirus exclusions covering suspects:\n")[1].splitlines()[0]
    assert line.startswith("  pid 100 (xmrig): ") and "/opt/tools" in line and str(clamd) in line
    result = run("scan", f"--path.procfs={proc}", "--interval=0", f"--config.file={cfg}", "--json")
    assert len(json.loads(result.stdout)["antivirus_exclusions"]) == 1
