"""Stand-ins for the pywin32 modules minerwatch uses, over a Windows machine described in Python.

pywin32 does not install on Linux. `FakeWindows` is the machine (services, LSA rights, accounts,
event log channels, what was written to the Event Log) and `modules(machine)` builds modules named
and shaped like pywin32's: win32service, win32serviceutil, servicemanager, win32evtlog,
win32security, winerror, pywintypes, win32inet. Only names minerwatch uses are here, each with pywin32's
parameter names (tests/test_windows_api.py checks them against the `types-pywin32` stubs, and the
constants against the stubs' values where they carry them, else the Windows SDK's).

Errors are pywin32's: `pywintypes.error(winerror, funcname, strerror)`, with the real codes:
5 access denied, 1060 no such service, 1332 no account for a SID, 15007 no such event channel.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


# -- pywintypes --------------------------------------------------------------------------------------
class error(Exception):
    """pywintypes.error: args are (winerror, funcname, strerror), as the real one's."""

    def __init__(self, winerror: int, funcname: str, strerror: str, /):
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


_TEXT = {
    5: "Access is denied.",
    6: "The handle is invalid.",
    1060: "The specified service does not exist as an installed service.",
    1332: "No mapping between account names and security IDs was done.",
    15007: "The specified channel could not be found.",
}


def _fail(code: int, func: str):
    raise error(code, func, _TEXT[code])


class PySID:
    def __init__(self, text: str):
        self._text = text

    def __eq__(self, other):
        return isinstance(other, PySID) and other._text == self._text

    def __hash__(self):
        return hash(self._text)

    def __repr__(self):
        return f"PySID:{self._text}"


class _Handle:
    """An opaque handle, as PySC_HANDLE / PyLSA_HANDLE / PyEVT_HANDLE are; closing twice fails."""

    def __init__(self, kind: str, target=None):
        self.kind, self.target, self.closed = kind, target, False

    def close(self, func: str):
        if self.closed:
            _fail(6, func)
        self.closed = True


# -- the machine ---------------------------------------------------------------------------------------
@dataclass
class FakeService:
    name: str
    binary_path: str
    service_type: int = 0x1  # SERVICE_KERNEL_DRIVER
    state: int = 1  # SERVICE_STOPPED
    start_type: int = 3  # SERVICE_DEMAND_START
    display_name: str = ""
    start_name: str = ""  # the account: "LocalSystem" for ours, "" for drivers
    failure_actions: Optional[dict] = None  # QueryServiceConfig2(.., SERVICE_CONFIG_FAILURE_ACTIONS)
    failure_actions_flag: bool = False


@dataclass
class FakeWindows:
    services: Dict[str, FakeService] = field(default_factory=dict)
    rights: Dict[str, List[str]] = field(default_factory=dict)  # right -> string SIDs holding it
    accounts: Dict[str, Tuple[str, str, int]] = field(default_factory=dict)  # SID -> (name, domain, type)
    channels: Dict[str, List[str]] = field(default_factory=dict)  # channel -> event XML, oldest first
    denied: set = field(default_factory=set)  # function names that answer "access denied"
    written: List[tuple] = field(default_factory=list)  # (source, type, category, id, strings)
    sources: Dict[str, str] = field(default_factory=dict)  # registered event sources
    status_reports: List[tuple] = field(default_factory=list)  # SetServiceStatus calls
    open_handles: int = 0
    disabled_channels: set = field(default_factory=set)  # channels that exist but are not enabled
    # WinHttpGetDefaultProxyConfiguration's answer: (dwAccessType, lpszProxy, lpszProxyBypass);
    # 1 WINHTTP_ACCESS_TYPE_NO_PROXY, 3 WINHTTP_ACCESS_TYPE_NAMED_PROXY
    winhttp_proxy: tuple = (1, None, None)

    def add_service(self, service: FakeService) -> None:
        self.services[service.name.casefold()] = service

    def grant(self, right: str, sid: str, name: str, domain: str, sid_type: int = 1) -> None:
        self.rights.setdefault(right, []).append(sid)
        if name:
            self.accounts[sid] = (name, domain, sid_type)

    def log_event(self, channel: str, xml: str) -> None:
        self.channels.setdefault(channel, []).append(xml)


