"""sha256 without loading OpenSSL until a file is hashed.

`import hashlib` loads OpenSSL's libcrypto (about 3.5 MiB of resident memory in the exporter).
A few bytes (a wallet checksum) are hashed with CPython's own sha256, which needs nothing more;
files (executables, for allowlist rules and evidence) with hashlib's, five times faster on
large inputs, loaded at the first file hashed.
"""

from __future__ import annotations

try:
    from _sha256 import sha256 as _builtin_sha256  # CPython 3.11
except ImportError:  # pragma: no cover - CPython 3.12 renamed it; other interpreters: hashlib
    try:
        from _sha2 import sha256 as _builtin_sha256
    except ImportError:
        from hashlib import sha256 as _builtin_sha256


def small_sha256(data: bytes) -> bytes:
    """The sha256 digest of a short input."""
    return _builtin_sha256(data).digest()


def file_hasher():
    """A new sha256 object for hashing a file's content in chunks."""
    import hashlib

    return hashlib.sha256()
