"""The report as one self-contained HTML page, in Kazakh, Russian or English (i18n.py): inline CSS,
charts as data: PNG, no external resources, so it opens offline and can be attached to a case
file. Every value from the host or Prometheus is escaped and set in <code> (or class 'data'):
it is evidence, shown as recorded, never translated."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import List, Optional, Tuple

from minerwatch.investigation.i18n import number, translator, when_iso
from minerwatch.investigation.report_prometheus import MAX_SAMPLE_VALUE

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5d9e0}
.sub{color:#5a6272}table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{background:#f3f5f8;font-weight:600;width:16rem}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,Consolas,"DejaVu Sans Mono",monospace;font-size:.85rem;word-break:break-all}
.tag{display:inline-block;background:#eef1f6;border-radius:3px;padding:0 .35rem;margin:0 .2rem .2rem 0;
font-size:.85rem}.est{color:#8a4b00}.meas{color:#0b6b2f}img{max-width:100%}
.figs{display:grid;grid-template-columns:repeat(4,1fr);gap:.8rem}.fig{background:#f6f8fb;padding:.7rem;
border-radius:6px}.fig b{display:block;font-size:1.4rem}.fig span{color:#5a6272;font-size:.85rem}
h2,tr,.fig,img{break-inside:avoid}
@media print{body{margin:0 auto;max-width:none}.figs{grid-template-columns:repeat(2,1fr)}}
"""
DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def e(value) -> str:
    return html.escape("" if value is None else str(value))


def code(value) -> str:
    return f"<code>{e(value)}</code>"


class Page:
    """What the page needs to say things in one language."""

    def __init__(self, lang: str, offset_hours: float):
        self.lang, self.offset = lang, offset_hours
        t = translator(lang)
        self.gettext, self.ngettext, self.pgettext = t.gettext, t.ngettext, t.pgettext

    def __call__(self, message: str, **markup: str) -> str:
        """The translation, escaped, its {placeholders} filled with markup (already HTML)."""
        return e(self.gettext(message)).format(**markup)

    def n(self, singular: str, plural: str, how_many: int, **markup: str) -> str:
        return e(self.ngettext(singular, plural, how_many)).format(**markup)

    def num(self, value: float, digits: int = 2) -> str:
        return number(value, digits, self.lang)

    def when(self, text: Optional[str]) -> str:
        return e(when_iso(text, self.lang, self.offset)) if text else self("not known")


def _chart(points: List[Tuple[float, float]], office, title: str, ylabel: str, color: str,
           period: Tuple[str, str], lang: str) -> Optional[str]:
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
    # %b is the C locale's English month: other languages get the day and month as numbers
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%H:%M" if lang == "en" else "%d.%m\n%H:%M", tz=zone))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _row(label: str, value: str) -> str:
    """`label` is the page's own markup, never host text; `value` is escaped by the caller."""
    return f"<tr><th>{label}</th><td>{value}</td></tr>"


def _tags(_: Page, values) -> str:
    return "".join(f'<span class="tag"><code>{e(v)}</code></span>' for v in values) or f"<i>{_('not known')}</i>"


def office_hours(_: Page, office) -> str:
    """rules/config/minerwatch.yml's office hours, in the page's language."""
    def hhmm(seconds: int) -> str:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"

    days = ", ".join(e(_.pgettext("weekday", DAY_NAMES[d])) for d in sorted(office.days))
    sign = "+" if office.utc_offset_hours >= 0 else "-"
    return _("{start}–{end}, {days}, UTC{offset} (public holidays count as office days)",
             start=hhmm(office.start_seconds), end=hhmm(office.end_seconds), days=days,
             offset=f"{sign}{abs(office.utc_offset_hours):g}")


