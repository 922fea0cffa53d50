"""Miner configuration files: `miner_config`, read once per busy process life.

A miner started without arguments reads its pool and wallet from a file: XMRig `config.json`
(beside its executable, in its working directory, `~/.xmrig.json`, `~/.config/xmrig.json`, or
`-c/--config FILE`), xmr-stak `pools.txt`, SRBMiner and others JSON with pool and wallet keys.
The file is small and decisive, so reading it is the cheapest strong evidence against a silent
miner. Candidates, in order: the file named by `-c`/`--config`/`--config-file`, `config.json`,
`pools.txt` and `config.txt` in the working directory and beside the executable, XMRig's files
in the home folder of the process (its environment's HOME, else its uid's line in the passwd
file of its own root), then files the process holds open with a config-like name, or the named
file, deleted or not. Every path goes through /proc/PID/cwd, /proc/PID/root or /proc/PID/fd:
what the process sees, through its own mount namespace (containers, systemd PrivateTmp, a tmpfs
mounted over the folder), a renamed or deleted folder, or a deleted file it keeps open.

On Windows `find_psutil` looks at the same places through a psutil Process: its working
directory and executable folder, `-c` (relative to the working directory), XMRig's
`%APPDATA%\\xmrig.json` and `%USERPROFILE%\\.xmrig.json` (from its environment, else its own
account's folder under `X:\\Users` where it runs), and its open files. Only drive-letter paths
are opened (a UNC path from the user's environment would be a connection to a host the user
names). A psutil refusal (a protected process, another session's, one that exits) ends that
part of the look quietly. Same bounds, same judgement, same reasons.

What counts: a pool entry (in a `pools` or `pool_list` list: XMRig, xmrig-proxy, SRBMiner,
xmr-stak) whose URL is one a miner connects to (stratum+tcp/ssl/tls/udp, tcp/ssl/tls/udp or no
scheme: host:port; never http(s), postgresql, jdbc, redis, amqp, ldap, mongodb...) and that has
one more mark of mining: a Stratum scheme, a listed pool host, a user or wallet holding a
cryptocurrency address, a mining algorithm or coin, a miner's own pool option (nicehash,
keepalive, rig-id, tls-fingerprint, use_tls...), a usual pool port, or XMRig's configuration
shape around it (`donate-level`, or `randomx` and `cpu` sections). XMRig's shape with a `pools`
list counts on its own. Outside a pool list, a Stratum URL or listed pool host with a user key
in the same object counts (cpuminer's `url`/`user`). A user is not needed (XMRig defaults it);
a connection pool's `"pools": [{"url": "postgresql://db:5432/x", "user": "app"}]` or a bare
`db.internal:5432` never counts. Only the pool's host and port reach the reason.

The text is parsed as JSON (bounded_json.py: escaped keys such as "\\u0070ools", padding,
comments and trailing commas as the miner reads them). Text that is not JSON (INI, YAML) or too
big to parse is searched: a Stratum URL with a user key, or `"pools"`/`"pool_list"` with a
pool-like URL value.

Cost, per look (once per busy process life, in the scan): at most MAX_FILES files and
MAX_TOTAL_BYTES, each file at most MAX_BYTES (4 MiB); no new file once the look has spent
LOOK_CPU_SECONDS. A file with more than MAX_VALUES commas, colons and brackets is searched as text
instead of parsed, so memory stays about twice the file (measured: 8-9 MiB peak for a hostile
4 MiB file of a million `{}`, escapes, quotes or comments) and CPU under about 0.45 s for the
worst such file on this 2-core machine, 1-50 ms for ordinary ones. What is not seen: a file
padded past 4 MiB; a text too big to parse with more than MAX_TEXT_URLS distinct decoy pool URLs
before the real one; URL values written with escapes in that text search; a config the miner
read and closed before deleting it.
"""

from __future__ import annotations

import bisect
import ntpath
import os
import re
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import psutil

