"""The pywin32 fakes against pywin32's published signatures (PyPI's `types-pywin32` stubs).

Every name minerwatch touches on a fake module must exist in the real module's stub, every fake
function must take the stub's parameters (same names, same positional-only/keyword kinds, same
defaults-or-not), and every constant whose value the stub states must have that value.
"""

from __future__ import annotations

import ast
import inspect
import logging
import sysconfig
import types
from pathlib import Path

import pytest

from support.fakes.win32 import FakeService, FakeWindows, dns_event_xml, event_xml, modules
from minerwatch.windows.defender_events import CHANNEL, ExclusionEventReader
from minerwatch.windows import dns_events
from minerwatch.windows.proxy import ProxySettingsReader
from minerwatch.windows.drivers import MsrDriverReader
from minerwatch.windows.eventlog import EventLogHandler
from minerwatch.windows.privileges import LockMemoryReader
from minerwatch.windows.service_config import ServiceConfigReader

STUBS = Path(sysconfig.get_paths()["purelib"]) / "win32-stubs"
STUB_FILES = {
    "win32service": "win32service.pyi", "win32security": "win32security.pyi", "win32evtlog": "win32evtlog.pyi",
    "servicemanager": "servicemanager.pyi", "win32serviceutil": "lib/win32serviceutil.pyi",
    "winerror": "lib/winerror.pyi", "pywintypes": "lib/pywintypes.pyi", "win32inet": "win32inet.pyi",
}
pytestmark = pytest.mark.skipif(not STUBS.is_dir(), reason="types-pywin32 is not installed (pip install types-pywin32)")


def stub(module: str):
    """(functions: name -> ast args, classes: name -> {method: ast args}, constants: name -> value or None)."""
    tree = ast.parse((STUBS / STUB_FILES[module]).read_text())
    functions, classes, constants = {}, {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = node.args
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name: n.args for n in node.body if isinstance(n, ast.FunctionDef)}
            functions[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            constants[node.target.id] = value
        elif isinstance(node, ast.ImportFrom):  # `from ... import error as error`
            for alias in node.names:
                functions[alias.asname or alias.name] = None
    return functions, classes, constants


def shape_of_stub(args: ast.arguments, method: bool = False):
    """[(name, kind, has_default)] as inspect would report the real function."""
    out = []
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) or arg.arg.startswith("__") else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg.lstrip("_"), kind, default is not None))
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", False))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", default is not None))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", False))
    return out[1:] if method else out


def shape_of(fn, method: bool = False):
    params = list(inspect.signature(fn).parameters.values())
    if method:
        params = params[1:]
    return [(p.name, p.kind.name, p.default is not inspect.Parameter.empty) for p in params]


FAKES = modules(FakeWindows())


@pytest.mark.parametrize("module", sorted(FAKES))
def test_every_fake_name_exists_in_pywin32_with_the_same_parameters(module):
    functions, classes, constants = stub(module)
    fake = FAKES[module]
    for name, member in vars(fake).items():
        if name.startswith("__"):
            continue
        if isinstance(member, int):
            assert name in constants, f"{module}.{name}: no such constant in pywin32"
            if constants[name] is not None:
                assert member == constants[name], f"{module}.{name} is {constants[name]} in pywin32, {member} here"
        elif inspect.isclass(member):
            assert name in functions, f"{module}.{name}: no such class in pywin32"
            if name not in classes:  # re-exported, as win32service.error is pywintypes.error
                classes = stub("pywintypes")[1]
            for method, args in vars(member).items():
                if inspect.isfunction(args) and not method.startswith("__") or method == "__init__":
                    real = classes.get(name, {}).get(method)
                    assert real is not None, f"{module}.{name}.{method}: not in pywin32"
                    assert shape_of(vars(member)[method], method=True) == shape_of_stub(real, method=True), \
                        f"{module}.{name}.{method}"
        elif callable(member):
            assert functions.get(name) is not None, f"{module}.{name}: no such function in pywin32"
            assert shape_of(member) == shape_of_stub(functions[name]), f"{module}.{name}"


class Recorder(types.ModuleType):
    """A module proxy that notes every name read from it."""

    def __init__(self, module, seen):
        super().__init__(module.__name__)
        object.__setattr__(self, "_m", module)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name):
        self._seen.add((self._m.__name__, name))
        return getattr(self._m, name)


def test_minerwatch_touches_only_names_pywin32_has():
    machine = FakeWindows()
    machine.add_service(FakeService("WinRing0_1_2_0", r"C:\t\WinRing0x64.sys", state=4))
    machine.add_service(FakeService("minerwatch", "x", service_type=0x10, start_type=2))
    machine.grant("SeLockMemoryPrivilege", "S-1-5-21-1-2-3-1107", "bob", "PC", 1)
    machine.log_event(CHANNEL, event_xml(1, 5007, "2026-11-30T09:00:00Z", data={
        "New Value": r"HKLM\SOFTWARE\Microsoft\Windows Defender\Exclusions\Paths\C:\x = 0x0"}))
    seen = set()
    m = {name: Recorder(mod, seen) for name, mod in modules(machine).items()}
    MsrDriverReader(m["win32service"]).read()
    ServiceConfigReader(m["win32service"], "minerwatch").read()
    LockMemoryReader(m["win32security"]).read()
    ExclusionEventReader(m["win32evtlog"]).read()
    machine.log_event(dns_events.CHANNEL, dns_event_xml(1, "pool.example", "::ffff:198.51.100.7;"))
    assert dns_events.DnsEventReader(m["win32evtlog"]).read()
    assert dns_events.ChannelReader(m["win32evtlog"]).read() is True
    machine.winhttp_proxy = (3, "10.0.0.1:3128", "<local>")
    assert ProxySettingsReader(None, m["win32inet"], {}).read()[0]
    handler = EventLogHandler(m["win32evtlog"])
    handler.emit(logging.LogRecord("minerwatch", logging.ERROR, __file__, 1, "boom", None, None))
    handler.close()
    assert len(seen) > 20
    for module, name in sorted(seen):
        functions, _classes, constants = stub(module)
        assert name in functions or name in constants, f"minerwatch uses {module}.{name}, which pywin32 lacks"