# SDK values of the constants (winsvc.h, winnt.h, ntsecapi.h, winevt.h)
WIN32SERVICE = dict(
    SC_MANAGER_CONNECT=0x1, SC_MANAGER_ENUMERATE_SERVICE=0x4,
    SERVICE_KERNEL_DRIVER=0x1, SERVICE_FILE_SYSTEM_DRIVER=0x2, SERVICE_DRIVER=0xB, SERVICE_WIN32_OWN_PROCESS=0x10,
    SERVICE_STATE_ALL=0x3, SERVICE_QUERY_CONFIG=0x1, SERVICE_QUERY_STATUS=0x4,
    SERVICE_STOPPED=1, SERVICE_START_PENDING=2, SERVICE_STOP_PENDING=3, SERVICE_RUNNING=4,
    SERVICE_ACCEPT_STOP=0x1, SERVICE_ACCEPT_PAUSE_CONTINUE=0x2, SERVICE_ACCEPT_SHUTDOWN=0x4,
    SERVICE_CONTROL_STOP=1, SERVICE_CONTROL_INTERROGATE=4, SERVICE_CONTROL_SHUTDOWN=5,
    SERVICE_AUTO_START=2, SERVICE_DEMAND_START=3, SERVICE_DISABLED=4,
    SERVICE_CONFIG_FAILURE_ACTIONS=2, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG=4,
    SC_ACTION_NONE=0, SC_ACTION_RESTART=1,
)
WIN32EVTLOG = dict(
    EVENTLOG_ERROR_TYPE=0x1, EVENTLOG_WARNING_TYPE=0x2, EVENTLOG_INFORMATION_TYPE=0x4,
    EvtQueryChannelPath=0x1, EvtQueryFilePath=0x2, EvtQueryForwardDirection=0x100, EvtQueryReverseDirection=0x200,
    EvtRenderEventXml=1, EvtChannelConfigEnabled=0,
)
WIN32SECURITY = dict(POLICY_VIEW_LOCAL_INFORMATION=0x1, POLICY_LOOKUP_NAMES=0x800)
WINERROR = dict(
    ERROR_FILE_NOT_FOUND=2, ERROR_ACCESS_DENIED=5, ERROR_INVALID_HANDLE=6, ERROR_NO_MORE_ITEMS=259,
    ERROR_SERVICE_DOES_NOT_EXIST=1060, ERROR_SERVICE_SPECIFIC_ERROR=1066, ERROR_NONE_MAPPED=1332,
    ERROR_EVT_CHANNEL_NOT_FOUND=15007,
)
SERVICEMANAGER = dict(EVENTLOG_ERROR_TYPE=0x1, EVENTLOG_WARNING_TYPE=0x2, EVENTLOG_INFORMATION_TYPE=0x4,
                      PYS_SERVICE_STARTED=0x1003, PYS_SERVICE_STOPPED=0x1006)


def _module(name: str, constants: dict, functions: dict) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(constants)
    for fname, fn in functions.items():
        fn.__name__ = fn.__qualname__ = fname
        setattr(module, fname, fn)
    return module