def _left_out(_: Page, left: dict) -> List[str]:
    """Samples no total includes, by series: the figures above are without them."""
    if not left["samples"]:
        return []
    parts = []
    if left["not_finite"]:
        parts.append(_.n("{count} sample not finite ({nan}, {inf} or {ninf})",
                         "{count} samples not finite ({nan}, {inf} or {ninf})", left["not_finite"],
                         count=e(left["not_finite"]), nan=code("NaN"), inf=code("+Inf"), ninf=code("-Inf")))
    if left["out_of_range"]:
        parts.append(_.n("{count} sample negative or above {limit}, which these series cannot hold",
                         "{count} samples negative or above {limit}, which these series cannot hold",
                         left["out_of_range"], count=e(left["out_of_range"]), limit=_.num(MAX_SAMPLE_VALUE, 0)))
    statement = _.n("{samples}, in {series} series, were left out of every total.",
                    "{samples}, in {series} series, were left out of every total.", left["series_count"],
                    samples=_(" and ").join(parts) if len(parts) > 1 else parts[0], series=e(left["series_count"]))
    out = [f"<h2>{_('Samples left out')}</h2><p class='est'>{statement} "
           f"{_('The figures in this report are computed without them.')}</p>",
           f"<table><tr><th>{_('Series')}</th><th>{_('Not finite')}</th><th>{_('Out of range')}</th></tr>"]
    for s in left["series"]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s["labels"].items()))
        out.append(f"<tr><td><code>{e(s['metric'])}{{{e(labels)}}}</code></td>"
                   f"<td class='num'>{e(s['not_finite'])}</td><td class='num'>{e(s['out_of_range'])}</td></tr>")
    more = left["series_count"] - len(left["series"])
    if more > 0:
        out.append(f"<tr><td colspan='3'>{_.n('and {count} more series (counted above)', 'and {count} more series (counted above)', more, count=e(more))}</td></tr>")
    out.append("</table>")
    return out


def energy_method(_: Page, en: dict, watts_per_core: float) -> str:
    """How a process's energy was found, per the document's kinds."""
    cpu = {
        "exporter": lambda: _("measured by the exporter ({metric}, method {methods})",
                              metric=code("minerwatch_process_energy_joules_total"),
                              methods=", ".join(code(m) for m in en.get("cpu_energy_methods", []))),
        "estimated": lambda: _("estimated: CPU core-seconds × {watts} W per core", watts=_.num(watts_per_core, 1)),
    }[en.get("cpu_method_kind", "estimated")]()
    gpu = {
        "exporter": lambda: _("measured by the exporter ({metric}, the driver's energy counter)",
                              metric=code("minerwatch_gpu_process_energy_joules_total")),
        "estimated": lambda: _("estimated: the process's share of GPU time × the board's measured power"),
        "none": lambda: _("no GPU use recorded"),
        "no_power": lambda: _("GPU use without board power: not counted"),
    }[en.get("gpu_method_kind", "none")]()
    return _("CPU: {cpu}; GPU: {gpu}", cpu=cpu, gpu=gpu)


def tariff_origin(_: Page, tariff: dict) -> str:
    """Which tariff the costs use and where it came from."""
    origin = {"option": lambda: _("given with {flag}", flag=code("--energy.tariff")),
              "site": lambda: _("the tariff of site {site}, as the rules record it in Prometheus",
                                site=code(tariff.get("site"))),
              "fleet": lambda: _("the fleet's tariff, as the rules record it in Prometheus"),
              "built-in": lambda: _("minerwatch's built-in default")}[tariff["from"]]()
    details = []
    if tariff.get("source"):
        source = tariff["source"]
        # the built-in tariff's source is minerwatch's own sentence, and so translated; a site's is data
        details.append(_("source: {source}", source=e(_.gettext(source)) if tariff["from"] == "built-in"
                         else f"<span class='data'>{e(source)}</span>"))
    if tariff.get("valid_from"):
        details.append(_("in force from {date}", date=f"<span class='data'>{e(tariff['valid_from'])}</span>"))
    return origin + ("; " + "; ".join(details) if details else "")


def _bundles(_: Page, bundles: List[dict]) -> List[str]:
    out = [f"<h2>{_('Evidence bundles')}</h2>"]
    if not bundles:
        return out + [f"<p>{_('No evidence bundle was recorded for this host in the period.')}</p>"]
    out.append(f"<p class='sub'>{_('Bundles collected on the host with {command} and recorded by its exporter, each named by the sha256 of its manifest; {verify} checks a bundle against it.', command=code('minerwatch evidence'), verify=code('minerwatch evidence verify'))}</p>")
    out.append(f"<table><tr><th>{_('Process')}</th><th>{_('Collected')}</th><th>{_('Manifest sha256')}</th>"
               f"<th>{_('Recorded in the period')}</th></tr>")
    for b in bundles:
        out.append(f"<tr><td>{code(b['pid'])}</td><td>{_.when(b['collected_at'])}</td><td>{code(b['manifest_sha256'])}</td>"
                   f"<td>{_('{start} to {end}', start=_.when(b['recorded_from']), end=_.when(b['recorded_to']))}</td></tr>")
    out.append("</table>")
    return out


