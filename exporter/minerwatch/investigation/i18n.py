"""Kazakh, Russian or English for what investigators read: the report and the evidence summary.

Kazakhstan's courts and case files work in Kazakh (the state language) and Russian. The
catalogues are gettext .po files, one per language, in locale/ beside this module (translators'
tools read them); they are compiled here, in memory, the first time a language is used, so
neither msgfmt nor a build step is needed where minerwatch runs, and used through Python's own
gettext. English is the messages themselves. Dates and numbers are written the way each
language writes them, from the same catalogues.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import gettext
import os
import re
import struct
from typing import Dict, List, Mapping, Optional, Tuple

LANGS = ("kk", "ru", "en")
LOCALE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def resolve_lang(option: Optional[str], environ: Optional[Mapping[str, str]] = None) -> str:
    """`--lang` when given, else the locale as POSIX ranks it (LC_ALL, LC_MESSAGES, LANG: the
    first that is set): kk_KZ.UTF-8 gives kk, ru_RU gives ru, anything else en."""
    if option:
        lang = option.strip().lower()
        if lang not in LANGS:
            raise ValueError(f"{option!r} is not one of {', '.join(LANGS)}")
        return lang
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            code = value.split("_")[0].split(".")[0].split("@")[0].lower()
            return code if code in ("kk", "ru") else "en"
    return "en"


# -- .po files ------------------------------------------------------------------------------------

Entry = Tuple[Optional[str], str, Optional[str], List[str]]  # context, msgid, msgid_plural, msgstr(s)


class CatalogueError(ValueError):
    """A .po file this reader cannot take: `file:line: problem`."""


def parse_po(text: str, name: str = "<po>") -> List[Entry]:
    """The entries of a .po file (the header, msgid "", included). Comments are skipped; strings
    are C-quoted and may continue over lines."""
    entries: List[Entry] = []
    fields: Dict[str, str] = {}
    last: Optional[str] = None

    def flush() -> None:
        if "msgid" in fields:
            plural = "msgid_plural" in fields
            strings = ([fields[k] for k in sorted((k for k in fields if k.startswith("msgstr[")),
                                                 key=lambda k: int(k[7:-1]))] if plural
                       else [fields.get("msgstr", "")])
            entries.append((fields.get("msgctxt"), fields["msgid"], fields.get("msgid_plural"), strings))
        fields.clear()

    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'(msgctxt|msgid|msgid_plural|msgstr|msgstr\[\d\])\s+(".*")', line)
        if m:
            key = m.group(1)
            if key in ("msgctxt", "msgid") and "msgid" in fields:  # a new entry begins
                flush()
            last, value = key, m.group(2)
        elif line.startswith('"') and last is not None:
            value = line
            fields[last] += _unquote(value, name, number)
            continue
        else:
            raise CatalogueError(f"{name}:{number}: not a .po line: {line[:60]}")
        fields[last] = _unquote(value, name, number)
    flush()
    return entries


def _unquote(quoted: str, name: str, number: int) -> str:
    try:
        value = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, str):
        raise CatalogueError(f"{name}:{number}: not a quoted string: {quoted[:60]}")
    return value


def compile_mo(entries: List[Entry]) -> bytes:
    """GNU .mo bytes (the format msgfmt writes and gettext.GNUTranslations reads); entries with
    an empty translation are left out, as msgfmt leaves them, so they show in English."""
    table = {}
    for context, msgid, plural, strings in entries:
        if not all(strings) and msgid:
            continue
        key = msgid if plural is None else msgid + "\0" + plural
        if context is not None:
            key = context + "\x04" + key
        table[key.encode()] = "\0".join(strings).encode()
    keys = sorted(table)
    header_size = 7 * 4
    ids_at = header_size
    strs_at = ids_at + 8 * len(keys)
    data_at = strs_at + 8 * len(keys)
    ids, strs, data = [], [], bytearray()
    for key in keys:
        ids.append((len(key), data_at + len(data)))
        data += key + b"\0"
    for key in keys:
        strs.append((len(table[key]), data_at + len(data)))
        data += table[key] + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, len(keys), ids_at, strs_at, 0, 0)
    out += b"".join(struct.pack("<2I", *pair) for pair in ids + strs)
    return out + bytes(data)


def catalogue_path(lang: str) -> str:
    return os.path.join(LOCALE_DIR, f"{lang}.po")


@functools.lru_cache(maxsize=None)
def translator(lang: str) -> gettext.NullTranslations:
    """gettext/ngettext/pgettext for `lang`; English is the messages themselves."""
    if lang not in LANGS:
        raise ValueError(f"{lang!r} is not one of {', '.join(LANGS)}")
    if lang == "en":
        return gettext.NullTranslations()
    import io

    path = catalogue_path(lang)
    with open(path, encoding="utf-8") as po:
        mo = compile_mo(parse_po(po.read(), path))
    return gettext.GNUTranslations(io.BytesIO(mo))


# -- numbers and dates ----------------------------------------------------------------------------


def number(value: float, digits: int, lang: str) -> str:
    """Thousands apart by a narrow no-break space, the decimal sign as the language writes it."""
    text = f"{value:,.{digits}f}".replace(",", "\u202f")
    return text.replace(".", translator(lang).pgettext("decimal sign", "."))


def when(epoch: float, lang: str, offset_hours: float) -> str:
    """A moment in the office time zone, as the language writes dates: 1 November 2026, 09:00 (UTC+5)."""
    t = translator(lang)
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    moment = dt.datetime.fromtimestamp(epoch, zone)
    sign = "+" if offset_hours >= 0 else "-"
    return t.gettext("{day} {month} {year}, {time} (UTC{offset})").format(
        day=moment.day, month=t.pgettext("date: month after a day", MONTHS[moment.month - 1]),
        year=moment.year, time=moment.strftime("%H:%M:%S"), offset=f"{sign}{abs(offset_hours):g}")


def when_iso(text: Optional[str], lang: str, offset_hours: float) -> str:
    """when() of an RFC 3339 time from a document; '' for none."""
    if not text:
        return ""
    try:
        epoch = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return text  # not ours to reformat: shown as it is (escaped by the caller)
    return when(epoch, lang, offset_hours)
