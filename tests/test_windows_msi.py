"""The MSI (Group Policy software installation takes only .msi): deploy/windows/build-msi.sh
builds it with Debian's wixl, and msitools reads its tables back.

The payload is a stand-in (a few small files where PyInstaller's minerwatch.exe folder goes):
this proves the package's tables (service, firewall, properties, files, upgrades), not the frozen
program; the Windows workflow installs a real one with msiexec.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from click.testing import CliRunner

from minerwatch.cli import cli
from support.repo import ROOT

BUILD = ROOT / "deploy" / "windows" / "build-msi.sh"
pytestmark = pytest.mark.skipif(shutil.which("wixl") is None or shutil.which("msiinfo") is None,
                                reason="wixl/msitools missing: apt-get install wixl msitools")

# msidbCustomActionType bits
IN_SCRIPT, NO_IMPERSONATE, CONTINUE = 0x400, 0x800, 0x40


def build(tmp_path: Path, version: str = "1.2.3") -> subprocess.CompletedProcess:
    payload = tmp_path / "payload"
    if not payload.exists():
        (payload / "lib").mkdir(parents=True)
        (payload / "minerwatch.exe").write_bytes(b"MZ stand-in for the PyInstaller build\n")
        (payload / "python311.dll").write_bytes(b"MZ stand-in dll\n")
        (payload / "lib" / "base_library.zip").write_bytes(b"PK stand-in\n")
    return subprocess.run(["sh", str(BUILD), "--version", version, "--payload", str(payload),
                           "--out", str(tmp_path / f"minerwatch-{version}-x64.msi")],
                          capture_output=True, text=True, timeout=120)


def table(msi: Path, name: str) -> List[List[str]]:
    """Rows of one table, as `msiinfo export` writes them (three header lines, tab-separated)."""
    out = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()[3:] if line]


@pytest.fixture(scope="module")
def msi(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("msi")
    result = build(tmp)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


def test_service_runs_as_local_system_at_boot_with_serve_flags(msi):
    (row,) = table(msi, "ServiceInstall")
    name, display, service_type, start_type, error_control = row[1:6]
    assert (name, service_type, start_type, error_control) == ("minerwatch", "16", "2", "1")  # own process, auto, normal
    assert row[8] == "LocalSystem"  # Defender's exclusion key is readable only by SYSTEM and admins
    arguments = row[10]
    assert arguments.startswith("service ")  # the frozen entry hands `service` to the dispatcher
    assert "--web.listen-address=[LISTEN_ADDR]:[LISTEN_PORT]" in arguments
    assert '"--config.file=[CONFIG_FILE]"' in arguments and arguments.endswith("[EXTRA_FLAGS]")
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    for flag in re.findall(r"--[a-z][a-z.-]+", arguments):
        assert flag in help_text, f"the MSI passes {flag}, which `minerwatch serve` lacks"
    (control,) = table(msi, "ServiceControl")
    assert control[1] == "minerwatch"
    assert int(control[2]) == 1 | 2 | 32 | 128  # start and stop on install, stop and delete on uninstall


def test_firewall_recovery_and_config_actions(msi):
    actions: Dict[str, List[str]] = {row[0]: row for row in table(msi, "CustomAction")}
    add = actions["FirewallRuleAdd"]
    assert "localport=[LISTEN_PORT]" in add[3] and "remoteip=[ALLOW_FROM]" in add[3]
    assert 'program="[INSTALLDIR]minerwatch.exe"' in add[3]
    assert "restart/5000/restart/5000/restart/60000" in actions["ServiceRecovery"][3]
    assert "failureflag minerwatch 1" in actions["ServiceRecoveryOnErrors"][3]
    # the DNS client's log, where pool look-ups are seen with their process (network/dns_client.py)
    assert actions["DnsClientLog"][3].startswith("sl Microsoft-Windows-DNS-Client/Operational /e:true")
    assert actions["SetWevtutil"][3] == "[System64Folder]wevtutil.exe"
    # the config is copied from the template only where none exists: upgrades keep the edits
    assert 'if not exist "[CONFIG_FILE]" copy' in actions["ConfigCreate"][3]
    for name in ("FirewallRuleAdd", "FirewallRuleDelete", "ConfigCreate", "DataDirAcl", "ServiceRecovery",
                 "DnsClientLog"):
        kind = int(actions[name][1])
        assert kind & IN_SCRIPT and kind & NO_IMPERSONATE, f"{name} must run deferred, as SYSTEM"
    assert not int(actions["FirewallRuleAdd"][1]) & CONTINUE  # a failed firewall rule fails the install
    # the deferred actions' programs are properties set to System32 paths
    assert actions["SetNetsh"][3] == "[System64Folder]netsh.exe"


def test_sequence(msi):
    seq = {row[0]: (row[1], int(row[2])) for row in table(msi, "InstallExecuteSequence")}
    at = {name: number for name, (_, number) in seq.items()}
    for name in ("ListenPortFromRegistry", "AllowFromFromRegistry", "ListenPortDefault"):
        assert at["AppSearch"] < at[name] < at["LaunchConditions"]
    assert at["CostFinalize"] < at["ConfigFileDefault"] < at["InstallInitialize"]
    assert at["CostFinalize"] < at["SetNetsh"] < at["InstallInitialize"]
    assert at["InstallValidate"] < at["RemoveExistingProducts"] < at["InstallInitialize"]
    for name in ("ConfigCreate", "DataDirAcl", "FirewallRuleDelete", "FirewallRuleAdd"):
        assert at["InstallFiles"] < at[name] < at["StartServices"]  # the service starts with its config
    assert at["FirewallRuleDelete"] < at["FirewallRuleAdd"]
    assert at["InstallServices"] < at["ServiceRecovery"] < at["StartServices"]
    # an upgrade removes the old version without deleting the rule the new one writes
    assert seq["FirewallRuleDelete"][0] == "NOT UPGRADINGPRODUCTCODE"
    assert seq["FirewallRuleAdd"][0] == 'NOT REMOVE~="ALL"'


def test_properties_are_remembered_and_required(msi):
    conditions = {row[0]: row[1] for row in table(msi, "LaunchCondition")}
    assert any("ALLOW_FROM" in c and "Installed" in c for c in conditions)
    assert "NOT NEWER_FOUND" in conditions  # no downgrade over a newer version
    registry = {(row[2], row[3]): row[4] for row in table(msi, "Registry")}
    for name, prop in (("ListenPort", "LISTEN_PORT"), ("ListenAddr", "LISTEN_ADDR"), ("AllowFrom", "ALLOW_FROM"),
                       ("ConfigFile", "CONFIG_FILE"), ("ExtraFlags", "EXTRA_FLAGS")):
        assert registry[("SOFTWARE\\minerwatch", name)] == f"[{prop}]"
    located = {row[3] for row in table(msi, "RegLocator")}
    assert located == {"ListenPort", "ListenAddr", "AllowFrom", "ConfigFile", "ExtraFlags"}
    assert registry[("SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\minerwatch", "EventMessageFile")]
    actions = {row[0]: row for row in table(msi, "CustomAction")}
    assert actions["ListenPortDefault"][3] == "9789"
    assert actions["ConfigFileDefault"][3] == "[DATADIR]minerwatch.yml"
    # columns: UpgradeCode, VersionMin, VersionMax, Language, Attributes, Remove, ActionProperty
    upgrades = {row[6]: row for row in table(msi, "Upgrade")}
    assert set(upgrades) == {"OLDER_FOUND", "NEWER_FOUND"}
    assert upgrades["OLDER_FOUND"][2] == "1.2.3" and not int(upgrades["OLDER_FOUND"][4]) & 2  # removed
    assert upgrades["NEWER_FOUND"][1] == "1.2.3" and int(upgrades["NEWER_FOUND"][4]) & 2  # only detected


def test_files_are_the_payload(msi, tmp_path):
    out = tmp_path / "x"
    subprocess.run(["msiextract", "-C", str(out), str(msi)], check=True, capture_output=True)
    extracted = {p.relative_to(out / "minerwatch").as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    payload = msi.parent / "payload"
    expected = {p.relative_to(payload).as_posix(): p.read_bytes() for p in payload.rglob("*") if p.is_file()}
    expected["minerwatch.yml.default"] = (ROOT / "deploy" / "windows" / "minerwatch.yml").read_bytes()
    assert extracted == expected


@pytest.mark.parametrize("version", ["0.0.0-ci", "1.2", "x.y.z"])
def test_non_numeric_version_is_refused(tmp_path, version):
    result = build(tmp_path, version)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--version" in result.stderr
