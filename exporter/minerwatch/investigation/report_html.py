"""The report as one self-contained HTML page: inline CSS, charts as data: PNG, no external
resources, so it opens offline and can be attached to a case file. Every value is escaped."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import List, Optional, Tuple

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}
.sub{color:#5a6272}table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{background:#f3f5f8;font-weight:600;width:16rem}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,Consolas,monospace;font-size:.85rem;word-break:break-all}
.tag{display:inline-block;background:#eef1f6;border-radius:3px;padding:0 .35rem;margin:0 .2rem .2rem 0;
font-size:.85rem}.est{color:#8a4b00}.meas{color:#0b6b2f}img{max-width:100%}
.figs{display:grid;grid-template-columns:repeat(4,1fr);gap:.8rem}.fig{background:#f6f8fb;padding:.7rem;
border-radius:6px}.fig b{display:block;font-size:1.4rem}.fig span{color:#5a6272;font-size:.85rem}
"""


def e(value) -> str:
    return html.escape("" if value is None else str(value))


def num(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}".replace(",", "\u202f")


def _chart(points: List[Tuple[float, float]], office, title: str, ylabel: str, color: str,
           period: Tuple[str, str]) -> Optional[str]:
    """A PNG of the series as a data: URL, office hours shaded; None when there is nothing."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    zone = dt.timezone(dt.timedelta(hours=office.utc_offset_hours))
    times = [dt.datetime.fromtimestamp(t, zone) for t, _ in points]
    values = [v for _, v in points]
    fig, ax = plt.subplots(figsize=(10, 2.8), dpi=100)
    ax.step(times, values, where="post", color=color, linewidth=1.2)
    ax.fill_between(times, values, step="post", color=color, alpha=0.25)
    # Shade office hours so off-hours use stands out.
    first_local = dt.datetime.fromisoformat(period[0].replace("Z", "+00:00")).astimezone(zone)
    day = first_local.replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() <= dt.datetime.fromisoformat(period[1].replace("Z", "+00:00")).timestamp():
        if (day.isoweekday() % 7) in office.days:
            start = day + dt.timedelta(seconds=office.start_seconds)
            end = day + dt.timedelta(seconds=office.end_seconds)
            ax.axvspan(start, end, color="#9fb4d6", alpha=0.18, linewidth=0)
        day += dt.timedelta(days=1)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_ylim(bottom=0)
    first, last = (dt.datetime.fromisoformat(x.replace("Z", "+00:00")) for x in period)
    ax.set_xlim(first, last)  # the whole period on both charts, so they line up
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%H:%M", tz=zone))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _row(label: str, value: str) -> str:
    """`label` is the report's own markup, never host text; `value` is escaped by the caller."""
    return f"<tr><th>{label}</th><td>{value}</td></tr>"


def _tags(values) -> str:
    return "".join(f'<span class="tag"><code>{e(v)}</code></span>' for v in values) or "<i>not known</i>"


def _left_out(left: dict) -> List[str]:
    """Samples no total includes, by series: the figures above are without them."""
    if not left["samples"]:
        return []
    parts = [f"<h2>Samples left out</h2><p class='est'>{e(left['statement'])} The figures in this "
             "report are computed without them.</p>",
             "<table><tr><th>Series</th><th>Not finite</th><th>Out of range</th></tr>"]
    for s in left["series"]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s["labels"].items()))
        parts.append(f"<tr><td><code>{e(s['metric'])}{{{e(labels)}}}</code></td>"
                     f"<td class='num'>{e(s['not_finite'])}</td><td class='num'>{e(s['out_of_range'])}</td></tr>")
    more = left["series_count"] - len(left["series"])
    if more > 0:
        parts.append(f"<tr><td colspan='3'>and {e(more)} more series (counted above)</td></tr>")
    parts.append("</table>")
    return parts


