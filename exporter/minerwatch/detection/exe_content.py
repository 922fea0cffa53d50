"""Miner byte patterns in executables: `miner_exe_content` and `packed_exe`, once per executable.

A renamed miner started without arguments still carries its trade in its own file: the Stratum
method names it sends, the algorithm and option tables it parses, its banner and donation pool.
Patterns come by family from data/exe_patterns.txt (and the user's `signatures.exe_pattern_files`);
a file matches when patterns of two or more families occur. One pass reads the file in chunks,
hashes it (sha256, the key of the result cache and the evidence the process collector exports)
and searches all patterns with one compiled bytes regex (measured at about 150 MB/s, against
about 220 MB/s for yara-python on the same patterns: not worth a native dependency).

UPX is recognised by its header marks (`UPX!` in the first 4 KiB, or the `UPX0`/`UPX1` section
names of a PE): a packed executable hides its strings, and on a workstation packing is itself a
disguise (weak).

Cost: the scan runs for busy processes (busy_probe.py) and for the hashes of suspects and of
allowlist `sha256` rules, once per distinct executable file, in the background (exe_worker.py:
no scrape waits on a file): results are cached by file identity (device, inode, size, mtime) and
by sha256, in bounded LRUs. Only regular files are opened (never a FIFO or a device a process
names). Per file the budget is fixed: the first `max_bytes` (64 MiB by default; miner builds are
5-20 MiB) are searched, a bigger file is `partial`, and files over 512 MiB are not hashed (their
sha256 is "", as for an unreadable file). Chunks are 64 KiB: the regex holds the interpreter
lock while it runs on one (about 0.5 ms), so no other thread waits longer than that for it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from minerwatch.detection.allowlist import MAX_HASHED_BYTES
from minerwatch.host.digests import file_hasher
from minerwatch.host.files import open_regular
from minerwatch.detection.signatures import Match
from minerwatch.text import host_text

CHUNK = 64 << 10
MAX_BYTES = 64 << 20
MIN_FAMILIES = 2  # one family alone is the story of a network analyser or a browser
HEAD = 4096


@dataclass(frozen=True)
class ContentResult:
    sha256: str
    families: Dict[str, str]  # family -> first pattern found (shown text)
    packed: str = ""  # "UPX" when packed
    partial: bool = False  # bigger than the search budget: the rest was not searched

    def matches(self, what: str) -> List[Match]:
        out = []
        if len(self.families) >= MIN_FAMILIES:
            shown = ", ".join(f"{family} ({pattern})" for family, pattern in sorted(self.families.items()))
            out.append(Match("miner_exe_content", f"{what} holds miner strings: {shown}"))
        if self.packed:
            out.append(Match("packed_exe", f"{what} packed with {self.packed}"))
        return out


def trie_pattern(words: Sequence[bytes]) -> bytes:
    """One regex for a set of byte strings, factored as a trie: `mining.(?:authorize|s(?:et_...|...))`.

    A plain alternation makes the regex engine try every pattern at every byte that starts one
    (62 MB/s on a 13 MB Go binary); the trie tries one byte at a time (150 MB/s). At a position
    the longest word wins, and a match is always a whole word."""
    trie: Dict[Optional[int], dict] = {}
    for word in words:
        node = trie
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}  # a word ends here

    def build(node: dict) -> bytes:
        branches = [re.escape(bytes([byte])) + build(node[byte]) for byte in sorted(k for k in node if k is not None)]
        if not branches:
            return b""
        ends_here = None in node
        if len(branches) == 1 and not ends_here:
            return branches[0]
        return b"(?:" + b"|".join(branches) + b")" + (b"?" if ends_here else b"")

    return build(trie)


class ExePatterns:
    """Compiled patterns: one regex, and the family of each pattern."""

    def __init__(self, patterns: Sequence[Tuple[str, bytes]]):
        self.family: Dict[bytes, str] = {}
        for family, pattern in patterns:
            self.family.setdefault(pattern, family)
        self.regex = re.compile(trie_pattern(list(self.family))) if self.family else None
        self.overlap = max((len(p) for p in self.family), default=1) - 1

    def scan(self, f, max_bytes: int = MAX_BYTES, pace: Optional[Callable[[], None]] = None) -> ContentResult:
        """Hash and search an open binary file in one pass (chunks overlap by the longest pattern);
        `pace` is called after each chunk (the background worker sleeps there to keep its share)."""
        digest = file_hasher()
        families: Dict[str, str] = {}
        packed = ""
        tail = b""
        read = 0
        first = True
        unsearched = False  # a chunk past max_bytes was read (hashed only)
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            if read >= MAX_HASHED_BYTES:  # a bigger file is no miner build: no hash, no more reading
                return ContentResult("", families, packed, partial=True)
            digest.update(chunk)
            if first:
                packed = _packer(chunk[:HEAD])
                first = False
            if read < max_bytes:
                if self.regex is not None:
                    window = tail + chunk
                    for m in self.regex.finditer(window):
                        family = self.family[m.group(0)]
                        if family not in families:
                            families[family] = host_text(m.group(0).decode("latin-1"), 40)
                    tail = window[-self.overlap:] if self.overlap else b""
            else:
                unsearched = True
            read += len(chunk)
            if pace is not None:
                pace()
        return ContentResult(digest.hexdigest(), families, packed, partial=unsearched)


def _packer(head: bytes) -> str:
    if b"UPX!" in head:
        return "UPX"
    if head[:2] == b"MZ" and b"UPX0" in head and b"UPX1" in head:
        return "UPX"
    return ""


class ExeScanner:
    """Scans each distinct file once: results by (dev, inode, size, mtime) and by sha256, bounded.

    The caches and counters are shared by the scrape (which looks results up) and the background
    worker (which stores them): a lock guards them, never held while a file is read."""

    def __init__(self, patterns: ExePatterns, max_files: int = 4096, max_bytes: int = MAX_BYTES):
        self.patterns = patterns
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._by_identity: "OrderedDict[Tuple, ContentResult]" = OrderedDict()
        self._by_sha: "OrderedDict[str, ContentResult]" = OrderedDict()
        self.files_scanned_total = 0
        self.bytes_scanned_total = 0
        self.partial_files_total = 0  # bigger than the budget: not all searched (or not hashed)

    def cached(self, identity: Tuple) -> Optional[ContentResult]:
        with self._lock:
            result = self._by_identity.get(identity)
            if result is not None:
                self._by_identity.move_to_end(identity)
            return result

    def scan_open(self, f, pace: Optional[Callable[[], None]] = None) -> ContentResult:
        """One pass over an open file, counted (not cached: see `store`)."""
        result = self.patterns.scan(f, self.max_bytes, pace)
        with self._lock:
            self.files_scanned_total += 1
            self.bytes_scanned_total += f.tell()
            self.partial_files_total += result.partial
        return result

    def store(self, identity: Optional[Tuple], result: ContentResult) -> ContentResult:
        """Keep `result` for the file `identity` names; the same content under another name
        shares one entry. Files with no hash ("": over the hash budget) are not merged by it."""
        with self._lock:
            if result.sha256:
                known = self._by_sha.get(result.sha256)
                if known is not None:
                    result = known
                _put(self._by_sha, result.sha256, result, self.max_files)
            if identity is not None:
                _put(self._by_identity, identity, result, self.max_files)
        return result

    def scan_path(self, path: str, identity: Optional[Tuple] = None) -> Optional[ContentResult]:
        """The result for the file at `path`, read now in the caller's thread (a /proc/PID/exe link
        opens a deleted file too); None when it cannot be read. The scrape never calls this: it
        asks the background worker (exe_worker.py)."""
        if identity is not None:
            cached = self.cached(identity)
            if cached is not None:
                return cached
        try:
            with open_regular(path) as f:  # never a FIFO or /dev/zero named by a process's argv
                result = self.scan_open(f)
        except OSError:
            return None
        return self.store(identity, result)


def _put(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
