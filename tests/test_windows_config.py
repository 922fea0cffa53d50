"""The miner configuration look on Windows, through psutil: the same places as on Linux (the
working directory, beside the executable, -c, open files) plus XMRig's Windows defaults
(%APPDATA%\\xmrig.json, %USERPROFILE%\\.xmrig.json), the same judgement, and every refusal of a
protected or vanished process quiet. Run on the psutil Windows fake (checked against the installed
psutil in test_windows_processes.py); the disk is the fake host's, its files' text given here."""

from __future__ import annotations

import json

import psutil
import pytest

from support.config_miners import connection_pool_config, no_user_config, xmrig_config
from support.fakes.psutil_windows import FakeWindowsHost, WinProcess, filetime, system_processes
from support.wallets import MONERO_WALLET
from minerwatch.detection import miner_config

BOOT = 1_700_000_000.0
ROAMING = "C:\\Users\\bob\\AppData\\Roaming"
PROFILE = "C:\\Users\\bob"
MINER_CONFIG = json.dumps(xmrig_config("stratum+tcp://pool.example:3333", user=True))


class Disk:
    """The fake host's files with their text; `opened` records every read."""

    def __init__(self, texts):
        self.texts = {path.lower(): text for path, text in texts.items()}
        self.opened = []
        self.host = None

    def opener(self, path, limit):
        self.opened.append(path)
        text = self.texts.get(path.lower())
        return None if text is None else text.encode()[:limit]


def desk(proc: WinProcess, texts=(), denied=()):
    """(psutil process, disk) of a Windows desk running `proc` beside the usual system processes."""
    disk = Disk(dict(texts))
    host = FakeWindowsHost([*system_processes(BOOT), proc], boot_time=BOOT, files=disk.texts,
                           denied_files=denied)
    disk.host = host
    return host.module().Process(proc.pid), disk


def rig(exe=ROAMING + "\\Microsoft\\svchost.exe", **kw):
    kw.setdefault("created", filetime(BOOT + 600))
    kw.setdefault("cmdline", [exe])
    kw.setdefault("account", ("DESKTOP-7Q2", "bob"))
    kw.setdefault("environ", {"AppData": ROAMING, "UserProfile": PROFILE, "Path": "C:\\Windows"})
    return WinProcess(5120, exe, **kw)


def look(process, disk, argv=None):
    argv = process.cmdline() if argv is None else argv
    return miner_config.find_psutil(process, argv, opener=disk.opener, stat=disk.host.stat)


# -- where a Windows miner keeps its config ----------------------------------------------------------
def test_config_beside_a_miner_in_appdata_roaming():
    process, disk = desk(rig(), {ROAMING + "\\Microsoft\\config.json": MINER_CONFIG})
    found = look(process, disk)
    assert found.signal == "miner_config"
    assert found.reason == ("config.json beside the executable: pools with url pool.example:3333 "
                            "(a Stratum URL)")
    assert MONERO_WALLET[:12] not in found.reason


def test_xmrig_json_in_appdata_from_the_process_environment():
    process, disk = desk(rig(), {ROAMING + "\\xmrig.json": no_user_config()})
    found = look(process, disk)
    assert found.reason == "%APPDATA%\\xmrig.json: pools with url 10.20.30.40:3333 (pool port 3333)"


def test_dot_xmrig_json_in_the_profile_without_the_environment():
    """A protected process's environment is refused: the profile is its own account's folder
    under C:\\Users where it runs."""
    proc = rig(fail={"environ": psutil.AccessDenied})
    process, disk = desk(proc, {PROFILE + "\\.xmrig.json": MINER_CONFIG})
    found = look(process, disk)
    assert found.reason.startswith("%USERPROFILE%\\.xmrig.json (profile C:\\Users\\bob): pools with url")


def test_profile_of_another_account_is_not_guessed():
    proc = rig(fail={"environ": psutil.AccessDenied}, account=("DESKTOP-7Q2", "alice"))
    process, disk = desk(proc, {PROFILE + "\\.xmrig.json": MINER_CONFIG})
    assert look(process, disk) is None
    assert not any(p.lower().startswith(PROFILE.lower() + "\\.") for p in disk.opened)


def test_config_argument_relative_to_the_working_directory():
    work = "C:\\Users\\bob\\Documents\\work"
    proc = rig(exe="C:\\Users\\bob\\Documents\\tools\\updater.exe", cwd=work + "\\")
    process, disk = desk(proc, {work + "\\conf\\rig.dat": MINER_CONFIG})
    found = look(process, disk, ["updater.exe", "-c", "conf\\rig.dat"])
    assert found.reason.startswith("-c conf\\rig.dat: pools with url pool.example:3333")
    found = look(process, disk, ["updater.exe", "--config=..\\work\\conf\\rig.dat"])
    assert found.reason.startswith("-c ..\\work\\conf\\rig.dat: pools with url")


def test_config_in_the_working_directory():
    work = "D:\\Data\\Reports"
    process, disk = desk(rig(cwd=work), {work + "\\pools.txt": MINER_CONFIG})
    assert look(process, disk).reason.startswith("pools.txt in the working directory: pools with url")