from minerwatch.detection import bounded_json
from minerwatch.detection.redact import redact_text
from minerwatch.detection.signatures import (
    MINING_ALGO_RE,
    MINING_COINS,
    POOL_URL_RE,
    Match,
    is_pool_host,
    is_pool_port,
    is_wallet_value,
    stratum_endpoint,
)
from minerwatch.host.files import read_regular
from minerwatch.text import host_text

MAX_BYTES = 4 << 20  # a miner config is a few KiB; padding up to here is still read
MAX_TOTAL_BYTES = 8 << 20  # all files of one look together
MAX_FILES = 16  # files read in one look
LOOK_CPU_SECONDS = 0.5  # no further file once a look has spent this (it runs in the scan)
MAX_VALUES = 100_000  # JSON values parsed as a document (an XMRig config holds about 150)
MAX_NODES = 200_000  # objects and lists walked in a parsed document
ENVIRON_BYTES = 128 << 10
PASSWD_BYTES = 1 << 20
NAMES = ("config.json", "pools.txt", "config.txt")
# XMRig's (and xmrig-proxy's) own default places in the home folder.
HOME_NAMES = (".xmrig.json", ".config/xmrig.json", ".xmrig-proxy.json", ".config/xmrig-proxy.json")
OPEN_SUFFIXES = (".json", ".txt", ".conf", ".cfg", ".ini", ".yaml", ".yml")
MAX_FDS = 256  # a process with more open files is no quiet miner; its fds are not listed
_CONFIG_FLAGS = ("-c", "--config", "--config-file")
_DELETED = " (deleted)"

_LIST_KEYS = frozenset({"pools", "pool_list"})
_URL_KEYS = ("url", "pool", "pool_address", "pool_url", "host", "server", "stratum")
_USER_KEYS = ("user", "login", "wallet", "wallet_address", "username", "address")
_ALGO_KEYS = ("algo", "algorithm")
_COIN_KEYS = ("coin", "currency")
# Keys only miners put in a pool entry (XMRig, xmr-stak).
_MINER_ENTRY_KEYS = frozenset({
    "nicehash", "keepalive", "rig-id", "tls-fingerprint", "self-select", "submit-to-origin",
    "daemon-poll-interval", "use_nicehash", "use_tls", "tls_fingerprint", "pool_weight", "rig_id",
    "wallet_address",
})

# The text search, for what is not JSON or too big to parse: on the text lower-cased, with
# escaped letters ("\\u0070ools") decoded, so that every pattern starts with a literal and the
# search stays a few passes in C over the text.
_TEXT_ESCAPES = {f"\\u00{ord(form):02x}": c for c in "abcdefghijklmnopqrstuvwxyz-_" for form in {c, c.upper()}}
_LIST_KEY_RE = re.compile(r'"(?:pools|pool_list)"\s*:')
_SHAPE_KEY_RE = re.compile(r'"donate-(?:level|over-proxy)"\s*:')
_URL_VALUE_RE = re.compile(r'"(?=[up])(?:url|pool|pool_address)"\s*:\s*"([^"\\\s]{1,300})"')
_USER_KEY_RE = re.compile(r'["\s](?:user|wallet|login|wallet_address|username)["\s]*[:=]')
TEXT_WINDOW = 64 << 10  # searched for pool URLs after a `pools` key
MAX_TEXT_URLS = 4096  # distinct URLs judged in one text (about 10 µs each)


# ---------------------------------------------------------------------------------------------
# What the text is
# ---------------------------------------------------------------------------------------------


def _shown_pool(url: str) -> str:
    """host:port of a pool URL, nothing else (no user, password or path)."""
    text = url.split("://", 1)[-1]
    text = text.rsplit("@", 1)[-1].split("/", 1)[0]
    return host_text(redact_text(text), 80)


