"""The DNS client's own log of the names processes look up: event 3008 ("DNS query completed") in
Microsoft-Windows-DNS-Client/Operational, read through win32evtlog's Evt* functions.

Windows has no packet socket for the exporter; this log is how it learns pool addresses there.
Each 3008 event says which process asked (System/Execution ProcessID), for what (QueryName), how
it ended (QueryStatus: 0 answered, 9003 no such name, 1460 timed out) and the answer
(QueryResults: `type:  5 cname.example;::ffff:198.51.100.7;2001:db8::1;`, a CNAME as
`type:  5 name`, an IPv4 address written IPv4-mapped). The DNS client writes it in the asking
process, so answers served from the client's cache are logged too.

The channel is off by default: the installer or a GPO turns it on with
`wevtutil sl Microsoft-Windows-DNS-Client/Operational /e:true` (and may size it with `/ms:`);
`ChannelReader.enabled()` says whether it is on.

All of it is host text: a process picks the name it asks for and whoever answers writes the
results. Each event is bounded (MAX_XML characters, MAX_RESULTS items of at most 253 characters)
and one that does not parse is counted, not raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from minerwatch.network.pools import _ip, canonical_ip
from minerwatch.text import host_text
from minerwatch.windows import ReadFailed, describe, winerror_of
from minerwatch.windows.defender_events import parse_time

CHANNEL = "Microsoft-Windows-DNS-Client/Operational"
EVENT_ID = 3008
_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
MAX_XML = 16384  # a rendered 3008 event is about 1.5 KB; a longer one is not parsed
MAX_RESULTS = 32  # answer items read from one event
MAX_NAME = 253
MAX_RESULTS_TEXT = MAX_RESULTS * (MAX_NAME + 16)
_RECORD = re.compile(r"<EventRecordID>(\d{1,20})</EventRecordID>")


@dataclass(frozen=True)
class DnsEvent:
    record_id: int
    time: float  # seconds since the epoch; 0 if the event has none
    pid: Optional[int]  # the process that asked
    name: str  # the name asked, made safe, lower case, no trailing dot
    status: int  # 0: answered
    aliases: Tuple[str, ...]  # CNAMEs on the answer's chain
    results: str  # QueryResults, bounded; its addresses are read only for pool names (`addresses()`)

    def addresses(self) -> Tuple[str, ...]:
        """The canonical addresses answered."""
        return parse_results(self.results)[1]


def parse_results(text: str, addresses_too: bool = True) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(aliases, addresses) of a QueryResults value; items that are neither are skipped."""
    aliases: List[str] = []
    addresses: List[str] = []
    for item in text[:MAX_RESULTS_TEXT].split(";")[:MAX_RESULTS]:
        item = item.strip()
        if not item:
            continue
        if item.startswith("type:"):
            parts = item.split()
            if len(parts) == 3 and parts[1] == "5":  # CNAME
                aliases.append(host_text(parts[2], MAX_NAME).lower().rstrip("."))
            continue
        if addresses_too and len(item) <= 45 and _ip(item) is not None:
            addresses.append(canonical_ip(item))
    return tuple(aliases), tuple(addresses)


def parse_event(xml: str) -> Optional[DnsEvent]:
    """One rendered 3008 event; None when it is not one or does not parse."""
    if not isinstance(xml, str) or len(xml) > MAX_XML or "<!" in xml:  # no DTD: nothing to expand
        return None
    from xml.etree import ElementTree  # only where there are events: not loaded on Linux

    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, ValueError):  # ValueError: a lone surrogate cannot be encoded
        return None
    system = root.find(f"{_NS}System")
    if system is None or (system.findtext(f"{_NS}EventID") or "").strip() != str(EVENT_ID):
        return None
    data = {d.get("Name", ""): (d.text or "") for d in root.iter(f"{_NS}Data")}
    name = host_text(data.get("QueryName", "").strip(), MAX_NAME).lower().rstrip(".")
    status = data.get("QueryStatus", "").strip()
    if not name or not status.isdigit() or len(status) > 10:
        return None
    execution = system.find(f"{_NS}Execution")
    pid_text = execution.get("ProcessID", "") if execution is not None else ""
    record = (system.findtext(f"{_NS}EventRecordID") or "").strip()
    created = system.find(f"{_NS}TimeCreated")
    results = data.get("QueryResults", "")[:MAX_RESULTS_TEXT]
    aliases = parse_results(results, addresses_too=False)[0] if "type:" in results else ()
    return DnsEvent(
        record_id=int(record) if record.isdigit() and len(record) <= 20 else 0,
        time=parse_time(created.get("SystemTime", "")) if created is not None else 0.0,
        pid=int(pid_text) if pid_text.isdigit() and len(pid_text) <= 10 else None,
        name=name,
        status=int(status),
        aliases=aliases,
        results=results,
    )


class DnsEventReader:
    """New 3008 events since the last read, oldest first, at most `most` a read (the rest wait
    for the next one: a busy desk logs thousands an hour, a scrape reads a bounded share)."""

    def __init__(self, win32evtlog, batch: int = 128, most: int = 2000):
        self.e = win32evtlog
        self.batch, self.most = batch, most
        self.last_record = 0  # EventRecordID of the newest event read
        self.malformed_total = 0

    def read(self) -> Optional[List[DnsEvent]]:
        """The events after the last one read; None when the channel does not exist (not a
        Windows with the DNS client's log)."""
        e = self.e
        query = f"*[System[(EventID={EVENT_ID}) and (EventRecordID>{self.last_record})]]"
        try:
            result = e.EvtQuery(CHANNEL, e.EvtQueryChannelPath | e.EvtQueryForwardDirection, query)
        except Exception as exc:
            if winerror_of(exc) == 15007:  # ERROR_EVT_CHANNEL_NOT_FOUND
                return None
            raise ReadFailed(f"{CHANNEL}: {describe(exc)}") from None
        out: List[DnsEvent] = []
        seen = 0
        try:
            while seen < self.most:
                events = e.EvtNext(result, min(self.batch, self.most - seen))
                if not events:
                    break
                for handle in events:
                    seen += 1
                    xml = e.EvtRender(handle, e.EvtRenderEventXml)
                    parsed = parse_event(xml)
                    if parsed is None:
                        self.malformed_total += 1
                        found = _RECORD.search(xml[:MAX_XML]) if isinstance(xml, str) else None
                        record = int(found.group(1)) if found else 0
                    else:
                        record = parsed.record_id
                        out.append(parsed)
                    self.last_record = max(self.last_record, record)
        except Exception as exc:
            raise ReadFailed(f"{CHANNEL}: {describe(exc)}") from None
        return out


class ChannelReader:
    """Whether the DNS client's log is enabled (EvtOpenChannelConfig, EvtChannelConfigEnabled)."""

    def __init__(self, win32evtlog, channel: str = CHANNEL):
        self.e, self.channel = win32evtlog, channel

    def read(self) -> Optional[bool]:
        """True / False; None when the channel does not exist."""
        e = self.e
        try:
            config = e.EvtOpenChannelConfig(self.channel)
            value, _type = e.EvtGetChannelConfigProperty(config, e.EvtChannelConfigEnabled)
        except Exception as exc:
            if winerror_of(exc) == 15007:
                return None
            raise ReadFailed(f"{self.channel} configuration: {describe(exc)}") from None
        return bool(value)