def modules(machine: FakeWindows) -> Dict[str, types.ModuleType]:
    """Fresh fake modules over `machine`, keyed by pywin32's module names."""
    c = types.SimpleNamespace(**WIN32SERVICE)

    def check(func: str):
        if func in machine.denied:
            _fail(5, func)

    # -- win32service ------------------------------------------------------------------------------
    def OpenSCManager(machineName, dbName, desiredAccess, /):
        check("OpenSCManager")
        machine.open_handles += 1
        return _Handle("scm")

    def OpenService(scHandle, name, desiredAccess, /):
        if scHandle.kind != "scm" or scHandle.closed:
            _fail(6, "OpenService")
        check("OpenService")
        service = machine.services.get(name.casefold())
        if service is None:
            _fail(1060, "OpenService")
        machine.open_handles += 1
        return _Handle("service", service)

    def CloseServiceHandle(scHandle, /):
        scHandle.close("CloseServiceHandle")
        machine.open_handles -= 1

    def EnumServicesStatus(hSCManager, ServiceType=0x30, ServiceState=0x3, /):
        check("EnumServicesStatus")
        out = []
        for s in machine.services.values():
            if s.service_type & ServiceType:
                out.append((s.name, s.display_name or s.name, (s.service_type, s.state, 0, 0, 0, 0, 0)))
        return tuple(out)

    def QueryServiceConfig(hService, /):
        check("QueryServiceConfig")
        s = hService.target
        return (s.service_type, s.start_type, 1, s.binary_path, "", 0, [], s.start_name, s.display_name or s.name)

    def QueryServiceConfig2(hService, InfoLevel, /):
        check("QueryServiceConfig2")
        s = hService.target
        if InfoLevel == c.SERVICE_CONFIG_FAILURE_ACTIONS:
            return s.failure_actions or {"ResetPeriod": 0, "RebootMsg": None, "Command": None, "Actions": None}
        if InfoLevel == c.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG:
            return s.failure_actions_flag
        raise NotImplementedError(InfoLevel)

    def SetServiceStatus(scHandle, serviceStatus, /):
        machine.status_reports.append(tuple(serviceStatus))

    win32service = _module("win32service", WIN32SERVICE, dict(
        OpenSCManager=OpenSCManager, OpenService=OpenService, CloseServiceHandle=CloseServiceHandle,
        EnumServicesStatus=EnumServicesStatus, QueryServiceConfig=QueryServiceConfig,
        QueryServiceConfig2=QueryServiceConfig2, SetServiceStatus=SetServiceStatus,
    ))
    win32service.error = error

    # -- win32security -----------------------------------------------------------------------------
    def LsaOpenPolicy(system_name, access_mask, /):
        check("LsaOpenPolicy")
        return _Handle("lsa")

    def LsaClose(PolicyHandle, /):
        PolicyHandle.close("LsaClose")

    def LsaEnumerateAccountsWithUserRight(PolicyHandle, UserRight, /):
        check("LsaEnumerateAccountsWithUserRight")
        sids = machine.rights.get(UserRight, [])
        if not sids:  # STATUS_NO_MORE_ENTRIES, which LsaNtStatusToWinError maps to 259
            raise error(259, "LsaEnumerateAccountsWithUserRight", "No more data is available.")
        return tuple(PySID(s) for s in sids)

    def LookupAccountSid(systemName, sid, /):
        if sid._text not in machine.accounts:
            _fail(1332, "LookupAccountSid")
        return machine.accounts[sid._text]

    def ConvertSidToStringSid(Sid, /):
        return Sid._text

    def ConvertStringSidToSid(StringSid, /):
        return PySID(StringSid)

    win32security = _module("win32security", WIN32SECURITY, dict(
        LsaOpenPolicy=LsaOpenPolicy, LsaClose=LsaClose,
        LsaEnumerateAccountsWithUserRight=LsaEnumerateAccountsWithUserRight, LookupAccountSid=LookupAccountSid,
        ConvertSidToStringSid=ConvertSidToStringSid, ConvertStringSidToSid=ConvertStringSidToSid,
    ))
    win32security.error = error

    # -- win32evtlog -------------------------------------------------------------------------------
    def EvtQuery(Path, Flags, Query=None, Session=None):
        check("EvtQuery")
        if Path not in machine.channels:
            _fail(15007, "EvtQuery")
        events = _filter(machine.channels[Path], Query)
        if Flags & WIN32EVTLOG["EvtQueryReverseDirection"]:
            events.reverse()
        return _Handle("query", iter(events))

    def EvtNext(ResultSet, Count, Timeout=-1, Flags=0):
        out = []
        for xml in ResultSet.target:  # an exhausted result set answers an empty tuple
            out.append(_Handle("event", xml))
            if len(out) == Count:
                break
        return tuple(out)

    def EvtRender(Event, Flags, Context=None):
        if Flags != WIN32EVTLOG["EvtRenderEventXml"]:
            raise NotImplementedError(Flags)
        return Event.target

    def RegisterEventSource(serverName, sourceName, /):
        check("RegisterEventSource")
        return _Handle("source", sourceName)

    def DeregisterEventSource(handle, /):
        handle.close("DeregisterEventSource")

    def ReportEvent(EventLog, Type, Category, EventID, UserSid, Strings, RawData, /):
        if EventLog.closed:
            _fail(6, "ReportEvent")
        strings = tuple(Strings or ())
        if any(len(s) > 31839 for s in strings):  # ReportEvent's documented limit per string
            raise error(1734, "ReportEvent", "The array bounds are invalid.")
        machine.written.append((EventLog.target, Type, Category, EventID, strings))

    def EvtOpenChannelConfig(ChannelPath, Session=None, Flags=0):
        check("EvtOpenChannelConfig")
        if ChannelPath not in machine.channels:
            _fail(15007, "EvtOpenChannelConfig")
        return _Handle("channel_config", ChannelPath)

    def EvtGetChannelConfigProperty(ChannelConfig, PropertyId, Flags=0):
        if ChannelConfig.kind != "channel_config" or ChannelConfig.closed:
            _fail(6, "EvtGetChannelConfigProperty")
        if PropertyId != WIN32EVTLOG["EvtChannelConfigEnabled"]:
            raise NotImplementedError(PropertyId)
        return ChannelConfig.target not in machine.disabled_channels, 13  # (value, EvtVarTypeBoolean)

    win32evtlog = _module("win32evtlog", WIN32EVTLOG, dict(
        EvtQuery=EvtQuery, EvtNext=EvtNext, EvtRender=EvtRender, RegisterEventSource=RegisterEventSource,
        DeregisterEventSource=DeregisterEventSource, ReportEvent=ReportEvent,
        EvtOpenChannelConfig=EvtOpenChannelConfig, EvtGetChannelConfigProperty=EvtGetChannelConfigProperty,
    ))

    # -- win32inet ---------------------------------------------------------------------------------
    def WinHttpGetDefaultProxyConfiguration():
        check("WinHttpGetDefaultProxyConfiguration")
        return tuple(machine.winhttp_proxy)

    win32inet = _module("win32inet", {}, dict(WinHttpGetDefaultProxyConfiguration=WinHttpGetDefaultProxyConfiguration))

    # -- servicemanager (the C side of a pywin32 service) --------------------------------------------
    def RegisterServiceCtrlHandler(serviceName, callback, extra_args=False, /):
        machine.ctrl_handler = callback
        return _Handle("status", serviceName)

    def SetEventSourceName(sourceName, registerNow=False, /):
        machine.sources[sourceName] = "servicemanager"

    def LogMsg(errorType, eventId, inserts=None, /):
        machine.written.append(("servicemanager", errorType, 0, eventId, tuple(inserts or ())))

    def LogErrorMsg(msg, /):
        machine.written.append(("servicemanager", 1, 0, 0xFF, (msg,)))

    def Initialize(eventSourceName=None, eventSourceFile=None, /):
        machine.sources[eventSourceName or "PythonService"] = eventSourceFile or ""

    def PrepareToHostSingle(klass=None, /):
        machine.hosted = klass

    def StartServiceCtrlDispatcher():
        machine.dispatched = True

    servicemanager = _module("servicemanager", SERVICEMANAGER, dict(
        RegisterServiceCtrlHandler=RegisterServiceCtrlHandler, SetEventSourceName=SetEventSourceName,
        LogMsg=LogMsg, LogErrorMsg=LogErrorMsg, Initialize=Initialize,
        PrepareToHostSingle=PrepareToHostSingle, StartServiceCtrlDispatcher=StartServiceCtrlDispatcher,
    ))

    # -- win32serviceutil (pure Python in pywin32; the parts of ServiceFramework we rely on) ----------
    class ServiceFramework:
        _svc_deps_ = None
        _exe_name_ = None
        _exe_args_ = None
        _svc_description_ = None

        def __init__(self, args):
            self.ssh = servicemanager.RegisterServiceCtrlHandler(args[0], self.ServiceCtrlHandlerEx, True)
            servicemanager.SetEventSourceName(self._svc_name_)
            self.checkPoint = 0

        def GetAcceptedControls(self):
            accepted = 0
            if hasattr(self, "SvcStop"):
                accepted |= c.SERVICE_ACCEPT_STOP
            if hasattr(self, "SvcShutdown"):
                accepted |= c.SERVICE_ACCEPT_SHUTDOWN
            return accepted

        def ReportServiceStatus(self, serviceStatus, waitHint=5000, win32ExitCode=0, svcExitCode=0):
            if self.ssh is None:
                return
            accepted = 0 if serviceStatus == c.SERVICE_START_PENDING else self.GetAcceptedControls()
            if serviceStatus in (c.SERVICE_RUNNING, c.SERVICE_STOPPED):
                checkPoint = 0
            else:
                self.checkPoint += 1
                checkPoint = self.checkPoint
            win32service.SetServiceStatus(self.ssh, (c.SERVICE_WIN32_OWN_PROCESS, serviceStatus, accepted,
                                                     win32ExitCode, svcExitCode, checkPoint, waitHint))

        def SvcInterrogate(self):
            self.ReportServiceStatus(c.SERVICE_RUNNING)

        def SvcOther(self, control):
            pass

        def ServiceCtrlHandler(self, control):
            if control == c.SERVICE_CONTROL_STOP:
                self.SvcStop()
            elif control == c.SERVICE_CONTROL_SHUTDOWN and hasattr(self, "SvcShutdown"):
                self.SvcShutdown()
            elif control == c.SERVICE_CONTROL_INTERROGATE:
                self.SvcInterrogate()
            else:
                self.SvcOther(control)

        def ServiceCtrlHandlerEx(self, control, event_type, data):
            return self.ServiceCtrlHandler(control)

        def SvcRun(self):
            # As pywin32's: RUNNING, the body, then STOP_PENDING; the C host reports STOPPED after.
            self.ReportServiceStatus(c.SERVICE_RUNNING)
            self.SvcDoRun()
            self.ReportServiceStatus(c.SERVICE_STOP_PENDING)

    win32serviceutil = _module("win32serviceutil", {}, {})
    win32serviceutil.ServiceFramework = ServiceFramework

    pywintypes = _module("pywintypes", {}, {})
    pywintypes.error = error
    winerror = _module("winerror", WINERROR, {})
    return {
        "win32service": win32service, "win32security": win32security, "win32evtlog": win32evtlog,
        "servicemanager": servicemanager, "win32serviceutil": win32serviceutil, "pywintypes": pywintypes,
        "winerror": winerror, "win32inet": win32inet,
    }


