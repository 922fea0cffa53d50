"""`minerwatch report` against a real Prometheus holding two weeks of history.

The history is generated here (a miner that works harder off hours, a restart under a new pid, a
GPU, an alert, an innocent busy process), backfilled with `promtool tsdb create-blocks-from
openmetrics`, and served by Debian's Prometheus; the report's totals must equal what was
generated. The HTML is rendered in headless Chromium where it is installed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.processes import free_port, stop_pid, wait_for
from support.repo import ROOT
from support.wallets import MONERO_WALLET

INSTANCE = "pc-0417:9789"
SITE = "kostanay-akimat"  # the targets' `site` label
SITE_TARIFF = 80.5  # its tariff as the rules record it
OTHER = "pc-0999:9789"  # a host of a site without a tariff of its own: the fleet's applies
FLEET_TARIFF = 77.0
BUNDLE_SHA = "cd" * 32
STEP = 60
DAYS = 14
OFFSET = 5 * 3600  # UTC+5, office 09-18 Mon-Fri (rules/config/minerwatch.yml)
ENTRY = "import sys; from minerwatch.cli import main; main(sys.argv[1:])"


def minerwatch(*args, **kwargs):
    return subprocess.run([sys.executable, "-c", ENTRY, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, **kwargs)


def in_office(t: int) -> bool:
    local = t + OFFSET
    day, second = divmod(local, 86400)
    return (day + 4) % 7 in (1, 2, 3, 4, 5) and 9 * 3600 <= second < 18 * 3600


class History:
    """Generated samples and, computed alongside, the totals a correct report must show."""

    def __init__(self, end: int):
        self.end = end
        self.start = end - DAYS * 86400
        self.switch = self.start + 7 * 86400  # pid 4242 ends, pid 5151 starts (a reboot)
        self.lines = []
        self.expected = {"4242": {"cpu": 0.0, "cpu_office": 0.0}, "5151": {"cpu": 0.0, "cpu_office": 0.0,
                                                                           "gpu": 0.0, "gpu_office": 0.0,
                                                                           "gpu_joules": 0.0, "cpu_joules": 0.0}}

    def times(self, start, end):
        return range(start, end + 1, STEP)

    def family(self, name, kind, series, target=True):
        self.lines.append(f"# TYPE {name} {kind}")
        base = {"instance": INSTANCE, "job": "minerwatch", "site": SITE} if target else {}
        for labels, samples in series:
            text = ",".join(f'{k}="{v}"' for k, v in sorted({**base, **labels}.items()))
            suffix = "_total" if kind == "counter" else ""
            for t, value in samples:
                self.lines.append(f"{name}{suffix}{{{text}}} {value} {t}" if text else f"{name}{suffix} {value} {t}")

    def counter(self, start, end, per_second, first=1000.0):
        """Samples of a counter; per_second(t) is its rate over [t, t+STEP)."""
        value, out, growth, office = first, [], 0.0, 0.0
        for t in self.times(start, end):
            out.append((t, value))
            if t + STEP <= end:
                inc = per_second(t) * STEP
                value += inc
                growth += inc
                office += inc if in_office(t) else 0.0
        return out, growth, office

    def build(self) -> str:
        miner = {"name": "xmrig", "user": "alice"}
        first_rate = lambda t: 0.5 if in_office(t) else 2.0  # noqa: E731  (pauses while the user works)
        a, growth, office = self.counter(self.start, self.switch - STEP, first_rate)
        self.expected["4242"].update(cpu=growth, cpu_office=office)
        b, growth, office = self.counter(self.switch, self.end, lambda t: 1.0, first=50.0)
        self.expected["5151"].update(cpu=growth, cpu_office=office)
        innocent, _, _ = self.counter(self.start, self.end, lambda t: 0.3)
        other_host = {"pid": "99", "name": "xmrig", "user": "bob", "instance": OTHER, "site": "almaty"}
        other, _, _ = self.counter(self.end - 86400, self.end, lambda t: 1.0)
        self.family("minerwatch_process_cpu_seconds", "counter", [
            ({"pid": "4242", **miner}, a), ({"pid": "5151", **miner}, b),
            ({"pid": "77", "name": "ffmpeg", "user": "video"}, innocent), (other_host, other)])
        energy, joules, joules_office = self.counter(self.switch, self.end, lambda t: 12.0, first=0.0)
        self.expected["5151"].update(cpu_joules=joules, cpu_joules_office=joules_office)
        self.family("minerwatch_process_energy_joules", "counter",
                    [({"pid": "5151", "method": "cpu_model", **miner}, energy)])

        cmdline = f"/tmp/.x/xmrig -o stratum+tcp://pool.example.com:3333 -u {MONERO_WALLET} -p <redacted>"
        info = {"exe": "/tmp/.x/xmrig", "exe_sha256": "ab" * 32, "cmdline": cmdline,
                "signals": "miner_name,pool_url,wallet_address", **miner}
        self.family("minerwatch_process_suspect_info", "gauge", [
            ({"pid": "4242", **info}, [(t, 1) for t in self.times(self.start, self.switch - STEP)]),
            ({"pid": "5151", **info}, [(t, 1) for t in self.times(self.switch, self.end)]),
            ({**other_host, "signals": "miner_name"}, [(t, 1) for t, _ in other])])
        gpu = [(t, 0.9) for t in self.times(self.switch, self.end)]
        self.expected["5151"]["gpu"] = 0.9 * STEP * (len(gpu) - 1)
        self.expected["5151"]["gpu_office"] = sum(0.9 * STEP for t, _ in gpu[:-1] if in_office(t))
        self.expected["5151"]["gpu_joules"] = 0.9 * 200.0 * STEP * (len(gpu) - 1)
        self.family("minerwatch_gpu_process_utilization_ratio", "gauge",
                    [({"pid": "5151", "gpu": "0", "uuid": "GPU-1", **miner}, gpu)])
        self.family("minerwatch_gpu_power_watts", "gauge",
                    [({"gpu": "0", "uuid": "GPU-1"}, [(t, 200.0) for t in self.times(self.start, self.end)])])
        self.family("minerwatch_network_pool_connection_info", "gauge", [
            ({"pid": "5151", "remote": "198.51.100.7:3333", "pool": "pool.example.com", "evidence": "list",
              **miner}, [(t, 1) for t in self.times(self.switch, self.end)])])
        self.alert_from, self.alert_to = self.start + 600, self.switch - STEP
        # An evidence bundle collected from 5151 a day after it started, recorded by the exporter
        # from then on (the minerwatch_evidence_bundle_* series).
        self.bundle_at = self.switch + 86400
        bundle = {"pid": "5151", "manifest_sha256": BUNDLE_SHA}
        self.family("minerwatch_evidence_bundle_info", "gauge",
                    [(bundle, [(t, 1) for t in self.times(self.bundle_at + 60, self.end)])])
        self.family("minerwatch_evidence_bundle_timestamp_seconds", "gauge",
                    [(bundle, [(t, self.bundle_at) for t in self.times(self.bundle_at + 60, self.end)])])
        # The tariffs as rules/src/energy.yml records them: per site with its source, and the fleet's.
        self.family("site:minerwatch_energy_tariff_tenge_per_kwh:config", "gauge", [
            ({"site": SITE, "source": "EPK-Forfait price list", "valid_from": "2026-01-01"},
             [(t, SITE_TARIFF) for t in self.times(self.start, self.end)][::15])], target=False)
        self.family("fleet:minerwatch_energy_tariff_tenge_per_kwh:config", "gauge", [
            ({}, [(t, FLEET_TARIFF) for t in self.times(self.start, self.end)][::15])], target=False)
        self.family("ALERTS", "gauge", [
            ({"alertname": "MinerwatchMinerProcessRunning", "alertstate": "firing", "severity": "critical",
              "pid": "4242", **miner}, [(t, 1) for t in self.times(self.alert_from, self.alert_to)])])
        return "\n".join(self.lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A real Prometheus on 127.0.0.1 serving the backfilled history; stopped by PID."""
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if not (promtool and prometheus):
        pytest.fail("promtool/prometheus not found: run tests/run.sh (it installs Debian's prometheus)")
    import time

    tmp = tmp_path_factory.mktemp("report")
    h = History(int(time.time()) // 3600 * 3600 - 3600)
    (tmp / "history.om").write_text(h.build())
    data = tmp / "data"
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(tmp / "history.om"),
                             str(data)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
                             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    h.url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def ready():
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(h.url + "/-/ready", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, what="Prometheus")
        yield h
    finally:
        stop_pid(proc)
        log.close()


def run_report(history, out, *extra):
    result = minerwatch("report", f"--prometheus={history.url}", f"--instance={INSTANCE}",
                        f"--from={history.start}", f"--to={history.end}", f"--out={out}", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "report.json").read_text()), (out / "report.html").read_text(), result


