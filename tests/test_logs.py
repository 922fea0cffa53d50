"""logfmt and JSON log lines: one record is one line, whatever host text the message quotes."""

from __future__ import annotations

import json
import logging

import pytest

from minerwatch.logs import JsonFormatter, LogfmtFormatter, logfmt_value


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("minerwatch.test", logging.WARNING, __file__, 1, "%s", (msg,), None)


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("", '""'),
    ("two words", '"two words"'),
    ("k=v", '"k=v"'),
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("line\nbreak", r'"line\nbreak"'),
    ("tab\there", r'"tab\there"'),
    ("cr\rhere", r'"cr\rhere"'),
    ("esc\x1b[31m", r'"esc\u001b[31m"'),
    ("nel\x85sep\u2028", r'"nel\u0085sep\u2028"'),
    ("кириллица", "кириллица"),
])
def test_logfmt_value(text, expected):
    assert logfmt_value(text) == expected


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()])
def test_a_record_with_line_breaks_is_one_line(formatter):
    line = formatter.format(record("process 42 named 'x\nlevel=error msg=forged'\ttab\r\x85\u2028"))
    assert len(line.splitlines()) == 1
    assert "\t" not in line and "\r" not in line


def test_logfmt_line_reads_back():
    line = LogfmtFormatter().format(record('a "b" c=d\ne'))
    assert line.split(" ", 1)[0].startswith("ts=")
    assert line.endswith(r'msg="a \"b\" c=d\ne"')


def test_json_line_reads_back():
    assert json.loads(JsonFormatter().format(record("x\ny")))["msg"] == "x\ny"
