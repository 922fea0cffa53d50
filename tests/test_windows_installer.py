"""The Windows installer script compiles with makensis (Debian's `nsis`), and the flags it puts on
the service command line are flags `minerwatch serve` has.

The payload is a stand-in (one small file where PyInstaller's minerwatch.exe folder goes): this
proves the NSIS script, not the frozen program; the Windows CI workflow builds the real one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from minerwatch.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "windows" / "minerwatch.nsi"
MAKENSIS = shutil.which("makensis")
needs_makensis = pytest.mark.skipif(MAKENSIS is None, reason="makensis missing: apt-get install nsis")


def compile_installer(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess:
    payload = tmp_path / "payload"
    payload.mkdir(exist_ok=True)
    (payload / "minerwatch.exe").write_bytes(b"stand-in for the PyInstaller build\n")
    out = tmp_path / "minerwatch-1.2.3-win64.exe"  # not *setup.exe: NSIS warns Windows shims those
    args = [MAKENSIS, "-WX", "-V2", f"-DPAYLOAD={payload}", f"-DOUTFILE={out}", *defines, str(SCRIPT)]
    return subprocess.run(args, capture_output=True, text=True, cwd=SCRIPT.parent, timeout=120)


@needs_makensis
def test_installer_compiles_without_warnings(tmp_path):
    result = compile_installer(tmp_path, "-DVERSION=1.2.3")
    assert result.returncode == 0, result.stdout + result.stderr
    setup = (tmp_path / "minerwatch-1.2.3-win64.exe").read_bytes()
    assert setup[:2] == b"MZ" and len(setup) > 30_000  # a Windows program with the NSIS stub


@needs_makensis
def test_installer_without_version_is_refused(tmp_path):
    result = compile_installer(tmp_path)
    assert result.returncode != 0 and "define VERSION" in result.stdout + result.stderr


def test_service_command_line_uses_flags_serve_has():
    text = SCRIPT.read_text()
    used = set(re.findall(r"(--[a-z][a-z.-]+)(?==|\s|\"|\$)", text))
    assert {"--web.listen-address", "--config.file", "--collector.disable-defaults"} <= used
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    for flag in sorted(used):
        assert flag in help_text, f"the installer passes {flag}, which `minerwatch serve` lacks"
    assert "service $FLAGS" in text  # the frozen entry's service dispatcher gets the flags


def test_installer_turns_on_the_dns_client_log():
    """Pool look-ups are seen on Windows only through the DNS client's own log, off by default."""
    text = SCRIPT.read_text()
    assert "wevtutil.exe sl Microsoft-Windows-DNS-Client/Operational /e:true" in text