def _get(entry: Dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _lower_keys(node: Dict[Any, Any]) -> Dict[str, Any]:
    return {key.lower(): value for key, value in node.items() if isinstance(key, str)}


def _xmrig_shape(document: Any) -> Optional[str]:
    """XMRig's configuration shape at the top: a `pools` key with `donate-level`, or with both
    `randomx` and `cpu` sections. Nothing else writes these together."""
    if not isinstance(document, dict):
        return None
    top = _lower_keys(document)
    if "pools" not in top:
        return None
    if "donate-level" in top or "donate-over-proxy" in top:
        return "XMRig configuration (pools, donate-level)"
    if isinstance(top.get("randomx"), dict) and isinstance(top.get("cpu"), dict):
        return "XMRig configuration (pools, randomx, cpu)"
    return None


def _entry_mark(entry: Dict[str, Any], url: str, in_list: bool, shape: Optional[str]) -> Optional[str]:
    """Why the pool entry with `url` is a miner's, or None (a connection pool, a web service)."""
    endpoint = stratum_endpoint(url)
    if endpoint is None:
        return None
    scheme, host, port = endpoint
    if is_pool_host(host):
        return "a listed pool host"
    if scheme.startswith("stratum"):
        return "a Stratum URL"
    user = _get(entry, _USER_KEYS)
    if isinstance(user, str) and is_wallet_value(user):
        return "a wallet address as user"
    if not in_list:
        return None  # a loose url/user pair: only the marks above are strong enough
    algo = _get(entry, _ALGO_KEYS)
    if isinstance(algo, str) and MINING_ALGO_RE.fullmatch(algo):
        return f"algorithm {host_text(algo, 24)}"
    coin = _get(entry, _COIN_KEYS)
    if isinstance(coin, str) and coin.lower() in MINING_COINS:
        return f"coin {host_text(coin.lower(), 24)}"
    options = sorted(_MINER_ENTRY_KEYS & set(entry))
    if options:
        return f"miner pool option {options[0]}"
    if is_pool_port(port):
        return f"pool port {port}"
    return shape


def _nodes(document: Any) -> Iterator[Dict[str, Any]]:
    """Every object in the document (lower-cased keys), at most MAX_NODES objects and lists."""
    queue, walked = [document], 0
    while queue and walked < MAX_NODES:
        node = queue.pop()
        walked += 1
        if isinstance(node, dict):
            yield _lower_keys(node)
            queue.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            queue.extend(v for v in node if isinstance(v, (dict, list)))


def _classify_document(document: Any) -> Optional[str]:
    shape = _xmrig_shape(document)
    for node in _nodes(document):
        for key in _LIST_KEYS & set(node):
            entries = node[key]
            if not isinstance(entries, list):
                continue
            for entry in entries:  # all of them: the document holds at most MAX_VALUES
                if isinstance(entry, str):
                    entry = {"url": entry}
                if not isinstance(entry, dict):
                    continue
                entry = _lower_keys(entry)
                url = _get(entry, _URL_KEYS)
                if not isinstance(url, str):
                    continue
                mark = _entry_mark(entry, url, True, shape)
                if mark:
                    return f"{key} with url {_shown_pool(url)} ({mark})"
        url = _get(node, _URL_KEYS)
        if isinstance(url, str) and any(k in node for k in _USER_KEYS) and "pools" not in node:
            mark = _entry_mark(node, url, False, None)
            if mark:
                return f"url {_shown_pool(url)} with a user ({mark})"
    return shape


def _stratum_with_user(text: str) -> Optional[str]:
    if "tratum" not in text and "tratum" not in text.lower():  # the regex is slow to say no
        return None
    stratum = POOL_URL_RE.search(text)
    if stratum and _USER_KEY_RE.search(text):
        return f"Stratum URL {_shown_pool(stratum.group(0))} with a user key"
    return None


def _plain_keys(text: str) -> str:
    low = text.lower()
    if "\\u00" in low:
        for escaped, char in _TEXT_ESCAPES.items():  # 56 searches in C: no object per escape
            if escaped in low:
                low = low.replace(escaped, char)
    return low


def _classify_text(text: str) -> Optional[str]:
    """The search for what is not JSON, or too big to parse as JSON: a Stratum URL with a user
    key, or pool URLs within TEXT_WINDOW after a `pools`/`pool_list` key. Linear: one pass for
    the keys, one for the URLs, however many of them a hostile file repeats."""
    found = _stratum_with_user(text)
    if found:
        return found
    low = _plain_keys(text)
    shape = "XMRig configuration (donate-level)" if _SHAPE_KEY_RE.search(low) else None
    keys = [key.end() for key in _LIST_KEY_RE.finditer(low)]
    if not keys:
        return None
    judged: set = set()
    for url in _URL_VALUE_RE.finditer(low, keys[0]):  # one pass, however many keys repeat
        if url.group(1) in judged or url.start() - keys[bisect.bisect_right(keys, url.start()) - 1] > TEXT_WINDOW:
            continue
        if len(judged) >= MAX_TEXT_URLS:
            break
        judged.add(url.group(1))
        mark = _entry_mark({}, url.group(1), True, shape)
        if mark:
            return f"pools with url {_shown_pool(url.group(1))} ({mark})"
    return shape


def classify(text: str) -> Optional[str]:
    """What makes `text` a miner configuration, or None. The reason names the pool's host and
    port at most, never the user, wallet or password."""
    document = bounded_json.parse(text, MAX_VALUES)
    if document is bounded_json.NOT_JSON or document is bounded_json.TOO_BIG:
        return _classify_text(text)
    return _classify_document(document) or _stratum_with_user(text)


# ---------------------------------------------------------------------------------------------
# Where a process's configuration is
# ---------------------------------------------------------------------------------------------


def config_argument(argv: Sequence[str]) -> str:
    for i, word in enumerate(argv):
        for flag in _CONFIG_FLAGS:
            if word == flag and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return ""


def _in_root(base: str, path: str) -> str:
    """`path` as the process sees it (its own root and mount namespace)."""
    return f"{base}/root{path}"


def home_of(procfs: str, pid: int) -> str:
    """The process's home folder: HOME from its environment, else its real uid's line in the
    passwd file under its own root (no NSS call: it could wait on a directory server)."""
    base = f"{procfs}/{pid}"
    environ = read_regular(f"{base}/environ", ENVIRON_BYTES)
    for item in (environ or b"").split(b"\0"):
        if item.startswith(b"HOME="):
            home = os.fsdecode(item[5:])
            return home if home.startswith("/") else ""
    status = read_regular(f"{base}/status", 64 << 10) or b""
    uids = next((line.split()[1:] for line in status.splitlines() if line.startswith(b"Uid:")), [])
    if not uids:
        return ""
    uid = uids[0]  # the real uid, as getpwuid(getuid()) in the miner
    passwd = read_regular(_in_root(base, "/etc/passwd"), PASSWD_BYTES) or b""
    for line in passwd.splitlines():
        fields = line.split(b":")
        if len(fields) >= 7 and fields[2] == uid and fields[5].startswith(b"/"):
            return os.fsdecode(fields[5])
    return ""


def _named_path(base: str, named: str) -> Tuple[str, str]:
    """(path to open, path as the process names it) for the file given to -c."""
    if named.startswith("/"):
        return _in_root(base, named), named
    try:
        cwd = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = ""
    return f"{base}/cwd/{named}", os.path.normpath(os.path.join(cwd, named)) if cwd else ""


def candidates(procfs: str, pid: int, argv: Sequence[str]) -> Iterable[Tuple[str, str]]:
    """(path to open, where it is shown as) for each file worth a look, cheapest first."""
    base = f"{procfs}/{pid}"
    named = config_argument(argv)
    if named:
        yield _named_path(base, named)[0], f"-c {named}"
    for name in NAMES:
        yield f"{base}/cwd/{name}", f"{name} in the working directory"
    try:
        exe_dir = os.path.dirname(os.readlink(f"{base}/exe"))
    except OSError:
        exe_dir = ""
    if exe_dir.startswith("/") and not exe_dir.endswith(_DELETED):
        for name in NAMES:
            yield _in_root(base, os.path.join(exe_dir, name)), f"{name} beside the executable"
    home = home_of(procfs, pid)
    if home:
        for name in HOME_NAMES:
            yield _in_root(base, os.path.join(home, name)), f"~/{name} (home {home})"


def open_files(procfs: str, pid: int, named: str = "") -> List[str]:
    """Paths of config-like files the process holds open, deleted ones too, and of the file
    named by -c (`named`, as the process names it) whatever its name (not for processes with
    many fds)."""
    fd_dir = f"{procfs}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return []
    if len(fds) > MAX_FDS:
        return []
    out = []
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.endswith(_DELETED):
            target = target[: -len(_DELETED)]
        if target.startswith("/") and (target.lower().endswith(OPEN_SUFFIXES) or (named and target == named)):
            out.append(f"{fd_dir}/{fd}")
    return out


Opener = Callable[[str, int], Optional[bytes]]


class _Budget:
    """Files and bytes left for one look. `opener(path, limit)` reads at most `limit` bytes of a
    regular file (None otherwise), `stat(path)` tells a file seen twice under two names."""

    def __init__(self, opener: Opener = read_regular, stat: Callable[[str], Any] = os.stat) -> None:
        self.files, self.bytes = MAX_FILES, MAX_TOTAL_BYTES
        self.started = time.thread_time()
        self.seen: set = set()
        self.opener, self.stat = opener, stat

    def read(self, path: str) -> Optional[str]:
        if self.files <= 0 or self.bytes <= 0 or time.thread_time() - self.started > LOOK_CPU_SECONDS:
            return None
        try:
            info = self.stat(path)
        except OSError:
            return None
        # (inode, device); a file system without file ids (st_ino 0) is told apart by its path,
        # case-insensitively as NTFS compares names
        identity = (info.st_ino, info.st_dev) if getattr(info, "st_ino", 0) else ("path", path.lower())
        if identity in self.seen:
            return None
        self.seen.add(identity)
        data = self.opener(path, min(MAX_BYTES, self.bytes))  # a FIFO named config.json must not hang us
        if data is None:
            return None
        self.files -= 1
        self.bytes -= len(data)
        return data.decode("utf-8", "replace")


def _read(path: str) -> Optional[str]:
    data = read_regular(path, MAX_BYTES)  # a FIFO or device named config.json must not hang us
    return None if data is None else data.decode("utf-8", "replace")


def find(procfs: str, pid: int, argv: Sequence[str]) -> Optional[Match]:
    """miner_config for the process, or None. Reads a handful of small files."""
    budget = _Budget()
    for path, shown in candidates(procfs, pid, argv):
        text = budget.read(path)
        why = classify(text) if text else None
        if why:
            return Match("miner_config", f"{host_text(shown, 96)}: {why}")
    named = config_argument(argv)
    named_as_seen = _named_path(f"{procfs}/{pid}", named)[1] if named else ""
    for path in open_files(procfs, pid, named_as_seen):
        try:
            target = os.readlink(path)
        except OSError:
            continue
        text = budget.read(path)
        why = classify(text) if text else None
        if why:
            return Match("miner_config", f"open file {host_text(target, 96)}: {why}")
    return None


# ---------------------------------------------------------------------------------------------
# The same look through psutil (Windows)
# ---------------------------------------------------------------------------------------------

# XMRig's default places on Windows: %APPDATA%\xmrig.json and the profile's own files.
APPDATA_NAMES = ("xmrig.json", "xmrig-proxy.json")
PROFILE_NAMES = tuple(name.replace("/", "\\") for name in HOME_NAMES)
_PROCESS_ERRORS = (psutil.Error, OSError, ValueError)  # AccessDenied, NoSuchProcess, a dead handle
_DRIVE_PATH_RE = re.compile(r"^[a-z]:\\", re.IGNORECASE)
_LEADING_DOTS_RE = re.compile(r"^(?:\.{1,2}\\)+")  # .\ and ..\ before a relative -c path
_PROFILE_RE = re.compile(r"^([a-z]:\\users\\[^\\]+)(?:\\|$)", re.IGNORECASE)


def _ask(call: Callable[[], Any]) -> Any:
    """What a psutil call answers, or None for any of its errors: a process that exits, or that
    the service may not open (protected, another session), is simply not looked at further."""
    try:
        return call()
    except _PROCESS_ERRORS:
        return None


def _win_path(path: Any) -> str:
    """A drive-letter path, normalised (`..`, doubled separators), or "" for anything else (a
    UNC share would make the exporter open a connection to a host the user names)."""
    if not isinstance(path, str) or not _DRIVE_PATH_RE.match(path) or "\0" in path:
        return ""
    return ntpath.normpath(path)


def _profile(process: Any, exe: str, cwd: str) -> str:
    """The account's profile folder without its environment: `X:\\Users\\NAME` where the process
    runs or works there and NAME is its own account's (no directory look-up: it could wait)."""
    account = _ask(process.username)
    user = account.rsplit("\\", 1)[-1].lower() if isinstance(account, str) else ""
    for path in (cwd, exe):
        m = _PROFILE_RE.match(path)
        if user and m and ntpath.basename(m.group(1)).lower() == user:
            return m.group(1)
    return ""


def candidates_psutil(process: Any, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> Iterator[Tuple[str, str]]:
    """(path, where it is shown as) for each file worth a look, cheapest first, as `candidates`
    does through /proc: -c, the working directory, beside the executable, XMRig's own places."""
    cwd = _win_path(_ask(process.cwd))
    exe = _win_path(_ask(process.exe))
    named = config_argument(argv)
    if named:
        path = _win_path(named) or (_win_path(ntpath.join(cwd, named)) if cwd and not named.startswith(("\\", "/")) else "")
        if path:
            yield path, f"-c {named}"
    for name in NAMES:
        if cwd:
            yield ntpath.join(cwd, name), f"{name} in the working directory"
    exe_dir = ntpath.dirname(exe) if exe else ""
    if exe_dir and exe_dir.lower() != (cwd or "").lower():
        for name in NAMES:
            yield ntpath.join(exe_dir, name), f"{name} beside the executable"
    if env is None:
        env = _ask(process.environ)
    env = {str(k).upper(): v for k, v in env.items()} if isinstance(env, dict) else {}
    appdata = _win_path(env.get("APPDATA"))
    if appdata:
        for name in APPDATA_NAMES:
            yield ntpath.join(appdata, name), f"%APPDATA%\\{name}"
    profile = _win_path(env.get("USERPROFILE")) or _profile(process, exe, cwd)
    if profile:
        for name in PROFILE_NAMES:
            yield ntpath.join(profile, name), f"%USERPROFILE%\\{name} (profile {profile})"


def open_files_psutil(process: Any, named: str = "") -> List[str]:
    """Config-like files the process holds open, and the file named by -c (`named`: as written,
    matched as the end of the path, since the working directory it is relative to may be
    refused) whatever its name; nothing for a process with more than MAX_FDS open files."""
    files = _ask(process.open_files)
    if not isinstance(files, list) or len(files) > MAX_FDS:
        return []
    named = _LEADING_DOTS_RE.sub("", ntpath.normpath(named).lower()) if named else ""
    out = []
    for entry in files:
        path = _win_path(getattr(entry, "path", None))
        low = path.lower()
        if path and (low.endswith(OPEN_SUFFIXES) or (named and (low == named or low.endswith("\\" + named)))):
            out.append(path)
    return out


def find_psutil(process: Any, argv: Sequence[str], env: Optional[Dict[str, str]] = None, *,
                opener: Opener = read_regular, stat: Callable[[str], Any] = os.stat) -> Optional[Match]:
    """miner_config for a psutil process (Windows), or None: the same files, bounds, judgement
    and reasons as `find`. `env` is the process's environment when the caller has it already;
    `opener` and `stat` read the disk (tests give a fake host's)."""
    budget = _Budget(opener, stat)
    argv = list(argv or ())
    for path, shown in candidates_psutil(process, argv, env):
        text = budget.read(path)
        why = classify(text) if text else None
        if why:
            return Match("miner_config", f"{host_text(shown, 96)}: {why}")
    for path in open_files_psutil(process, config_argument(argv)):
        text = budget.read(path)
        why = classify(text) if text else None
        if why:
            return Match("miner_config", f"open file {host_text(path, 96)}: {why}")
    return None
