"""The report and the evidence summary in Kazakh and Russian: the catalogues are whole (every
message in every language, placeholders kept, the same messages as the code asks for), compile
as msgfmt compiles them, and a page rendered in kk or ru holds no English beyond names."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from support.messages import INVESTIGATION, used

LANGS = ("kk", "ru")
PLACEHOLDER = re.compile(r"\{(\w*)\}")
# Latin words a kk or ru page may still hold outside evidence (<code>, class 'data'): names.
ALLOWED_LATIN = {"UTC", "minerwatch", "Prometheus", "sha"}
CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def catalogue(lang):
    from minerwatch.investigation.i18n import catalogue_path, parse_po

    with open(catalogue_path(lang), encoding="utf-8") as po:
        return {(c, m, p): s for c, m, p, s in parse_po(po.read(), lang) if m}


@pytest.mark.parametrize("lang", LANGS)
def test_every_message_is_translated_with_its_placeholders(lang):
    entries = catalogue(lang)
    assert set(entries) == used(), "catalogue and code disagree: missing " \
        f"{sorted(used() - set(entries), key=str)[:5]}, stale {sorted(set(entries) - used(), key=str)[:5]}"
    nplurals = {"kk": 2, "ru": 3}[lang]
    for (context, msgid, plural), strings in entries.items():
        assert all(s.strip() for s in strings), f"{lang}: {msgid!r} has an empty translation"
        assert len(strings) == (nplurals if plural else 1), f"{lang}: {msgid!r} has {len(strings)} forms"
        for s in strings:
            assert sorted(PLACEHOLDER.findall(s)) == sorted(PLACEHOLDER.findall(msgid)), (lang, msgid, s)
            if context is None and re.search(r"[A-Za-z]{3}", PLACEHOLDER.sub("", msgid)):
                assert CYRILLIC.search(s), f"{lang}: {msgid!r} is not translated: {s!r}"


def test_both_catalogues_hold_the_same_messages():
    assert set(catalogue("kk")) == set(catalogue("ru"))


@pytest.mark.skipif(not shutil.which("msgfmt"), reason="gettext's msgfmt not installed")
@pytest.mark.parametrize("lang", LANGS)
def test_compiled_here_as_msgfmt_compiles(lang, tmp_path):
    from minerwatch.investigation.i18n import catalogue_path, translator

    mo = tmp_path / f"{lang}.mo"
    result = subprocess.run(["msgfmt", "--check-format", "-o", str(mo), catalogue_path(lang)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with open(mo, "rb") as f:
        assert translator(lang)._catalog == gettext.GNUTranslations(f)._catalog


@pytest.mark.parametrize("environ, option, lang", [
    ({}, None, "en"),
    ({"LANG": "kk_KZ.UTF-8"}, None, "kk"),
    ({"LANG": "ru_RU.UTF-8"}, None, "ru"),
    ({"LANG": "ru_KZ.UTF-8", "LC_MESSAGES": "kk_KZ"}, None, "kk"),
    ({"LANG": "kk_KZ.UTF-8", "LC_ALL": "C.UTF-8"}, None, "en"),  # LC_ALL overrides the rest
    ({"LC_ALL": "ru_RU@cyrillic"}, None, "ru"),
    ({"LANG": "de_DE.UTF-8"}, None, "en"),
    ({"LANG": "ru_RU.UTF-8"}, "kk", "kk"),  # --lang wins
    ({}, "RU", "ru"),
])
def test_language_from_the_option_else_the_locale(environ, option, lang):
    from minerwatch.investigation.i18n import resolve_lang

    assert resolve_lang(option, environ) == lang


def test_dates_and_numbers_as_each_language_writes_them():
    from minerwatch.investigation.i18n import number, when

    moment = 1793505600.0  # 2026-11-01T04:00:00Z = 09:00 in Kazakhstan
    assert when(moment, "en", 5) == "1 November 2026, 09:00:00 (UTC+5)"
    assert when(moment, "ru", 5) == "1 ноября 2026 г., 09:00:00 (UTC+5)"
    assert when(moment, "kk", 5) == "2026 ж. 1 қараша, 09:00:00 (UTC+5)"
    assert number(12345.678, 2, "en") == "12\u202f345.68"
    assert number(12345.678, 2, "ru") == number(12345.678, 2, "kk") == "12\u202f345,68"


# -- the pages -------------------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """Text a reader sees (and images' alt text), without the head and without evidence: <code>
    and class 'data' hold values from hosts and Prometheus, shown as recorded."""

    VOID = {"br", "img", "meta", "link", "hr", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.parts = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("alt"):
            self.parts.append(attrs["alt"])
        if tag not in self.VOID:
            self.stack.append(tag == "code" or tag == "head" or "data" in (attrs.get("class") or "").split())

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not any(self.stack):
            self.parts.append(data)


def visible(page: str) -> str:
    parser = VisibleText()
    parser.feed(page)
    return " ".join(parser.parts)


def every_section_document():
    """A report document with every section filled: two processes (energy measured and estimated,
    GPU measured, estimated, missing), alerts of each severity, evidence bundles, a site's tariff
    and samples left out of both kinds."""
    from minerwatch.investigation.report import QUERIES, Settings, build

    def labels(**kv):
        return tuple(sorted(kv.items()))

    start, end = 1793505600.0, 1793505600.0 + 2 * 86400
    times = [start + 60 * i for i in range(0, 2 * 1440, 5)]
    info = dict(name="xmrig", user="alice", exe="/tmp/.x/xmrig", exe_sha256="ab" * 32,
                cmdline="/tmp/.x/xmrig -o stratum+tcp://pool.example.com:3333 -u WALLET -p <redacted>",
                signals="miner_name,pool_url")
    data = {key: {} for key in QUERIES}
    data["info"] = {labels(pid="4242", **info): [(t, 1.0) for t in times],
                    labels(pid="5151", **info): [(t, 1.0) for t in times]}
    data["cpu"] = {labels(pid="4242", name="xmrig", user="alice"): [(t, 2.0 * i * 300) for i, t in enumerate(times)],
                   labels(pid="5151", name="xmrig", user="alice"): [(t, 1.0 * i * 300) for i, t in enumerate(times)]}
    data["energy"] = {labels(pid="5151", method="cpu_model"): [(t, 12.0 * i * 300) for i, t in enumerate(times)]}
    data["gpu"] = {labels(pid="5151", gpu="0", uuid="GPU-1"): [(t, 0.9) for t in times],
                   labels(pid="4242", gpu="0", uuid="GPU-1"): [(t, 0.1) for t in times]}
    data["gpu_power"] = {labels(gpu="0", uuid="GPU-1"): [(t, 200.0) for t in times]}
    data["gpu_energy"] = {labels(pid="5151", gpu="0", uuid="GPU-1"): [(t, 100.0 * i) for i, t in enumerate(times)]}
    data["pools"] = {labels(pid="5151", pool="pool.example.com", remote="198.51.100.7:3333"): [(start, 1.0)]}
    data["bundles"] = {labels(pid="5151", manifest_sha256="cd" * 32): [(start + 3600, 1.0), (start + 7200, 1.0)]}
    data["bundle_times"] = {labels(pid="5151", manifest_sha256="cd" * 32): [(start + 3600, start + 3000)]}
    data["alerts"] = {labels(alertname=f"MinerwatchThing{s.title()}", severity=s, pid="5151"): [(start, 1.0)]
                      for s in ("critical", "warning", "info")}
    data["site"] = ["kostanay-akimat"]
    data["site_tariff"] = {labels(site="kostanay-akimat", source="EPK-Forfait", valid_from="2026-01-01"):
                           [(start, 80.5), (end, 80.5)]}
    data["fleet_tariff"] = {(): [(end, 75.42)]}
    left_out = {("minerwatch_process_cpu_seconds_total", labels(pid="4242")): [3, 0],
                ("minerwatch_gpu_power_watts", labels(gpu="0")): [0, 2]}
    settings = Settings("http://prometheus.example:9090", "pc-0417:9789", start, end)
    return build(settings, data, generated=end + 60, left_out=left_out), settings


@pytest.mark.parametrize("lang", LANGS)
def test_a_page_in_kazakh_or_russian_holds_no_english(lang):
    from minerwatch.investigation import report_html

    document, settings = every_section_document()
    assert {p["energy"]["gpu_method_kind"] for p in document["processes"]} == {"exporter", "estimated"}
    assert document["tariff"]["from"] == "site" and document["left_out"]["samples"] == 5
    page = report_html.render(document, settings.office, lang, json_sha256="ef" * 32)
    text = visible(page)
    latin = set(re.findall(r"[A-Za-z]+", text)) - ALLOWED_LATIN
    assert not latin, f"{lang}: English left on the page: {sorted(latin)}"
    english = report_html.render(document, settings.office, "en")
    assert re.findall(r"[A-Za-z]{4,}", visible(english)), "the check above would see English"
    assert f"<html lang='{lang}'>" in page
    # the evidence is shown as recorded, whatever the language
    for value in ("ab" * 32, "cd" * 32, "ef" * 32, "pool.example.com", "MinerwatchThingCritical", "EPK-Forfait"):
        assert value in page
    words = {"kk": ("Майнинг туралы есеп", "Дәлелдемелер пакеттері", "кВт·сағ", "теңге", "80,50", "қараша"),
             "ru": ("Отчёт о майнинге", "Пакеты доказательств", "кВт·ч", "тенге", "80,50", "ноября")}[lang]
    for word in words:
        assert word in text, (lang, word)
    # measured and estimated stay apart
    assert text.count({"kk": "(өлшенген)", "ru": "(измерено)"}[lang]) >= 4
    assert {"kk": "(бағаланған)", "ru": "(оценка)"}[lang] in text


def evidence_document():
    return {
        "format": "minerwatch-evidence/1", "minerwatch_version": "1.2.3", "collected_at": "2026-11-02T06:30:00Z",
        "host": {"hostname": "pc-0417", "os": "Linux", "kernel": "6.1.0-18-amd64", "machine_id": "0f" * 16},
        "process": {"pid": 5151, "name": "xmrig", "user": "alice", "uid": 1000, "start_time": "2026-11-02T01:00:00Z",
                    "start_time_seconds": 1793581200.0, "cpu_seconds": 19800.5, "threads": 7,
                    "resident_memory_bytes": 2_400_000_000, "cwd": "/tmp/.x",
                    "cmdline": "/tmp/.x/xmrig -o stratum+tcp://pool.example.com:3333 -p <redacted>",
                    "environment_names": ["HOME", "PATH"], "parents": [{"pid": 1, "name": "systemd"}],
                    "open_files": [], "suspect": True, "allowlisted": False},
        "executable": {"path": "/tmp/.x/xmrig", "deleted": True, "sha256": "ab" * 32, "size_bytes": 8_000_000,
                       "mtime": "2026-11-01T20:00:00Z", "copy": "executable", "copy_sha256_matches": True,
                       "copy_truncated": False},
        "miner_config_files": [{"path": "/tmp/.x/config.json", "copy": "files/01-config.json", "size_bytes": 2048,
                                "copied_bytes": 2048, "truncated": False}],
        "signals": {"miner_name": "xmrig", "pool_url": "stratum+tcp://pool.example.com:3333"},
        "network": {"available": True, "connections": [
            {"local": "10.0.0.5:40000", "remote": "198.51.100.7:3333", "state": "ESTABLISHED",
             "pool_evidence": [{"kind": "stratum", "pool": "pool.example.com", "detail": "mining.subscribe"}]}]},
        "gpu": {"available": False, "reason": "NVML not available (no NVIDIA driver or GPU)", "use": []},
        "antivirus_exclusions": [{"product": "Microsoft Defender", "kind": "path", "value": "C:\\x",
                                  "covers": "executable", "where": "HKLM\\SOFTWARE\\Microsoft\\Windows Defender"}],
        "unreadable": {"environ": "permission denied"},
        "collection": {"reads_only": True,
                       "note": "read from procfs and the executable; the process was not signalled or traced"},
    }


@pytest.mark.parametrize("lang", LANGS)
def test_the_evidence_summary_in_kazakh_or_russian(lang):
    from minerwatch.investigation import evidence_summary
    from support.messages import in_source

    text = evidence_summary.render(evidence_document(), lang)
    english = evidence_summary.render(evidence_document(), "en")
    # No English sentence of the summary's own is left: every run of three words or more
    # between placeholders of its messages shows in English and not here.
    messages = in_source(INVESTIGATION / "evidence_summary.py") | {
        (None, s, None) for s in evidence_summary.KNOWN_SENTENCES}
    checked = 0
    for _, msgid, _ in messages:
        for fragment in PLACEHOLDER.split(msgid)[::2]:
            fragment = fragment.strip(" :;,.()")
            if len(fragment.split()) >= 3 and fragment in english:
                checked += 1
                assert fragment not in text, (lang, fragment)
    assert checked >= 10
    # headings are translated, the evidence is as recorded
    headings = [line for line, under in zip(text.splitlines(), text.splitlines()[1:]) if under and set(under) <= {"-", "="}]
    assert len(headings) >= 8 and all(CYRILLIC.search(h) for h in headings), headings
    for value in ("ab" * 32, "stratum+tcp://pool.example.com:3333 -p <redacted>", "198.51.100.7:3333", "pc-0417",
                  "C:\\x", "files/01-config.json"):
        assert value in text
    assert {"kk": "2026 ж. 2 қараша, 06:30:00 (UTC+0)", "ru": "2 ноября 2026 г., 06:30:00 (UTC+0)"}[lang] in text
    assert {"kk": "19\u202f800,5 с", "ru": "19\u202f800,5 с"}[lang] in text


def test_the_evidence_summary_takes_a_sparse_document():
    """A bundle of a process that vanished mid-collection, or from an older version, lacks fields."""
    from minerwatch.investigation import evidence_summary

    for lang in ("en", *LANGS):
        text = evidence_summary.render({"process": {"pid": 7}, "host": {}}, lang)
        assert "7" in text and text.endswith("\n")