def render(doc: dict, office) -> str:
    t = doc["totals"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Miner report: {e(doc['instance'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Miner report: {e(doc['instance'])}</h1>",
        f"<p class='sub'>{e(doc['from'])} to {e(doc['to'])}"
        + (f", process {e(doc['pid'])}" if doc.get("pid") else "")
        + f". Generated {e(doc['generated_at'])} by minerwatch {e(doc['minerwatch_version'])} from "
        f"Prometheus at <code>{e(doc['prometheus'])}</code>. Office hours: {e(doc['office_hours'])}.</p>",
        "<div class='figs'>",
        f"<div class='fig'><b>{num(t['cpu_core_hours'])}</b><span>CPU core-hours (measured); "
        f"{num(t['cpu_core_hours_off_hours'])} off hours</span></div>",
        f"<div class='fig'><b>{num(t['gpu_hours'])}</b><span>GPU-hours (measured); "
        f"{num(t['gpu_hours_off_hours'])} off hours</span></div>",
        f"<div class='fig'><b>{num(t['kwh'])} kWh</b><span>energy (see method); "
        f"{num(t['kwh_off_hours'])} off hours</span></div>",
        f"<div class='fig'><b>{num(t['tenge'], 0)} ₸</b><span>at {num(doc['method']['tariff_kzt_per_kwh'])} "
        "tenge per kWh (estimated)</span></div>",
        "</div>",
    ]
    parts += _left_out(doc["left_out"])
    for p in doc["processes"]:
        parts.append(f"<h2>Process {e(p['pid'])}: {e(', '.join(p['names']) or '?')}</h2><table>")
        parts.append(_row("First seen / last seen", f"{e(p['first_seen'])} &nbsp;/&nbsp; {e(p['last_seen'])}"))
        parts.append(_row("User", _tags(p["users"])))
        exes = "<br>".join(f"<code>{e(x['path'])}</code><br>sha256 <code>{e(x['sha256'] or 'not readable')}</code>"
                           for x in p["executables"]) or "<i>not known</i>"
        parts.append(_row("Executable", exes))
        parts.append(_row("Command line (credentials redacted)",
                          "<br>".join(f"<code>{e(c)}</code>" for c in p["cmdlines"]) or "<i>not known</i>"))
        parts.append(_row("Signals", _tags(p["signals"])))
        parts.append(_row("Pool", _tags(p["pools"])))
        parts.append(_row("Wallet", _tags(p["wallets"])))
        c, g, en = p["cpu"], p["gpu"], p["energy"]
        parts.append(_row("CPU core-hours <span class='meas'>(measured)</span>",
                          f"{num(c['core_hours'], 3)} &nbsp; office {num(c['core_hours_office'], 3)}, "
                          f"off hours {num(c['core_hours_off_hours'], 3)}"))
        parts.append(_row("GPU-hours <span class='meas'>(measured)</span>",
                          f"{num(g['gpu_hours'], 3)} &nbsp; office {num(g['gpu_hours_office'], 3)}, "
                          f"off hours {num(g['gpu_hours_off_hours'], 3)}"))
        parts.append(_row("Energy", f"{num(en['kwh'], 3)} kWh &nbsp; office {num(en['kwh_office_hours'], 3)}, "
                          f"off hours {num(en['kwh_off_hours'], 3)}<br><span class='est'>CPU: {e(en['cpu_method'])}; "
                          f"GPU: {e(en['gpu_method'])}</span>"))
        parts.append(_row("Cost <span class='est'>(estimated)</span>", f"{num(en['tenge'], 0)} tenge"))
        parts.append("</table>")
    parts.append("<h2>Alerts</h2>")
    if doc["alerts"]:
        parts.append("<table><tr><th>Alert</th><th>Severity</th><th>pid</th><th>Firing</th></tr>")
        for a in doc["alerts"]:
            spans = "<br>".join(f"{e(f['from'])} to {e(f['to'])}" for f in a["firing"])
            parts.append(f"<tr><td>{e(a['alertname'])}</td><td>{e(a['severity'])}</td><td>{e(a['pid'])}</td>"
                         f"<td>{spans}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No alert fired for this host in the period (as Prometheus recorded in ALERTS).</p>")

    parts.append("<h2>CPU and GPU use</h2><p class='sub'>Shaded: office hours. Averages over "
                 f"{e(doc['bucket_seconds'] // 60)}-minute steps.</p>")
    for key, title, ylabel, color in (("cpu_cores", "CPU use of the process(es), cores", "cores", "#c0392b"),
                                      ("gpu_share", "GPU use of the process(es), share of a GPU", "GPUs", "#2c6fbb")):
        url = _chart(doc["charts"][key], office, title, ylabel, color, (doc["from"], doc["to"]))
        parts.append(f"<img alt='{e(title)}' src='{url}'>" if url else f"<p>{e(title)}: no samples.</p>")

    m = doc["method"]
    parts.append("<h2>How these figures were made</h2><p><b class='meas'>Measured</b> (recorded by the "
                 "minerwatch exporter on the host, read back from Prometheus):</p><ul>")
    parts += [f"<li>{e(x)}</li>" for x in m["measured"]]
    parts.append("</ul><p><b class='est'>Estimated</b> (computed here from the measurements and assumptions):</p><ul>")
    parts += [f"<li>{e(x)}</li>" for x in m["estimated"]]
    parts.append("</ul><p class='sub'>report.json beside this file holds every figure unrounded.</p></body></html>")
    return "\n".join(parts)
