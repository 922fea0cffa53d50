"""Look-alike miner names (issue 11 item 10): homoglyphs, full-width letters, invisible
characters and digits for letters are caught; ordinary program names are not."""

from __future__ import annotations

import os

import pytest

from minerwatch.detection.names import skeleton
from minerwatch.detection.signatures import Signatures
from minerwatch.text import host_text

S = Signatures()

LOOK_ALIKES = [
    ("xmr\u0456g", "xmrig"),  # Cyrillic і
    ("\u0445mrig", "xmrig"),  # Cyrillic х
    ("\u0445m\u0433\u0456g", "xmrig"),  # Cyrillic х, г, і
    ("\uff58\uff4d\uff52\uff49\uff47", "xmrig"),  # full-width ｘｍｒｉｇ
    ("\u03a7MRIG", "xmrig"),  # Greek capital chi
    ("\u2179mrig", "xmrig"),  # small roman numeral ten
    ("xm\u200drig", "xmrig"),  # zero-width joiner
    ("x\u200bmr\u200cig", "xmrig"),  # zero-width space and non-joiner
    ("xmr\u00adig", "xmrig"),  # soft hyphen
    ("xmr\u2060ig", "xmrig"),  # word joiner
    ("xmri\u0301g", "xmrig"),  # a combining accent
    ("xmr1g", "xmrig"),  # digit for a letter
    ("XMR1G.EXE", "xmrig"),
    ("m1nerd", "minerd"),
    ("ccm1ner-2.3", "ccminer-2.3"),
    ("xrnrig", "xmrig"),  # "rn" for "m"
    ("nan0miner", "nanominer"),
    ("\uff54\uff0d\uff52\uff45\uff58", "t-rex"),  # full-width t-rex, full-width hyphen too
    ("kdevtmpfs\u0456", "kdevtmpfsi"),
]


@pytest.mark.parametrize("name, looks_like", LOOK_ALIKES)
def test_look_alike_names_match_as_exe_comm_and_argv0(name, looks_like):
    shown = host_text(name)  # as proc_reader hands it over: invisibles arrive escaped
    for comm, exe, argv0 in ((shown, "", ""), ("", f"/tmp/.x/{shown}", ""), ("", "", f"./{shown}")):
        [match] = S.match_names(comm, exe, argv0)
        assert match.signal == "miner_name" and match.reason.endswith(f"looks like {looks_like}"), match


def test_look_alike_in_a_windows_path_and_in_a_bad_directory():
    [m] = S.match_names("", host_text("C:\\Users\\bob\\AppData\\Local\\Temp\\xmr\u0456g.exe"), "")
    assert m.reason == "executable xmr\u0456g.exe looks like xmrig"
    [m] = S.match_names("", host_text(b"/tmp/bad\xffdir/xm\xe2\x80\x8drig"), "")
    assert m.reason == "executable xm\\u200drig looks like xmrig"


def test_configured_names_are_folded_too():
    s = Signatures(extra_names=["corpminer"])
    assert s.match_names("c\u043erpminer", "", "")  # Cyrillic о
    assert s.match_names("corpm1ner", "", "")


# Real program names, many with digits between letters, look-alike letters or near-miner words:
# none may match (Linux, Windows and macOS programs; words in other scripts).
REAL_NAMES = [
    "x11vnc", "i3", "i3bar", "i3status", "i3lock", "w3m", "e2fsck", "mke2fs", "resize2fs", "e4defrag",
    "mp3gain", "k3s", "k9s", "h2o", "s3cmd", "m4", "b2sum", "sha1sum", "md5sum", "base64", "p7zip",
    "x264", "x265", "gpg2", "python3", "pip3", "node18", "ntfs-3g", "tpm2_pcrread", "g4music",
    "l3afpad", "c3270", "x3270", "4ti2-circuits", "gm4", "lib4ti2", "m17n-db", "l10n", "i18n",
    "k8s", "a11y", "w3c", "t1utils", "f2fs", "r8169", "e1000e", "b43", "s5p", "x86_64", "ip6tables",
    "minetest", "minecraft-launcher", "gnome-mines", "mines", "minerva", "mineral", "xmms", "xmllint",
    "xmrg", "xmr", "rig", "riggs", "rigelctl", "t-rexctl", "cgdisk", "ccache", "ccmake", "lolcat",
    "kinit", "ethtool", "excavate", "claymore-pigeon", "miniserve", "minizip", "minikube",
    "gminer-config", "bminer.conf", "nvidia-smi", "nvcc", "steam", "discord", "Teams.exe",
    "msedge.exe", "svchost.exe", "MsMpEng.exe", "OneDrive.exe", "explorer.exe", "winlogon.exe",
    "\u0445\u0440\u043e\u043c",  # Cyrillic "хром"
    "\u043f\u0440\u0438\u0432\u0435\u0442", "\u03b1\u03b2\u03b3", "\u65e5\u672c\u8a9e",
    "\uff46\uff49\uff52\uff45\uff46\uff4f\uff58",  # full-width firefox
    "f1ref0x", "k3rnel", "journ4ld", "t0p", "c0rn", "m0unt", "kworker/0:1",
]


def _installed_programs():
    names = set()
    for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/libexec"):
        try:
            names.update(os.listdir(folder))
        except OSError:
            pass
    return sorted(names)


def test_real_program_names_stay_unmatched():
    installed = _installed_programs()
    assert len(installed) > 100  # the machine's own programs: a real list, not one written to pass
    matched = [n for n in REAL_NAMES + installed if S.match_names(host_text(n), f"/usr/bin/{host_text(n)}", n)]
    assert matched == []
    # The folds were exercised: these names differ from their skeletons and still do not match.
    folded = [n for n in REAL_NAMES + installed if skeleton(n) != n.lower()]
    assert len(folded) >= 20, folded


@pytest.mark.parametrize(
    "name, expected",
    [
        ("xmrig-6.21.0", "xmrig-6.21.0"),  # a version suffix keeps its digits
        ("python3.11", "python3.11"),
        ("x11vnc", "x11vnc"),  # a digit run is not leet
        ("i3status", "iestatus"),  # folded, and not a miner: folds matter only on a match
        ("\uff58\uff4d\uff52\uff49\uff47", "xmrig"),
        ("xm\\u200drig", "xmrig"),  # host_text's escape of an invisible character
        ("xmr\\xffig", "xmrig"),  # and of a byte that is not UTF-8
    ],
)
def test_skeleton(name, expected):
    assert skeleton(name) == expected
