"""Command-line redaction: secrets never leave the host, in /metrics, in `scan` or in a log line.

A command line is evidence (the pool, the wallet), but the same line often carries someone's
password: `mysql -pSECRET`, `curl -u bob:pw`, `docker login -p TOKEN`. `redact_cmdline` keeps the
shape of the line and replaces every secret it recognises with `<redacted>`. When in doubt it
redacts: a lost option is a smaller harm than a leaked password. Miner wallets (-u/--user) are
kept on purpose: investigators need them.

This is a privacy concern, kept apart from detection: signatures.py matches on the raw argv and
uses only `redact_text` to clean the pool URLs it quotes in a reason.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from minerwatch.detection.names import norm_name, stem

__all__ = ["REDACTED", "redact_cmdline", "redact_text"]

REDACTED = "<redacted>"

# Long or single-dash options whose next word is a secret: --pass, --password, --db-password,
# -passin/-passout (openssl), -storepass (keytool), -epsw (Claymore), -pw (PuTTY's plink, pscp),
# --token, --api-key, --key...
_SECRET_FLAG_RE = re.compile(
    r"--?[\w-]*(?:pass|passwd|password|passphrase|passin|passout|pwd|psw|pw|token|secret"
    r"|api-?key|apikey|api_key|key)",
    re.IGNORECASE,
)
# key=value where the key names a secret (also inside URLs' query strings and --opt=value).
# (Two simple regexes and a loop rather than one clever one: no quadratic backtracking on
# hostile command lines.)
_KV_KEY_RE = re.compile(r"(?<![\w.\-])([\w.\-]+)=")
_KV_VALUE_RE = re.compile(r"[^\s&]+")
_SECRET_KEY_RE = re.compile(r"pass|pwd|token|secret|apikey|api_key|api-key|key", re.IGNORECASE)
# A quoted key and its value, as JSON or a Python/JS literal writes it: {"pass":"X"},
# {'password': 'X'}, {\"token\":\"X\"} (escaped once more inside a shell string), {"pin": 1234}.
_QUOTED_KEY_RE = re.compile(r"(\\?[\"'])([\w.\-]{1,64})\1(\s*:\s*)")
_QUOTED_VALUE_RE = re.compile(r"\"(?:[^\"\\]|\\.)*\"?|'[^']*'?|\\\"(?:(?!\\\").)*(?:\\\")?|[^\s,}\]]+")
# Windows-style /p:SECRET, /password:SECRET (xfreerdp, wmic, some installers).
_SLASH_PASS_RE = re.compile(r"(?<!\S)(/(?:p|pass|password|pwd):)(?!<redacted>)\S+", re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://[^\s/:@]*):(?!<redacted>)([^\s/@]+)@", re.IGNORECASE)
_AUTH_SCHEMES = r"(?:bearer|basic|digest|token|negotiate|ntlm)"
_AUTH_RE = re.compile(
    r"\b((?:proxy-)?authorization\s*[:=]\s*)(" + _AUTH_SCHEMES + r"\s+)?"
    r"(?!<redacted>)(?!" + _AUTH_SCHEMES + r"\b)[^\s'\"]+",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"\b(bearer\s+)(?!<redacted>)[^\s'\"]+", re.IGNORECASE)
# A whole argv element that is a secret-bearing HTTP header (curl -H "Cookie: ...").
_HEADER_RE = re.compile(
    r"\s*((?:proxy-)?authorization|cookie|set-cookie|(?:x-)?api-?key|(?:x-)?auth-token|x-access-token"
    r"|private-token|x-vault-token)\s*:",
    re.IGNORECASE,
)
_PORTLIKE_RE = re.compile(r"\d{1,5}|\d+(?:,\d+)+|(?:[\d.]+:)?\d{1,5}(?::\d{1,5})?(?:/(?:tcp|udp|sctp))?")

# Programs whose -p is not a password (profiling, parents, ports, pids, preserve, patch level...).
_P_NOT_SECRET = frozenset(
    {
        "gcc", "cc", "g++", "c++", "clang", "clang++", "cpp", "gfortran", "nvcc", "ld", "as", "tcc",
        "ps", "mkdir", "cp", "install", "ssh", "scp", "sftp", "rsync", "docker", "podman", "nerdctl",
        "kubectl", "nc", "ncat", "netcat", "socat", "strace", "ltrace", "gdb", "perf", "top", "htop",
        "atop", "pidstat", "lsof", "kill", "pgrep", "pkill", "pstree", "taskset", "renice", "prlimit",
        "chrt", "ionice", "nmap", "hping", "iperf", "iperf3", "ping", "tar", "patch", "git", "unzip",
        "journalctl", "systemctl", "iptables", "ip6tables", "ufw", "node", "nodejs", "java", "perl",
        "ruby", "python", "sudo", "su", "xargs", "ls", "tree", "less", "watch", "ssh-keygen",
        "ssh-add", "cut", "date", "mount", "umount", "df", "du", "ln", "mv", "chmod", "chown",
        "stat", "readlink", "realpath", "make", "cmake", "ninja", "pip", "npm", "npx", "yarn",
        "pytest", "cargo", "go", "gradle", "mvn", "bazel",
    }
)
# Programs whose -P is not a password (ports, Perl regexes, parallelism, profiles, no-dereference,
# pagers, properties); for every other program -P with a value is redacted (sqlcmd, bcp, isql,
# ipmitool and many more take the password there).
_CAP_P_NOT_SECRET = frozenset(
    {
        "ssh", "scp", "sftp", "rsync", "mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck",
        "mariadb", "mariadb-dump", "grep", "egrep", "fgrep", "pgrep", "pkill", "rg", "xargs", "parallel",
        "curl", "wget", "tar", "bsdtar", "cp", "mv", "ln", "find", "du", "df", "ls", "realpath",
        "readlink", "stat", "chown", "chgrp", "chmod", "setfacl", "getfacl", "iptables", "ip6tables",
        "nmap", "ping", "lsof", "netstat", "docker", "podman", "nerdctl", "mvn", "gradle", "cmake",
        "man", "less", "systemctl", "busctl", "strace", "ltrace", "git", "ethminer", "ps", "top",
        "sshpass", "sudo", "unzip", "psql", "make", "sort", "cpio", "ssh-keygen",
    }
)
_COMPILER_RE = re.compile(r"(?:.*-)?(?:gcc|g\+\+|cc|c\+\+|clang|clang\+\+|cpp|ld|as|gfortran)")
# Programs taking the password attached: mysql -pSECRET, 7z a -pSECRET, unrar x -pSECRET.
_ATTACHED_P_PROGRAMS = frozenset(
    {"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mariadb", "mariadb-dump",
     "7z", "7za", "7zr", "7zz", "unrar", "rar", "winrar"}
)
_LDAP_TOOLS = ("ldapsearch", "ldapmodify", "ldapadd", "ldapdelete", "ldapwhoami", "ldapcompare",
               "ldapmodrdn", "ldapexop", "ldapurl")
# Program-specific secret options.
_PROGRAM_SECRET_FLAGS = {
    "openssl": frozenset({"-k", "-K"}),
    "zip": frozenset({"-P"}),
    "zipcloak": frozenset({"-P"}),
    "unzip": frozenset({"-P"}),
    "sshpass": frozenset({"-p"}),
    "redis-cli": frozenset({"-a"}),
    "sqlcmd": frozenset({"-P"}),
    "ssh-keygen": frozenset({"-P", "-N"}),  # old and new passphrase
    "ipmitool": frozenset({"-P"}),
    **{tool: frozenset({"-w"}) for tool in _LDAP_TOOLS},  # the bind password
    "ldappasswd": frozenset({"-w", "-a", "-s"}),  # bind, old and new password
}
# user:password values (keep the user): curl -u, smbclient -U user%pass.
_USERPASS_FLAGS = {
    "curl": (frozenset({"-u", "--user", "-U", "--proxy-user"}), ":"),
    "wget": (frozenset({"--user", "--http-user"}), ":"),
    "smbclient": (frozenset({"-U", "--user"}), "%"),
    "rpcclient": (frozenset({"-U", "--user"}), "%"),
    "net": (frozenset({"-U", "--user"}), "%"),
}
# Container and registry tools whose `login` takes the password as -p (elsewhere their -p is a port).
_REGISTRY_CLIS = frozenset({"docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "crane", "oc"})
# Oracle tools that take the login as USER/PASSWORD[@DB] (also as userid=USER/PASSWORD).
_ORACLE_PROGRAMS = frozenset({"sqlplus", "rman", "exp", "imp", "expdp", "impdp", "sqlldr", "dgmgrl"})
_ORACLE_LOGIN_RE = re.compile(r"(['\"]?(?:-{0,2}userid=)?[^/@\s'\"=]+/)(?!<redacted>)[^@\s'\"]+", re.IGNORECASE)
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "cmd", "powershell", "pwsh"})
_WRAPPERS = frozenset({"sudo", "doas", "env", "nohup", "nice", "exec", "timeout", "stdbuf", "setsid",
                       "ionice", "taskset", "time", "runuser", "xargs", "chroot", "strace", "unbuffer"})
_SEPARATORS = frozenset({";", "&&", "||", "|", "&"})


def _program(word: str) -> str:
    return stem(norm_name(word))


def _takes_userpass_o(program: str) -> bool:
    """cpuminer, minerd, ccminer, cgminer and XMRig read -O USER:PASS."""
    return "miner" in program or program.startswith("xmrig")


def _oracle_login(word: str) -> str:
    """sqlplus scott/tiger@db -> scott/<redacted>@db; a script (@x.sql) or "/" is left alone."""
    return _ORACLE_LOGIN_RE.sub(lambda m: m.group(1) + REDACTED, word, count=1) if _ORACLE_LOGIN_RE.match(word) else word


def _redact_key_values(text: str) -> str:
    """key=VALUE -> key=<redacted> where the key names a secret (DB_PASSWORD, api_key, ...)."""
    out: List[str] = []
    pos = 0
    for m in _KV_KEY_RE.finditer(text):
        if m.start() < pos or not _SECRET_KEY_RE.search(m.group(1)):
            continue
        value = _KV_VALUE_RE.match(text, m.end())
        if value is None or value.group(0).startswith(REDACTED):
            continue
        out.append(text[pos : m.end()])
        out.append(REDACTED)
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def _redact_quoted_keys(text: str) -> str:
    """{"pass": "X"} -> {"pass": "<redacted>"}: JSON and literal dictionaries on a command line."""
    out: List[str] = []
    pos = 0
    for m in _QUOTED_KEY_RE.finditer(text):
        if m.start() < pos or not _SECRET_KEY_RE.search(m.group(2)):
            continue
        value = _QUOTED_VALUE_RE.match(text, m.end())
        if value is None or REDACTED in value.group(0):
            continue
        raw = value.group(0)
        quote = raw[:2] if raw.startswith('\\"') else raw[:1] if raw[:1] in "\"'" else ""
        out.append(text[pos : m.end()])
        out.append(f"{quote}{REDACTED}{quote}")
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str) -> str:
    """Redact secrets inside free text (a URL, a shell string): URL passwords, key=value, JSON
    keys, Authorization headers, bearer tokens."""
    text = _URL_USERINFO_RE.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    if "=" in text:
        text = _redact_key_values(text)
    if ":" in text and ("\"" in text or "'" in text):
        text = _redact_quoted_keys(text)
    if "/" in text:
        text = _SLASH_PASS_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _AUTH_RE.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{REDACTED}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def _redact_attached_userpass(tokens: List[str], at: int, bare: str, userpass: Tuple[frozenset, str]) -> bool:
    """curl --user=bob:pw or -ubob:pw: keep the user, redact the password. True when done."""
    flags, sep = userpass
    for flag in flags:
        if flag.startswith("--"):
            prefix = flag + "="
        elif len(bare) > 2 and bare.startswith(flag):
            prefix = flag
        else:
            continue
        if bare.startswith(prefix) and sep in bare[len(prefix):]:
            user = bare[len(prefix):].split(sep, 1)[0]
            tokens[at] = tokens[at].replace(bare, f"{prefix}{user}{sep}{REDACTED}", 1)
            return True
    return False


def _tokens(argv: Sequence[str]) -> Tuple[List[str], List[int]]:
    """argv as words and the white space between them (to rebuild the string), and the indexes
    in tokens of the words. A secret-bearing header element is redacted whole here."""
    tokens: List[str] = []
    word_at: List[int] = []
    for n, element in enumerate(argv):
        if n:
            tokens.append(" ")
        if _HEADER_RE.match(element):
            name = element.split(":", 1)[0]
            tokens.append(f"{name}: {REDACTED}")
            continue
        for part in re.split(r"(\s+)", element):
            if not part:
                continue
            if not part.isspace():
                word_at.append(len(tokens))
            tokens.append(part)
    return tokens, word_at


class _Command:
    """What is known about the command being read (one per `;`, `&&`, `|` segment)."""

    def __init__(self) -> None:
        self.program = ""
        self.expect_program = True
        self.login = False  # `docker login` and friends: -p is the password
        self.batch_password = False  # htpasswd -b: the last operand is the password
        self.last_operand: Optional[int] = None  # index in tokens


def redact_cmdline(argv: Sequence[str], max_length: int = 256) -> str:
    """argv joined with spaces, every secret replaced by "<redacted>", cut to max_length.

    Redacted: the value after --pass/--password/--token/--api-key/--secret/--key/-pw style options
    (as "--pass X", "--pass=X", and even when the value starts with '-'), after -p or -P unless
    the program's option is something else (gcc, ps, mkdir, ssh, grep, xargs... or a port/pid
    value), after `docker login -p`, ldap tools' -w, ipmitool/sqlcmd -P, ssh-keygen -P/-N,
    attached passwords of mysql/7z/unrar (-pSECRET), openssl -k, zip -P, htpasswd -b's password,
    sqlplus USER/PASSWORD@DB, key=value and JSON "key": value with a secret-looking key, URL
    passwords (the user is kept), Authorization/Bearer/Cookie/API-key headers, and the password
    half of curl -u user:pass and cpuminer -O user:pass.
    """
    tokens, word_at = _tokens(argv)
    words = [tokens[i] for i in word_at]
    attached_p = any(len(w) > 2 and w.startswith("-p") for w in words) and any(
        _program(w) in _ATTACHED_P_PROGRAMS for w in words
    )
    cmd = _Command()
    pending: Optional[str] = None  # None, "all" or the separator of a user:pass value

    def end_command() -> None:
        if cmd.batch_password and cmd.last_operand is not None:
            tokens[cmd.last_operand] = REDACTED

    for j, word in enumerate(words):
        at = word_at[j]
        bare = word.strip("\"'")
        is_separator = bare in _SEPARATORS or bare.endswith(";")
        if pending is not None and not is_separator:
            if pending == "all":
                tokens[at] = REDACTED  # also a value that starts with '-': --password --x
            elif not bare.startswith("-") and pending in word:
                tokens[at] = word.split(pending, 1)[0] + pending + REDACTED
            pending = None
            continue
        pending = None
        if is_separator:
            end_command()
            cmd = _Command()
            continue
        program = cmd.program
        if j == 0 or (cmd.expect_program and not bare.startswith("-") and not re.match(r"\w+=", bare)):
            cmd.program = _program(bare)
            cmd.expect_program = cmd.program in _WRAPPERS
            continue
        if program in _SHELLS and bare.lower() in ("-c", "/c", "/k", "-command"):
            end_command()
            cmd = _Command()
            continue
        if not bare.startswith("-"):
            if program in _REGISTRY_CLIS and bare == "login":
                cmd.login = True
            elif program in _ORACLE_PROGRAMS:
                tokens[at] = _oracle_login(word)
            cmd.last_operand = at
            continue
        if program == "htpasswd" and not bare.startswith("--") and "b" in bare[1:]:
            cmd.batch_password = True
            continue
        if program in _ORACLE_PROGRAMS and bare.lower().startswith(("-userid=", "--userid=")):
            tokens[at] = _oracle_login(word)
            continue
        userpass = _USERPASS_FLAGS.get(program)
        if userpass and _redact_attached_userpass(tokens, at, bare, userpass):
            continue
        if "=" in bare:
            continue  # --pass=X and friends: handled by the key=value rule below
        if attached_p and len(bare) > 2 and bare.startswith("-p") and not bare.startswith("-pass"):
            tokens[at] = word.replace(bare, "-p" + REDACTED, 1)
            continue
        if _SECRET_FLAG_RE.fullmatch(bare) or bare in _PROGRAM_SECRET_FLAGS.get(program, ()):
            pending = "all"
            continue
        if userpass and bare in userpass[0]:
            pending = userpass[1]
            continue
        if bare == "--userpass" or (bare == "-O" and _takes_userpass_o(program)):
            pending = ":"  # cpuminer/minerd -O USER:PASS
            continue
        if bare in ("-p", "-P"):
            nxt = words[j + 1].strip("\"'") if j + 1 < len(words) else ""
            if cmd.login:
                pending = "all"
            elif bare == "-p" and (program in _P_NOT_SECRET or _COMPILER_RE.fullmatch(program)):
                continue
            elif bare == "-P" and program in _CAP_P_NOT_SECRET:
                continue
            elif _PORTLIKE_RE.fullmatch(nxt) or (bare == "-P" and "://" in nxt):
                continue  # a port or pid; a pool URL's password is handled by the URL rule
            else:
                pending = "all"
            continue
    end_command()

    text = redact_text("".join(tokens))
    if len(text) > max_length:
        text = text[: max(max_length - 3, 0)] + "..." if max_length >= 4 else text[:max_length]
    return text
