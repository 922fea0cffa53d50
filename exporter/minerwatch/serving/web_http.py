"""HTTP/1.x on the wire: request heads parsed as their bytes arrive, within fixed limits, and
answers formatted as bytes.

The connection loop (web_loop) feeds each connection's bytes to a HeadParser as they come, so
no thread waits for a slow client; the parser keeps only the line it has not finished and the
headers it has read, and raises HttpError as soon as a limit is passed:
- request line and each header line at most 8 KiB (414, 431), 100 header lines and 64 KiB of
  headers in all (431);
- garbage 400, HTTP/0.9 400, HTTP/2 or /9.9 505; what request smuggling and header injection rely
  on (obs-fold, NUL or bare CR, a second Host, Authorization or Content-Length) is 400.
"""

from __future__ import annotations

import re
import time
from typing import Dict, Iterable, Optional, Tuple

MAX_LINE = 8192  # bytes of the request line, and of each header line, line end included
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536  # all header lines together

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
# A request carrying two of these is ambiguous (which host, whose credentials): 400.
SINGLE_HEADERS = frozenset({"host", "authorization", "content-length"})
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods, header names
HTTP_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
LATER_VERSION = re.compile(rb"HTTP/[2-9](\.[0-9])?")


class HttpError(Exception):
    """A request the server answers with `status` and a fixed message, then closes."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """What the server uses of one request; header names are lower case."""

    __slots__ = ("method", "target", "minor", "headers", "keep_alive", "has_body")

    def __init__(self, method: str, target: str, minor: int, headers: Dict[str, str]):
        self.method, self.target, self.minor, self.headers = method, target, minor, headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked to keep it.
        self.keep_alive = "close" not in tokens if minor >= 1 else "keep-alive" in tokens
        self.has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if self.has_body:
            self.keep_alive = False  # the body is never read: it must not become the next request

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def _line(raw: bytes) -> bytes:
    """A line without its CRLF (or bare LF, which RFC 9112 lets a server accept)."""
    return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]


def parse_request_line(raw: bytes) -> Tuple[str, str, int]:
    """(method, target, minor version) of `raw`, a request line with its line end."""
    line = _line(raw)
    if b"\0" in line or b"\r" in line:
        raise HttpError(400, "NUL or bare CR in the request line")
    parts = line.split(b" ")
    if len(parts) == 2:
        raise HttpError(400, "HTTP/0.9 is not served; send HTTP/1.0 or HTTP/1.1")
    if len(parts) != 3 or not parts[1] or not TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "Bad request syntax: METHOD TARGET HTTP/1.1 expected")
    method, target, version = parts
    match = HTTP_VERSION.fullmatch(version)
    if match is None:
        if LATER_VERSION.fullmatch(version):
            raise HttpError(505, "Only HTTP/1.0 and HTTP/1.1 are served")
        raise HttpError(400, "Bad request version: HTTP/1.1 expected")
    if match.group(1) != b"1":
        raise HttpError(505, "Only HTTP/1.0 and HTTP/1.1 are served")
    return method.decode("ascii"), target.decode("iso-8859-1"), int(match.group(2))


class HeadParser:
    """The request line and headers of one request, fed in pieces as they arrive.

    `feed` returns the Request once its empty line has come (what follows it stays in `rest`, the
    start of a pipelined next request), None while it needs more, and raises HttpError at the
    first limit passed or malformed line. It never holds more than one unfinished line of input."""

    __slots__ = ("_buffer", "_line", "_headers", "_count", "_total")

    def __init__(self, data: bytes = b""):
        self._buffer = bytearray(data)
        self._line: Optional[Tuple[str, str, int]] = None  # the request line, once read
        self._headers: Dict[str, str] = {}
        self._count = self._total = 0

    @property
    def started(self) -> bool:
        """Whether any byte of this request has arrived."""
        return bool(self._buffer) or self._line is not None

    @property
    def in_headers(self) -> bool:
        return self._line is not None

    def rest(self) -> bytes:
        """What came after the head: the next request's first bytes."""
        return bytes(self._buffer)

    def feed(self, data: bytes = b"") -> Optional[Request]:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\n", 0, MAX_LINE)
            if end < 0:
                if len(buffer) >= MAX_LINE:  # no line end in the first MAX_LINE bytes
                    if self._line is None:
                        raise HttpError(414, f"The request line is longer than {MAX_LINE} bytes")
                    raise HttpError(431, f"A header line is longer than {MAX_LINE} bytes")
                return None
            raw = bytes(buffer[:end + 1])
            del buffer[:end + 1]
            if self._line is None:
                self._line = parse_request_line(raw)  # a bad one is answered before headers come
            elif self._header(raw):
                return Request(*self._line, self._headers)

    def _header(self, raw: bytes) -> bool:
        """Takes one header line; True at the empty line that ends the head."""
        if raw == b"\r\n" or raw == b"\n":
            return True
        self._count += 1
        self._total += len(raw)
        if self._count > MAX_HEADERS:
            raise HttpError(431, f"More than {MAX_HEADERS} header lines")
        if self._total > MAX_HEADER_BYTES:
            raise HttpError(431, f"Headers longer than {MAX_HEADER_BYTES} bytes in all")
        if raw[0] in b" \t":
            raise HttpError(400, "Folded header lines (obs-fold) are not accepted")
        name, sep, value = _line(raw).partition(b":")
        if not sep or not TOKEN.fullmatch(name):
            raise HttpError(400, "Bad header line: NAME: VALUE expected")
        value = value.strip(b" \t")
        if b"\0" in value or b"\r" in value:
            raise HttpError(400, "NUL or bare CR in a header value")
        key = name.decode("ascii").lower()
        text = value.decode("iso-8859-1")
        headers = self._headers
        if key in headers:
            if key in SINGLE_HEADERS:
                raise HttpError(400, f"More than one {name.decode('ascii')} header")
            headers[key] += ", " + text  # RFC 9110 5.3: repeated fields are one comma-separated list
        else:
            headers[key] = text
        return False

    def end(self) -> None:
        """The client stopped sending: an error if that cut a head short after its request line
        (a request line cut short, or no request at all, just ends the connection)."""
        if self._line is not None:
            raise HttpError(400, "The request ended inside its headers")


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 12.5.3) takes gzip: coding names are
    case-insensitive, `q=0` refuses one, `*` stands for every coding not named. A malformed
    weight counts as refusal: the body then goes uncompressed, which every client reads."""
    named: Dict[str, bool] = {}
    for item in header.split(","):
        coding, *params = item.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        accepted = True
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    accepted = float(value.strip()) > 0.0
                except ValueError:
                    accepted = False
        named[coding] = accepted
    for coding in ("gzip", "x-gzip"):
        if coding in named:
            return named[coding]
    return named.get("*", False)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: Tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value (RFC 9110 IMF-fixdate), computed once a second, locale-free."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        t = time.gmtime(now)
        text = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        _date_cache = (now, text)  # one tuple: threads see an old pair or a new one, never half
    return text


def response(code: int, body: bytes, content_type: str, headers: Iterable[Tuple[str, str]] = (),
             close: bool = False, request: Optional[Request] = None) -> bytes:
    """Status line, headers and body, as one byte string (a HEAD request gets the head alone)."""
    lines = [f"HTTP/1.1 {code} {REASONS[code]}", "Server: minerwatch", "Date: " + http_date(),
             "Content-Type: " + content_type, f"Content-Length: {len(body)}"]
    lines.extend(f"{key}: {value}" for key, value in headers)
    if close:
        lines.append("Connection: close")
    elif request is not None and request.minor == 0:
        lines.append("Connection: keep-alive")  # an HTTP/1.0 client asked for it
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if request is not None and request.method == "HEAD":
        return head
    return head + body
