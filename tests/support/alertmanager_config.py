"""The shipped Alertmanager config, rewired so that every notification goes to one webhook.

    from support.alertmanager_config import webhook_config
    config = webhook_config("http://127.0.0.1:PORT/hook")
    Path(tmp, "alertmanager.yml").write_text(yaml.safe_dump(config))

Keeps the shipped route tree (matchers, receivers' names, grouping), inhibit rules and
templates (their paths made absolute so the config can live anywhere). Every receiver's
integrations are replaced by one webhook to `url` with send_resolved, so a test can see which
receiver each notification was routed to (the payload's "receiver"). The timers are set on the
root route and removed from child routes so that the short test timers apply everywhere.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
TIMERS = ("group_wait", "group_interval", "repeat_interval")


def _strip_timers(route: dict) -> None:
    for child in route.get("routes") or []:
        for key in TIMERS:
            child.pop(key, None)
        _strip_timers(child)


def webhook_config(url: str, group_wait="1s", group_interval="2s", repeat_interval="1h") -> dict:
    """The shipped alertmanager.yml with every receiver sending to the webhook `url`."""
    config = copy.deepcopy(yaml.safe_load(SHIPPED_CONFIG.read_text()))
    base = SHIPPED_CONFIG.parent
    config["templates"] = [str(base / t) for t in config.get("templates") or []]
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": url, "send_resolved": True}]}
        for r in config["receivers"]
    ]
    route = config["route"]
    _strip_timers(route)
    route.update(group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval)
    return config