def _method(_: Page, doc: dict, office) -> List[str]:
    m = doc["method"]
    measured = [
        _("CPU time: growth of {metric} between consecutive samples (a drop is a counter reset). CPU used "
          "before the first or after the last sample in the period is not counted, so the figure errs low.",
          metric=code("minerwatch_process_cpu_seconds_total")),
        _("GPU time: {metric} (share of the GPU's compute time), each sample held until the next, at most "
          "{seconds} s.", metric=code("minerwatch_gpu_process_utilization_ratio"), seconds=_.num(300, 0)),
        _("Office and off hours: each interval between samples is split by the share of it inside office "
          "hours ({hours}).", hours=office_hours(_, office)),
        _("Samples that are not finite numbers ({nan}, {inf}, {ninf}) or that these series cannot hold "
          "(negative, above {limit}) are left out of every total; the report lists them by series.",
          nan=code("NaN"), inf=code("+Inf"), ninf=code("-Inf"), limit=_.num(MAX_SAMPLE_VALUE, 0)),
    ]
    estimated = [
        _("CPU energy, where the exporter has no energy counter: core-seconds × {watts} W per busy core "
          "(default: a 65 W office desktop CPU such as the {model} has 6 cores, 10.8 W each, rounded down).",
          watts=_.num(m["watts_per_core"], 1), model=code("Intel Core i5-12400")),
        _("GPU energy, where the exporter has no per-process energy counter: the process's share of GPU time × "
          "the board power the GPU reported ({metric}).", metric=code("minerwatch_gpu_power_watts")),
        _("Cost: kWh × {tariff} tenge per kWh ({origin}).", tariff=_.num(m["tariff_kzt_per_kwh"]),
          origin=tariff_origin(_, doc["tariff"])) if "tariff" in doc else
        _("Cost: kWh × {tariff} tenge per kWh.", tariff=_.num(m["tariff_kzt_per_kwh"])),
    ]
    out = [f"<h2>{_('How these figures were made')}</h2>",
           f"<p><b class='meas'>{_('Measured')}</b> {_('(recorded by the minerwatch exporter on the host, read back from Prometheus):')}</p><ul>"]
    out += [f"<li>{x}</li>" for x in measured]
    out.append(f"</ul><p><b class='est'>{_('Estimated')}</b> {_('(computed here from the measurements and assumptions):')}</p><ul>")
    out += [f"<li>{x}</li>" for x in estimated]
    out.append("</ul>")
    return out


