"""Windows names and folders: a system or common program's name outside the folders it installs
to is `name_mismatch`; AppData and ProgramData count as temp folders (`exe_in_temp_dir`) except
where real programs install per user. Weak signals both: precision is checked on the folders
ordinary Windows desks run their programs from, with the shipped table (data/windows_names.txt)."""

from __future__ import annotations

import re

import pytest

from support.fakes.psutil_windows import FakeWindowsHost, WinProcess, filetime, system_processes
from minerwatch.detection import windows_places
from minerwatch.detection.process_table import ProcessTable
from minerwatch.detection.signatures import Signatures
from minerwatch.host.proc_reader import PsutilReader

S = Signatures()
BOOT = 1_700_000_000.0
SECOND = 10_000_000
ROAMING = "C:\\Users\\bob\\AppData\\Roaming"
LOCAL = "C:\\Users\\bob\\AppData\\Local"


def signals(exe, argv=()):
    comm = re.split(r"[\\/]", exe)[-1]
    return sorted(m.signal for m in S.match_all(comm=comm, exe=exe, exe_deleted=False, argv=[exe, *argv]))


DISGUISED = ["exe_in_temp_dir", "name_mismatch"]


def test_svchost_in_appdata_roaming_is_disguised_and_in_system32_not():
    assert signals(ROAMING + "\\svchost.exe") == DISGUISED
    assert signals(ROAMING + "\\Microsoft\\Windows\\svchost.exe") == DISGUISED
    assert signals("C:\\Windows\\System32\\svchost.exe") == []
    assert signals("C:\\WINDOWS\\system32\\SVCHOST.EXE") == []  # NTFS compares names without case
    assert signals("D:\\Windows\\SysWOW64\\svchost.exe") == []  # Windows on another drive
    assert signals("\\\\?\\C:\\Windows\\System32\\svchost.exe") == []  # the long-path prefix


def test_a_system_name_anywhere_else_is_a_mismatch():
    for exe in ("C:\\svchost.exe", "C:\\Windows\\svchost.exe", "C:\\Users\\bob\\Documents\\lsass.exe",
                "C:\\Program Files\\Common Files\\csrss.exe", "\\\\fs01\\tools\\svchost.exe"):
        assert signals(exe) == ["name_mismatch"], exe
    found = S.match_executable("csrss.exe", "C:\\Intel\\csrss.exe", False)
    assert [(m.signal, m.reason) for m in found] == [
        ("name_mismatch", "csrss.exe runs outside its own folders: C:\\Intel\\csrss.exe")]
    assert signals("C:\\Windows\\explorer.exe") == signals("C:\\Windows\\System32\\lsass.exe") == []


def test_chrome_in_program_files_and_the_users_own_chrome_folder_and_nowhere_else():
    assert signals("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe") == []
    assert signals("C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe") == []
    assert signals(LOCAL + "\\Google\\Chrome\\Application\\chrome.exe") == []  # a per-user install
    assert signals(LOCAL + "\\Google\\Chrome\\Application\\131.0.6778.86\\notification_helper.exe") == []
    assert signals(ROAMING + "\\Google\\chrome.exe") == DISGUISED
    assert signals("C:\\Users\\bob\\Desktop\\chrome.exe") == ["name_mismatch"]
    # test tools' own browser builds; programs that also run portable are not judged by name
    assert signals(LOCAL + "\\ms-playwright\\chromium-1140\\chrome-win\\chrome.exe") == []
    assert signals("C:\\Users\\bob\\.cache\\puppeteer\\chrome\\win64-131.0\\chrome-win64\\chrome.exe") == []
    assert signals("D:\\Tools\\VSCode\\Code.exe") == signals("D:\\Telegram\\Telegram.exe") == []


def test_1cv8_in_program_files_only():
    assert signals("C:\\Program Files\\1cv8\\8.3.24.1467\\bin\\1cv8.exe") == []
    assert signals("C:\\Program Files (x86)\\1cv8\\8.3.22.1709\\bin\\1cv8c.exe") == []
    assert signals("C:\\Program Files (x86)\\1cv82\\8.2.19.130\\bin\\1cv8.exe") == []
    assert signals(ROAMING + "\\1C\\1cv8\\1cv8.exe") == DISGUISED  # the clients' cache, no program
    assert signals(LOCAL + "\\1C\\1cv8\\1cv8.exe") == DISGUISED


def test_defender_in_programdata_is_its_own_and_its_name_elsewhere_is_not():
    platform = "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0"
    assert signals(platform + "\\MsMpEng.exe") == signals(platform + "\\NisSrv.exe") == []
    assert signals("C:\\ProgramData\\Oracle\\Java\\javapath\\javaw.exe") == []
    assert signals("C:\\Program Files\\Windows Defender\\MsMpEng.exe") == []
    assert signals("C:\\ProgramData\\Microsoft\\MsMpEng.exe") == DISGUISED
    assert signals("C:\\ProgramData\\Intel\\igfx.exe") == ["exe_in_temp_dir"]


