"""A solo RandomX miner: Debian's librandomx (package librandomx0) hashing in light mode, with
no pool, no network and nothing on its command line, as a full node's built-in miner runs.

Run as a process: `python -m tests.support.hashing_node [--lib PATH] [--threads N]`. It
allocates and initialises RandomX's cache (256 MiB, Argon2), then hashes on N threads (ctypes
releases the GIL during each call) until killed. Without the library installed, `build_stand_in`
compiles a small stand-in exporting the same functions under the same file name (a 256 MiB cache
filled at init, a loop over it per hash): what is tested is the file name mapped and the memory.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import subprocess
import threading

STAND_IN = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define CACHE (256UL << 20)
typedef struct { uint8_t *memory; } randomx_cache;
typedef struct { randomx_cache *cache; uint8_t *scratchpad; } randomx_vm;
int randomx_get_flags(void) { return 0; }
randomx_cache *randomx_alloc_cache(int flags) {
    randomx_cache *c = malloc(sizeof *c);
    c->memory = mmap(0, CACHE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return c->memory == MAP_FAILED ? 0 : c;
}
void randomx_init_cache(randomx_cache *c, const void *key, size_t size) {
    uint64_t x = size + 1;
    for (size_t i = 0; i < CACHE; i += 8) { x = x * 6364136223846793005UL + 1442695040888963407UL; memcpy(c->memory + i, &x, 8); }
}
randomx_vm *randomx_create_vm(int flags, randomx_cache *c, void *dataset) {
    randomx_vm *vm = malloc(sizeof *vm); vm->cache = c; vm->scratchpad = calloc(1, 2UL << 20); return vm;
}
void randomx_calculate_hash(randomx_vm *vm, const void *input, size_t size, void *output) {
    uint64_t x = size, *pad = (uint64_t *)vm->scratchpad;
    for (int i = 0; i < 400000; i++) {
        x ^= *(uint64_t *)(vm->cache->memory + (x % (CACHE / 8)) * 8);
        x = x * 6364136223846793005UL + 1442695040888963407UL; pad[x % (1 << 18)] += x;
    }
    memcpy(output, &x, 8);
}
"""


def build_stand_in(directory: str) -> str:
    """A shared library named librandomx.so.0 in `directory`; its path."""
    source = os.path.join(directory, "stand_in.c")
    with open(source, "w") as f:
        f.write(STAND_IN)
    target = os.path.join(directory, "librandomx.so.0")
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", target, source], check=True, capture_output=True,
                   timeout=120)
    os.unlink(source)
    return target


def installed() -> str:
    """The installed library's name for dlopen, or "" (ctypes.util asks ldconfig)."""
    return ctypes.util.find_library("randomx") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", default="librandomx.so.0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lib = ctypes.CDLL(args.lib)
    lib.randomx_get_flags.restype = ctypes.c_int
    lib.randomx_alloc_cache.restype = ctypes.c_void_p
    lib.randomx_alloc_cache.argtypes = [ctypes.c_int]
    lib.randomx_init_cache.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.randomx_create_vm.restype = ctypes.c_void_p
    lib.randomx_create_vm.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.randomx_calculate_hash.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    flags = lib.randomx_get_flags()  # light mode: no RANDOMX_FLAG_FULL_MEM, so the 256 MiB cache
    cache = lib.randomx_alloc_cache(flags)
    if not cache:
        raise SystemExit("randomx_alloc_cache failed")
    key = b"block template seed"
    lib.randomx_init_cache(cache, key, len(key))

    def hashing(n: int) -> None:
        vm = lib.randomx_create_vm(flags, cache, None)
        out = ctypes.create_string_buffer(32)
        nonce = 0
        while True:
            blob = b"0707d5efb9d005" + nonce.to_bytes(8, "little") + bytes([n])
            lib.randomx_calculate_hash(vm, blob, len(blob), out)
            nonce += 1

    workers = [threading.Thread(target=hashing, args=(n,), daemon=True) for n in range(args.threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