def host_service(machine: FakeWindows, klass, name: str):
    """What pywin32's C host (PythonService.exe / the frozen exe) does with a service class:
    construct it, report START_PENDING, call SvcRun, then report STOPPED; an exception from SvcRun
    is reported as a stop with ERROR_SERVICE_SPECIFIC_ERROR so the SCM's recovery applies."""
    service = klass([name])
    service.ReportServiceStatus(WIN32SERVICE["SERVICE_START_PENDING"])
    try:
        service.SvcRun()
    except Exception:
        service.ReportServiceStatus(WIN32SERVICE["SERVICE_STOPPED"], win32ExitCode=1066, svcExitCode=1)
        return service
    service.ReportServiceStatus(WIN32SERVICE["SERVICE_STOPPED"])
    return service


def install(monkeypatch, machine: FakeWindows) -> Dict[str, types.ModuleType]:
    """Put the fake modules in sys.modules for the length of a test."""
    mods = modules(machine)
    for name, module in mods.items():
        monkeypatch.setitem(sys.modules, name, module)
    return mods


# -- event XML as the Event Log renders it --------------------------------------------------------------
_NS = "http://schemas.microsoft.com/win/2004/08/events/event"


def event_xml(record_id: int, event_id: int, time: str, user_sid: str = "S-1-5-18",
              data: Optional[Dict[str, str]] = None, computer: str = "PC-0417.ministry.local",
              provider: str = "Microsoft-Windows-Windows Defender") -> str:
    from xml.sax.saxutils import escape, quoteattr

    items = "".join(f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in (data or {}).items())
    return (
        f"<Event xmlns='{_NS}'><System><Provider Name='{provider}'/>"
        f"<EventID>{event_id}</EventID><Version>0</Version><Level>4</Level>"
        f"<TimeCreated SystemTime='{time}'/><EventRecordID>{record_id}</EventRecordID>"
        f"<Channel>Microsoft-Windows-Windows Defender/Operational</Channel><Computer>{computer}</Computer>"
        f"<Security UserID='{user_sid}'/></System><EventData>{items}</EventData></Event>"
    )


