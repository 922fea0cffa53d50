"""Defender's own switches, from the registry: tamper protection and real-time protection.

    HKLM\\SOFTWARE\\Microsoft\\Windows Defender\\Features  TamperProtection (REG_DWORD)
        Windows writes 5 when tamper protection is on and 4 (or 0) when it is off: the low bit.
    HKLM\\SOFTWARE\\Microsoft\\Windows Defender\\Real-Time Protection  DisableRealtimeMonitoring
    HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows Defender\\Real-Time Protection  DisableRealtimeMonitoring
        1 turns real-time scanning off; the policy key wins over the local one.

Read through a `winreg`-like module (tests/support/fakes/winreg.py on Linux). A value that is absent says
nothing: the metric is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from minerwatch.windows import ReadFailed

FEATURES_KEY = r"SOFTWARE\Microsoft\Windows Defender\Features"
REALTIME_KEY = r"SOFTWARE\Microsoft\Windows Defender\Real-Time Protection"
REALTIME_POLICY_KEY = r"SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection"


@dataclass(frozen=True)
class DefenderSwitches:
    tamper_protection: Optional[bool]  # None: Defender absent or the value not written
    realtime_protection: Optional[bool]


class DefenderSwitchReader:
    def __init__(self, winreg):
        self.winreg = winreg

    def _dword(self, key: str, name: str) -> Tuple[bool, Optional[int]]:
        """(the key exists, the DWORD value or None)."""
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_LOCAL_MACHINE, key, 0, reg.KEY_READ | reg.KEY_WOW64_64KEY) as handle:
                try:
                    value, kind = reg.QueryValueEx(handle, name)
                except FileNotFoundError:
                    return True, None
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            raise ReadFailed(f"HKLM\\{key}\\{name}: {exc.strerror or exc}") from None
        return True, (value if kind == reg.REG_DWORD and isinstance(value, int) else None)

    def read(self) -> DefenderSwitches:
        _, tamper = self._dword(FEATURES_KEY, "TamperProtection")
        _, disabled = self._dword(REALTIME_POLICY_KEY, "DisableRealtimeMonitoring")
        realtime_key = False
        if disabled is None:
            realtime_key, disabled = self._dword(REALTIME_KEY, "DisableRealtimeMonitoring")
        if disabled is not None:
            realtime: Optional[bool] = disabled == 0
        else:  # Defender is there (its key is) and nothing turns scanning off: on, its default
            realtime = True if realtime_key else None
        return DefenderSwitches(
            tamper_protection=None if tamper is None else bool(tamper & 1),
            realtime_protection=realtime,
        )
