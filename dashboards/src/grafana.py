"""Small builders of Grafana 10.4+ dashboard JSON (schemaVersion 39): panels, targets, variables.

Every panel and target uses the `datasource` variable. Panels are given a width and height only;
`dashboard()` lays them out left to right (a row panel starts a new line) and numbers them.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DS = {"type": "prometheus", "uid": "${datasource}"}
COLUMNS = 24

Column = Tuple[str, str, Optional[str]]  # (field, shown as, unit); field "#A" = value of query A


class Selector:
    """The matchers every metric selector of a dashboard carries: sel("up", 'site!=""')."""

    def __init__(self, *matchers: str):
        self.matchers = matchers

    def __call__(self, metric: str, *extra: str) -> str:
        return metric + "{" + ", ".join(self.matchers + extra) + "}"


# -- targets, links, field config -----------------------------------------------------------------


def target(expr: str, legend: str = "", instant: bool = False, table: bool = False) -> dict:
    """One PromQL query; instant queries feed stats and tables, range queries time series."""
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": " ".join(expr.split()),
        "format": "table" if table else "time_series",
        "instant": instant or table,
        "legendFormat": legend or "__auto",
        "range": not (instant or table),
    }


def link(title: str, url: str) -> dict:
    return {"title": title, "url": url, "targetBlank": True}


def dashboard_link(title: str, url: str, tooltip: str, icon: str = "dashboard", keep_time: bool = True) -> dict:
    """A link in the dashboard's header to a page outside Grafana (an absolute URL)."""
    return {"title": title, "type": "link", "url": url, "tooltip": tooltip, "icon": icon, "tags": [],
            "asDropdown": False, "includeVars": False, "keepTime": keep_time, "targetBlank": not keep_time}


def tagged_dashboards_link(title: str, tag: str, tooltip: str) -> dict:
    """A header link to the dashboards carrying `tag`, as Grafana itself builds it: Grafana makes
    the URL, so it holds the sub-path where Grafana is served under one (`/grafana/d/...`), which a
    hand-written `/d/...` link does not."""
    return {"title": title, "type": "dashboards", "tags": [tag], "tooltip": tooltip, "icon": "dashboard",
            "asDropdown": False, "includeVars": False, "keepTime": True, "targetBlank": False}