def test_totals_match_the_generated_history(history, tmp_path):
    doc, page, result = run_report(history, tmp_path / "r")
    by_pid = {p["pid"]: p for p in doc["processes"]}
    assert set(by_pid) == {4242, 5151}  # the innocent busy ffmpeg is not in a miner report
    for pid in ("4242", "5151"):
        want, got = history.expected[pid], by_pid[int(pid)]
        assert got["cpu"]["core_seconds"] == want["cpu"]
        assert got["cpu"]["core_hours_office"] == pytest.approx(want["cpu_office"] / 3600, rel=1e-12)
        assert got["cpu"]["core_hours_off_hours"] == pytest.approx((want["cpu"] - want["cpu_office"]) / 3600,
                                                                   rel=1e-12)
    old, new = by_pid[4242], by_pid[5151]
    # 4242: no energy counter, no GPU -> estimated at 10 W per core.
    assert old["energy"]["kwh"] == pytest.approx(history.expected["4242"]["cpu"] * 10.0 / 3.6e6, rel=1e-12)
    assert old["energy"]["cpu_method"].startswith("estimated")
    # 5151: the exporter's energy counter for CPU, GPU share x measured board power.
    want = history.expected["5151"]
    assert new["gpu"]["gpu_hours"] == pytest.approx(want["gpu"] / 3600, rel=1e-12)
    assert new["gpu"]["gpu_hours_office"] == pytest.approx(want["gpu_office"] / 3600, rel=1e-12)
    assert new["energy"]["kwh"] == pytest.approx((want["cpu_joules"] + want["gpu_joules"]) / 3.6e6, rel=1e-12)
    assert new["energy"]["cpu_method"] == \
        "exporter's minerwatch_process_energy_joules_total (method cpu_model)"
    # No --energy.tariff: the host's site's tariff, as the rules recorded it in Prometheus.
    assert doc["tariff"] == {"tenge_per_kwh": SITE_TARIFF, "from": "site", "site": SITE,
                             "source": "EPK-Forfait price list", "valid_from": "2026-01-01"}
    assert new["energy"]["tenge"] == pytest.approx(new["energy"]["kwh"] * SITE_TARIFF, rel=1e-12)
    assert doc["totals"]["tenge"] == pytest.approx((old["energy"]["kwh"] + new["energy"]["kwh"]) * SITE_TARIFF,
                                                   rel=1e-12)
    # The miner pauses in office hours: most of its CPU is off hours, and the split says so.
    assert old["cpu"]["core_hours_off_hours"] > 5 * old["cpu"]["core_hours_office"] > 0

    assert old["first_seen"] == _iso(history.start) and old["last_seen"] == _iso(history.switch - STEP)
    assert new["pools"] == ["pool.example.com", "stratum+tcp://pool.example.com:3333"]
    assert new["wallets"] == [MONERO_WALLET]
    assert new["executables"] == [{"path": "/tmp/.x/xmrig", "sha256": "ab" * 32}]
    assert new["users"] == ["alice"]
    [alert] = doc["alerts"]
    assert alert["alertname"] == "MinerwatchMinerProcessRunning"
    assert alert["firing"] == [{"from": _iso(history.alert_from), "to": _iso(history.alert_to)}]

    # Self-contained: charts inline as PNG, nothing loaded from elsewhere.
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r"""(src|href)=['"]?(https?:|//)""", page)
    assert "Measured" in page and "Estimated" in page and "80.50" in page and "EPK-Forfait price list" in page
    # The evidence bundle recorded for 5151, by its manifest's hash and collection time.
    assert doc["evidence_bundles"] == [{"pid": "5151", "manifest_sha256": BUNDLE_SHA,
                                        "collected_at": _iso(history.bundle_at),
                                        "recorded_from": _iso(history.bundle_at + 60), "recorded_to": _iso(history.end)}]
    assert BUNDLE_SHA in page
    assert f"{doc['totals']['cpu_core_hours']:.2f} CPU core-hours" in result.stdout


