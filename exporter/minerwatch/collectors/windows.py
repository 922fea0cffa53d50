"""Windows collector: Defender's own switches, its exclusion changes (event 5007) and this service's
recovery settings, the facts a user who wants the exporter blind changes first.

Exclusions in force are the antivirus collector's; this one adds when and by whom they changed,
from Defender's event log, which also holds changes made while the exporter was stopped. Off
Windows (no pywin32, no winreg) it does not run and is not reported.

Sample output:
    minerwatch_windows_defender_tamper_protection_enabled 0
    minerwatch_windows_defender_realtime_protection_enabled 1
    minerwatch_windows_defender_exclusion_events_total{action="added"} 1
    minerwatch_windows_defender_exclusion_last_event_timestamp_seconds{action="added"} 1.7645e+09
    minerwatch_windows_defender_exclusion_event_timestamp_seconds{action="added",exclusion="C:\\\\Users\\\\bob\\\\x",kind="path",source="local",user="NT AUTHORITY\\\\SYSTEM"} 1.7645e+09
    minerwatch_windows_service_autostart 1
    minerwatch_windows_service_restart_on_failure 1
    minerwatch_windows_source_up{source="defender_event_log"} 1
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Deque, Dict, Iterable

from minerwatch import windows
from minerwatch.antivirus.sources import registry_module
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from minerwatch.text import host_text
from minerwatch.windows.defender_events import ExclusionEvent, ExclusionEventReader
from minerwatch.windows.service_config import ServiceConfigReader
from minerwatch.windows.tamper import DefenderSwitchReader

log = logging.getLogger("minerwatch.windows")
_AUTO = object()
KEEP_EVENTS = 10  # the newest exclusion events exported one by one
ACTIONS = ("added", "removed")
SERVICE_NAME = "minerwatch"


@register
class WindowsCollector(Collector):
    name = "windows"
    help = "Windows: Defender tamper and real-time protection, exclusion changes (event 5007), service recovery."

    @classmethod
    def applies(cls) -> bool:
        return windows.load() is not None or registry_module() is not None

    def __init__(self, context: Context, win32=_AUTO, winreg=_AUTO, service_name: str = SERVICE_NAME):
        super().__init__(context)
        if win32 is _AUTO:
            win32 = windows.load()
        if winreg is _AUTO:
            winreg = registry_module()
        self.win32 = win32
        self.switches = DefenderSwitchReader(winreg) if winreg is not None else None
        self.events = ExclusionEventReader(win32.win32evtlog) if win32 else None
        self.service = ServiceConfigReader(win32.win32service, service_name) if win32 else None
        self._recent: Deque[ExclusionEvent] = deque(maxlen=KEEP_EVENTS)
        self._counts: Dict[str, int] = {a: 0 for a in ACTIONS}
        self._last: Dict[str, float] = {}
        self._first_read = True
        self._users: Dict[str, str] = {}
        self._reads = windows.SourceReads(log)

    def _read(self, source: str, reader):
        return self._reads.read(source, reader)

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("minerwatch_windows_source_up",
                               "1 if a Windows source was read, 0 if it failed (see the log).", labels=["source"])
        if self.switches is not None:
            ok, switches = self._read("defender_registry", self.switches)
            up.add_metric(["defender_registry"], 1 if ok else 0)
            if ok and switches.tamper_protection is not None:
                yield GaugeMetricFamily("minerwatch_windows_defender_tamper_protection_enabled",
                                        "1 if Defender's tamper protection is on, 0 if it is off.",
                                        value=1 if switches.tamper_protection else 0)
            if ok and switches.realtime_protection is not None:
                yield GaugeMetricFamily("minerwatch_windows_defender_realtime_protection_enabled",
                                        "1 if Defender's real-time protection is on, 0 if turned off.",
                                        value=1 if switches.realtime_protection else 0)
        if self.events is not None:
            ok, events = self._read("defender_event_log", self.events)
            up.add_metric(["defender_event_log"], 1 if ok else 0)
            if ok and events is not None:
                self._take(events)
            if not self._first_read:  # Defender's log was read at least once
                yield from self._event_families()
        if self.service is not None:
            ok, config = self._read("service_config", self.service)
            up.add_metric(["service_config"], 1 if ok else 0)
            if ok and config is not None:
                yield GaugeMetricFamily("minerwatch_windows_service_autostart",
                                        "1 if the minerwatch service starts at boot (automatic start).",
                                        value=1 if config.autostart else 0)
                yield GaugeMetricFamily("minerwatch_windows_service_restart_on_failure",
                                        "1 if the service manager restarts minerwatch when it fails or is killed.",
                                        value=1 if config.restart_on_failure else 0)
        if self.switches is not None or self.events is not None:
            yield up

    def _take(self, events) -> None:
        for event in events:
            if not self._first_read:  # the history read at start is evidence, not a change seen
                self._counts[event.action] += 1
            self._last[event.action] = max(self._last.get(event.action, 0.0), event.time)
            self._recent.append(event)
        self._first_read = False

    def _event_families(self) -> Iterable[Metric]:
        total = CounterMetricFamily(
            "minerwatch_windows_defender_exclusion_events",
            "Defender exclusion changes (event 5007) logged since the exporter started.",
            labels=["action"],
        )
        last = GaugeMetricFamily(
            "minerwatch_windows_defender_exclusion_last_event_timestamp_seconds",
            "Time of the newest exclusion change in Defender's event log, the exporter's downtime included.",
            labels=["action"],
        )
        for action in ACTIONS:
            total.add_metric([action], self._counts[action])
            if action in self._last:
                last.add_metric([action], self._last[action])
        yield total
        yield last
        recent = GaugeMetricFamily(
            "minerwatch_windows_defender_exclusion_event_timestamp_seconds",
            f"Time of each of the newest {KEEP_EVENTS} exclusion changes, with what changed and the account logged.",
            labels=["action", "kind", "exclusion", "source", "user"],
        )
        seen = set()
        for event in reversed(self._recent):
            labels = (event.action, event.kind, event.value, event.source, self._user(event.user_sid))
            if labels not in seen:  # the same change twice: keep the newest time
                seen.add(labels)
                recent.add_metric(list(labels), event.time)
        yield recent

    def _user(self, sid_text: str) -> str:
        if not sid_text:
            return ""
        if sid_text not in self._users:
            name = sid_text
            try:
                s = self.win32.win32security
                account, domain, _ = s.LookupAccountSid(None, s.ConvertStringSidToSid(sid_text))
                name = f"{domain}\\{account}" if domain else account
            except Exception:  # a deleted account, or LSA unreachable: the SID is still evidence
                pass
            self._users[sid_text] = host_text(name, 256)
        return self._users[sid_text]
