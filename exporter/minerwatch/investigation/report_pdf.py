"""report.pdf: the report page printed by headless Chromium, with the page number, report.html's
sha256 and the generation time on every page.

Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL, commands on fd 3, answers on fd 4), because only Page.printToPDF takes
header and footer templates, where Chromium fills in page numbers; no port is opened. The page is
read from a file:// URL, the profile is a fresh temporary directory, and every other way out is
shut: no proxy, no background networking, no component updates, host names resolve to nothing.
The page itself loads nothing (report_html.py inlines everything).
"""

from __future__ import annotations

import base64
import fcntl
import html
import json
import os
import pathlib
import select
import shutil
import subprocess
import tempfile
import time
from typing import Optional

from minerwatch.investigation.i18n import translator, when

PRINT_SECONDS = 120.0  # start, load and print; a report of a year prints in seconds
MAX_MESSAGE_BYTES = 256 << 20  # the PDF arrives base64 in one message
FLAGS = ("--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--metrics-recording-only", "--mute-audio",
         "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing to reach
         "--remote-debugging-pipe")


class PdfError(Exception):
    """Chromium missing, failing or too slow: one line."""


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def footer(lang: str, sha256: str, generated: float, offset_hours: float = 5.0) -> str:
    """Footer template: Chromium fills in the spans of class pageNumber and totalPages."""
    t = translator(lang)
    text = html.escape(t.gettext("Page {page} of {pages}"))
    page = text.format(page="<span class='pageNumber'></span>", pages="<span class='totalPages'></span>")
    made = html.escape(t.gettext("Generated {time}").format(time=when(generated, lang, offset_hours)))
    sha = html.escape(t.gettext("sha256 of report.html: {sha}").format(sha=sha256))
    return ("<div style='font-family:\"DejaVu Sans\",sans-serif;font-size:8px;width:100%;margin:0 10mm;"
            "display:flex;justify-content:space-between;color:#444'>"
            f"<span>{sha}<br>{made}</span><span style='white-space:nowrap;align-self:flex-end'>{page}</span></div>")


class _Pipe:
    """Requests and answers on Chromium's DevTools pipe."""

    def __init__(self, proc: subprocess.Popen, to_chromium: int, from_chromium: int, deadline: float):
        self.proc, self.out, self.inp, self.deadline = proc, to_chromium, from_chromium, deadline
        self.buffer = bytearray()
        self.next_id = 0
        self.events = []

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self.receive()
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise PdfError(f"Chromium refused {method}: {str(answer['error'].get('message'))[:200]}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str) -> dict:
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self.receive())

    def receive(self) -> dict:
        while b"\0" not in self.buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise PdfError(f"Chromium did not print within {PRINT_SECONDS:g} s")
            ready, _, _ = select.select([self.inp], [], [], remaining)
            if not ready:
                continue
            piece = os.read(self.inp, 1 << 20)
            if not piece:
                raise PdfError(f"Chromium ended (exit status {self.proc.poll()})")
            self.buffer += piece
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise PdfError("Chromium's answer is too big")
        message, _, rest = bytes(self.buffer).partition(b"\0")
        self.buffer = bytearray(rest)
        return json.loads(message)


def _pipe_fds(commands: int, answers: int) -> None:
    """In the child before exec: `commands` on fd 3 and `answers` on fd 4, inherited. Moved above
    10 first, so that neither is overwritten when one of them already is 3 or 4."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands, answers)]
    for fd, target in zip(high, (3, 4)):
        os.dup2(fd, target)  # inheritable, as dup2 makes it


def print_pdf(chromium: str, html_path: str, footer_template: str) -> bytes:
    """The PDF of the page at html_path, A4, the footer on every page."""
    url = pathlib.Path(os.path.abspath(html_path)).as_uri()
    with tempfile.TemporaryDirectory(prefix="minerwatch-pdf-") as profile:
        to_r, to_w = os.pipe()  # Chromium reads commands on its fd 3...
        from_r, from_w = os.pipe()  # ...and writes answers on its fd 4
        args = [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses root
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, close_fds=False,  # Python's own fds are not inherited
                                    preexec_fn=lambda: _pipe_fds(to_r, from_w))
        except OSError as exc:
            raise PdfError(f"cannot start {chromium}: {exc.strerror}")
        finally:
            os.close(to_r)
            os.close(from_w)
        try:
            pipe = _Pipe(proc, to_w, from_r, time.monotonic() + PRINT_SECONDS)
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            pipe.send("Page.enable", session=session)
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired")
            result = pipe.send("Page.printToPDF", {
                "paperWidth": 8.27, "paperHeight": 11.69,  # A4 in inches
                "marginTop": 0.5, "marginBottom": 0.75, "marginLeft": 0.4, "marginRight": 0.4,
                "printBackground": True, "displayHeaderFooter": True,
                "headerTemplate": "<span></span>", "footerTemplate": footer_template}, session=session)
            try:
                pipe.send("Browser.close")
            except PdfError:
                pass  # it is going anyway
            return base64.b64decode(result["data"])
        finally:
            os.close(to_w)
            os.close(from_r)
            if proc.poll() is None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