def steps(*pairs: Tuple[str, Optional[float]]) -> dict:
    """Thresholds: steps(("green", None), ("red", 1))."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def mapping(values: Dict[str, Tuple[str, str]]) -> List[dict]:
    """Value mappings: mapping({"1": ("UP", "green"), "0": ("DOWN", "red")})."""
    options = {k: {"text": text, "color": color, "index": i} for i, (k, (text, color)) in enumerate(values.items())}
    return [{"type": "value", "options": options}]


def field_link(field: str, links: List[dict]) -> dict:
    """An override giving one table column data links."""
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "links", "value": links}]}


def field_unit(field: str, unit: str) -> dict:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "unit", "value": unit}]}


# -- panels ---------------------------------------------------------------------------------------


def _panel(kind: str, title: str, description: str, w: int, h: int, targets: Sequence[dict] = (),
           links: Iterable[dict] = ()) -> dict:
    panel = {
        "type": kind,
        "title": title,
        "description": " ".join(description.split()),
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "id": 0,
    }
    if targets:
        panel["targets"] = [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)]
    if links:
        panel["links"] = list(links)
    return panel


def timeseries(title: str, description: str, targets: Sequence[dict], unit: str = "short", w: int = 12,
               h: int = 8, axis: str = "", minimum: Optional[float] = 0, maximum: Optional[float] = None,
               bars: bool = False, threshold: Optional[float] = None, links: Iterable[dict] = (),
               overrides: Sequence[dict] = ()) -> dict:
    """Lines (or bars) over time; `threshold` draws a dashed red line at that value."""
    panel = _panel("timeseries", title, description, w, h, targets, links)
    custom = {
        "axisLabel": axis,
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "dashed" if threshold is not None else "off"},
    }
    defaults = {"custom": custom, "unit": unit, "color": {"mode": "palette-classic"}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if threshold is not None:
        defaults["thresholds"] = steps(("transparent", None), ("red", threshold))
    panel["fieldConfig"] = {"defaults": defaults, "overrides": list(overrides)}
    panel["options"] = {
        "legend": {"calcs": ["max", "lastNotNull"], "displayMode": "table", "placement": "bottom",
                   "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(title: str, description: str, targets: Sequence[dict], unit: str = "none", w: int = 4, h: int = 4,
         thresholds: Optional[dict] = None, mappings: Optional[List[dict]] = None, text_mode: str = "auto",
         links: Iterable[dict] = ()) -> dict:
    """Big numbers: the last value of each series."""
    panel = _panel("stat", title, description, w, h, targets, links)
    defaults = {"unit": unit, "color": {"mode": "thresholds"},
                "thresholds": thresholds or steps(("green", None)), "mappings": mappings or []}
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["options"] = {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return panel


def table(title: str, description: str, targets: Sequence[dict], columns: Sequence[Column], w: int = 24,
          h: int = 8, sort: Optional[Tuple[str, bool]] = None, links: Iterable[dict] = (),
          overrides: Sequence[dict] = ()) -> dict:
    """A table of instant queries. `columns` lists the fields shown, in order: label names, or
    "#A" for the value of query A; all other fields are dropped. Several queries are merged on
    their labels into one row per series."""
    panel = _panel("table", title, description, w, h, targets, links)
    single = len(targets) == 1

    def field(name: str) -> str:
        if not name.startswith("#"):
            return name
        return "Value" if single else f"Value {name}"

    names = [field(f) for f, _, _ in columns]
    transformations = [] if single else [{"id": "merge", "options": {}}]
    transformations += [
        {"id": "filterFieldsByName", "options": {"include": {"names": names}}},
        {"id": "organize", "options": {
            "excludeByName": {},
            "indexByName": {n: i for i, n in enumerate(names)},
            "renameByName": {field(f): shown for f, shown, _ in columns if shown != field(f)},
        }},
    ]
    panel["transformations"] = transformations
    units = [field_unit(shown, unit) for _, shown, unit in columns if unit]
    panel["fieldConfig"] = {
        "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": True},
                     "unit": "none", "color": {"mode": "thresholds"}, "thresholds": steps(("green", None))},
        "overrides": units + list(overrides),
    }
    panel["options"] = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": [{"displayName": sort[0], "desc": sort[1]}] if sort else [],
    }
    return panel


def text(title: str, content: str, w: int = 24, h: int = 4) -> dict:
    """A markdown panel (no query)."""
    panel = _panel("text", title, "", w, h)
    panel["options"] = {"mode": "markdown", "content": content,
                        "code": {"language": "plaintext", "showLineNumbers": False, "showMiniMap": False}}
    return panel


def row(title: str) -> dict:
    panel = _panel("row", title, "", COLUMNS, 1)
    panel.update(collapsed=False, panels=[])
    del panel["description"]
    return panel


# -- variables and the dashboard ------------------------------------------------------------------


def datasource_variable() -> dict:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_variable(name: str, label: str, query: str, multi: bool = False, all_value: Optional[str] = None) -> dict:
    """A variable from label_values(...), refreshed on time-range change; `multi` adds All."""
    variable = {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": query, "definition": query, "current": {}, "hide": 0, "options": [],
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1,
        "multi": multi, "includeAll": multi,
    }
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


def _layout(items: List) -> List[dict]:
    """Left to right, wrapping at 24 columns; a row panel always starts a new line; a list of
    panels is a column of panels stacked at the same x. Returns the panels, numbered."""
    panels: List[dict] = []
    x = y = line = 0
    for item in items:
        stack = item if isinstance(item, list) else [item]
        width = max(p["gridPos"]["w"] for p in stack)
        height = sum(p["gridPos"]["h"] for p in stack)
        if stack[0]["type"] == "row" or x + width > COLUMNS:
            x, y, line = 0, y + line, 0
        top = y
        for panel in stack:
            panel["gridPos"].update(x=x, y=top)
            top += panel["gridPos"]["h"]
            panels.append(panel)
        x, line = x + width, max(line, height)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def dashboard(uid: str, title: str, description: str, variables: List[dict], panels: List,
              links: List[dict], annotations: Sequence[dict] = (), time_from: str = "now-6h") -> dict:
    """The dashboard; `panels` in reading order, a list inside it being a column of panels. It is
    tagged `minerwatch` and with its uid, the tag the other dashboard's header link looks for."""
    panels = _layout(panels)
    return {
        "annotations": {"list": list(annotations)},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links,
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["minerwatch", uid],
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }
