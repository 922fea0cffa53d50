"""Signatures of cryptocurrency miners: the shipped lists and the matchers.

This is the one place where minerwatch's built-in knowledge of miners lives. Matching is a pure
function of its arguments: no /proc, no network; the only file behind it is the shipped pool
list, data/pools.txt, read once at import through data.py. The process table calls
`Signatures.match_all()` once per process life, so matching is tuned for hosts with thousands of
processes: every regular expression is compiled once, most checks are set look-ups.

Signals are either *strong* (any one makes a process suspect on its own) or *disguise* signals
(weak alone; the process table only counts them together with sustained CPU use). See
docs/signatures.md for the reasoning behind each list and the known false positives.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from minerwatch.host.digests import small_sha256
from minerwatch.detection.exe_patterns import PatternError, load_pattern_file
from minerwatch.data import POOL_PORTS as _POOL_PORTS_FILE
from minerwatch.data import shipped_lines, shipped_pool_names
from minerwatch.detection.names import basename as _basename
from minerwatch.detection.names import norm_name as _norm_name
from minerwatch.detection.names import may_fold, skeleton
from minerwatch.detection.names import stem as _stem
from minerwatch.detection.redact import redact_text as _redact_text
from minerwatch.detection.user_regex import compile_user_pattern
from minerwatch.detection import windows_places
from minerwatch.yaml_file import Node, section_fields

__all__ = [
    "SIGNALS",
    "STRONG_SIGNALS",
    "DISGUISE_SIGNALS",
    "BEHAVIOUR_SIGNALS",
    "WEAK_SIGNALS",
    "MINER_NAME_PREFIXES",
    "MINER_NAMES_EXACT",
    "MINER_FLAGS",
    "MINING_COINS",
    "POOL_DOMAINS",
    "ENV_KEYS",
    "Match",
    "Signatures",
    "is_pool_host",
]

# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------

SIGNALS: dict[str, str] = {
    "miner_name": "process, executable or argv[0] name is a known miner",
    "miner_cmdline": "command line carries miner-only options (--donate-level, algorithm with pool, ...)",
    "pool_url": "command line contains a Stratum mining-pool URL (stratum+tcp://, stratum+ssl://, ...)",
    "encoded_cmdline": "command line carries miner strings encoded in base64 (PowerShell -EncodedCommand, cron)",
    "wallet_address": "command line passes a cryptocurrency wallet address (Monero, Bitcoin-style, Ethereum)",
    "miner_env": "environment holds miner settings (POOL_URL, POOL_USER, POOL_PASS, DONATE_LEVEL, ...)",
    "av_excluded": "executable or working directory lies under an antivirus exclusion (weak alone)",
    "pool_connection": "connection to a mining pool's Stratum endpoint (directly, through a proxy or SOCKS relay), Stratum seen on the wire, or repeated DNS queries for a pool endpoint",
    "exe_deleted": "executable was deleted after start (weak: upgraded daemons do this too)",
    "exe_in_temp_dir": "executable, or the script an interpreter runs, in /tmp, /dev/shm, Downloads, a Windows temp folder, or AppData or ProgramData outside real programs' folders (weak)",
    "name_mismatch": "process name differs from the executable name without a benign reason, or a Windows system or common program's name runs outside its own folders (weak)",
    # Found by the busy probe (busy_probe.py): only for processes at or above suspect_busy_cores.
    "miner_exe_content": "executable (or the script it runs) holds byte patterns of two or more miner families (Stratum methods, algorithms, option tables, banners, donation pools)",
    "miner_config": "a miner configuration file (pool entries with a Stratum-like URL and a mark of mining, or XMRig's shape) in the working directory, beside the executable, in the home folder, named by -c/--config, or open (deleted too)",
    "packed_exe": "executable packed with UPX (weak: a few legitimate tools ship packed)",
    "miner_behaviour": "keeps cores (or a GPU) busy with almost no I/O or context switches, threads equally busy, and a connection with a pool session's rhythm: jobs pushed unasked, shares sent steadily (weak)",
    "randomx_memory": "a mapping whose own resident size is RandomX's dataset (2080 MiB) or cache (256 MiB), CPU flat, with librandomx mapped or a pool session's rhythm (weak)",
}

STRONG_SIGNALS: frozenset[str] = frozenset(
    {
        "miner_name",
        "miner_cmdline",
        "pool_url",
        "encoded_cmdline",
        "wallet_address",
        "miner_env",
        "pool_connection",
        "miner_exe_content",
        "miner_config",
    }
)
DISGUISE_SIGNALS: frozenset[str] = frozenset({"exe_deleted", "exe_in_temp_dir", "name_mismatch", "packed_exe"})
# What a busy process does rather than what it is: a miner's shape, weak alone (see rules/).
BEHAVIOUR_SIGNALS: frozenset[str] = frozenset({"miner_behaviour", "randomx_memory"})
# Weak alone, suspect only while the process is busy: disguise, behaviour, and an antivirus
# exclusion (backup agents and databases are excluded legitimately; a busy process under an
# exclusion is not).
WEAK_SIGNALS: frozenset[str] = DISGUISE_SIGNALS | BEHAVIOUR_SIGNALS | {"av_excluded"}

# ---------------------------------------------------------------------------------------------
# Shipped lists
# ---------------------------------------------------------------------------------------------

# Miner families matched by name prefix: the name itself, or the name followed by "-", "_", "."
# or a digit and anything (xmrig-notls, xmrig-6.21.0, cpuminer-opt, SRBMiner-MULTI, ethdcrminer64).
# Sources: Falco's known-miner list, Sigma/Elastic process rules, the projects' release assets.
MINER_NAME_PREFIXES: Tuple[str, ...] = (
    "xmrig",  # XMRig and xmrig-notls, xmrig-cuda, xmrig-proxy, xmrig-mo (MoneroOcean fork)
    "xmrigdaemon",  # XMRig's Windows launcher
    "xmrigminer",
    "xmr-stak",  # xmr-stak, xmr-stak-rx, xmr-stak-cpu, xmr-stak-amd, xmr-stak-nvidia
    "minerd",  # pooler's cpuminer binary
    "minergate",  # minergate, minergate-cli
    "cpuminer",  # cpuminer, cpuminer-opt, cpuminer-multi, cpuminer-gr, cpuminer-avx2
    "ccminer",
    "ethminer",
    "cgminer",
    "bfgminer",
    "sgminer",
    "nbminer",
    "lolminer",
    "phoenixminer",
    "teamredminer",
    "nanominer",
    "wildrig",  # wildrig-multi
    "srbminer",  # SRBMiner-MULTI, SRBMiner-CN
    "kawpowminer",
    "nheqminer",
    "nicehashminer",  # NiceHash Miner
    "nicehashquickminer",  # NiceHash QuickMiner (comm truncated to "nicehashquickmi")
    "progminer",  # ethminer forks
    "nsfminer",
    "ethdcrminer",  # Claymore's dual miner: EthDcrMiner64.exe
    "nsgpucnminer",  # Claymore's CryptoNote GPU miner
    "zecminer",  # Claymore's Zcash miner: ZecMiner64.exe
    "cryptodredge",
    "bzminer",
    "onezerominer",
    "hellminer",  # Verus CPU miner
    "jce_cn_cpu_miner",  # JCE CryptoNight miners
    "jce_cn_gpu_miner",
    "cast_xmr",  # Cast XMR, cast_xmr-vega
    "z-enemy",
    "ttminer",
)

# Names matched only exactly (an optional version suffix aside: rigel-1.4.2) because a prefix
# would catch ordinary software (rigelctl, t-rexctl, miniz-based tools, ...). GMiner's binary is
# plain "miner": too common a word to ship; add it in the configuration if you need it.
# kdevtmpfsi/kinsing (Kinsing campaign) and kworkerds (2018 Redis campaign) are names used by
# cryptojacking malware, from public incident reports.
MINER_NAMES_EXACT: Tuple[str, ...] = (
    "t-rex",
    "gminer",
    "bminer",
    "rigel",
    "claymore",
    "excavator",  # NiceHash Excavator
    "miniz",
    "cryptonight",
    "kdevtmpfsi",
    "kinsing",
    "kworkerds",
)

# Linux truncates a process name (comm) to 15 characters.
COMM_MAX = 15

# Options only miners have (XMRig, xmr-stak, Claymore, ethminer, lolMiner), each enough alone.
# Sources: the projects' --help, Sigma "Potential Crypto Mining Activity", Falco, CAPE yara.
# --cpu-priority is NOT here: other tools have it (it needs a second miner option, see below).
MINER_FLAGS: frozenset[str] = frozenset(
    {
        # XMRig
        "--donate-level",
        "--donate-over-proxy",
        "--randomx-1gb-pages",
        "--randomx-mode",
        "--randomx-init",
        "--randomx-no-numa",
        "--randomx-wrmsr",
        "--randomx-no-rdmsr",
        "--randomx-cache-qos",
        "--cpu-max-threads-hint",
        "--cpu-no-yield",
        "--cpu-memory-pool",
        "--huge-pages-jit",
        "--pause-on-active",
        "--pause-on-battery",
        "--nicehash",
        "--tls-fingerprint",
        "--rig-id",
        # xmr-stak
        "--nouac",
        "--noamd",
        "--nonvidia",
        # Claymore
        "-epool",
        "-ewal",
        "-epsw",
        "-dpool",
        "-dwal",
        "-dpsw",
        "-dcoin",
        # ethminer
        "--farm-recheck",
        "--farm-retries",
        # lolMiner
        "--dualpool",
    }
)

# Mining algorithms accepted by -a/--algo/--algorithm. Alone they prove nothing (gpg, shasum and
# ssh-keygen have -a too): they count only together with a pool option (-o/--url/--pool/--server).
MINING_ALGO_RE = re.compile(
    r"(?:rx/\w+|cn(?:/|-)[\w/-]*|cryptonight[\w/-]*|argon2/\w+|astrobwt[\w/-]*|gr|ghostrider"
    r"|randomx\w*|randomarq|randomwow|randomkeva|randomsfx|panthera|kawpow|ethash\w*|etchash"
    r"|autolykos2?|kheavyhash|karlsenhash|pyrinhash|heavyhash|octopus|firopow|progpow[\w-]*"
    r"|evrprogpow|meowpow|equihash[\w/-]*|\d{2,3}_\d|beamhash\w*|cuckoo\w*|cuckatoo\w*"
    r"|cuckaroo\w*|zhash|x16r\w*|x16s|x17|x11|x13|x21s|x25x|lyra2\w*|yespower\w*|yescrypt\w*"
    r"|neoscrypt|scrypt|sha256d|sha256t|sha512256d|sha3x|blake3|blake2s|kadena|nexapow"
    r"|dynex\w*|verushash|verthash|fishhash|xelishash\w*|allium|phi2|tribus|skein|qubit|quark"
    r"|myr-gr|groestl|keccak|lbry|decred|ubqhash|cortex|grin\w*)",
    re.IGNORECASE,
)

# Coins that, passed to --coin/-coin/--currency, mark a miner on their own: mostly mined, rarely
# the subject of other software. Heavily traded coins (btc, eth, ltc, doge) are left out because
# trading bots take --coin too; with a pool option any coin counts.
MINING_COINS: frozenset[str] = frozenset(
    {
        "monero", "xmr", "wownero", "ravencoin", "rvn", "ergo", "kaspa", "zephyr", "dero",
        "raptoreum", "rtm", "neoxa", "firo", "etc", "ethereumclassic", "aeon", "arqma",
        "turtlecoin", "conflux", "cfx", "karlsen", "nexa", "clore",
    }
)

# Mining pools, matched by domain suffix (pool.supportxmr.com matches supportxmr.com).
# The one shipped pool list, data/pools.txt, read through data.py: the network collector matches
# connections and TLS names against it, and here a pool option naming one of its hosts is a
# miner option.
_POOLS = shipped_pool_names()
POOL_DOMAINS: Tuple[str, ...] = tuple(sorted(_POOLS.domains))
# The usual Stratum ports (data/pool_ports.txt): a bare host:port pool option counts only on one
# of them (`--url db:5432 --user app` is a database client, `-o 10.0.0.5:3333 -u w` a miner).
# The file is shipped and tested (network/pools.py parses it strictly); here only its numbers.
_POOL_PORTS = frozenset(
    port
    for line in shipped_lines(_POOL_PORTS_FILE)
    if line.split("#", 1)[0].strip()
    for low, _, high in [line.split("#", 1)[0].strip().partition("-")]
    for port in range(int(low), int(high or low) + 1)
)

# Environment variables that mining kits and miner containers set (Datadog's rule plus the
# common docker-xmrig images). The WALLET* keys count only when the value looks like an address.
ENV_KEYS: frozenset[str] = frozenset(
    {"POOL_URL", "POOL_USER", "POOL_PASS", "POOL_PASSWORD", "DONATE_LEVEL", "MINING_POOL",
     "MINING_WALLET", "MINER_WALLET"}
)
WALLET_ENV_KEYS: frozenset[str] = frozenset({"WALLET", "WALLET_ADDRESS"})

# Plain strings searched for in base64 (and UTF-16LE base64, as PowerShell -EncodedCommand uses),
# at all three byte alignments. The fragments are computed below, not hard-coded.
ENCODED_STRINGS: Tuple[str, ...] = (
    "stratum+tcp://", "stratum+ssl://", "stratum+tls://", "stratum+udp://",
    "stratum1+tcp://", "stratum2+tcp://",
    "--donate-level", "--cpu-max-threads-hint", "--randomx-1gb-pages", "--pause-on-active",
    "--tls-fingerprint",
)

# Folders a dropped miner likes: world-writable temp folders and the user's Downloads.
TEMP_DIR_PATTERNS: Tuple[str, ...] = (
    r"/(?:tmp|var/tmp|dev/shm)(?:/|$)",  # Linux
    r"/(?:home/[^/]+|root)/downloads(?:/|$)",
    r"/private/(?:tmp|var/tmp)(?:/|$)",  # macOS
    r"/users/[^/]+/downloads(?:/|$)",
    r"[a-z]:/users/[^/]+/downloads(?:/|$)",  # Windows
    r"[a-z]:/users/[^/]+/appdata/local/temp(?:/|$)",
    r"[a-z]:/windows/temp(?:/|$)",
    r"[a-z]:/users/public(?:/|$)",
)

# name_mismatch: executables whose process name is legitimately something else. Interpreters
# (the script names itself), multi-call binaries (busybox applets, kmod, xtables), browsers and
# Electron apps that name their helpers, systemd and container runtimes. Matched after removing
# a version suffix (python3.11 -> python).
FREE_NAME_EXES: frozenset[str] = frozenset(
    {
        # interpreters and runtimes
        "python", "pypy", "perl", "ruby", "node", "nodejs", "bun", "deno", "java", "javaw",
        "bash", "sh", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "php",
        "php-fpm", "php-cgi", "lua", "luajit", "tclsh", "wish", "rscript", "pwsh", "powershell",
        "dotnet", "mono", "mono-sgen", "erl", "beam.smp", "gjs", "guile", "julia", "electron",
        "wine", "wine64", "wine-preloader", "wine64-preloader", "wineserver", "valgrind",
        "ld-linux-x86-64.so", "ld-linux.so", "ld.so", "ld-linux-aarch64.so", "ld-musl-x86_64.so",
        # multi-call binaries
        "busybox", "toybox", "kmod", "xtables-nft-multi", "xtables-legacy-multi", "udevadm",
        "systemctl", "lvm", "mke2fs", "e2fsck", "coreutils", "ntfs-3g", "xz", "zstd", "bzip2",
        "pigz", "git", "vim", "nvim", "snap", "flatpak", "bwrap", "exim", "postfix", "sendmail",
        # browsers and Electron apps that rename their helper processes
        "firefox", "firefox-bin", "firefox-esr", "thunderbird", "librewolf", "waterfox",
        "chrome", "chromium", "chromium-browser", "google-chrome", "msedge", "brave", "opera",
        "vivaldi-bin", "code", "code-oss", "codium", "slack", "discord", "teams", "zoom",
        "steam", "steamwebhelper",
        # init, daemons and container runtimes that set their own name
        "systemd", "init", "sshd", "runc", "crun", "postgres", "postmaster", "pipewire",
    }
)
FREE_NAME_EXE_RE = re.compile(r"(?:qemu-.+|systemd-.+|containerd-shim.*|xtables-.+-multi|ld-linux.*)")

# Process names that are usually symlinks or Debian alternatives to another executable
# (vi -> vim.basic, awk -> mawk, editor -> nano, X -> Xorg).
ALIAS_COMMS: frozenset[str] = frozenset(
    {
        "editor", "pager", "sensible-pager", "sensible-edito", "x-terminal-emul", "x-www-browser",
        "www-browser", "gnome-www-brows", "x-session-manag", "x-window-manag", "mail", "mailx",
        "mailq", "newaliases", "sendmail", "view", "ex", "rview", "vi", "awk", "nawk", "cc", "c++",
        "c89", "c99", "cpp", "ld", "yacc", "lex", "nc", "netcat", "telnet", "ftp", "iptables",
        "ip6tables", "iptables-save", "iptables-resto", "ip6tables-save", "ip6tables-rest",
        "arptables", "ebtables", "modprobe", "insmod", "rmmod", "lsmod", "depmod", "halt",
        "reboot", "poweroff", "shutdown", "telinit", "runlevel", "init", "x", "unxz", "xzcat",
        "unzstd", "zstdcat", "bunzip2", "bzcat", "unpigz", "lzma", "unlzma", "lzcat", "sudoedit",
    }
)

# A process name that imitates a kernel thread while having a real executable file is a classic
# disguise (kernel threads have no executable at all).
KTHREAD_COMM_RE = re.compile(
    r"\[?(?:kworker|kthreadd|ksoftirqd|kswapd|migration/|rcu_|watchdog/|kcompactd|khugepaged"
    r"|kblockd|kauditd|khungtaskd|ksmd|jbd2/|irq/|cpuhp/|kdevtmpfs|oom_reaper|writeback"
    r"|idle_inject)"
)

# ---------------------------------------------------------------------------------------------
# Compiled helpers shared by every Signatures instance
# ---------------------------------------------------------------------------------------------

# stratum+tcp://, stratum+ssl://, stratum+tls://, stratum+udp://, stratum1+tcp:// (ethminer),
# stratum2+tcp://, stratum+tls12://, stratums:// and bminer's plain stratum://.
POOL_URL_RE = re.compile(r"\bstratum[1-3]?(?:\+(?:tcp|ssl|tls(?:12)?|udp))?s{0,2}://[^\s'\"<>`]*", re.IGNORECASE)

_ALGO_FLAGS = frozenset({"-a", "--algo", "--algorithm", "-algo", "--algo1"})
_COIN_FLAGS = frozenset({"--coin", "-coin", "--currency"})
# Pool options whose value must be a host:port or a pool URL.
_POOL_FLAGS = frozenset({"-o", "--url", "--pool", "-pool", "-pool1", "-pool2", "--pool1", "--pool2"})
# GMiner's --server takes a bare host name: weak, counts only with an algorithm.
_SERVER_FLAGS = frozenset({"--server"})
_USER_FLAGS = frozenset({"-u", "--user", "--username", "--wallet", "-wal", "--wal", "-O", "--userpass"})
_WALLET_FLAGS = _USER_FLAGS | {"-w", "--worker", "--address", "--login", "-ewal", "-dwal"}
_CLAYMORE_POOL_FLAGS = frozenset({"-epool", "-dpool"})
_POOL_SCHEMES_STRICT = frozenset({"ssl", "tls", "tcp", "udp"})

_HOSTPORT_RE = re.compile(
    r"(?:(?P<scheme>[a-z][a-z0-9+.\-]*)://)?"
    r"(?:[^@/\s]*@)?"
    # a single-label name (`-o pool:3333`, from /etc/hosts) only with a port
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9\-_]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-_]*[a-z0-9])?)+|localhost"
    r"|[a-z0-9](?:[a-z0-9\-_]*[a-z0-9])?(?=:\d))"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?:[/?#]\S*)?",
    re.IGNORECASE,
)

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(_BASE58)}
# Monero: standard (4...) and subaddress (8...) are 95 characters, integrated addresses 106.
_MONERO_RE = re.compile(r"[48][1-9A-HJ-NP-Za-km-z]{94}|4[1-9A-HJ-NP-Za-km-z]{105}")
_BASE58CHECK_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{26,35}")
_BECH32_RE = re.compile(r"(?:bc|ltc|tb)1[02-9ac-hj-np-z]{39,87}")
_ETH_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_PIECE_SPLIT_RE = re.compile(r"[=:@/,;'\"\s.+*]+")
_USERINFO_RE = re.compile(r"://([^@/\s]+)@")

_PS_NAMES = frozenset({"powershell", "pwsh", "powershell_ise"})
_PS_ENC_RE = re.compile(r"[-/](?:e|ec|en|enc|enco|encod|encode|encoded|encodedc\w*)", re.IGNORECASE)
_DECODED_FLAG_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(f) for f in sorted(MINER_FLAGS) if f.startswith("--")) + r")(?![\w-])",
    re.IGNORECASE,
)
_DECODED_NAME_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(n) for n in MINER_NAME_PREFIXES) + r")(?![a-z])", re.IGNORECASE
)

_TEMP_DIR_RE = re.compile(r"^(?:" + "|".join(TEMP_DIR_PATTERNS) + r")", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Match
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """One signal seen on a process. `reason` is short, human and free of secrets."""

    signal: str
    reason: str


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _shorten(text: str, limit: int = 96) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _abbrev(address: str) -> str:
    return address if len(address) <= 16 else f"{address[:8]}...{address[-4:]}"


def _words(argv: Sequence[str]) -> List[str]:
    """argv split further on white space (so `sh -c "xmrig -o ..."` is seen), quotes stripped."""
    out: List[str] = []
    for element in argv:
        for word in element.split():
            word = word.strip("\"'")
            if word:
                out.append(word)
    return out


def is_pool_host(host: str) -> bool:
    """True when host is, or is below, a shipped pool domain (and not an excluded one); the
    longest listed suffix decides, as in the network collector's pool list."""
    name = host.lower().rstrip(".")
    while name:
        if name in _POOLS.never:
            return False
        if name in _POOLS.domains:
            return True
        _, _, name = name.partition(".")
    return False


