"""Who holds SeLockMemoryPrivilege ("Lock pages in memory"): large pages for RandomX.

No account holds it on a fresh Windows. Database servers grant it to their service account
(NT SERVICE\\MSSQLSERVER); XMRig grants it to the user running it (it asks LSA to, when that
user is an administrator) so that RandomX gets large pages after the next log-on. An ordinary
user or a broad group holding it on a desktop is tuning evidence.

Holders are sorted into a few kinds so the metric stays bounded whatever the host has:
system (LocalSystem, LocalService, NetworkService), service (NT SERVICE\\*), administrators,
broad_group (Everyone, Users, Authenticated Users, Interactive...), group (any other group),
user (an account), unknown (a SID that no longer maps to a name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from minerwatch.text import host_text
from minerwatch.windows import ReadFailed, describe, winerror_of

RIGHT = "SeLockMemoryPrivilege"
KINDS = ("system", "service", "administrators", "broad_group", "group", "user", "unknown")

_SYSTEM = {"S-1-5-18", "S-1-5-19", "S-1-5-20"}
_BROAD = {
    "S-1-1-0",  # Everyone
    "S-1-5-32-545",  # BUILTIN\Users
    "S-1-5-11",  # Authenticated Users
    "S-1-5-4",  # INTERACTIVE
    "S-1-5-32-547",  # Power Users
    "S-1-5-32-555",  # Remote Desktop Users
    "S-1-5-7",  # ANONYMOUS LOGON
    "S-1-5-32-546",  # Guests
}
_GROUP_TYPES = {2, 4, 5}  # SidTypeGroup, SidTypeAlias, SidTypeWellKnownGroup


@dataclass(frozen=True)
class Holder:
    sid: str
    account: str  # DOMAIN\name, made safe; "" when the SID maps to no account
    kind: str


def kind_of(sid: str, sid_type: int) -> str:
    if sid in _SYSTEM:
        return "system"
    if sid.startswith("S-1-5-80-"):
        return "service"
    if sid == "S-1-5-32-544" or (sid.startswith("S-1-5-21-") and sid.endswith("-512")):  # Domain Admins
        return "administrators"
    if sid in _BROAD or (sid.startswith("S-1-5-21-") and sid.endswith("-513")):  # Domain Users
        return "broad_group"
    if sid_type in _GROUP_TYPES:
        return "group"
    if sid_type == 0:
        return "unknown"
    return "user"


class LockMemoryReader:
    """Accounts holding SeLockMemoryPrivilege, from the local security policy (LSA)."""

    def __init__(self, win32security):
        self.s = win32security

    def read(self) -> List[Holder]:
        s = self.s
        try:
            policy = s.LsaOpenPolicy(None, s.POLICY_LOOKUP_NAMES | s.POLICY_VIEW_LOCAL_INFORMATION)
        except Exception as exc:
            raise ReadFailed(f"local security policy: {describe(exc)}") from None
        try:
            try:
                sids = s.LsaEnumerateAccountsWithUserRight(policy, RIGHT)
            except Exception as exc:
                if winerror_of(exc) == 259:  # ERROR_NO_MORE_ITEMS: nobody holds it
                    return []
                raise ReadFailed(f"{RIGHT}: {describe(exc)}") from None
            holders = [self._holder(sid) for sid in sids]
            return sorted(holders, key=lambda h: (h.kind, h.account, h.sid))
        finally:
            s.LsaClose(policy)

    def _holder(self, sid) -> Holder:
        text = self.s.ConvertSidToStringSid(sid)
        try:
            name, domain, sid_type = self.s.LookupAccountSid(None, sid)
        except Exception as exc:
            if winerror_of(exc) != 1332:  # ERROR_NONE_MAPPED: a deleted account
                raise
            return Holder(host_text(text, 200), "", kind_of(text, 0))
        account = f"{domain}\\{name}" if domain else name
        return Holder(host_text(text, 200), host_text(account, 256), kind_of(text, sid_type))
