"""Established loopback TCP connections held by this process (both ends), for tests and
benchmarks that need a socket table of a given size. 127.0.0.1 only."""

import resource
import socket


def raise_descriptor_limit(need: int) -> None:
    """The soft RLIMIT_NOFILE to at least `need`, as far as the hard one allows (root may raise
    the hard one too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loopback_connections(count: int) -> list:
    """`count` connections to one listener on 127.0.0.1: [listener, client, accepted, ...]. Raises
    the soft descriptor limit for them."""
    raise_descriptor_limit(2 * count + 64)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held = [server]
    for _ in range(count):
        held.append(socket.create_connection(server.getsockname()))
        held.append(server.accept()[0])
    return held
