"""Defender exclusion changes from its event log: event 5007 in
Microsoft-Windows-Windows Defender/Operational ("The antimalware platform configuration changed").

A 5007 event carries the registry value before and after:
    New Value: HKLM\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\Paths\\C:\\Users\\bob\\x = 0x0
An exclusion added has it in New Value, one removed in Old Value. The events outlive the
exporter: an exclusion added while the exporter was stopped is still found when it starts again.

Who: the event's Security UserID, resolved to DOMAIN\\name where the account still exists.
Add-MpPreference goes through Defender's own service, so this is often SYSTEM; the person shows
in PowerShell's script-block log (4104) or Sysmon (13), which docs/windows.md says how to keep.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import List, Optional

from minerwatch.text import host_text
from minerwatch.windows import ReadFailed, describe, winerror_of

CHANNEL = "Microsoft-Windows-Windows Defender/Operational"
EVENT_ID = 5007
_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
_KEY = re.compile(
    r"\\(Policies\\)?Microsoft\\Windows Defender\\Exclusions\\(Paths|Processes|Extensions|IpAddresses)\\(.+?)"
    r"(?: = [^=]*)?\Z",
    re.IGNORECASE | re.DOTALL,
)
KINDS = {"paths": "path", "processes": "process", "extensions": "extension", "ipaddresses": "ip"}
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z?\Z")


@dataclass(frozen=True)
class ExclusionEvent:
    record_id: int
    time: float  # seconds since the epoch
    action: str  # added | removed
    kind: str  # path | process | extension | ip
    value: str  # made safe
    source: str  # policy (Group Policy, Intune) | local (Add-MpPreference, the Security app)
    user_sid: str


def parse_time(text: str) -> float:
    m = _TIME.match(text.strip())
    if not m:
        return 0.0
    whole = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    return whole + (float("0." + m.group(7)) if m.group(7) else 0.0)


def parse_event(xml: str) -> Optional[ExclusionEvent]:
    """One rendered 5007 event; None when it changed something other than an exclusion."""
    from xml.etree import ElementTree  # only where there are events: not loaded on Linux

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    system = root.find(f"{_NS}System")
    if system is None:
        return None
    data = {d.get("Name", ""): (d.text or "") for d in root.iter(f"{_NS}Data")}
    new = data.get("New Value", data.get("NewValue", "")).strip()
    old = data.get("Old Value", data.get("OldValue", "")).strip()
    found = _KEY.search(new) if new else None
    action = "added"
    if not found:
        found, action = (_KEY.search(old) if old else None), "removed"
    if not found:
        return None
    record = system.findtext(f"{_NS}EventRecordID") or "0"
    created = system.find(f"{_NS}TimeCreated")
    security = system.find(f"{_NS}Security")
    return ExclusionEvent(
        record_id=int(record) if record.isdigit() else 0,
        time=parse_time(created.get("SystemTime", "")) if created is not None else 0.0,
        action=action,
        kind=KINDS[found.group(2).casefold()],
        value=host_text(found.group(3), 512),
        source="policy" if found.group(1) else "local",
        user_sid=host_text(security.get("UserID", "") if security is not None else "", 200),
    )


class ExclusionEventReader:
    """New 5007 events since the last read, through win32evtlog's Evt* functions."""

    def __init__(self, win32evtlog, batch: int = 64, most: int = 10000):
        self.e = win32evtlog
        self.batch, self.most = batch, most
        self.last_record = 0  # EventRecordID of the newest event read

    def read(self) -> Optional[List[ExclusionEvent]]:
        """Exclusion events after the last one read, oldest first; None when Defender's log is absent."""
        e = self.e
        query = f"*[System[(EventID={EVENT_ID}) and (EventRecordID>{self.last_record})]]"
        try:
            result = e.EvtQuery(CHANNEL, e.EvtQueryChannelPath | e.EvtQueryForwardDirection, query)
        except Exception as exc:
            if winerror_of(exc) == 15007:  # ERROR_EVT_CHANNEL_NOT_FOUND: no Defender on this host
                return None
            raise ReadFailed(f"{CHANNEL}: {describe(exc)}") from None
        out: List[ExclusionEvent] = []
        seen = 0
        try:
            while seen < self.most:
                events = e.EvtNext(result, self.batch)
                if not events:
                    break
                for handle in events:
                    seen += 1
                    parsed = parse_event(e.EvtRender(handle, e.EvtRenderEventXml))
                    record = _record_id(parsed, handle, e)
                    self.last_record = max(self.last_record, record)
                    if parsed:
                        out.append(parsed)
        except ReadFailed:
            raise
        except Exception as exc:
            raise ReadFailed(f"{CHANNEL}: {describe(exc)}") from None
        return out


def _record_id(parsed: Optional[ExclusionEvent], handle, e) -> int:
    if parsed:
        return parsed.record_id
    # a 5007 about another setting: its record id still moves the cursor on
    m = re.search(r"<EventRecordID>(\d+)</EventRecordID>", e.EvtRender(handle, e.EvtRenderEventXml))
    return int(m.group(1)) if m else 0
