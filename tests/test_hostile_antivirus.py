"""Antivirus exclusion files written by a hostile hand: names with newlines, escapes and bytes
that are not UTF-8 become safe text once, where the exclusion is made, and still match."""

from __future__ import annotations

import json

import pytest

from minerwatch.antivirus.clamav import parse_clamd
from minerwatch.antivirus.mdatp_linux import parse_mdatp
from minerwatch.antivirus.model import PATH, Compiled, Exclusion, SourceError
from minerwatch.text import host_text


def _mdatp(*paths):
    items = [{"$type": "excludedPath", "path": p, "isDirectory": True} for p in paths]
    return json.dumps({"antivirusEngine": {"exclusions": items}}).encode()


def test_exclusion_names_are_made_safe_where_they_are_read():
    reading = parse_mdatp(_mdatp("/opt/x\n  forged line\x1b[2J", "/opt/bad\udcffdir"), "/etc/mdatp.json")
    values = [e.value for e in reading.exclusions]
    assert values == ["/opt/x\\n  forged line\\x1b[2J", "/opt/bad\\xffdir"]
    for exclusion in reading.exclusions:
        exclusion.describe().encode("utf-8")  # no lone surrogate reaches a log line or `scan`
        assert "\n" not in exclusion.describe() and "\x1b" not in exclusion.describe()


def test_an_exclusion_of_a_bad_path_still_covers_the_process_there():
    """Process paths arrive escaped (proc_reader); the exclusion is escaped the same way."""
    [exclusion] = parse_mdatp(_mdatp("/opt/bad\udcffdir"), "/etc/mdatp.json").exclusions
    exe = host_text(b"/opt/bad\xffdir/xmrig")
    assert Compiled(exclusion, {}).covers(exe, "", "xmrig") == "executable"


def test_parse_errors_quoting_a_hostile_line_are_one_safe_line():
    data = b"LocalSocket /run/clamd.ctl\nBogus\x1b[2J\x07\n"
    with pytest.raises(SourceError) as err:
        parse_clamd(data, "/etc/clamav/clamd.conf")
    message = str(err.value)
    assert message == "/etc/clamav/clamd.conf:2: Bogus\\x1b[2J\\x07: expected 'Option value'"


def test_exclusion_built_directly_is_safe_too():
    exclusion = Exclusion("defender", PATH, "C:\\x\u202ecod.exe", where="HKLM\\...\\Paths\n")
    assert exclusion.value == "C:\\x\\u202ecod.exe" and exclusion.where == "HKLM\\...\\Paths\\n"
