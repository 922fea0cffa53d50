"""A miner stand-in: burns CPU and speaks XMRig's Stratum dialect to a pool on 127.0.0.1.

Started by tests as a real process under a miner-like name, with XMRig's arguments:
    xmrig fakeminer.py -o stratum+tcp://127.0.0.1:PORT -u 4<wallet> -p x --donate-level 1
It parses only what it needs (-o, -u, -p, --threads, --dialect, -x) and ignores the rest, as the
point is what the command line and the traffic look like. Without -o it only burns CPU.
`-x 127.0.0.1:PORT` (XMRig's --proxy) goes through a SOCKS5 relay there, `-x socks4a://...`
through a SOCKS4a one: the pool's host name is sent to the relay as a name, never resolved.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def burn(stop_after: float) -> None:
    end = time.monotonic() + stop_after
    x = 0
    while time.monotonic() < end:
        for _ in range(10000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def arg(argv, names, default=None):
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return default


def through_relay(proxy: str, host: str, port: int) -> socket.socket:
    """A socket to host:port through the SOCKS relay `proxy` (on 127.0.0.1 only)."""
    kind, _, address = proxy.rpartition("://")
    relay, relay_port = address.rsplit(":", 1)
    if relay != "127.0.0.1":
        raise SystemExit("fakeminer's relay must be on 127.0.0.1")
    sock = socket.create_connection((relay, int(relay_port)), timeout=5)
    name, where = host.encode("ascii"), port.to_bytes(2, "big")
    if kind == "socks4a":
        sock.sendall(b"\x04\x01" + where + b"\x00\x00\x00\x01miner\x00" + name + b"\x00")
        sock.recv(8)
    else:
        sock.sendall(b"\x05\x01\x00")
        sock.recv(2)
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + where)
        sock.recv(10)
    return sock


def talk(url: str, user: str, password: str, dialect: str, duration: float, proxy: str = "") -> None:
    host_port = url.split("://", 1)[-1]
    host, port = host_port.rsplit(":", 1)
    if proxy:
        connection = through_relay(proxy, host, int(port))
    elif host not in ("127.0.0.1", "localhost"):
        raise SystemExit("fakeminer talks only to 127.0.0.1")
    else:
        connection = socket.create_connection((host, int(port)), timeout=5)
    with connection as sock:
        f = sock.makefile("rwb")

        def call(i, method, params):
            f.write(json.dumps({"id": i, "jsonrpc": "2.0", "method": method, "params": params}).encode() + b"\n")
            f.flush()
            f.readline()

        if dialect == "stratum1":
            call(1, "mining.subscribe", ["fakeminer/1.0"])
            call(2, "mining.authorize", [user, password])
            f.readline()  # mining.notify
        else:
            call(1, "login", {"login": user, "pass": password, "agent": "XMRig/6.21.0 (Linux x86_64)",
                              "algo": ["rx/0"]})
        end, i = time.monotonic() + duration, 3
        while time.monotonic() < end:
            time.sleep(1.0)
            if dialect == "stratum1":
                call(i, "mining.submit", [user, "bf", "00000000", "504e86b9", "00000000"])
            else:
                call(i, "submit", {"id": "standin", "job_id": "1", "nonce": "deadbeef", "result": "0" * 64})
            i += 1


def main(argv) -> None:
    duration = float(arg(argv, ["--duration"], "600"))
    threads = int(arg(argv, ["-t", "--threads"], "1"))
    for _ in range(threads):
        threading.Thread(target=burn, args=(duration,), daemon=True).start()
    url = arg(argv, ["-o", "--url"])
    if url:
        talk(url, arg(argv, ["-u", "--user"], "x"), arg(argv, ["-p", "--pass"], "x"),
             arg(argv, ["--dialect"], "xmrig"), duration, arg(argv, ["-x", "--proxy"], ""))
    else:
        time.sleep(duration)


if __name__ == "__main__":
    main(sys.argv[1:])


# -- a native stand-in: what a careful insider runs ---------------------------------------------
#
# A small C program built by the tests (gcc, OpenSSL), that behaves like XMRig started with no
# arguments: it reads its pool from config.json in its working directory (pools: url, user,
# pass, tls), keeps `threads` cores busy in pure computation, holds a RandomX-cache-sized
# buffer (256 MiB, touched), and speaks XMRig's dialect to the pool, over TLS when "tls" is
# true, sending a small submit every few seconds. Like every XMRig build it carries its option
# table, algorithm names and user agent as strings. It talks only to 127.0.0.1.

NATIVE_SOURCE = r"""
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *options[] = {"donate-level", "cpu-max-threads-hint", "randomx-1gb-pages",
                                "huge-pages-jit", "pause-on-active", 0};