def _filter(events: List[str], query: Optional[str]) -> List[str]:
    """The subset of XPath 1.0 the Event Log accepts that minerwatch sends:
    *[System[(EventID=N or EventID=M) and EventRecordID>K]]"""
    import re

    if not query or query == "*":
        return list(events)
    ids = [int(x) for x in re.findall(r"EventID=(\d+)", query)]
    after = re.search(r"EventRecordID\s*>\s*(\d+)", query)
    floor = int(after.group(1)) if after else -1
    out = []
    for xml in events:
        event_id = int(re.search(r"<EventID>(\d+)</EventID>", xml).group(1))
        record = int(re.search(r"<EventRecordID>(\d+)</EventRecordID>", xml).group(1))
        if (not ids or event_id in ids) and record > floor:
            out.append(xml)
    return out


def dns_event_xml(record_id: int, name: str, results: str = "", status: int = 0, pid: Optional[int] = 4242,
                  time: str = "2026-11-30T09:00:00.0000000Z", event_id: int = 3008,
                  user_sid: str = "S-1-5-21-1-2-3-1107") -> str:
    """A Microsoft-Windows-DNS-Client/Operational event as the Event Log renders it: 3008 (query
    completed) carries QueryName, QueryType, QueryOptions, QueryStatus and QueryResults, and the
    asking process in System/Execution."""
    from xml.sax.saxutils import escape, quoteattr

    data = {"QueryName": name, "QueryType": "1", "QueryOptions": "140737488355328",
            "QueryStatus": str(status), "QueryResults": results}
    items = "".join(f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in data.items())
    execution = f"<Execution ProcessID='{pid}' ThreadID='5120'/>" if pid is not None else ""
    return (
        f"<Event xmlns='{_NS}'><System><Provider Name='Microsoft-Windows-DNS-Client' "
        f"Guid='{{1c95126e-7eea-49a9-a3fe-a378b03ddb4d}}'/>"
        f"<EventID>{event_id}</EventID><Version>0</Version><Level>4</Level><Task>0</Task><Opcode>0</Opcode>"
        f"<Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime='{time}'/>"
        f"<EventRecordID>{record_id}</EventRecordID><Correlation/>{execution}"
        f"<Channel>Microsoft-Windows-DNS-Client/Operational</Channel><Computer>PC-0417.ministry.local</Computer>"
        f"<Security UserID='{user_sid}'/></System><EventData>{items}</EventData></Event>"
    )
