"""Draws a Grafana dashboard's panels from Prometheus API results into a PNG, for reviewers.

Not Grafana: a sketch of what on-call staff will see. Panels sit where their gridPos puts them;
time series are lines (or bars) with a legend of last values, stats big numbers with the
panel's value mappings and thresholds, tables the panel's own transformations (merge,
filterFieldsByName, organize) as text, text panels their markdown as plain text.

`results` maps (panel id, refId) to the `data.result` list of /api/v1/query_range (time series)
or /api/v1/query (stats, tables).
"""

from __future__ import annotations

import math
import re
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib depends on Pillow)

Results = Dict[Tuple[int, str], list]

BACKGROUND, PANEL, BORDER, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e"
COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a", "blue": "#5794f2",
          "text": TEXT, "transparent": "none"}
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#37872d", "#fade2a",
           "#c4162a"]
COLUMN_PX, ROW_PX, HEADER_PX, DPI = 64, 34, 46, 100
MONO_PX = 6.5 * DPI / 72 * 0.602  # advance of one DejaVu Sans Mono character at 6.5 pt


# -- values ---------------------------------------------------------------------------------------


def _scaled(value: float, unit: str, base: float, prefixes: str) -> str:
    index = 0
    while abs(value) >= base and index < len(prefixes) - 1:
        value, index = value / base, index + 1
    prefix = prefixes[index].strip()
    return f"{value:.3g} {prefix}{unit}".strip()


def fmt(value: float, unit: Optional[str]) -> str:
    """A value as Grafana would show it in `unit` (the units these dashboards use)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "bytes":
        return _scaled(value, "B", 1024, " KMGTP").replace("KB", "KiB").replace("MB", "MiB").replace("GB", "GiB")
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit == "watt":
        return _scaled(value, "W", 1000, " kMG")
    if unit == "watth":
        return _scaled(value, "Wh", 1000, " kMG")
    return _scaled(value, "", 1000, " KMBT") if abs(value) >= 1000 else f"{value:.3g}"


def _legend(template: str, labels: dict) -> str:
    if not template or template == "__auto":
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return labels.get("__name__", "") + ("{" + ", ".join(f'{k}="{v}"' for k, v in shown.items()) + "}"
                                             if shown else "")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _mapped(value: float, mappings: List[dict]) -> Optional[Tuple[str, str]]:
    for mapping in mappings or []:
        for key, option in mapping.get("options", {}).items():
            if float(key) == value:
                return option["text"], COLORS.get(option.get("color"), TEXT)
    return None


def _threshold_color(value: float, thresholds: Optional[dict]) -> str:
    color = "green"
    for step in (thresholds or {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


# -- tables ---------------------------------------------------------------------------------------


def table_rows(panel: dict, results: Results) -> Tuple[List[str], List[dict]]:
    """Columns and rows after the panel's transformations, as Grafana builds them."""
    targets = panel.get("targets", [])
    single = len(targets) == 1
    frames = []
    for target in targets:
        value = "Value" if single else f"Value #{target['refId']}"
        frames.append([dict(s["metric"], **{value: float(s["value"][1])})
                       for s in results.get((panel["id"], target["refId"]), [])])
    rows = frames[0] if frames else []
    columns: List[str] = []
    for step in panel.get("transformations", []):
        options = step["options"]
        if step["id"] == "merge":
            merged: Dict[tuple, dict] = {}
            for frame in frames:
                for row in frame:
                    key = tuple(sorted((k, v) for k, v in row.items() if not k.startswith("Value")))
                    merged.setdefault(key, {}).update(row)
            rows = list(merged.values())
        elif step["id"] == "filterFieldsByName":
            columns = list(options["include"]["names"])
        elif step["id"] == "organize":
            columns.sort(key=lambda c: options["indexByName"].get(c, 999))
            rename = options["renameByName"]
            rows = [{rename.get(k, k): v for k, v in row.items()} for row in rows]
            columns = [rename.get(c, c) for c in columns]
    present = [c for c in columns if any(c in row for row in rows)] if rows else columns
    sort = panel["options"].get("sortBy") or []
    if sort:
        key, desc = sort[0]["displayName"], sort[0]["desc"]
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key) if isinstance(r.get(key), float) else
                                 str(r.get(key, ""))), reverse=desc)
    return present, rows


def _column_config(panel: dict, column: str, prop: str):
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"]["options"] == column:
            for item in override["properties"]:
                if item["id"] == prop:
                    return item["value"]
    return None


def _cell(panel: dict, column: str, value) -> str:
    if isinstance(value, float):
        mapped = _mapped(value, _column_config(panel, column, "mappings"))
        return mapped[0] if mapped else fmt(value, _column_config(panel, column, "unit"))
    return "" if value is None else str(value)


# -- drawing --------------------------------------------------------------------------------------