def render(doc: dict, office, lang: str = "en", json_sha256: Optional[str] = None) -> str:
    _ = Page(lang, office.utc_offset_hours)
    t = doc["totals"]
    kwh, tenge = _("kWh"), _("tenge")
    title = e(_.gettext("Miner report: {host}").format(host=doc["instance"]))
    heading = _("Miner report: {host}", host=code(doc["instance"]))
    period = _("Period: {start} to {end}.", start=_.when(doc["from"]), end=_.when(doc["to"]))
    if doc.get("pid"):
        period += " " + _("Process {pid} only.", pid=code(doc["pid"]))
    made = _("Generated {time} by minerwatch {version} from Prometheus at {url}.",
             time=_.when(doc["generated_at"]), version=code(doc["minerwatch_version"]), url=code(doc["prometheus"]))
    parts = [
        f"<!DOCTYPE html><html lang='{e(lang)}'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{title}</title><style>{CSS}</style></head><body>",
        f"<h1>{heading}</h1>",
        f"<p class='sub'>{period} {made} {_('Office hours: {hours}.', hours=office_hours(_, office))}</p>",
        "<div class='figs'>",
        f"<div class='fig'><b>{_.num(t['cpu_core_hours'])}</b><span>{_('CPU core-hours (measured)')}; "
        f"{_('{amount} off hours', amount=_.num(t['cpu_core_hours_off_hours']))}</span></div>",
        f"<div class='fig'><b>{_.num(t['gpu_hours'])}</b><span>{_('GPU-hours (measured)')}; "
        f"{_('{amount} off hours', amount=_.num(t['gpu_hours_off_hours']))}</span></div>",
        f"<div class='fig'><b>{_.num(t['kwh'])} {kwh}</b><span>{_('energy (see how the figures were made)')}; "
        f"{_('{amount} off hours', amount=_.num(t['kwh_off_hours']))}</span></div>",
        f"<div class='fig'><b>{_.num(t['tenge'], 0)} ₸</b><span>"
        f"{_('at {tariff} tenge per kWh (estimated)', tariff=_.num(doc['method']['tariff_kzt_per_kwh']))}</span></div>",
        "</div>",
    ]
    if "tariff" in doc:
        parts.append(f"<p class='sub'>{_('Tariff: {origin}.', origin=tariff_origin(_, doc['tariff']))}</p>")
    parts += _left_out(_, doc["left_out"])
    for p in doc["processes"]:
        names = ", ".join(code(n) for n in p["names"]) or code("?")
        parts.append(f"<h2>{_('Process {pid}: {names}', pid=code(p['pid']), names=names)}</h2><table>")
        parts.append(_row(_("First seen / last seen"), f"{_.when(p['first_seen'])} &nbsp;/&nbsp; {_.when(p['last_seen'])}"))
        parts.append(_row(_("User"), _tags(_, p["users"])))
        exes = "<br>".join(f"{code(x['path'])}<br>sha256 " + (code(x['sha256']) if x['sha256'] else f"<i>{_('not readable')}</i>")
                           for x in p["executables"]) or f"<i>{_('not known')}</i>"
        parts.append(_row(_("Executable"), exes))
        parts.append(_row(_("Command line (credentials redacted)"),
                          "<br>".join(code(c) for c in p["cmdlines"]) or f"<i>{_('not known')}</i>"))
        parts.append(_row(_("Signals"), _tags(_, p["signals"])))
        parts.append(_row(_("Pool"), _tags(_, p["pools"])))
        parts.append(_row(_("Wallet"), _tags(_, p["wallets"])))
        c, g, en = p["cpu"], p["gpu"], p["energy"]
        measured, estimated = f"<span class='meas'>{_('(measured)')}</span>", f"<span class='est'>{_('(estimated)')}</span>"
        parts.append(_row(f"{_('CPU core-hours')} {measured}",
                          f"{_.num(c['core_hours'], 3)} &nbsp; " + _("office {office}, off hours {off}",
                          office=_.num(c['core_hours_office'], 3), off=_.num(c['core_hours_off_hours'], 3))))
        parts.append(_row(f"{_('GPU-hours')} {measured}",
                          f"{_.num(g['gpu_hours'], 3)} &nbsp; " + _("office {office}, off hours {off}",
                          office=_.num(g['gpu_hours_office'], 3), off=_.num(g['gpu_hours_off_hours'], 3))))
        parts.append(_row(_("Energy"), f"{_.num(en['kwh'], 3)} {kwh} &nbsp; " + _("office {office}, off hours {off}",
                          office=_.num(en['kwh_office_hours'], 3), off=_.num(en['kwh_off_hours'], 3))
                          + f"<br><span class='est'>{energy_method(_, en, doc['method']['watts_per_core'])}</span>"))
        parts.append(_row(f"{_('Cost')} {estimated}", f"{_.num(en['tenge'], 0)} {tenge}"))
        parts.append("</table>")
    if "evidence_bundles" in doc:
        parts += _bundles(_, doc["evidence_bundles"])
    parts.append(f"<h2>{_('Alerts')}</h2>")
    if doc["alerts"]:
        parts.append(f"<table><tr><th>{_('Alert')}</th><th>{_('Severity')}</th><th>{_('Process')}</th>"
                     f"<th>{_('Firing')}</th></tr>")
        for a in doc["alerts"]:
            spans = "<br>".join(_("{start} to {end}", start=_.when(f["from"]), end=_.when(f["to"])) for f in a["firing"])
            severity = a["severity"]
            shown = e(_.pgettext("severity", severity)) if severity in ("critical", "warning", "info") else code(severity)
            parts.append(f"<tr><td>{code(a['alertname'])}</td><td>{shown}</td><td>{code(a['pid'])}</td>"
                         f"<td>{spans}</td></tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>{_('No alert fired for this host in the period (as Prometheus recorded in {series}).', series=code('ALERTS'))}</p>")

    parts.append(f"<h2>{_('CPU and GPU use')}</h2><p class='sub'>"
                 f"{_('Shaded: office hours. Averages over {minutes}-minute steps.', minutes=e(doc['bucket_seconds'] // 60))}</p>")
    charts = (("cpu_cores", _.gettext("CPU use of the process(es), cores"), _.gettext("cores"), "#c0392b"),
              ("gpu_share", _.gettext("GPU use of the process(es), share of a GPU"), _.gettext("GPUs"), "#2c6fbb"))
    for key, chart_title, ylabel, color in charts:
        url = _chart(doc["charts"][key], office, chart_title, ylabel, color, (doc["from"], doc["to"]), lang)
        parts.append(f"<img alt='{e(chart_title)}' src='{url}'>" if url
                     else f"<p>{_('{chart}: no samples.', chart=e(chart_title))}</p>")

    parts += _method(_, doc, office)
    sums = _("{file} beside this page holds every figure unrounded.", file=code("report.json"))
    if json_sha256:
        sums += " " + _("Its sha256: {sha}.", sha=code(json_sha256))
    parts.append(f"<p class='sub'>{sums}</p></body></html>")
    return "\n".join(parts)