@pytest.mark.parametrize("exe", [
    LOCAL + "\\Microsoft\\Teams\\current\\Teams.exe",
    LOCAL + "\\Microsoft\\OneDrive\\OneDrive.exe",
    LOCAL + "\\Microsoft\\OneDrive\\24.201.1006.0005\\FileCoAuth.exe",
    ROAMING + "\\Zoom\\bin\\Zoom.exe",
    ROAMING + "\\Zoom\\bin\\CptHost.exe",
    LOCAL + "\\slack\\app-4.41.105\\slack.exe",
    LOCAL + "\\Discord\\app-1.0.9172\\Discord.exe",
    LOCAL + "\\Programs\\Microsoft VS Code\\Code.exe",
    LOCAL + "\\Programs\\Python\\Python312\\python.exe",
    LOCAL + "\\Microsoft\\Edge SxS\\Application\\msedge.exe",
    LOCAL + "\\Yandex\\YandexBrowser\\Application\\browser.exe",
    LOCAL + "\\Mozilla Firefox\\firefox.exe",
    ROAMING + "\\Telegram Desktop\\Telegram.exe",
])
def test_programs_that_install_per_user_are_not_in_a_drop_folder(exe):
    """The same executable one folder up, in the user's roaming folder, is."""
    assert signals(exe) == []
    name = exe.rsplit("\\", 1)[1]
    assert "exe_in_temp_dir" in signals(ROAMING + "\\Updates\\" + name)


def test_user_writable_folders_count_like_tmp():
    assert signals(ROAMING + "\\Microsoft\\Network\\wupdate.exe") == ["exe_in_temp_dir"]
    assert signals("C:\\Users\\bob\\AppData\\LocalLow\\x\\w.exe") == ["exe_in_temp_dir"]
    assert signals("C:\\ProgramData\\Intel\\ShaderCache\\helper.exe") == ["exe_in_temp_dir"]
    found = S.match_executable("wupdate.exe", ROAMING + "\\wupdate.exe", False)
    assert [(m.signal, m.reason) for m in found] == [
        ("exe_in_temp_dir", f"executable in a user-writable folder: {ROAMING}\\wupdate.exe")]
    # a script there, run by an interpreter from its own folder
    python = "C:\\Program Files\\Python312\\python.exe"
    assert signals(python, [ROAMING + "\\x\\run.py"]) == ["exe_in_temp_dir"]
    assert signals(python, ["C:\\Users\\bob\\Documents\\report.py"]) == []


def test_posix_paths_are_not_judged():
    """Wine on Linux, or a Linux file that happens to end in .exe: never a Windows place."""
    assert signals("/opt/tools/svchost.exe") == []
    assert signals("/home/bob/.wine/drive_c/users/bob/AppData/Roaming/x.exe") == []
    assert not windows_places.in_user_folder("/home/bob/AppData/Roaming/x.exe")
    assert not windows_places.out_of_place("/usr/lib/wine/lsass.exe")
    assert windows_places.out_of_place("C:\\Temp\\lsass.exe")


def test_a_hostile_path_is_bounded_and_judged_as_windows_would():
    long = "C:\\Users\\bob\\AppData\\Roaming\\" + "a\\" * 5000 + "svchost.exe"
    assert not windows_places.out_of_place(long) and not windows_places.in_user_folder(long)
    fake_place = ROAMING + "\\x|c:\\users\\bob\\appdata\\local\\programs\\svchost.exe"
    assert windows_places.in_user_folder(fake_place)
    assert windows_places.out_of_place(fake_place)
    assert windows_places.out_of_place("C:\\Windows\\System32\\..\\Temp\\svchost.exe")


# -- the table ------------------------------------------------------------------------------------------
def test_the_shipped_table_parses_and_names_real_windows_programs():
    by_name, _ = windows_places._table()
    assert {"svchost.exe", "lsass.exe", "csrss.exe", "explorer.exe", "msmpeng.exe", "chrome.exe",
            "msedge.exe", "firefox.exe", "teams.exe", "winword.exe", "excel.exe", "1cv8.exe"} <= set(by_name)


@pytest.mark.parametrize("line,error", [
    ("svchost.exe", "x.txt:2: expected NAME FOLDER, got 'svchost.exe'"),
    ("C:\\x\\svchost.exe C:\\Windows", "x.txt:2: NAME is a file name or *"),
    ("svchost.exe %WinDir%\\System32", "x.txt:2: unknown placeholder in '%WinDir%\\\\System32'"),
    ("svchost.exe Windows\\System32", "x.txt:2: a folder starts with a placeholder"),
])
def test_a_broken_table_line_names_its_file_and_line(line, error):
    with pytest.raises(windows_places.WindowsNamesError) as err:
        windows_places.parse(["# comment", line], "x.txt")
    assert str(err.value).startswith(error)


# -- on the psutil Windows fake, through the process table -----------------------------------------
def test_a_busy_svchost_in_appdata_roaming_is_suspect_and_the_bare_desk_is_not():
    miner = WinProcess(5120, ROAMING + "\\svchost.exe", created=filetime(BOOT + 600),
                       account=("DESKTOP-7Q2", "bob"), cmdline=[ROAMING + "\\svchost.exe"], threads=4)
    chrome = WinProcess(5300, "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
                        created=filetime(BOOT + 700), account=("DESKTOP-7Q2", "bob"),
                        cmdline=["chrome.exe", "--type=renderer"])
    host = FakeWindowsHost([*system_processes(BOOT), miner, chrome], boot_time=BOOT)
    reader = PsutilReader(host.module(), platform="win32", file_stat=host.stat)
    now = [0.0]
    table = ProcessTable(reader, Signatures(), clock=lambda: now[0], wall_clock=lambda: BOOT + 3600 + now[0])
    for _ in range(4):  # both keep two cores busy
        snapshot = table.scan()
        now[0] += 15
        miner.user_time += 30 * SECOND
        chrome.user_time += 30 * SECOND
    (suspect,) = snapshot.suspects
    assert suspect.facts.pid == 5120 and set(DISGUISED) <= set(suspect.signals)