class Canvas:
    def __init__(self, panels: List[dict], title: str, note: str):
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
        self.width, self.height = 24 * COLUMN_PX, rows * ROW_PX + HEADER_PX
        self.fig = plt.figure(figsize=(self.width / DPI, self.height / DPI), dpi=DPI, facecolor=BACKGROUND)
        self.fig.text(8 / self.width, 1 - 8 / self.height, title, color=TEXT, fontsize=14, weight="bold", va="top")
        self.fig.text(8 / self.width, 1 - 30 / self.height, note, color=MUTED, fontsize=8, va="top")

    def box(self, pos: dict, top: float = 0, bottom: float = 0, left: float = 0, right: float = 0):
        """Figure coordinates of a grid box, shrunk by pixels."""
        x0 = (pos["x"] * COLUMN_PX + 3 + left) / self.width
        x1 = ((pos["x"] + pos["w"]) * COLUMN_PX - 3 - right) / self.width
        y_top = (HEADER_PX + pos["y"] * ROW_PX + 3 + top) / self.height
        y_bottom = (HEADER_PX + (pos["y"] + pos["h"]) * ROW_PX - 3 - bottom) / self.height
        return [x0, 1 - y_bottom, max(x1 - x0, 0.001), max(y_bottom - y_top, 0.001)]

    def frame(self, panel: dict) -> "Area":
        area = Area(self.fig, self.box(panel["gridPos"]))
        if panel["type"] != "row":
            self.fig.add_artist(Rectangle((area.x, area.y), area.w, area.h, facecolor=PANEL, edgecolor=BORDER,
                                          linewidth=0.8, transform=self.fig.transFigure, zorder=-1))
        return area

    def save(self, path: Path) -> None:
        """A palette PNG: a fraction of the size of matplotlib's, and it reads the same."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.canvas.draw()
        width, height = self.fig.canvas.get_width_height()
        image = Image.frombuffer("RGBA", (width, height), self.fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        plt.close(self.fig)
        image.convert("RGB").quantize(colors=64, method=2).save(path, optimize=True)  # 2: fast octree


class Area:
    """A panel's box; text placed in box coordinates (0-1) straight on the figure (axes are slow)."""

    def __init__(self, fig, box):
        self.fig, (self.x, self.y, self.w, self.h) = fig, box

    def text(self, x: float, y: float, text: str, **style) -> None:
        self.fig.text(self.x + x * self.w, self.y + y * self.h, text, **style)


def _fit(text: str, width_px: float, char_px: float = 4.6) -> str:
    chars = max(4, int(width_px / char_px))
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _no_data(ax) -> None:
    ax.text(0.5, 0.45, "No data", color=MUTED, fontsize=11, ha="center", va="center")


def _title(ax, panel: dict, height_px: float) -> None:
    ax.text(6 / (panel["gridPos"]["w"] * COLUMN_PX), 1 - 12 / height_px,
            _fit(panel["title"], panel["gridPos"]["w"] * COLUMN_PX - 12, 6.2), color=TEXT, fontsize=9,
            weight="bold", va="center")


def _timeseries(canvas: Canvas, panel: dict, results: Results, ax) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit")
    series = []
    for target in panel["targets"]:
        for s in results.get((panel["id"], target["refId"]), []):
            points = [(datetime.fromtimestamp(t), float(v)) for t, v in s["values"]]
            series.append((_legend(target.get("legendFormat", ""), s["metric"]), points))
    if not series:
        _no_data(ax)
        return
    series.sort(key=lambda s: -max(v for _, v in s[1]))  # the legend shows the biggest first
    legend_lines = min(len(series), max(1, panel["gridPos"]["h"] - 5))
    plot = canvas.fig.add_axes(canvas.box(panel["gridPos"], top=24, bottom=14 * legend_lines + 22, left=46,
                                          right=26))
    plot.set_facecolor(PANEL)
    for i, (name, points) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        xs, ys = zip(*points)
        if defaults["custom"]["drawStyle"] == "bars":
            plot.bar(xs, ys, width=1 / 86400 * 1.6, color=color, alpha=0.8)
        else:  # a series with one point (an alert that just fired) is a dot
            plot.plot(xs, ys, color=color, linewidth=1.2, marker="o" if len(xs) == 1 else None, markersize=3)
    for step in defaults.get("thresholds", {}).get("steps", []):
        if defaults["custom"]["thresholdsStyle"]["mode"] != "off" and step["value"] is not None:
            plot.axhline(step["value"], color=COLORS["red"], linestyle="--", linewidth=0.9)
    if defaults.get("min") is not None:
        plot.set_ylim(bottom=defaults["min"])
    if defaults.get("max") is not None:
        plot.set_ylim(top=defaults["max"])
    plot.tick_params(colors=MUTED, labelsize=6.5, length=2)
    plot.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    plot.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    plot.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt(v, unit)))
    plot.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    plot.grid(color=BORDER, linewidth=0.5)
    for side in plot.spines.values():
        side.set_visible(False)
    height = panel["gridPos"]["h"] * ROW_PX
    for i, (name, points) in enumerate(series[:legend_lines]):
        y = (14 * (legend_lines - i) - 4) / height
        ax.text(0.015, y, "—", color=PALETTE[i % len(PALETTE)], fontsize=8, weight="bold", va="center")
        last = points[-1][1]
        ax.text(0.05, y, _fit(f"{name}   last {fmt(last, unit)}", 0.93 * panel["gridPos"]["w"] * COLUMN_PX),
                color=TEXT, fontsize=6.5, va="center")
    if len(series) > legend_lines:
        ax.text(0.98, 4 / height, f"+{len(series) - legend_lines} more", color=MUTED, fontsize=6.5, ha="right")


