"""Basic auth for the web server: bcrypt hashes checked once, cached, one at a time.

bcrypt is slow on purpose (cost 10 is about 50 ms of one core), so the exporter:
- caches successful checks (a bounded LRU keyed by a SHA-256 of user, password and hash): a
  scrape with the right password costs one bcrypt per process lifetime, not one per scrape;
- never caches failures: a flood of wrong guesses cannot evict Prometheus' entry;
- runs one bcrypt at a time, so a flood of wrong guesses uses one core, not all of them, and a
  guess that waits too long for its turn is answered "busy" instead of queueing forever;
- does the same work for every failure: exactly one bcrypt at the one cost every configured
  hash shares (mixed costs are refused at load), so an unknown user name, a known one with a
  wrong password and a password over bcrypt's 72 bytes all answer in the same time. Unknown
  names are checked against a configured user's hash and the result is thrown away.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Dict, Optional

from minerwatch.host.digests import small_sha256

# $2a$, $2b$ or $2y$, a two-digit cost from 04 to 31, then 22 characters of salt and 31 of hash.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
BCRYPT_MAX_PASSWORD = 72  # bytes bcrypt reads; longer passwords are refused, never truncated
CACHE_SIZE = 100
LOCK_WAIT_SECONDS = 10.0


def bcrypt_cost(hashed: str) -> int:
    """The cost of a bcrypt hash; ValueError saying what is wrong with a malformed one."""
    if not BCRYPT_HASH.fullmatch(hashed):
        raise ValueError("must be a bcrypt hash: $2a$, $2b$ or $2y$, a cost from 04 to 31, $, "
                         "then 53 characters (htpasswd -nBC 10 '' | tr -d ':')")
    return int(hashed[4:6])


class BasicAuth:
    """Checks `Authorization: Basic` credentials against validated bcrypt hashes."""

    def __init__(self, users: Dict[str, bytes], cache_size: int = CACHE_SIZE,
                 lock_wait: float = LOCK_WAIT_SECONDS):
        if not users:
            raise ValueError("basic auth needs at least one user")
        import bcrypt  # here, not at the top: a server without basic-auth users never loads it (RSS)

        self._bcrypt = bcrypt
        self.users = users
        self._decoy = next(iter(users.values()))
        self._cache: "OrderedDict[bytes, None]" = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self._lock_wait = lock_wait

    def check(self, user: str, password: bytes) -> Optional[bool]:
        """True or False; None when the check could not get its turn (answer 503, not 401)."""
        hashed = self.users.get(user)
        key = small_sha256(b"\0".join((user.encode("utf-8", "surrogateescape"), password, hashed or b"")))
        if hashed is not None and self._cached(key):
            return True
        if not self._bcrypt_lock.acquire(timeout=self._lock_wait):
            return None
        try:
            # One bcrypt whatever the failure, at the cost every configured hash shares.
            ok = self._bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed or self._decoy)
        finally:
            self._bcrypt_lock.release()
        ok = ok and hashed is not None and len(password) <= BCRYPT_MAX_PASSWORD
        if ok:
            self._remember(key)
        return ok

    def _cached(self, key: bytes) -> bool:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
            return False

    def _remember(self, key: bytes) -> None:
        with self._cache_lock:
            self._cache[key] = None
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
