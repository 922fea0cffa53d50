"""The few Prometheus HTTP API calls `minerwatch report` makes, safe against a hostile server.

The server may be broken, or in the hands of whoever the report is about. So every answer is
read up to a bound (MAX_ANSWER_BYTES), all of them within one deadline for the whole report (a
server trickling a byte at a time restarts a per-read timeout for ever), parsed as JSON without
NaN constants and with Python's nesting limit, and checked field by field before use. Samples
that are not finite, or outside what these series can hold, are left out and counted by series
(`left_out`), so that no total is NaN and report.json stays JSON. Every failure is a ReportError
of one line naming the server and what was wrong.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Dict, List, Tuple

from minerwatch.text import host_text

CHUNK_SECONDS = 86400  # one query per series kind per day of the period
DEFAULT_TIMEOUT_SECONDS = 900.0
# One answer covers one series kind over one day. At a 15 s scrape interval a series-day is about
# 190 kB of JSON, so 32 MiB holds some 170 series at once where a host exports a dozen or two;
# parsing takes about 8 times the size in memory (some 270 MB), which any desk can spare.
MAX_ANSWER_BYTES = 32 << 20
# The whole report: samples kept take about 150 bytes each (1.5 GB at this bound); a 14-day
# report of a busy host keeps about a million. Answers read add up to at most MAX_REPORT_BYTES,
# which bounds what the series' labels hold.
MAX_SAMPLES = 10_000_000
MAX_REPORT_BYTES = 512 << 20
MAX_ERROR_BYTES = 64 << 10  # of an error answer: only its one-line reason is shown
# Every series a report reads (CPU seconds, joules, a share of a GPU, watts, info and ALERTS at
# 1) is at least 0 and far below this: a larger sample is no measurement, and sums of samples
# in range stay finite whatever the tariff.
MAX_SAMPLE_VALUE = 1e15
LABEL_LIMIT = 4096  # characters of a label value kept (minerwatch's own labels are shorter)

Labels = Tuple[Tuple[str, str], ...]
Samples = List[Tuple[float, float]]


class ReportError(Exception):
    """Bad input or an unusable Prometheus; one line, exit status 2."""


def chunks(start: float, end: float, chunk: float = CHUNK_SECONDS) -> int:
    return max(1, int(-(-(end - start) // chunk)))


def selector(name: str, **labels: str) -> str:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return name + "{" + ",".join(f"{k}={quote(v)}" for k, v in labels.items()) + "}"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class Prometheus:
    """The calls a report needs, all before one deadline; every failure is a ReportError."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        if not re.match(r"https?://[^/]+", url):
            raise ReportError(f"--prometheus: not an http(s) URL: {host_text(url, 256)}")
        self.url = url.rstrip("/")
        self.name = host_text(self.url, 256)  # as messages show it
        self.timeout = timeout
        self._clock = clock
        self._deadline = clock() + timeout
        self._bytes = 0
        self._samples = 0
        # (metric, labels) -> [samples not finite, samples out of range]
        self.left_out: Dict[Tuple[str, Labels], List[int]] = {}

    # -- one answer --------------------------------------------------------------------------
    def get(self, path: str, params: List[Tuple[str, str]]):
        """The `data` of a successful answer to GET path?params."""
        status, reason, raw = self._download(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        try:
            body = self._parse(raw)
        except ReportError:
            if status != 200:  # an error answer's body only had to say why
                raise ReportError(f"Prometheus at {self.name} answered {status}: {reason}") from None
            raise
        if status != 200 or body.get("status") != "success":
            error = body.get("error")
            detail = host_text(error, 200) if isinstance(error, str) and error else reason or "query failed"
            raise ReportError(f"Prometheus at {self.name} answered {status}: {detail}")
        if "data" not in body:
            raise self._unlike("the answer has no data")
        return body["data"]

    def _parse(self, raw: bytearray) -> dict:
        try:
            body = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError:
            raise self._unlike("JSON nested deeper than the parser allows") from None
        except ValueError:  # also a bad encoding, and integers too long to convert
            raise self._unlike("the answer is not JSON") from None
        if not isinstance(body, dict):
            raise self._unlike("the answer is not a JSON object")
        return body

    def _download(self, url: str) -> Tuple[int, str, bytearray]:
        """(status, reason, body) read in a worker thread, given up at the deadline whatever the server
        does (a read that keeps getting one byte never times out on its own)."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise self._late()
        result: dict = {}
        worker = threading.Thread(target=self._read_into, args=(url, remaining, result), daemon=True,
                                  name="prometheus-get")
        worker.start()
        worker.join(remaining)
        if worker.is_alive():  # left to its socket timeout: the report ends now anyway
            raise self._late()
        if "error" in result:
            raise result["error"]
        status, reason, raw = result["answer"]
        self._bytes += len(raw)
        if self._bytes > MAX_REPORT_BYTES:
            raise ReportError(f"Prometheus at {self.name} sent more than {MAX_REPORT_BYTES >> 20} MiB for this "
                              "report: give --pid or a shorter period")
        return status, reason, raw

    def _read_into(self, url: str, timeout: float, result: dict) -> None:
        try:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    result["answer"] = (response.status, "", self._read(response, MAX_ANSWER_BYTES))
            except urllib.error.HTTPError as exc:
                with exc:  # an error's body only says why: the first bytes are enough
                    reason = host_text(str(exc.reason), 100)
                    result["answer"] = (exc.code, reason, self._read(exc, MAX_ERROR_BYTES, cut=True))
        except ReportError as exc:
            result["error"] = exc
        except Exception as exc:  # noqa: BLE001 - URLError, OSError, http.client's and ssl's: any failure is one line
            reason = getattr(exc, "reason", None) or exc
            result["error"] = ReportError(f"cannot reach Prometheus at {self.name}: {host_text(str(reason), 200)}")

    def _read(self, response, limit: int, cut: bool = False) -> bytearray:
        """At most `limit` bytes of the body: beyond it the answer is refused (or, with `cut`,
        cut off), before more is read."""
        length = response.headers.get("Content-Length") or ""
        if not cut and re.fullmatch(r"[0-9]{1,18}", length) and int(length) > limit:
            raise self._too_big(limit)
        body = bytearray()  # json.loads takes it as it is: no copy
        while len(body) <= limit:
            piece = response.read(min(1 << 20, limit + 1 - len(body)))
            if not piece:
                return body
            body += piece
        if cut:
            return body[:limit]
        raise self._too_big(limit)

    def _too_big(self, limit: int) -> ReportError:
        return ReportError(f"Prometheus at {self.name} answered more than {limit >> 20} MiB to one query "
                           "(a day of one host's series is far less)")

    def _late(self) -> ReportError:
        return ReportError(f"Prometheus at {self.name}: no complete answer within --timeout={self.timeout:g} s "
                           "(the whole report's queries must end by then)")

    def _unlike(self, what: str) -> ReportError:
        return ReportError(f"Prometheus at {self.name} did not answer like Prometheus: {what}")

    # -- the calls ---------------------------------------------------------------------------
    def series(self, match: str, start: float, end: float) -> List[dict]:
        data = self.get("/api/v1/series", [("match[]", match), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])
        if not isinstance(data, list):
            raise self._unlike("the series are not a list")
        return data

    def instances(self, start: float, end: float) -> List[str]:
        data = self.get("/api/v1/label/instance/values",
                        [("match[]", '{__name__=~"minerwatch_.+"}'), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise self._unlike("the label values are not a list of strings")
        return data

    def raw(self, query: str, start: float, end: float, chunk: float = CHUNK_SECONDS,
            progress: Callable[[], None] = lambda: None) -> Dict[Labels, Samples]:
        """Every sample of the matching series in [start, end], one query per time chunk; a series
        without a usable sample in the period is not returned."""
        metric = query.split("{", 1)[0]
        out: Dict[Labels, Dict[float, float]] = {}
        t = start
        while t < end:
            stop = min(t + chunk, end)
            window = max(int(round(stop - t)), 1)
            data = self.get("/api/v1/query", [("query", f"{query}[{window}s]"), ("time", f"{stop:.3f}")])
            if not isinstance(data, dict) or not isinstance(data.get("result"), list):
                raise self._unlike("the query's result is not a list")
            for item in data["result"]:
                labels, values = self._series(item)
                kept = out.setdefault(labels, {})
                before = len(kept)
                for pair in values:
                    self._sample(metric, labels, kept, pair, start, end)
                self._samples += len(kept) - before
                if self._samples > MAX_SAMPLES:
                    raise ReportError(f"Prometheus at {self.name} returned more than {MAX_SAMPLES:,} samples for "
                                      "this report: give --pid or a shorter period")
            progress()
            t = stop
        return {labels: sorted(values.items()) for labels, values in out.items() if values}

    def _series(self, item) -> Tuple[Labels, list]:
        if not isinstance(item, dict):
            raise self._unlike("a series is not an object")
        metric, values = item.get("metric"), item.get("values")
        if not isinstance(metric, dict):
            raise self._unlike("series labels are not an object")
        if not all(isinstance(v, str) for v in metric.values()):
            raise self._unlike("a label value is not a string")
        if not isinstance(values, list):
            raise self._unlike("a series has no list of samples")
        labels = tuple(sorted((host_text(k, 128), host_text(v, LABEL_LIMIT)) for k, v in metric.items()
                              if k != "__name__"))
        return labels, values

    def _sample(self, metric: str, labels: Labels, kept: Dict[float, float], pair, start: float,
                end: float) -> None:
        """Keep one [time, "value"] pair of the period, or count it left out."""
        if not (isinstance(pair, list) and len(pair) == 2):
            raise self._unlike("a sample is not a [time, value] pair")
        ts, value = pair
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not isinstance(value, str):
            raise self._unlike("a sample is not a [time, value] pair")
        try:
            t, v = float(ts), float(value)
        except OverflowError:  # an integer beyond a float
            raise self._unlike("a sample time is not a finite number")
        except ValueError:
            raise self._unlike("a sample value is not a number")
        if not math.isfinite(t):
            raise self._unlike("a sample time is not a finite number")
        if not start <= t <= end:
            return
        if math.isfinite(v) and 0.0 <= v <= MAX_SAMPLE_VALUE:
            kept[t] = v
            return
        counts = self.left_out.setdefault((metric, labels), [0, 0])
        counts[0 if not math.isfinite(v) else 1] += 1
