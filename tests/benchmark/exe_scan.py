"""Speed of the busy probe's executable scan (exe_content.py): MB/s of the shipped patterns'
regex, factored as a trie (what the exporter runs) and as a plain alternation (before), on real
executables. Each executable a busy process runs is scanned once; at 60 MB/s a 13 MB Go binary
took a fifth of a second of one scrape.

    .venv/bin/python tests/benchmark/exe_scan.py [FILE ...]
"""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "exporter"))

from minerwatch.detection.exe_content import ExePatterns, trie_pattern  # noqa: E402
from minerwatch.detection.exe_patterns import shipped_patterns  # noqa: E402


def rate(regex, data: bytes, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in regex.finditer(data):
            pass
        best = min(best, time.process_time() - start)
    return len(data) / best / 1e6


def main(files) -> int:
    words = sorted({p for _, p in shipped_patterns()})
    plain = re.compile(b"|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))
    trie = re.compile(trie_pattern(words))
    assert ExePatterns(shipped_patterns()).regex.pattern == trie.pattern
    files = files or [f for f in (shutil.which("prometheus-node-exporter"), shutil.which("prometheus"),
                                  sys.executable) if f]
    print(f"{len(words)} shipped patterns; MB/s, best of 3 (CPU time)")
    print(f"{'file':50} {'MB':>7} {'plain':>8} {'trie':>8}")
    for path in files:
        with open(os.path.realpath(path), "rb") as f:
            data = f.read(64 << 20)  # the scan reads at most 64 MiB (exe_content.MAX_BYTES)
        print(f"{path[-50:]:50} {len(data) / 1e6:7.1f} {rate(plain, data):8.0f} {rate(trie, data):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
