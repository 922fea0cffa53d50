"""An evidence bundle's evidence.json as text a person reads, in Kazakh, Russian or English
(i18n.py): the host, the process and its user, the command line (as redacted at collection), the
executable's hash, pool connections, miner configs, antivirus exclusions, GPU use and when it
was collected. Labels are translated; values are the evidence and are shown as recorded.

`render(document, lang)` is called by evidence.py when it writes a bundle; the summary is for
reading only: evidence.json and the manifest's hashes remain what a court checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, List, Optional

from minerwatch.investigation.i18n import number, translator, when

# evidence.py's own sentences, shown translated (the catalogues hold them); any other value is evidence
KNOWN_SENTENCES = (
    "gpu collector off",
    "NVML not available (no NVIDIA driver or GPU)",
    "read from procfs and the executable; the process was not signalled or traced",
)
INDENT = "    "


def render(document: dict, lang: str) -> str:
    """The summary as UTF-8 text (lines end in \\n)."""
    t = translator(lang)
    _: Callable[[str], str] = t.gettext
    lines: List[str] = []

    def field(label: str, value, level: int = 1) -> None:
        text = _missing(value, _)
        lines.append(f"{INDENT * level}{label}: {text}")

    def heading(label: str) -> None:
        lines.extend(["", label, "-" * len(label)])

    def moment(text: Optional[str]) -> str:
        if not text:
            return _("not known")
        try:
            epoch = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return str(text)
        return f"{when(epoch, lang, 0)} [{text}]"

    host, process = document.get("host") or {}, document.get("process") or {}
    exe = document.get("executable") or {}
    title = _("Evidence bundle: process {pid} on {host}").format(pid=process.get("pid", "?"),
                                                                  host=host.get("hostname", "?"))
    lines += [title, "=" * len(title)]
    field(_("Collected"), moment(document.get("collected_at")), 0)
    field(_("Collected by"), f"minerwatch {document.get('minerwatch_version', '?')} ({document.get('format', '?')})", 0)
    note = (document.get("collection") or {}).get("note")
    if note:
        field(_("How"), _(note) if note in KNOWN_SENTENCES else note, 0)

    heading(_("Host"))
    field(_("Host name"), host.get("hostname"))
    field(_("Operating system"), " ".join(str(x) for x in (host.get("os"), host.get("kernel")) if x))
    field(_("Machine ID"), host.get("machine_id"))

    heading(_("Process"))
    field(_("Process ID"), process.get("pid"))
    field(_("Name"), process.get("name"))
    user = process.get("user")
    if process.get("uid") is not None:
        user = f"{user} (uid {process['uid']})"
    field(_("User"), user)
    field(_("Started"), moment(process.get("start_time")))
    if process.get("cpu_seconds") is not None:
        field(_("CPU time used"), _("{seconds} s").format(seconds=number(process["cpu_seconds"], 1, lang)))
    field(_("Threads"), process.get("threads"))
    if process.get("resident_memory_bytes") is not None:
        field(_("Memory in use"), _("{amount} MiB").format(
            amount=number(process["resident_memory_bytes"] / (1 << 20), 1, lang)))
    field(_("Working directory"), process.get("cwd"))
    field(_("Command line (credentials redacted)"), process.get("cmdline"))
    parents = process.get("parents") or []
    if parents:
        field(_("Parent processes"), " ← ".join(
            f"{p.get('name', _('not readable'))} ({p.get('pid')})" for p in parents))
    names = process.get("environment_names") or []
    if names:
        field(_("Environment variables (names only)"), ", ".join(str(n) for n in names))

    heading(_("Executable"))
    field(_("Path"), exe.get("path"))
    if exe.get("deleted"):
        lines.append(INDENT + _("The file was deleted from disk while the process ran."))
    field("sha256", exe.get("sha256") or _("not computed"))
    if exe.get("size_bytes") is not None:
        field(_("Size"), _("{count} bytes").format(count=exe["size_bytes"]))
    if exe.get("mtime"):
        field(_("Modified"), moment(exe.get("mtime")))
    if exe.get("copy"):
        copied = _("yes, in the bundle as {name}").format(name=exe["copy"])
        if exe.get("copy_sha256_matches") is False:
            copied += "; " + _("the copy's sha256 differs from the hash above")
        if exe.get("copy_truncated"):
            copied += "; " + _("the copy is cut short")
        field(_("Copy"), copied)
    else:
        field(_("Copy"), _("no"))

    signals = document.get("signals") or {}
    heading(_("Why it is suspect"))
    if not signals:
        lines.append(INDENT + _("No signal matched."))
    for key, detail in signals.items():
        field(key, detail)

    network = document.get("network") or {}
    heading(_("Network connections"))
    if not network.get("available", False):
        lines.append(INDENT + _("Not collected: the network collector was off."))
    elif not network.get("connections"):
        lines.append(INDENT + _("None open at collection."))
    for conn in network.get("connections") or []:
        lines.append(f"{INDENT}{conn.get('local')} → {conn.get('remote')} ({conn.get('state')})")
        for ev in conn.get("pool_evidence") or []:
            lines.append(INDENT * 2 + _("mining pool {pool}: {kind}, {detail}").format(
                pool=ev.get("pool"), kind=ev.get("kind"), detail=ev.get("detail")))

    heading(_("Miner configuration files"))
    configs = document.get("miner_config_files") or []
    if not configs:
        lines.append(INDENT + _("None found."))
    for c in configs:
        state = _("{copied} of {size} bytes copied as {name}").format(
            copied=c.get("copied_bytes"), size=c.get("size_bytes"), name=c.get("copy"))
        if c.get("truncated"):
            state += "; " + _("the copy is cut short")
        lines.append(f"{INDENT}{c.get('path')}: {state}")
    if document.get("miner_config_search"):
        lines.append(INDENT + _("The search stopped at the limit of files copied."))

    heading(_("Antivirus exclusions covering the process"))
    exclusions = document.get("antivirus_exclusions") or []
    if not exclusions:
        lines.append(INDENT + _("None found."))
    for x in exclusions:
        lines.append(INDENT + _("{product}, {kind} exclusion {value} (covers the {covers}), set in {where}").format(
            product=x.get("product"), kind=x.get("kind"), value=x.get("value"), covers=x.get("covers"),
            where=x.get("where")))

    gpu = document.get("gpu") or {}
    heading(_("GPU use"))
    if not gpu.get("available", False):
        reason = gpu.get("reason") or ""
        lines.append(INDENT + _("Not collected: {reason}").format(reason=_(reason) if reason in KNOWN_SENTENCES else reason))
    elif not gpu.get("use"):
        lines.append(INDENT + _("The process did not use a GPU at collection."))
    for g in gpu.get("use") or []:
        figures = [_("GPU {index}: {model}").format(index=g.get("gpu"), model=g.get("model"))]
        if g.get("memory_used_bytes") is not None:
            figures.append(_("{amount} MiB of GPU memory").format(
                amount=number(g["memory_used_bytes"] / (1 << 20), 1, lang)))
        if g.get("sm_utilization_ratio") is not None:
            figures.append(_("{percent} % of its compute time").format(
                percent=number(100 * g["sm_utilization_ratio"], 0, lang)))
        if g.get("power_watts") is not None:
            figures.append(_("the board drew {watts} W").format(watts=number(g["power_watts"], 1, lang)))
        lines.append(INDENT + "; ".join(figures))

    unreadable = document.get("unreadable") or {}
    if unreadable:
        heading(_("Not readable at collection"))
        for key, reason in sorted(unreadable.items()):
            field(key, reason)
    lines += ["", _("This summary is for reading. The evidence is evidence.json and the files beside it, "
                    "whose sha256 MANIFEST.json lists; check them with: minerwatch evidence verify")]
    return "\n".join(lines) + "\n"


def _missing(value, _) -> str:
    return _("not known") if value is None or value == "" else str(value)