def _b64_fragments(data: bytes) -> List[str]:
    """The base64 characters that encode `data` whatever precedes or follows it.

    `data` may start at any of three byte offsets within a base64 group; for each offset, keep the
    characters whose six bits all come from `data` (Sigma's three-alignment trick, computed).
    """
    out = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        start = -(-8 * k // 6)  # ceil
        end = 8 * (k + len(data)) // 6  # floor
        out.append(encoded[start:end])
    return out


def _build_encoded_needles() -> dict:
    needles = {}
    for plain in ENCODED_STRINGS:
        for fragment in _b64_fragments(plain.encode("ascii")):
            needles.setdefault(fragment, f"base64-encoded {plain}")
        for fragment in _b64_fragments(plain.encode("utf-16-le")):
            needles.setdefault(fragment, f"base64-encoded (UTF-16LE) {plain}")
    return needles


_ENCODED_NEEDLES = _build_encoded_needles()
_ENCODED_RE = re.compile("|".join(re.escape(n) for n in sorted(_ENCODED_NEEDLES, key=len, reverse=True)))


def _b58decode(text: str) -> Optional[bytes]:
    number = 0
    for char in text:
        value = _BASE58_INDEX.get(char)
        if value is None:
            return None
        number = number * 58 + value
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def _is_base58check_address(text: str) -> bool:
    """Bitcoin-style address (BTC, LTC, DOGE, RVN, ...): 25 bytes with a valid checksum."""
    if not _BASE58CHECK_RE.fullmatch(text):
        return False
    raw = _b58decode(text)
    if raw is None or len(raw) != 25:
        return False
    return small_sha256(small_sha256(raw[:21]))[:4] == raw[21:]


_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _is_bech32_address(text: str) -> bool:
    """Segwit address (bc1..., ltc1...) with a valid bech32 or bech32m checksum."""
    if text.upper() == text:
        text = text.lower()
    if not _BECH32_RE.fullmatch(text):
        return False
    hrp, data = text.rsplit("1", 1)
    values = [_BECH32_CHARSET.index(c) for c in data]
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                checksum ^= generator[i]
    return checksum in (1, 0x2BC830A3)  # bech32, bech32m


def _address_kind(piece: str, with_context: bool) -> Optional[str]:
    """Which wallet `piece` is, or None. Without context only Monero (95/106 chars) counts."""
    if len(piece) >= 95 and _MONERO_RE.fullmatch(piece):
        return "Monero"
    if not with_context:
        return None
    if len(piece) == 42 and _ETH_RE.fullmatch(piece):
        return "Ethereum"
    if _is_base58check_address(piece):
        return "Bitcoin-style"
    if _is_bech32_address(piece):
        return "Bech32"
    return None


def _looks_like_address(value: str) -> bool:
    value = value.strip().strip("\"'")
    return any(_address_kind(piece, True) for piece in _PIECE_SPLIT_RE.split(value) if len(piece) >= 26)


def is_pool_port(port: Optional[int]) -> bool:
    """True for a usual Stratum port (data/pool_ports.txt); weak evidence alone."""
    return port is not None and port in _POOL_PORTS


def stratum_endpoint(value: str) -> Optional[Tuple[str, str, Optional[int]]]:
    """(scheme, host, port) of a value a miner could connect to: a stratum*://, tcp://, ssl://,
    tls:// or udp:// URL or a bare host[:port]. None for anything else: http(s), postgresql://,
    jdbc:..., redis://, amqp://, ldap://, mongodb://, file paths. Scheme lowercased ('' if none)."""
    m = _HOSTPORT_RE.fullmatch(value.strip("\"'"))
    if not m:
        return None
    scheme = (m.group("scheme") or "").lower()
    if scheme and not scheme.startswith("stratum") and scheme not in _POOL_SCHEMES_STRICT:
        return None
    port = int(m.group("port")) if m.group("port") else None
    return scheme, m.group("host"), port


def is_wallet_value(value: str) -> bool:
    """A user or wallet option value that holds a cryptocurrency address (checksummed ones)."""
    return _looks_like_address(value)


def _pool_kind(flag: str, value: str) -> Optional[str]:
    """Classify an option value as a pool: 'known', 'strict', 'weak' or None.

    'strict' (a pool with a user is a miner) needs a Stratum scheme or a usual pool port: a Java
    or Go service's `--url db:5432 --user app` is 'weak', counted only with a mining algorithm."""
    value = value.strip("\"'")
    m = _HOSTPORT_RE.fullmatch(value)
    if not m:
        return None
    scheme = (m.group("scheme") or "").lower()
    if scheme in ("http", "https"):
        return "weak"  # getwork is dead; also pool web sites and their APIs (curl --url ...)
    endpoint = stratum_endpoint(value)
    if endpoint is None:
        return None
    scheme, host, port = endpoint
    if is_pool_host(host):
        return "known"
    if scheme.startswith("stratum"):
        return "strict"
    if flag in _SERVER_FLAGS:
        return "weak"
    if is_pool_port(port):
        return "strict"
    return "weak" if port is not None else None


def _pool_shown(flag: str, value: str) -> str:
    """The pool option for a reason: scheme, host and port only (no user, password or path)."""
    m = _HOSTPORT_RE.fullmatch(value.strip("\"'"))
    if not m:
        return f"{flag} (pool)"
    scheme = f"{m.group('scheme')}://" if m.group("scheme") else ""
    port = f":{m.group('port')}" if m.group("port") else ""
    return f"{flag} {_shorten(scheme + m.group('host') + port, 80)}"


def _flag_and_value(words: Sequence[str], i: int) -> Tuple[str, Optional[str], bool]:
    """(flag, value, attached) for words[i], a word that starts with '-'."""
    word = words[i]
    if "=" in word:
        flag, value = word.split("=", 1)
        return flag, value, True
    if i + 1 < len(words) and not words[i + 1].startswith("-"):
        return word, words[i + 1], False
    return word, None, False


def _flag_key(flag: str) -> str:
    # Short options are case-sensitive (-o is the pool, -O cpuminer's user:pass); long ones not.
    return flag if len(flag) == 2 else flag.lower()


# ---------------------------------------------------------------------------------------------
# The matchers
# ---------------------------------------------------------------------------------------------


def _name_regex(extras: Sequence[str] = ()) -> "re.Pattern[str]":
    """One regex for every miner name: prefixes (+ separator + anything), exact names (+ version)."""
    prefixes = "|".join(re.escape(n) for n in MINER_NAME_PREFIXES)
    exact = "|".join(re.escape(n) for n in MINER_NAMES_EXACT)
    alternatives = [
        rf"(?:{prefixes})(?:[-_.\d].*)?",
        rf"(?:{exact})(?:[-_.]v?\d[\w.+-]*)?",
    ]
    if extras:
        alternatives.append("|".join(re.escape(n) for n in extras))
    return re.compile("|".join(alternatives), re.IGNORECASE | re.DOTALL)


_MINER_NAME_RE = _name_regex()


@dataclass(frozen=True)
class SignatureSettings:
    """The `signatures:` section: the user's extra miner names and command-line patterns."""

    extra_names: Tuple[str, ...] = ()
    extra_patterns: Tuple[str, ...] = ()
    # Files of byte patterns for executables, in data/exe_patterns.txt's format (exe_patterns.py),
    # and the (family, bytes) pairs read from them when the configuration was loaded.
    exe_pattern_files: Tuple[str, ...] = ()
    exe_patterns: Tuple[Tuple[str, bytes], ...] = ()


def read_settings(node: Optional[Node]) -> SignatureSettings:
    """The `signatures:` section; a pattern the matcher cannot run is an error naming its line."""
    fields = section_fields(node, ("extra_names", "extra_patterns", "exe_pattern_files"))
    files, exe_patterns = [], []
    for item in fields["exe_pattern_files"].items() if "exe_pattern_files" in fields else []:
        path = item.string()
        try:
            exe_patterns.extend(load_pattern_file(path))
        except PatternError as exc:
            raise item.error(str(exc)) from None
        files.append(path)
    names = tuple(fields["extra_names"].strings()) if "extra_names" in fields else ()
    patterns = []
    for item in fields["extra_patterns"].items() if "extra_patterns" in fields else []:
        pattern = item.string()
        try:
            compile_user_pattern(pattern)  # the matcher Signatures runs: RE2, linear time
        except ValueError as exc:
            raise item.error(str(exc)) from None
        patterns.append(pattern)
    return SignatureSettings(names, tuple(patterns), tuple(files), tuple(exe_patterns))


class Signatures:
    """The shipped signatures plus the configured extras, compiled once."""

    @classmethod
    def from_settings(cls, settings: SignatureSettings) -> "Signatures":
        return cls(settings.extra_names, settings.extra_patterns, settings.exe_patterns)

    def __init__(self, extra_names: Iterable[str] = (), extra_patterns: Iterable[str] = (),
                 exe_patterns: Iterable[Tuple[str, bytes]] = ()) -> None:
        # The user's executable byte patterns; the busy probe compiles them with the shipped ones.
        self.extra_exe_patterns = tuple(exe_patterns)
        # Configured names match exactly (case-insensitive, .exe and directories ignored).
        extras = sorted({_norm_name(n) for n in extra_names if _norm_name(n)})
        self._name_re = _name_regex(extras) if extras else _MINER_NAME_RE
        # Look-alike names (xmrіg with a Cyrillic і, ｘｍｒｉｇ, xmr1g) are compared as skeletons.
        extra_skeletons = sorted({skeleton(n) for n in extras})
        self._skeleton_re = _name_regex(extra_skeletons) if extras else _MINER_NAME_RE
        # Names longer than a comm: a 15-character comm that starts one of them is that name.
        self._long_names = tuple(n for n in (*MINER_NAME_PREFIXES, *MINER_NAMES_EXACT, *extras) if len(n) > COMM_MAX)
        self._long_skeletons = tuple(skeleton(n) for n in self._long_names)
        # Users' patterns run on RE2, in linear time: `(a+)+$` must not hang a scrape. Raises
        # ValueError with a one-line reason; the config loader reports it with file:line.
        self._patterns = tuple(compile_user_pattern(p) for p in extra_patterns)

    # -- names ----------------------------------------------------------------------------------

    def _is_miner_name(self, name: str, is_comm: bool = False) -> bool:
        if not name:
            return False
        if self._name_re.fullmatch(name):
            return True
        return is_comm and len(name) == COMM_MAX and any(n.startswith(name) for n in self._long_names)

    def _looks_like_miner_name(self, raw: str, is_comm: bool) -> Optional[Tuple[str, str]]:
        """(basename, the miner name it imitates with look-alike characters), or None."""
        base = _basename(raw)
        if not may_fold(base) and "\\" not in raw:
            return None  # plain ASCII without digits: its skeleton is itself (the common case)
        readings = [base]
        if "\\" in raw:
            # A backslash is a Windows separator, or the start of host_text's escape of an
            # invisible character or a bad byte (/tmp/xm\u200drig): try the POSIX reading too.
            readings.append(raw.rsplit("/", 1)[-1])
        plain = _norm_name(raw)
        for reading in readings:
            name = _norm_name(skeleton(reading))
            if not name or name == plain:
                continue  # nothing folded: the plain match already said no
            if self._skeleton_re.fullmatch(name) or (
                is_comm and len(raw) == COMM_MAX and any(n.startswith(name) for n in self._long_skeletons)
            ):
                return reading, name
        return None

    def match_names(self, comm: str, exe: str, argv0: str) -> List[Match]:
        """miner_name: the executable, comm or argv[0] basename is a known miner, or imitates one
        with look-alike characters (homoglyphs, full-width letters, invisibles, digits)."""
        candidates = (("executable", exe, False), ("process name", comm, True), ("argv[0]", argv0, False))
        for what, raw, is_comm in candidates:
            if raw and self._is_miner_name(_norm_name(raw), is_comm):
                return [Match("miner_name", f"{what} {_shorten(_basename(raw), 64)}")]
        for what, raw, is_comm in candidates:
            found = self._looks_like_miner_name(raw, is_comm) if raw else None
            if found is not None:
                shown, name = found
                return [Match("miner_name", f"{what} {_shorten(shown, 64)} looks like {_shorten(name, 64)}")]
        return []

    # -- command line ---------------------------------------------------------------------------

    def match_cmdline(self, argv: Sequence[str]) -> List[Match]:
        """miner_cmdline, pool_url, encoded_cmdline and wallet_address, at most one of each."""
        if not argv:
            return []
        joined = " ".join(argv)
        words = _words(argv)
        out: List[Match] = []

        url_match = POOL_URL_RE.search(joined)
        reason, pool_context, wallet_values = self._miner_options(words)
        if reason is None:
            for pattern in self._patterns:
                if pattern.search(joined):
                    reason = f"configured pattern {_shorten(pattern.pattern, 64)}"
                    break
        if reason is not None:
            out.append(Match("miner_cmdline", reason))
        if url_match:
            out.append(Match("pool_url", f"pool URL {_shorten(_redact_text(url_match.group(0)))}"))

        encoded = self._encoded(joined, words)
        if encoded is not None:
            out.append(Match("encoded_cmdline", encoded))

        wallet = _wallet(words, wallet_values, pool_context or url_match is not None)
        if wallet is not None:
            out.append(Match("wallet_address", wallet))
        return out

    @staticmethod
    def _miner_options(words: Sequence[str]) -> Tuple[Optional[str], bool, frozenset]:
        """(reason, has a pool option, indexes of words that are values of wallet options)."""
        distinctive = coin_strong = known = algo = pool = weak_pool = user = coin = None
        cpu_priority = None
        wallet_values = set()
        for i, word in enumerate(words):
            if len(word) < 2 or word[0] != "-":
                continue
            flag, value, attached = _flag_and_value(words, i)
            key = _flag_key(flag)
            if key in _WALLET_FLAGS and value is not None:
                wallet_values.add(i if attached else i + 1)
            if key in MINER_FLAGS:
                distinctive = distinctive or f"argument {key}"
                if key in _CLAYMORE_POOL_FLAGS and value is not None:
                    pool = pool or _pool_shown(flag, value)
                continue
            if key == "--cpu-priority":
                cpu_priority = "--cpu-priority"
                continue
            if value is None:
                continue
            if key in _ALGO_FLAGS:
                if algo is None and MINING_ALGO_RE.fullmatch(value):
                    algo = f"{flag} {_shorten(value, 32)}"
            elif key in _COIN_FLAGS:
                coin = coin or f"{flag} {_shorten(value, 32)}"
                if value.lower() in MINING_COINS:
                    coin_strong = coin_strong or f"argument {flag} {value}"
            elif key in _POOL_FLAGS or key in _SERVER_FLAGS:
                kind = _pool_kind(key, value)
                shown = _pool_shown(flag, value)
                if kind == "known":
                    known = known or f"pool host in {shown}"
                    pool = pool or shown
                elif kind == "strict":
                    pool = pool or shown
                elif kind == "weak":
                    weak_pool = weak_pool or shown
            elif key in _USER_FLAGS:
                user = user or flag

        reason = None
        if distinctive:
            reason = distinctive
        elif coin_strong:
            reason = coin_strong
        elif known:
            reason = known
        elif algo and (pool or weak_pool):
            reason = f"arguments {algo} with {pool or weak_pool}"
        elif pool and user:
            reason = f"arguments {pool} with {user}"
        elif pool and coin:
            reason = f"arguments {pool} with {coin}"
        elif cpu_priority and (pool or weak_pool or algo or coin):
            reason = f"arguments --cpu-priority with {pool or weak_pool or algo or coin}"
        return reason, bool(pool or known), frozenset(wallet_values)

    @staticmethod
    def _encoded(joined: str, words: Sequence[str]) -> Optional[str]:
        m = _ENCODED_RE.search(joined)
        if m:
            return _ENCODED_NEEDLES[m.group(0)]
        # PowerShell -EncodedCommand: decode and look for miner strings the needles do not cover.
        if not any(_norm_name(w) in _PS_NAMES for w in words[:3]):
            return None
        for i, word in enumerate(words[:-1]):
            if not _PS_ENC_RE.fullmatch(word):
                continue
            blob = words[i + 1]
            try:
                raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            except (binascii.Error, ValueError):
                continue
            texts = [raw.decode("utf-8", "ignore")]
            if len(raw) % 2 == 0:
                texts.insert(0, raw.decode("utf-16-le", "ignore"))
            for text in texts:
                url = POOL_URL_RE.search(text)
                if url:
                    return f"PowerShell -EncodedCommand with pool URL {_shorten(_redact_text(url.group(0)))}"
                flag = _DECODED_FLAG_RE.search(text)
                if flag:
                    return f"PowerShell -EncodedCommand with argument {flag.group(1).lower()}"
                name = _DECODED_NAME_RE.search(text)
                if name:
                    return f"PowerShell -EncodedCommand runs {name.group(1).lower()}"
        return None

    # -- environment ----------------------------------------------------------------------------

    def match_environ(self, environ: Optional[Mapping[str, str]]) -> List[Match]:
        """miner_env: miner settings in the environment. Only variable names reach the reason."""
        if not environ:
            return []
        for key, value in environ.items():
            upper = key.upper()
            if upper in ENV_KEYS:
                return [Match("miner_env", f"environment variable {_shorten(key, 40)} set")]
            if upper in WALLET_ENV_KEYS and value and _looks_like_address(value):
                return [Match("miner_env", f"environment variable {_shorten(key, 40)} holds a wallet address")]
        for key, value in environ.items():
            if value and "tratum" in value and POOL_URL_RE.search(value):
                return [Match("miner_env", f"environment variable {_shorten(key, 40)} holds a pool URL")]
        return []

    # -- executable -----------------------------------------------------------------------------

    def match_executable(self, comm: str, exe: str, exe_deleted: bool, script: str = "") -> List[Match]:
        """exe_deleted, exe_in_temp_dir and name_mismatch: the weak disguise signals. On Windows
        (windows_places.py) AppData and ProgramData count as temp folders outside real programs'
        own folders, and a listed Windows program's name outside its folders as a mismatch.

        `script` is the file an interpreter runs (see `script_of`): a miner written in Python or
        shell and dropped into /tmp runs a clean interpreter. The working directory does not
        count: builds and installers work in /tmp all day.
        """
        out: List[Match] = []
        path = exe[: -len(" (deleted)")] if exe.endswith(" (deleted)") else exe
        if exe_deleted:
            out.append(Match("exe_deleted", f"executable deleted: {_shorten(path, 96)}" if path else "executable deleted"))
        if path and _in_temp_dir(path):
            out.append(Match("exe_in_temp_dir", f"executable in a temp folder: {_shorten(path, 96)}"))
        elif path and windows_places.in_user_folder(path):
            out.append(Match("exe_in_temp_dir", f"executable in a user-writable folder: {_shorten(path, 96)}"))
        elif script and _in_temp_dir(script):
            out.append(Match("exe_in_temp_dir", f"script in a temp folder: {_shorten(script, 96)}"))
        elif script and windows_places.in_user_folder(script):
            out.append(Match("exe_in_temp_dir", f"script in a user-writable folder: {_shorten(script, 96)}"))
        mismatch = _name_mismatch(comm, path)
        if mismatch is None and path and windows_places.out_of_place(path):
            # a Windows system or common program's name outside the folders it installs to
            mismatch = f"{_shorten(_basename(path), 64)} runs outside its own folders: {_shorten(path, 96)}"
        if mismatch is not None:
            out.append(Match("name_mismatch", mismatch))
        return out

    # -- everything -----------------------------------------------------------------------------

    def match_all(
        self,
        *,
        comm: str,
        exe: str,
        exe_deleted: bool,
        argv: Sequence[str],
        environ: Optional[Mapping[str, str]] = None,
    ) -> List[Match]:
        """All matchers; one Match per signal (the first reason found wins)."""
        argv = list(argv or ())
        found = [
            *self.match_names(comm, exe, argv[0] if argv else ""),
            *self.match_cmdline(argv),
            *self.match_environ(environ),
            *self.match_executable(comm, exe, exe_deleted, script_of(exe, argv)),
        ]
        seen = set()
        out = []
        for match in found:
            if match.signal not in seen:
                seen.add(match.signal)
                out.append(match)
        return out


def _wallet(words: Sequence[str], wallet_values: frozenset, pool_context: bool) -> Optional[str]:
    for i, word in enumerate(words):
        if len(word) < 26:
            continue
        is_value = i in wallet_values
        userinfo = _USERINFO_RE.search(word)
        in_url = set(_PIECE_SPLIT_RE.split(userinfo.group(1))) if userinfo else set()
        for piece in _PIECE_SPLIT_RE.split(word):
            if len(piece) < 26:
                continue
            kind = _address_kind(piece, is_value or pool_context or piece in in_url)
            if kind is None:
                continue
            if piece in in_url:
                where = "in a pool URL"
            elif is_value:
                flag = word.split("=", 1)[0] if word.startswith("-") else words[i - 1]
                where = f"as value of {flag}"
            else:
                where = "as argument"
            return f"{kind} address {_abbrev(piece)} {where}"
    return None


# Interpreters whose first operand is the script they run.
SCRIPT_INTERPRETERS = frozenset(
    {"python", "pypy", "perl", "ruby", "node", "nodejs", "bash", "sh", "dash", "zsh", "ksh", "php", "lua",
     "pwsh", "powershell"}
)
# Options after which the interpreter runs code from the command line, not a file.
_INLINE_CODE_OPTIONS = frozenset({"-c", "-m", "-e", "-E", "--eval", "-Command", "-EncodedCommand"})


def script_of(exe: str, argv: Sequence[str]) -> str:
    """The script file an interpreter runs (`python /tmp/x.py`), or "" for anything else."""
    if _stem(_basename(exe).lower()) not in SCRIPT_INTERPRETERS:
        return ""
    for word in argv[1:]:
        if word in _INLINE_CODE_OPTIONS:
            return ""
        if not word.startswith("-"):
            return word
    return ""


def _in_temp_dir(path: str) -> bool:
    return bool(_TEMP_DIR_RE.match(path.replace("\\", "/")))


def _name_mismatch(comm: str, exe: str) -> Optional[str]:
    """Why comm and the executable disagree suspiciously, or None. Conservative on purpose."""
    if not comm or not exe:
        return None  # kernel threads, or the executable could not be read
    exe_base = _basename(exe)
    c, e = comm.lower(), exe_base.lower()
    if c.endswith(".exe"):
        c = c[:-4]
    if e.endswith(".exe"):
        e = e[:-4]
    if c == e or (len(comm) == COMM_MAX and e.startswith(c)):
        return None
    if KTHREAD_COMM_RE.match(c):
        return f"process name {comm!r} imitates a kernel thread but runs {_shorten(exe_base, 64)}"
    e_stem, c_stem = _stem(e), _stem(c)
    if e_stem in FREE_NAME_EXES or e in FREE_NAME_EXES or FREE_NAME_EXE_RE.fullmatch(e):
        return None
    if c in ALIAS_COMMS or c_stem in ALIAS_COMMS:
        return None
    if c.startswith("(") and c.endswith(")"):
        return None  # systemd's "(sd-pam)", "(udev-worker)": set before exec by the service manager
    if len(c_stem) >= 2 and len(e_stem) >= 2 and (c_stem in e_stem or e_stem in c_stem):
        return None  # gcc-12 vs gcc, vim.basic vs vi, pipewire-pulse vs pipewire, runc:[2:INIT]
    return f"process name {_shorten(comm, 32)!r} differs from executable {_shorten(exe_base, 64)}"
