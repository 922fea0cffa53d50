"""The allowlist of known-good heavy programs (backups, encoders, builds) from the config file.

Each entry pins the program (`exe` path or `sha256`; a name alone is an error: anyone can name a
process anything) and says which signals it explains (`signals:`): keeping cores or a GPU busy
(`busy_cpu`, `busy_gpu`), the weak signals (disguise, behaviour, an antivirus exclusion). Nothing
explains what a miner says of itself (its name, command line, environment, file content, config)
or a pool connection: an allowlisted program that shows one is suspect and pages as any other,
and an entry that lists one is a start-up error. An entry without `signals:` (older configs)
explains every signal that can be explained (EXPLAINABLE_SIGNALS).

A `sha256` rule needs the executable's hash, which the exporter computes in the background
(exe_worker.py), never in a scrape: until it is known such a rule answers None ("cannot tell
yet") and the process table treats the process as not allowlisted meanwhile (process_table.py).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterable, Optional, Tuple

from minerwatch.host.digests import file_hasher
from minerwatch.host.files import open_regular
from minerwatch.detection.signatures import STRONG_SIGNALS, WEAK_SIGNALS
from minerwatch.yaml_file import Node, section_items

ALLOWLIST_KEYS = ("name", "exe", "user", "sha256", "signals")
# What a process does rather than a signal it matches: busy CPU cores, a busy GPU (the CPU and
# GPU alerts ask whether the allowlist explains them).
ACTIVITY_SIGNALS: FrozenSet[str] = frozenset({"busy_cpu", "busy_gpu"})
EXPLAINABLE_SIGNALS: FrozenSet[str] = ACTIVITY_SIGNALS | WEAK_SIGNALS
# Identity and pool signals: never explained (a process that says it mines, or talks to a pool,
# is suspect whoever allowlisted it).
NEVER_EXPLAINED: FrozenSet[str] = STRONG_SIGNALS


@dataclass(frozen=True)
class AllowRule:
    """Matches a process when every key it sets matches; `exe` and `name` accept shell globs.
    `signals`: what the process may show without being suspect (see the module docstring)."""

    name: Optional[str] = None
    exe: Optional[str] = None
    user: Optional[str] = None
    sha256: Optional[str] = None
    where: str = ""  # file:line of the rule, for logs
    signals: FrozenSet[str] = EXPLAINABLE_SIGNALS

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
# An absolute path (POSIX, a Windows drive or a UNC share) whose first component is no glob: an
# `exe` of `*` or `*/xmrig` would pin nothing.
_PINNED_EXE = re.compile(r"^(/[^/*?\[]|[A-Za-z]:[\\/][^*?\[\\/]|\\\\[^*?\[\\])")


def read_settings(node: Optional[Node]) -> Tuple[AllowRule, ...]:
    """The `allowlist:` section, one rule per entry; errors name file, line and key."""
    rules = []
    for item in section_items(node):
        fields = item.mapping(ALLOWLIST_KEYS)
        if "exe" not in fields and "sha256" not in fields:
            raise item.error("an allowlist entry must pin the program with `exe` (an absolute path) or "
                             "`sha256`: a name or a user alone can be taken by any process")
        values = {key: child.string() for key, child in fields.items() if key != "signals"}
        if "sha256" in values and not _SHA256.match(values["sha256"]):
            raise fields["sha256"].error("must be 64 hexadecimal characters")
        if "exe" in values and not _PINNED_EXE.match(values["exe"]):
            raise fields["exe"].error("must be an absolute path that does not start with a wildcard")
        rule = AllowRule(where=f"{item.file}:{item.line}", **values)
        if "signals" in fields:
            rule = AllowRule(where=rule.where, signals=_read_signals(fields["signals"]), **values)
        rules.append(rule)
    return tuple(rules)


def _read_signals(node: Node) -> FrozenSet[str]:
    items = node.items()
    if not items:
        raise node.error("must list at least one signal the program explains")
    out = set()
    for item in items:
        signal = item.string()
        if signal in NEVER_EXPLAINED:
            raise item.error(f"{signal} is never allowlisted: a known-good program does not identify itself "
                             "as a miner or talk to a pool (remove it; such a process pages whatever the allowlist says)")
        if signal not in EXPLAINABLE_SIGNALS:
            raise item.error(f"unknown signal (known: {', '.join(sorted(EXPLAINABLE_SIGNALS))})")
        out.add(signal)
    return frozenset(out)


class Allowlist:
    def __init__(self, rules: Iterable[AllowRule]):
        self.rules = list(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def matches(self, comm: str, exe: str, user: str, sha256: Callable[[], Optional[str]]) -> Optional[bool]:
        """True when a rule matches; None when none does yet but one waits for the hash
        (`sha256()` returns the running executable's hash, or None while it is not known; only
        rules that need it call it); False otherwise."""
        explained = self.explains(comm, exe, user, sha256)
        return None if explained is None else bool(explained)

    def explains(self, comm: str, exe: str, user: str, sha256: Callable[[], Optional[str]]) -> Optional[FrozenSet[str]]:
        """The signals the rules matching the process explain together (empty: none matches);
        None while a rule waits for the hash (the process is not allowlisted meanwhile: a
        partial answer could change once the hash lands)."""
        explained: FrozenSet[str] = frozenset()
        for rule in self.rules:
            verdict = rule.matches(comm, exe, user, sha256)
            if verdict is None:
                return None
            if verdict:
                explained |= rule.signals
        return explained


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
