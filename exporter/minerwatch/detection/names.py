"""Program names for matching: basename, version stem, and the look-alike skeleton.

A renamed miner is the cheapest evasion there is. Beyond plain renaming (which only behaviour
catches), a name can *look* like `xmrig` to a person while differing in bytes: a Cyrillic `і`
or `х`, full-width `ｘｍｒｉｇ`, a zero-width joiner inside, a digit for a letter (`xmr1g`).
`skeleton()` folds those back so the name lists still catch them; the result is only ever
compared with miner names, never shown.

The digit fold (1->i, 0->o, ...) is the one that could hurt ordinary software, so it applies only
to a digit standing between two letters (`xmr1g`, `m1nerd`), never to a version suffix
(`xmrig-6.21`, `python3`) or a digit run (`x11vnc`). tests/test_hostile_names.py runs this
machine's own program names through it.
"""

from __future__ import annotations

import re
import unicodedata

# Letters from other scripts that look like Latin ones, after NFKD and lower-casing (a subset of
# Unicode's confusables.txt: the look-alikes of a-z, as fonts render them in a terminal or a
# table). Full-width and mathematical letters need no entry: NFKD folds them already.
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "ь": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i",
    "ї": "i", "ӏ": "l", "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q",
    "г": "r", "ѕ": "s", "т": "t", "џ": "u", "ѵ": "v", "ԝ": "w", "х": "x", "у": "y", "ү": "y",
    "ѡ": "w", "ɡ": "g", "ԍ": "g",
    # Greek
    "α": "a", "β": "b", "ϲ": "c", "ε": "e", "η": "n", "ι": "i", "ί": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "μ": "u", "ϳ": "j",
    # Armenian and others often used in look-alike names
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q", "ա": "w",
    # Latin letters that differ only by a missing dot or a hook
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ɪ": "i", "ʀ": "r", "ɴ": "n", "ᴍ": "m", "ᴋ": "k",
    "ᴏ": "o", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ʟ": "l", "ᴘ": "p", "ꜱ": "s",
    "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ł": "l", "đ": "d", "ħ": "h",
    "ø": "o", "ŧ": "t",
    # dashes and dots that look like the separators of miner names
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-", "﹣": "-", "･": ".", "․": ".",
}
_LOOKALIKE_TABLE = str.maketrans(_LOOKALIKES)

# Characters that render as nothing: zero-width space/joiners, direction marks, word joiner,
# invisible operators, BOM, soft hyphen, Mongolian vowel separator, combining grapheme joiner.
_INVISIBLE = "\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u2060-\u2064\u3164\ufe00-\ufe0f\ufeff\uffa0"
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
# host_text's visible escapes of invisible or control characters and undecodable bytes: a name
# read from the host arrives with `\u200d` or `\xff` spelled out, and they are just as invisible
# in the name a person reads in a process list.
_ESCAPE_RE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt])")

# Leet digits, folded only between two letters.
_DIGIT_LETTERS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}
_LEET_RE = re.compile(r"(?<=[a-z])[01345789](?=[a-z])")
# "rn" renders like "m" in most fonts (confusables.txt lists it too).
_RN_RE = re.compile("rn")


def basename(path: str) -> str:
    """The last component of a POSIX or Windows path, quotes and " (deleted)" removed."""
    path = path.strip().strip("\"'")
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    return re.split(r"[/\\]", path)[-1]


def norm_name(name: str) -> str:
    """A program name for matching: basename, lower case, no .exe, no leading '-' or '.'."""
    base = basename(name).lower()
    if base.endswith(".exe"):
        base = base[:-4]
    return base.lstrip("-.")


_VERSION_SUFFIX_RE = re.compile(r"[-_.]?v?\d+(?:\.\d+)*$")
_TRIPLET_RE = re.compile(
    r"^(?:x86_64|i[3-6]86|aarch64|arm\w*|riscv64|powerpc64\w*|ppc64\w*|s390x|mips\w*)"
    r"-(?:\w+-)?(?:linux-gnu\w*|linux-musl\w*|w64-mingw32)-(.+)$"
)
_STEM_SUFFIXES = (".real", ".basic", ".bin", "-bin", ".tiny", ".openbsd", ".traditional",
                  ".netkit", ".bfd", ".gold", "-wrapped", "_wrapped", ".gtk3", ".nox")


def stem(name: str) -> str:
    """A name without version, architecture triplet or Debian/NixOS wrapper suffixes."""
    name = name[:255].lower().lstrip(".")  # NAME_MAX; also bounds the regexes below
    if name.endswith(".exe"):
        name = name[:-4]
    m = _TRIPLET_RE.match(name)
    if m:
        name = m.group(1)
    for _ in range(2):
        for suffix in _STEM_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        name = _VERSION_SUFFIX_RE.sub("", name) or name
    return name


def skeleton(name: str) -> str:
    """`name` as it looks: invisibles and escapes dropped, compatibility forms, accents and
    look-alike letters folded to plain Latin, lower case, leet digits between letters folded.

    `skeleton("xmrіg") == skeleton("ｘｍｒｉｇ") == skeleton("xmr1g") == "xmrig"`.
    """
    name = name[:255]
    if "\\" in name:
        name = _ESCAPE_RE.sub("", name)
    if not name.isascii():
        name = _INVISIBLE_RE.sub("", name)
        name = unicodedata.normalize("NFKD", name)
        name = "".join(c for c in name if not unicodedata.combining(c))
        name = name.lower().translate(_LOOKALIKE_TABLE)
        name = _INVISIBLE_RE.sub("", name)  # NFKD can expose some (U+3164 from compatibility forms)
    else:
        name = name.lower()
    if "rn" in name:
        name = _RN_RE.sub("m", name)
    return _LEET_RE.sub(lambda m: _DIGIT_LETTERS[m.group()], name)


def may_fold(name: str) -> bool:
    """False when `skeleton(name)` is just `name.lower()`: the common case, checked cheaply."""
    if not name.isascii() or "\\" in name:
        return True
    lower = name.lower()
    return "rn" in lower or _LEET_RE.search(lower) is not None