def test_open_config_file_and_the_named_file_whatever_its_name():
    temp = "C:\\Users\\bob\\AppData\\Local\\Temp"
    proc = rig(open_files=[temp + "\\a1.tmp", temp + "\\cache.json", "C:\\Windows\\Fonts\\arial.ttf"])
    process, disk = desk(proc, {temp + "\\cache.json": MINER_CONFIG, temp + "\\a1.tmp": MINER_CONFIG,
                                "C:\\Windows\\Fonts\\arial.ttf": "x"})
    found = look(process, disk)
    assert found.reason.startswith(f"open file {temp}\\cache.json: pools with url")
    # the working directory refused: the file named by -c is known by its open handle
    proc.fail["cwd"] = psutil.AccessDenied
    proc.open_files = [temp + "\\conf\\a1.tmp"]
    disk.texts[(temp + "\\conf\\a1.tmp").lower()] = MINER_CONFIG
    disk.host.files.add((temp + "\\conf\\a1.tmp").lower())
    found = look(process, disk, ["svchost.exe", "-c", "conf\\a1.tmp"])
    assert found.reason.startswith(f"open file {temp}\\conf\\a1.tmp: pools with url")


# -- what is no miner's ----------------------------------------------------------------------------------
ONEC = "C:\\Program Files\\1cv8\\8.3.24.1467\\bin"
ONEC_CONF = "ConfLocation=C:\\Program Files\\1cv8\\conf\nDisableUnsafeActionProtection=.*\n"
IBASES = ("[Accounting]\nConnect=Srvr=\"srv1c:1541\";Ref=\"buh\";\nID=2f1c\nOrderInList=0\n"
          "Folder=/\nClientConnectionSpeed=Normal\nApp=Auto\nWA=1\nVersion=8.3\n")
SQL_POOL = json.dumps({"ConnectionStrings": {"Main": "Server=sql01:1433;Database=hr;User Id=app;Password=x"},
                       "pools": [{"url": "sql01:1433", "user": "app", "max": 20}]})


def test_1c_sql_and_connection_pool_configs_are_no_miners():
    proc = rig(exe=ONEC + "\\1cv8c.exe", cwd=ONEC, open_files=[ROAMING + "\\1C\\1CEStart\\ibases.v8i"])
    texts = {
        ONEC + "\\config.json": connection_pool_config(),
        ONEC + "\\config.txt": ONEC_CONF,
        ROAMING + "\\1C\\1CEStart\\ibases.v8i": IBASES,
        ROAMING + "\\xmrig.json": SQL_POOL,  # a name is not enough: its text decides
    }
    process, disk = desk(proc, texts)
    assert look(process, disk) is None
    assert {p.lower() for p in disk.opened} >= {(ONEC + "\\config.json").lower(), (ROAMING + "\\xmrig.json").lower()}


# -- refusals, vanished processes, hostile values are quiet ----------------------------------------------
def test_access_denied_on_cwd_environ_and_open_files_is_quiet():
    proc = rig(fail={"cwd": psutil.AccessDenied, "environ": psutil.AccessDenied,
                     "open_files": psutil.AccessDenied})
    process, disk = desk(proc, {ROAMING + "\\Microsoft\\config.json": MINER_CONFIG})
    assert look(process, disk).reason.startswith("config.json beside the executable")
    proc.fail["exe"] = psutil.AccessDenied
    assert look(process, disk) is None


def test_a_protected_process_is_looked_at_as_far_as_it_lets():
    """OpenProcess with full rights refused: cwd, environ and handles are AccessDenied natively."""
    proc = rig(access="limited")
    process, disk = desk(proc, {ROAMING + "\\Microsoft\\config.json": MINER_CONFIG})
    assert look(process, disk).reason.startswith("config.json beside the executable")


def test_a_refused_open_file_and_a_vanished_process_are_quiet():
    proc = rig(open_files=[ROAMING + "\\secret.json"])
    process, disk = desk(proc, {ROAMING + "\\secret.json": MINER_CONFIG}, denied=[ROAMING + "\\secret.json"])
    assert look(process, disk) is None  # psutil's isfile_strict: AccessDenied for the whole call
    disk.host.exit(proc.pid)
    assert look(process, disk, ["svchost.exe", "-c", "x.json"]) is None
    assert miner_config.find_psutil(process, ["svchost.exe"]) is None  # the real disk, nothing there


def test_shares_and_device_names_from_the_user_are_never_opened():
    env = {"APPDATA": "\\\\fileserver\\share", "USERPROFILE": "\\\\?\\UNC\\fs\\x"}
    proc = rig(environ=env, cwd="C:\\Users\\bob\\")
    process, disk = desk(proc, {})
    assert look(process, disk, ["svchost.exe", "-c", "\\\\fileserver\\share\\c.json"]) is None
    assert disk.opened == []  # stat first: nothing the fake disk lacks is opened
    assert all(p[1:3] == ":\\" for p, _ in miner_config.candidates_psutil(process, ["x", "-c", "\\\\h\\s\\c"]))


def test_the_same_file_is_read_once_when_cwd_is_the_executable_folder():
    folder = ROAMING + "\\Microsoft"
    process, disk = desk(rig(cwd=folder), {folder + "\\config.json": connection_pool_config()})
    assert look(process, disk) is None
    assert [p.lower() for p in disk.opened].count((folder + "\\config.json").lower()) == 1


@pytest.mark.parametrize("env", [None, {}, {"APPDATA": ROAMING}])
def test_environment_given_by_the_caller_is_used_as_is(env):
    proc = rig(environ={"APPDATA": "C:\\Elsewhere"})
    process, disk = desk(proc, {ROAMING + "\\xmrig.json": MINER_CONFIG})
    found = miner_config.find_psutil(process, [], env, opener=disk.opener, stat=disk.host.stat)
    assert (found is not None) == (env == {"APPDATA": ROAMING})
