"""A native compute process with no miner strings in its file: a miner that says nothing, a
throttled one, or a scientific job, depending on what it talks to and how.

Built by the tests with gcc (`build(directory, name)`), started as
    NAME THREADS DUTY [HOST PORT MODE MILLISECONDS]
THREADS threads compute without I/O, each computing DUTY percent of a second of CPU time, then
sleeping the rest of the second (100: all the time; 45: a miner throttled to 0.45 core per
thread, as a duty-cycling miner does). With a HOST (127.0.0.1 only) it holds one TCP connection:

    s  a session: sends a small message every MILLISECONDS and reads whatever comes, when it
       comes (a miner's shares; the pool's answers and pushed jobs)
    h  heartbeats: sends a small message, waits for the answer, sleeps MILLISECONDS
       (a license client)
    r  an RPC worker: reads a task, computes MILLISECONDS, sends its result (a parallel job's
       worker under its master)
"""

from __future__ import annotations

import os
import subprocess

SOURCE = r"""
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static int duty = 100;
static int fd = -1;

static double cpu_now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void pause_ms(long ms) { struct timespec t = {ms / 1000, (ms % 1000) * 1000000L}; nanosleep(&t, 0); }

static void *compute(void *arg) {
    unsigned long x = (unsigned long)arg + 1;
    for (;;) {
        double until = cpu_now() + duty / 100.0;  /* CPU time: the same share on a loaded host */
        do { for (int i = 0; i < 20000; i++) x = x * 6364136223846793005UL + 1442695040888963407UL; sink = x; }
        while (cpu_now() < until);
        if (duty < 100) pause_ms(1000 - 10 * duty);
    }
    return 0;
}

static void *drain(void *arg) {
    char buf[4096];
    (void)arg;
    while (read(fd, buf, sizeof buf) > 0) {}
    exit(0);
}

static int send_line(int id) {
    char line[128];
    int n = snprintf(line, sizeof line, "{\"id\":%d,\"p\":\"%08x\"}\n", id, (unsigned)(id * 2654435761u));
    return write(fd, line, n) == n;
}

static int read_line(void) {
    char c;
    for (;;) { if (read(fd, &c, 1) != 1) return 0; if (c == '\n') return 1; }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: THREADS DUTY [HOST PORT MODE MS]\n"); return 2; }
    int threads = atoi(argv[1]);
    duty = atoi(argv[2]);
    for (long t = 0; t < threads; t++) { pthread_t id; pthread_create(&id, 0, compute, (void *)t); }
    if (argc < 7) { for (;;) pause_ms(1000); }
    if (strcmp(argv[3], "127.0.0.1") != 0) { fprintf(stderr, "127.0.0.1 only\n"); return 2; }
    struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(atoi(argv[4]));
    inet_pton(AF_INET, argv[3], &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); return 1; }
    char mode = argv[5][0];
    long ms = atol(argv[6]);
    if (mode == 's') {
        pthread_t id; pthread_create(&id, 0, drain, 0);
        for (int i = 1;; i++) { if (!send_line(i)) return 1; pause_ms(ms); }
    }
    for (int i = 1;; i++) {
        if (mode == 'h') { if (!send_line(i) || !read_line()) return 1; pause_ms(ms); }
        else { if (!read_line()) return 0; pause_ms(ms); if (!send_line(i)) return 1; }
    }
}
"""


def build(directory: str, name: str = "solver") -> str:
    """Compile the worker into `directory`/`name`; its path."""
    source = os.path.join(directory, "worker.c")
    with open(source, "w") as f:
        f.write(SOURCE)
    target = os.path.join(directory, name)
    subprocess.run(["gcc", "-O1", "-o", target, source, "-lpthread"], check=True, capture_output=True, timeout=120)
    os.unlink(source)
    return target