static const char *algorithms[] = {"rx/0", "rx/wow", "cn/r", "argon2/chukwa", 0};
static const char *agent = "XMRig/6.21.0 (Linux x86_64) standin";
static volatile unsigned long sink;

static void *burn(void *arg) {
    unsigned long x = (unsigned long)arg + 1;
    for (;;) { for (int i = 0; i < 1000000; i++) x = x * 6364136223846793005UL + 1442695040888963407UL; sink = x; }
    return 0;
}

static int field(const char *text, const char *key, char *out, size_t size) {
    char pat[64]; snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(text, pat); if (!p) return 0;
    p = strchr(p + strlen(pat), ':'); if (!p) return 0;
    while (*++p == ' ');
    if (*p == '"') { const char *e = strchr(++p, '"'); if (!e || (size_t)(e - p) >= size) return 0;
        memcpy(out, p, e - p); out[e - p] = 0; return 1; }
    size_t n = strcspn(p, ",}\n "); if (n >= size) return 0; memcpy(out, p, n); out[n] = 0; return 1;
}

int main(int argc, char **argv) {
    if (argc > 1) {  /* --help: the option table, as every miner prints it */
        for (int i = 0; options[i]; i++) printf("  --%s\n", options[i]);
        for (int i = 0; algorithms[i]; i++) printf("  -a %s\n", algorithms[i]);
        return strcmp(argv[1], "--help") != 0;
    }
    static char text[65536]; char url[256] = "", user[256] = "x", tls[16] = "false", threads[16] = "1";
    FILE *f = fopen("config.json", "r"); if (!f) { perror("config.json"); return 1; }
    size_t n = fread(text, 1, sizeof text - 1, f); text[n] = 0; fclose(f);
    if (!field(text, "url", url, sizeof url)) { fprintf(stderr, "no pool url\n"); return 1; }
    field(text, "user", user, sizeof user); field(text, "tls", tls, sizeof tls);
    field(text, "threads", threads, sizeof threads);
    size_t cache = 256UL << 20;  /* RandomX cache: RANDOMX_ARGON_MEMORY KiB */
    unsigned char *mem = mmap(0, cache, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    for (size_t i = 0; i < cache; i += 4096) mem[i] = (unsigned char)i | 1;
    for (long t = 0; t < atol(threads); t++) { pthread_t id; pthread_create(&id, 0, burn, (void *)t); }
    char *colon = strrchr(url, ':'); if (!colon) return 1; *colon = 0;
    if (strcmp(url, "127.0.0.1") != 0) { fprintf(stderr, "talks only to 127.0.0.1\n"); return 1; }
    struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(atoi(colon + 1));
    inet_pton(AF_INET, url, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); return 1; }
    SSL *ssl = 0;
    if (strcmp(tls, "true") == 0) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method()); ssl = SSL_new(ctx); SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) { fprintf(stderr, "TLS handshake failed\n"); return 1; }
    }
    char line[4096], reply[8192];
    for (int i = 1;; i++) {
        if (i == 1) snprintf(line, sizeof line, "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\",\"params\":"
            "{\"login\":\"%s\",\"pass\":\"x\",\"agent\":\"%s\",\"algo\":[\"rx/0\"]}}\n", user, agent);
        else snprintf(line, sizeof line, "{\"id\":%d,\"jsonrpc\":\"2.0\",\"method\":\"submit\",\"params\":"
            "{\"id\":\"standin\",\"job_id\":\"1\",\"nonce\":\"deadbeef\",\"result\":\"%064d\"}}\n", i, 0);
        int len = (int)strlen(line), got;
        if ((ssl ? SSL_write(ssl, line, len) : (int)write(fd, line, len)) != len) return 1;
        got = ssl ? SSL_read(ssl, reply, sizeof reply) : (int)read(fd, reply, sizeof reply);
        if (got <= 0) return 1;
        sleep(3);
    }
}
"""


def build_native(directory: str, name: str = "fwupd-refresh") -> str:
    """Compile the native stand-in into `directory`/`name` (an innocent name); its path."""
    import os
    import subprocess

    source = os.path.join(directory, "standin.c")
    with open(source, "w") as f:
        f.write(NATIVE_SOURCE)
    target = os.path.join(directory, name)
    subprocess.run(["gcc", "-O1", "-o", target, source, "-lssl", "-lcrypto", "-lpthread"], check=True,
                   capture_output=True, timeout=120)
    os.unlink(source)
    return target