def _iso(t):
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def test_one_pid_and_other_time_forms(history, tmp_path):
    import datetime as dt

    start = dt.datetime.fromtimestamp(history.start, dt.timezone(dt.timedelta(hours=5))).isoformat()
    result = minerwatch("report", f"--prometheus={history.url}", f"--instance={INSTANCE}", "--pid=77",
                        f"--from={start}", f"--to={history.end}", f"--out={tmp_path}")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "report.json").read_text())
    [row] = doc["processes"]
    assert (row["pid"], row["names"], row["signals"]) == (77, ["ffmpeg"], [])
    assert row["cpu"]["core_seconds"] == pytest.approx(0.3 * STEP * (DAYS * 86400 // STEP), rel=1e-12)
    assert doc["alerts"] == []  # the alert was about pid 4242
    assert doc["evidence_bundles"] == []  # the bundle was of pid 5151


def test_the_tariff_given_else_the_fleet_s_for_a_site_without_one(history, tmp_path):
    doc, page, _ = run_report(history, tmp_path / "given", "--energy.tariff=50")
    assert doc["tariff"]["from"] == "option" and doc["tariff"]["tenge_per_kwh"] == 50.0
    assert doc["totals"]["tenge"] == pytest.approx(doc["totals"]["kwh"] * 50.0, rel=1e-12)
    assert "--energy.tariff" in page
    result = minerwatch("report", f"--prometheus={history.url}", f"--instance={OTHER}", f"--from={history.start}",
                        f"--to={history.end}", f"--out={tmp_path / 'other'}")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "other" / "report.json").read_text())
    assert doc["tariff"] == {"tenge_per_kwh": FLEET_TARIFF, "from": "fleet", "site": "almaty", "source": None,
                             "valid_from": None}
    [row] = doc["processes"]
    assert row["cpu"]["core_seconds"] == 86400.0
    assert doc["totals"]["tenge"] == pytest.approx(doc["totals"]["kwh"] * FLEET_TARIFF, rel=1e-12)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pdf_pages(pdf: Path):
    """Each page's text, as poppler's pdftotext reads it."""
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=60)
    count = int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))
    return [subprocess.run(["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(pdf), "-"], capture_output=True,
                           text=True, timeout=60).stdout for n in range(1, count + 1)]


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u202f", " "))


@pytest.mark.skipif(not (CHROMIUM and shutil.which("pdftotext")),
                    reason="needs Debian's chromium and poppler-utils (pdftotext)")
@pytest.mark.parametrize("lang", ["en", "kk"])
def test_printed_to_pdf_with_hash_time_and_page_numbers_on_every_page(history, tmp_path, lang):
    """report.pdf, read back with pdftotext: the totals, and on every page its number, the count,
    report.html's sha256 and the generation time. Kazakh comes from the locale here (no --lang)."""
    import hashlib

    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env["LANG"] = "kk_KZ.UTF-8" if lang == "kk" else "C.UTF-8"
    out = tmp_path / "r"
    result = minerwatch("report", f"--prometheus={history.url}", f"--instance={INSTANCE}", f"--from={history.start}",
                        f"--to={history.end}", f"--out={out}", "--pdf", env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "report.json").read_text())
    page_sha = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    assert page_sha in result.stdout
    assert hashlib.sha256((out / "report.json").read_bytes()).hexdigest() in (out / "report.html").read_text()
    pages = pdf_pages(out / "report.pdf")
    assert len(pages) >= 2
    from minerwatch.investigation.i18n import number, when

    generated = dt_parse(doc["generated_at"])
    stamp = when(generated, lang, 5)
    for n, text in enumerate(pages, 1):
        flat = squash(text)
        numbering = {"en": f"Page {n} of {len(pages)}", "kk": f"{len(pages)} беттің {n}-беті"}[lang]
        assert numbering in flat, (n, flat[-400:])
        assert page_sha in flat.replace(" ", ""), (n, flat[-400:])
        assert squash(stamp) in flat, (n, stamp, flat[-400:])
    first = squash(pages[0])
    t = doc["totals"]
    for figure in (number(t["cpu_core_hours"], 2, lang), number(t["kwh"], 2, lang), number(t["tenge"], 0, lang)):
        assert squash(figure) in first, (figure, first[:1500])
    if lang == "kk":
        assert "Майнинг туралы есеп" in first and "кВт·сағ" in first and "Дәлелдемелер пакеттері" in squash("".join(pages))
    else:
        assert "Miner report" in first and "CPU core-hours" in first


