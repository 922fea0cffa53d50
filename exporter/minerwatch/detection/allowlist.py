"""The allowlist of known-good heavy programs (backups, encoders, builds) from the config file.

A `sha256` rule needs the executable's hash, which the exporter computes in the background
(exe_worker.py), never in a scrape: until it is known such a rule answers None ("cannot tell
yet") and the process table treats the process as not allowlisted meanwhile (process_table.py).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Tuple

from minerwatch.host.digests import file_hasher
from minerwatch.host.files import open_regular
from minerwatch.yaml_file import Node, section_items

ALLOWLIST_KEYS = ("name", "exe", "user", "sha256")


@dataclass(frozen=True)
class AllowRule:
    """Matches a process when every key it sets matches; `exe` and `name` accept shell globs."""

    name: Optional[str] = None
    exe: Optional[str] = None
    user: Optional[str] = None
    sha256: Optional[str] = None
    where: str = ""  # file:line of the rule, for logs

    def matches(self, comm: str, exe: str, user: str, sha256: Callable[[], Optional[str]]) -> Optional[bool]:
        """True or False; None when every other key matched and `sha256()` returned None (the
        executable's hash is not known yet)."""
        if self.name is not None and not fnmatch.fnmatchcase(comm, self.name):
            return False
        if self.exe is not None and not fnmatch.fnmatchcase(exe, self.exe):
            return False
        if self.user is not None and user != self.user:
            return False
        # The hash is the costly key: asked for only once every cheaper key matched.
        if self.sha256 is not None:
            digest = sha256()
            if digest is None:
                return None
            return digest.lower() == self.sha256.lower()
        return True


_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def read_settings(node: Optional[Node]) -> Tuple[AllowRule, ...]:
    """The `allowlist:` section, one rule per entry; errors name file, line and key."""
    rules = []
    for item in section_items(node):
        fields = item.mapping(ALLOWLIST_KEYS)
        if not fields:
            raise item.error(f"an allowlist entry needs at least one of {', '.join(ALLOWLIST_KEYS)}")
        values = {key: child.string() for key, child in fields.items()}
        if "sha256" in values and not _SHA256.match(values["sha256"]):
            raise fields["sha256"].error("must be 64 hexadecimal characters")
        rules.append(AllowRule(where=f"{item.file}:{item.line}", **values))
    return tuple(rules)


class Allowlist:
    def __init__(self, rules: Iterable[AllowRule]):
        self.rules = list(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def matches(self, comm: str, exe: str, user: str, sha256: Callable[[], Optional[str]]) -> Optional[bool]:
        """True when a rule matches; None when none does yet but one waits for the hash
        (`sha256()` returns the running executable's hash, or None while it is not known; only
        rules that need it call it); False otherwise."""
        waiting = False
        for rule in self.rules:
            verdict = rule.matches(comm, exe, user, sha256)
            if verdict:
                return True
            waiting = waiting or verdict is None
        return None if waiting else False


MAX_HASHED_BYTES = 512 << 20  # a bigger executable is no miner build: not hashed


def file_sha256(path: str) -> str:
    """sha256 of a file, read now in the caller's thread (commands a person runs; the exporter
    hashes in the background); "" when it cannot be read or is too big (never matches a rule)."""
    h = file_hasher()
    read = 0
    try:
        with open_regular(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                read += len(chunk)
                if read > MAX_HASHED_BYTES:
                    return ""
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()
