"""A stand-in for Python's `winreg`, with the functions minerwatch uses, behaving as winreg does.

- OpenKey(key, sub_key, reserved=0, access=KEY_READ) returns a handle usable as a context
  manager; FileNotFoundError (winerror 2) for a missing key, PermissionError (winerror 5) for a
  denied one. `key` is HKEY_LOCAL_MACHINE or an open handle; names are case-insensitive.
- EnumValue(key, index) -> (name, data, type); OSError (winerror 259) past the last value.
- QueryInfoKey(key) -> (subkeys, values, last_modified in 100 ns since 1601).
- QueryValueEx(key, value_name) -> (data, type); FileNotFoundError (winerror 2) for no such value.
- EnumKey(key, index) -> the name of a subkey; OSError (winerror 259) past the last one.
  HKEY_USERS is a root as HKEY_LOCAL_MACHINE is (paths "HKU\\<SID>\\...").
The tests build the registry with set_value / delete_value / deny, and read `opened` to check
the access flags used.
"""

from __future__ import annotations

from typing import Dict, List, Set, Tuple

HKEY_LOCAL_MACHINE = 0x80000002
HKEY_USERS = 0x80000003
KEY_READ = 0x20019
KEY_WOW64_64KEY = 0x0100
KEY_WOW64_32KEY = 0x0200
REG_SZ = 1
REG_DWORD = 4

_ROOTS = {HKEY_LOCAL_MACHINE: "HKLM", HKEY_USERS: "HKU"}
_EPOCH_1601 = 116444736000000000  # 1970-01-01 in 100 ns units since 1601


def _winerror(cls, winerror: int, errno: int, text: str) -> OSError:
    exc = cls(errno, text)
    exc.winerror = winerror  # set by hand: POSIX builds of OSError ignore a winerror argument
    return exc


class HKEYType:
    def __init__(self, registry: "FakeRegistry", path: str):
        self._registry, self.path, self.closed = registry, path, False

    def Close(self) -> None:
        self.closed = True

    def __enter__(self) -> "HKEYType":
        return self

    def __exit__(self, *exc) -> None:
        self.Close()


class FakeRegistry:
    """One instance is the module: pass it wherever `winreg` is expected."""

    HKEY_LOCAL_MACHINE = HKEY_LOCAL_MACHINE
    HKEY_USERS = HKEY_USERS
    KEY_READ = KEY_READ
    KEY_WOW64_64KEY = KEY_WOW64_64KEY
    KEY_WOW64_32KEY = KEY_WOW64_32KEY
    REG_SZ = REG_SZ
    REG_DWORD = REG_DWORD
    HKEYType = HKEYType

    def __init__(self):
        self._keys: Dict[str, Dict[str, Tuple[object, int]]] = {}  # folded path -> name -> (data, type)
        self._modified: Dict[str, int] = {}
        self._denied: Set[str] = set()
        self._names: Dict[str, str] = {}  # folded path -> the key's own name as written
        self._clock = _EPOCH_1601 + 17_000_000_000_000_000
        self.opened: List[Tuple[str, int]] = []  # (path, access) of every OpenKey

    # -- building the registry (test side) -----------------------------------------------------
    def create_key(self, path: str) -> None:
        parts = path.split("\\")
        for i in range(1, len(parts) + 1):
            folded = "\\".join(parts[:i]).casefold()
            if folded not in self._keys:
                self._keys[folded] = {}
                self._names[folded] = parts[i - 1]
                self._touch(folded)

    def set_value(self, path: str, name: str, data=0, type: int = REG_DWORD) -> None:
        self.create_key(path)
        self._keys[path.casefold()][name] = (data, type)
        self._touch(path.casefold())

    def delete_value(self, path: str, name: str) -> None:
        del self._keys[path.casefold()][name]
        self._touch(path.casefold())

    def deny(self, path: str) -> None:
        self._denied.add(path.casefold())

    def allow(self, path: str) -> None:
        self._denied.discard(path.casefold())

    def _touch(self, folded: str) -> None:
        self._clock += 10_000_000  # one second later
        self._modified[folded] = self._clock

    # -- the winreg functions ------------------------------------------------------------------
    def OpenKey(self, key, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> HKEYType:
        if isinstance(key, HKEYType):
            self._check_open(key)
            path = key.path + ("\\" + sub_key if sub_key else "")
        elif key in _ROOTS:
            path = _ROOTS[key] + ("\\" + sub_key if sub_key else "")
        else:
            raise _winerror(OSError, 6, 9, "The handle is invalid")
        self.opened.append((path, access))
        folded = path.casefold()
        if folded not in self._keys and folded not in ("hklm", "hku"):
            raise _winerror(FileNotFoundError, 2, 2, "The system cannot find the file specified")
        if folded in self._denied:
            raise _winerror(PermissionError, 5, 13, "Access is denied")
        return HKEYType(self, path)

    def EnumValue(self, key: HKEYType, index: int) -> Tuple[str, object, int]:
        self._check_open(key)
        values = list(self._keys.get(key.path.casefold(), {}).items())
        if not 0 <= index < len(values):
            raise _winerror(OSError, 259, 22, "No more data is available")
        name, (data, type_) = values[index]
        return name, data, type_

    def EnumKey(self, key: HKEYType, index: int) -> str:
        self._check_open(key)
        folded = key.path.casefold()
        names = []  # subkey names as created, in creation order
        for path in self._keys:
            if path.startswith(folded + "\\") and "\\" not in path[len(folded) + 1:]:
                names.append(self._names.get(path, path[len(folded) + 1:]))
        if not 0 <= index < len(names):
            raise _winerror(OSError, 259, 22, "No more data is available")
        return names[index]

    def QueryInfoKey(self, key: HKEYType) -> Tuple[int, int, int]:
        self._check_open(key)
        folded = key.path.casefold()
        children = {k for k in self._keys if k.startswith(folded + "\\") and "\\" not in k[len(folded) + 1:]}
        return len(children), len(self._keys.get(folded, {})), self._modified.get(folded, 0)

    def QueryValueEx(self, key: HKEYType, value_name: str) -> Tuple[object, int]:
        self._check_open(key)
        for name, (data, type_) in self._keys.get(key.path.casefold(), {}).items():
            if name.casefold() == (value_name or "").casefold():
                return data, type_
        raise _winerror(FileNotFoundError, 2, 2, "The system cannot find the file specified")

    def CloseKey(self, key: HKEYType) -> None:
        key.Close()

    @staticmethod
    def _check_open(key: HKEYType) -> None:
        if key.closed:
            raise _winerror(OSError, 6, 9, "The handle is invalid")