def dt_parse(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_office_hours_defaults_are_the_rules(history):
    config = yaml.safe_load((ROOT / "rules" / "config" / "minerwatch.yml").read_text())["officeHours"]
    from minerwatch.investigation.report import OfficeHours, report

    defaults = {p.name: p.default for p in report.params}
    assert defaults["offset"] == config["utcOffsetHours"]
    assert defaults["hours"] == f"{config['start']}-{config['end']}"
    assert [int(d) for d in defaults["days"].split(",")] == config["days"] == list(OfficeHours().days)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium not installed (tests/run.sh installs Debian's chromium)")
def test_renders_in_headless_chromium(history, tmp_path):
    _, _, _ = run_report(history, tmp_path / "r")
    shot = tmp_path / "report.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                             "--hide-scrollbars", "--window-size=1200,2600", f"--screenshot={shot}",
                             (tmp_path / "r" / "report.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] == 1200
    # Not a blank page: the red CPU chart is drawn.
    red = ((pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.35)).sum()
    assert red > 500
    keep = os.environ.get("MINERWATCH_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


@pytest.mark.parametrize("case, message", [
    ("unknown host", r"^minerwatch: error: --instance: no minerwatch series for instance=\"pc-9999:9789\" "
                     r"between .* \(instances with minerwatch series then: pc-0417:9789, pc-0999:9789\)"),
    ("unreachable", r"^minerwatch: error: cannot reach Prometheus at http://127\.0\.0\.1:\d+: .*refused"),
    ("empty range", r"^minerwatch: error: Invalid value for '--from'/'--to': empty range: "),
    ("bad time", r"^minerwatch: error: Invalid value for '--from': not a time"),
    ("no such pid", r"^minerwatch: error: --pid: no series for pid 31337 on pc-0417:9789"),
    ("bad office hours", r"^minerwatch: error: Invalid value for '--office.hours': must be HH:MM-HH:MM"),
])
def test_bad_input_one_line_exit_2(history, tmp_path, case, message):
    args = {"instance": INSTANCE, "prometheus": history.url, "from": str(history.start), "to": str(history.end)}
    extra = []
    if case == "unknown host":
        args["instance"] = "pc-9999:9789"
    elif case == "unreachable":
        args["prometheus"] = f"http://127.0.0.1:{free_port()}"
    elif case == "empty range":
        args["to"] = args["from"]
    elif case == "bad time":
        args["from"] = "last tuesday"
    elif case == "no such pid":
        extra = ["--pid=31337"]
    elif case == "bad office hours":
        extra = ["--office.hours=9-18"]
    result = minerwatch("report", *(f"--{k}={v}" for k, v in args.items()), f"--out={tmp_path / 'o'}", *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "o" / "report.html").exists()


def test_counter_reset_and_gaps():
    from minerwatch.investigation.report import OfficeHours, counter_growth, gauge_integral

    office = OfficeHours()
    # A counter that restarts (process restarted under the same pid) counts from zero again.
    assert counter_growth([(0, 100.0), (60, 160.0), (120, 10.0), (180, 40.0)], office, 60).total == 100.0
    # A gauge sample is held at most 300 s: a host switched off overnight adds nothing.
    assert gauge_integral([(0, 1.0), (60, 1.0), (10000, 1.0)], office, 60).total == 60.0


def test_a_known_hash_is_kept_whichever_info_series_comes_last():
    """The exporter hashes executables in the background: a suspect's first suspect_info series
    has an empty exe_sha256 and a later one the hash; Prometheus returns series in label order,
    not time order, so the empty one may come last and must not erase the hash."""
    from minerwatch.investigation.report import QUERIES, Settings, build

    def info(sha):
        return tuple(sorted({"pid": "4242", "name": "xmrig", "user": "alice", "exe": "/tmp/.x/xmrig",
                             "exe_sha256": sha, "signals": "miner_name"}.items()))

    settings = Settings("http://127.0.0.1:9", "ws:9789", 1000.0, 2000.0)
    for order in ((info("ab" * 32), info("")), (info(""), info("ab" * 32))):
        data = {key: {} for key in QUERIES}
        data["info"] = {labels: [(1000.0 + i * 15, 1.0), (1015.0 + i * 15, 1.0)] for i, labels in enumerate(order)}
        document = build(settings, data, generated=2000.0)
        [process] = document["processes"]
        assert process["executables"] == [{"path": "/tmp/.x/xmrig", "sha256": "ab" * 32}], process


def test_a_recorded_tariff_no_option_would_take_is_passed_over():
    """A broken rule or a hostile server recording 10^12 tenge per kWh does not price the damage."""
    from minerwatch.investigation.report import DEFAULT_TARIFF_KZT_PER_KWH, Settings, choose_tariff

    settings = Settings("http://127.0.0.1:9", "ws:9789", 1000.0, 2000.0)
    site = {(("site", "a"), ("source", "rule")): [(1500.0, 1e12)]}
    fleet = {(): [(1500.0, 70.0)]}
    assert choose_tariff(settings, {"site": ["a"], "site_tariff": site, "fleet_tariff": fleet})["from"] == "fleet"
    chosen = choose_tariff(settings, {"site": ["a"], "site_tariff": site, "fleet_tariff": {(): [(1500.0, 0.0)]}})
    assert (chosen["from"], chosen["tenge_per_kwh"]) == ("built-in", DEFAULT_TARIFF_KZT_PER_KWH)