def _stat(panel: dict, results: Results, ax) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    items = []
    for target in panel["targets"]:
        for s in results.get((panel["id"], target["refId"]), []):
            value = float(s["value"][1])
            name = _legend(target.get("legendFormat", ""), s["metric"])
            mapped = _mapped(value, defaults.get("mappings"))
            text, color = mapped or (fmt(value, defaults.get("unit")), _threshold_color(value, defaults["thresholds"]))
            if panel["options"]["textMode"] == "name":
                text, color = name, TEXT
            items.append((text, color, name if panel["options"]["textMode"] == "value_and_name" else ""))
    if not items:
        _no_data(ax)
        return
    width_px, height_px = panel["gridPos"]["w"] * COLUMN_PX, panel["gridPos"]["h"] * ROW_PX - 26
    columns = 1 if len(items) == 1 else min(len(items), max(1, int(width_px // 90)))
    lines = math.ceil(len(items) / columns)
    size = max(7.0, min(26.0, height_px / lines * 0.45, width_px / columns / max(len(t) for t, _, _ in items) * 1.3))
    for i, (text, color, name) in enumerate(items):
        cx = (i % columns + 0.5) / columns
        cy = 1 - (26 + (i // columns + 0.5) * height_px / lines) / (height_px + 26)
        ax.text(cx, cy, text, color=color, fontsize=size, weight="bold", ha="center", va="center")
        if name:
            ax.text(cx, cy - size * 0.9 / (height_px + 26), name, color=MUTED, fontsize=6.5, ha="center",
                    va="center")


def _table(panel: dict, results: Results, ax) -> None:
    columns, rows = table_rows(panel, results)
    if not rows:
        _no_data(ax)
    height_px, width_px = panel["gridPos"]["h"] * ROW_PX, panel["gridPos"]["w"] * COLUMN_PX
    cells = [[_cell(panel, c, row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) + 2 for i, c in enumerate(columns)]
    chars = int((width_px - 12) / MONO_PX)
    while sum(widths) > chars and max(widths) > 6:  # narrow the widest column first: short ones stay whole
        widths[widths.index(max(widths))] -= 1
    line_px, top_px = 13, 30
    visible = max(0, int((height_px - top_px - 6) // line_px))
    for i, line in enumerate([columns] + cells[:visible]):
        x = 6 / width_px
        y = 1 - (top_px + i * line_px) / height_px
        for text, width in zip(line, widths):
            shown = text if len(text) <= width - 1 else text[: max(1, width - 2)] + "…"
            ax.text(x, y, shown, color=MUTED if i == 0 else TEXT, fontsize=6.5, weight="bold" if i == 0 else "normal",
                    va="center", family="DejaVu Sans Mono")
            x += width * MONO_PX / width_px
    if len(cells) > visible:
        ax.text(0.99, 4 / height_px, f"{len(cells) - visible} more rows", color=MUTED, fontsize=6.5, ha="right")


def _text(panel: dict, ax) -> None:
    content = re.sub(r"[*_`#]", "", panel["options"]["content"])
    width = int(panel["gridPos"]["w"] * COLUMN_PX / 6)
    ax.text(0.01, 1 - 30 / (panel["gridPos"]["h"] * ROW_PX), textwrap.fill(" ".join(content.split()), width),
            color=TEXT, fontsize=8, va="top")


def render(dashboard: dict, results: Results, path: Path, note: str = "") -> Path:
    """Draws `dashboard` with `results` into the PNG at `path`."""
    canvas = Canvas(dashboard["panels"], dashboard["title"], note)
    for panel in dashboard["panels"]:
        ax = canvas.frame(panel)
        if panel["type"] == "row":
            ax.text(0, 0.5, panel["title"], color=TEXT, fontsize=11, weight="bold", va="center")
            continue
        _title(ax, panel, panel["gridPos"]["h"] * ROW_PX)
        if panel["type"] == "timeseries":
            _timeseries(canvas, panel, results, ax)
        elif panel["type"] == "stat":
            _stat(panel, results, ax)
        elif panel["type"] == "table":
            _table(panel, results, ax)
        elif panel["type"] == "text":
            _text(panel, ax)
    canvas.save(path)
    return path
