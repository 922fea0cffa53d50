"""Pure parsers of the network side: /proc/net/tcp, TLS ClientHello, Stratum, packets and flows."""

from __future__ import annotations

import json
import socket
import ssl
import struct

import pytest

from minerwatch.network.sniffer import FlowTracker, Recognition, build_filter, parse_packet, parse_sni, recognize_stratum
from minerwatch.network.sockets import Conn, Endpoint, decode_address, outgoing, parse_proc_net_tcp

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_line(n, local, remote, state, uid=1000, inode=4242):
    return (f"   {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 {uid:>5} "
            f"       0 {inode} 1 0000000000000000 20 4 30 10 -1\n")


# -- /proc/net/tcp ------------------------------------------------------------------------------


def test_ipv4_addresses_are_host_order_words():
    assert decode_address("0100007F", "little") == "127.0.0.1"
    assert decode_address("076433C6", "little") == "198.51.100.7"
    assert decode_address("C6336407", "big") == "198.51.100.7"


def test_ipv6_addresses_are_four_host_order_words():
    assert decode_address("B80D0120000000000000000001000000", "little") == "2001:db8::1"
    # IPv4-mapped (a dual-stack socket talking IPv4) reads as plain IPv4
    assert decode_address("0000000000000000FFFF00000100007F", "little") == "127.0.0.1"


def test_parse_tcp_table_keeps_connections_and_listeners():
    text = HEADER + "".join([
        tcp_line(0, "00000000:0D05", "00000000:0000", "0A", uid=0, inode=100),  # listening *:3333
        tcp_line(1, "0F02000A:A1B2", "076433C6:0D05", "01", uid=1000, inode=4242),  # 10.0.2.15 -> pool
        tcp_line(2, "0F02000A:A1B3", "076433C6:0D05", "02", uid=1000, inode=4243),  # SYN_SENT
        tcp_line(3, "0F02000A:A1B4", "076433C6:0D05", "06", uid=1000, inode=0),  # TIME_WAIT: ignored
    ])
    conns, listening = parse_proc_net_tcp(text, "little")
    assert listening == {Endpoint("0.0.0.0", 3333)}
    assert [(str(c.local), str(c.remote), c.state, c.uid, c.inode) for c in conns] == [
        ("10.0.2.15:41394", "198.51.100.7:3333", "established", 1000, 4242),
        ("10.0.2.15:41395", "198.51.100.7:3333", "syn_sent", 1000, 4243),
    ]


def test_parse_tcp6_table():
    text = HEADER + tcp_line(0, "B80D0120000000000000000002000000:C000",
                             "B80D0120000000000000000001000000:0D05", "01", inode=7)
    conns, _ = parse_proc_net_tcp(text, "little")
    assert str(conns[0].local) == "[2001:db8::2]:49152"
    assert str(conns[0].remote) == "[2001:db8::1]:3333"


def test_connections_accepted_by_a_local_listener_are_not_outgoing():
    out = Conn(Endpoint("127.0.0.1", 50000), Endpoint("127.0.0.1", 3333), "established")
    accepted = Conn(Endpoint("127.0.0.1", 3333), Endpoint("127.0.0.1", 50000), "established")
    accepted6 = Conn(Endpoint("127.0.0.1", 8080), Endpoint("127.0.0.1", 50001), "established")
    kept = outgoing([out, accepted, accepted6], {Endpoint("127.0.0.1", 3333), Endpoint("::", 8080)})
    assert kept == [out]


# -- TLS ClientHello ------------------------------------------------------------------------------


def client_hello(server_hostname, **context_args) -> bytes:
    """The real first flight of Python's ssl (OpenSSL), without any socket."""
    context = ssl.create_default_context()
    for key, value in context_args.items():
        setattr(context, key, value)
    incoming, outgoing_bio = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing_bio, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing_bio.read()


def test_sni_of_a_real_client_hello():
    assert parse_sni(client_hello("pool.supportxmr.com")) == "pool.supportxmr.com"
    assert parse_sni(client_hello("Gulf.MoneroOcean.Stream")) == "gulf.moneroocean.stream"


def test_sni_of_a_tls12_only_client_hello():
    hello = client_hello("xmr-eu1.nanopool.org", maximum_version=ssl.TLSVersion.TLSv1_2)
    assert parse_sni(hello) == "xmr-eu1.nanopool.org"


def test_no_sni_when_connecting_by_address():
    context = ssl.create_default_context()
    context.check_hostname = False
    incoming, outgoing_bio = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing_bio, server_hostname=None)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    assert parse_sni(outgoing_bio.read()) is None


def test_truncated_or_foreign_bytes_give_no_sni():
    hello = client_hello("pool.supportxmr.com")
    for cut in (1, 5, 9, 43, 60, 100):
        assert parse_sni(hello[:cut]) is None
    assert parse_sni(b"GET / HTTP/1.1\r\n\r\n") is None
    assert parse_sni(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") is None  # a ServerHello
    assert parse_sni(b"") is None


# -- Stratum --------------------------------------------------------------------------------------

WALLET = "4" + "A" * 94


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    "payload, expected",
    [
        # XMRig / CryptoNote, as XMRig 6 writes them
        (line({"id": 1, "jsonrpc": "2.0", "method": "login",
               "params": {"login": WALLET, "pass": "x", "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.2.0",
                          "algo": ["rx/0", "cn/r"]}}), ("cryptonote", "client", "login")),
        (line({"id": 4, "jsonrpc": "2.0", "method": "submit",
               "params": {"id": "12345", "job_id": "678", "nonce": "b6010000", "result": "ab" * 32, "algo": "rx/0"}}),
         ("cryptonote", "client", "submit")),
        (line({"id": 5, "jsonrpc": "2.0", "method": "keepalived", "params": {"id": "12345"}}),
         ("cryptonote", "client", "keepalived")),
        (line({"id": 1, "jsonrpc": "2.0", "error": None, "result": {
            "id": "12345", "job": {"blob": "0e0e" + "0" * 148, "job_id": "678", "target": "b88d0600",
                                   "seed_hash": "aa" * 32}, "status": "OK"}}), ("cryptonote", "server", "job")),
        (line({"jsonrpc": "2.0", "method": "job", "params": {"blob": "0e0e", "job_id": "9", "target": "ff"}}),
         ("cryptonote", "server", "job")),
        # Stratum v1
        (b'{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]}\n',
         ("stratum_v1", "client", "mining.subscribe")),
        (b'{"params": ["slush.miner1", "password"], "id": 2, "method": "mining.authorize"}\n',
         ("stratum_v1", "client", "mining.authorize")),
        (b'{"params": ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"], "id": 4, "method": "mining.submit"}\n',
         ("stratum_v1", "client", "mining.submit")),
        (b'{"id": 1, "result": [[["mining.set_difficulty", "b4b6693b"], ["mining.notify", "ae6812eb"]], '
         b'"08000002", 4], "error": null}\n', ("stratum_v1", "server", "mining.subscribe reply")),
        (b'{"id": null, "method": "mining.notify", "params": ["bf", "4d16b6f8"]}\n',
         ("stratum_v1", "server", "mining.notify")),
        # Ethereum proxies (as nDPI's mining.c records them)
        (b'{"worker": "eth1.0", "jsonrpc": "2.0", "params": ["0x0fcc.rig2", "x"], "id": 2, '
         b'"method": "eth_submitLogin"}\n', ("ethproxy", "client", "eth_submitLogin")),
        (b'{"worker": "", "jsonrpc": "2.0", "params": [], "id": 3, "method": "eth_getWork"}\n',
         ("ethproxy", "client", "eth_getWork")),
    ],
)
def test_stratum_dialects(payload, expected):
    assert recognize_stratum(payload) == Recognition(*expected)


def test_a_login_cut_short_by_the_capture_is_still_recognised():
    payload = line({"id": 1, "jsonrpc": "2.0", "method": "login",
                    "params": {"login": WALLET, "pass": "x", "agent": "XMRig/6.21.0", "algo": ["rx/0"] * 50}})
    assert recognize_stratum(payload[:200]) == Recognition("cryptonote", "client", "login")
    reply = line({"id": 1, "result": {"id": "1", "job": {"job_id": "2", "seed_hash": "a", "blob": "0" * 5000}}})
    assert recognize_stratum(reply[:2048]) == Recognition("cryptonote", "server", "job")


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b'{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///a.py"}}}\n',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":1,"rootUri":null}}\n',
        b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}\n',
        b'{"method":"login","params":{"user":"alice","password":"secret"}}\n',  # a chat login: no agent
        b'{"method":"submit","params":{"form":"contact","fields":{"name":"x"}}}\n',  # a form, no job_id/nonce
        b'{"job_id": 5, "status": "running", "runner": "ci-3"}\n',  # a CI system's job
        b'{"result": {"job": {"name": "backup", "id": 3}}}\n',  # a job without a blob
        b'{"id": 1, "result": [["a", "b"]], "error": null}\n',
        b'{"level":"info","msg":"keepalive"}\n',
        b"[1, 2, 3]\n",
        b"\x16\x03\x01\x02\x00\x01",
        b"",
    ],
)
def test_benign_payloads_are_not_stratum(payload):
    assert recognize_stratum(payload) is None


# -- packets and flows ----------------------------------------------------------------------------


def ipv4_tcp(src, sport, dst, dport, seq, payload=b"", ttl=64):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, ttl, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + tcp + payload


def ipv6_tcp(src, sport, dst, dport, seq, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64,
                     socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))
    return ip + tcp + payload


LOGIN = line({"id": 1, "jsonrpc": "2.0", "method": "login",
              "params": {"login": WALLET, "pass": "x", "agent": "XMRig/6.21.0"}})
REPLY = line({"id": 1, "jsonrpc": "2.0", "result": {"id": "1", "job": {"blob": "00", "job_id": "1"}}})


def test_parse_packets():
    key, seq, payload = parse_packet(ipv4_tcp("10.0.0.2", 40000, "198.51.100.7", 3333, 7, b"{}"))
    assert key == (socket.inet_aton("10.0.0.2"), 40000, socket.inet_aton("198.51.100.7"), 3333)
    assert (seq, payload) == (7, b"{}")
    key, seq, payload = parse_packet(ipv6_tcp("2001:db8::2", 40000, "2001:db8::1", 443, 9, b"\x16\x03"))
    assert key[1:4:2] == (40000, 443) and payload == b"\x16\x03"
    assert parse_packet(b"\x45\x00") is None
    assert parse_packet(b"") is None


def test_a_stratum_connection_is_recorded_once_with_the_miner_as_client():
    tracker = FlowTracker(lambda name: None)
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "198.51.100.7", 18080, 1000, LOGIN))
    tracker.feed(ipv4_tcp("198.51.100.7", 18080, "10.0.0.2", 40000, 5000, REPLY))  # the pool's answer
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "198.51.100.7", 18080, 1000, LOGIN))  # retransmission
    assert tracker.stratum_flows["cryptonote"] == 1
    [(key, hit)] = tracker.hits.items()
    assert key == (Endpoint("10.0.0.2", 40000), Endpoint("198.51.100.7", 18080))
    assert (hit.evidence, hit.detail) == ("stratum", "cryptonote login")


def test_a_pool_reply_alone_names_the_receiver_as_the_miner():
    tracker = FlowTracker(lambda name: None)
    tracker.feed(ipv6_tcp("2001:db8::1", 3333, "2001:db8::2", 40000, 1, REPLY))
    [(client, server)] = tracker.hits
    assert (str(client), str(server)) == ("[2001:db8::2]:40000", "[2001:db8::1]:3333")


def test_a_message_split_over_segments_is_reassembled_in_order():
    tracker = FlowTracker(lambda name: None)
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 80, 100, LOGIN[:30]))
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 80, 100, LOGIN[:30]))  # a duplicate copy
    assert not tracker.hits
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 80, 130, LOGIN[30:]))
    assert len(tracker.hits) == 1


def test_sni_matches_only_listed_pools():
    pools = {"supportxmr.com"}
    tracker = FlowTracker(lambda name: next((p for p in pools if name.endswith(p)), None))
    tracker.feed(ipv4_tcp("10.0.0.2", 40001, "10.0.0.9", 443, 1, client_hello("pool.supportxmr.com")))
    tracker.feed(ipv4_tcp("10.0.0.2", 40002, "10.0.0.9", 443, 1, client_hello("www.example.org")))
    assert tracker.sni_matches == 1
    [hit] = tracker.hits.values()
    assert (hit.evidence, hit.detail, hit.pool, hit.client.port) == ("sni", "pool.supportxmr.com", "supportxmr.com", 40001)


def test_a_flow_is_ignored_once_decided_and_the_table_is_bounded():
    tracker = FlowTracker(lambda name: None, max_flows=8, max_hits=4, flow_bytes=256)
    # not Stratum: decided at the first line; later Stratum-looking lines in it are ignored
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 9000, 1, b'{"hello": "world"}\n'))
    tracker.feed(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 9000, 20, LOGIN))
    assert not tracker.hits
    # a long line with no newline is given up after flow_bytes
    tracker.feed(ipv4_tcp("10.0.0.2", 40001, "10.0.0.9", 9000, 1, b"{" + b"x" * 300))
    tracker.feed(ipv4_tcp("10.0.0.2", 40001, "10.0.0.9", 9000, 302, LOGIN))
    assert not tracker.hits
    for port in range(50):
        tracker.feed(ipv4_tcp("10.0.0.2", 41000 + port, "10.0.0.9", 3333, 1, LOGIN))
    assert len(tracker) == 8 and len(tracker.hits) == 4
    assert tracker.stratum_flows["cryptonote"] == 50


def test_kernel_filter_jumps_stay_inside_the_program():
    for lo in (0, 1):
        program = build_filter(lo)
        assert program[-1] == (0x06, 0, 0, 0) and program[-2][0] == 0x06  # ret #0, ret #snaplen
        for i, (code, jt, jf, _) in enumerate(program):
            assert 0 <= jt < 256 and 0 <= jf < 256
            if code & 0x07 == 0x05:  # a jump
                assert i + 1 + max(jt, jf) < len(program)


def test_sock_diag_and_proc_net_tcp_agree_on_live_connections():
    """The netlink fast path and the /proc text tables see the same loopback connections."""
    import socket as so

    from minerwatch.network.sockets import ProcNetSockets

    server = so.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    clients = [so.create_connection(server.getsockname()) for _ in range(5)]
    accepted = [server.accept()[0] for _ in clients]
    try:
        fast, text = ProcNetSockets("/proc"), ProcNetSockets("/proc", netlink=False)
        assert fast.netlink
        key = lambda c: (str(c.local), str(c.remote), c.state, c.uid, c.inode)  # noqa: E731
        mine = {c.getsockname()[1] for c in clients}
        got_fast = sorted(key(c) for c in fast.connections() if c.local.port in mine)
        got_text = sorted(key(c) for c in text.connections() if c.local.port in mine)
        assert fast.netlink  # the dump was not refused
        assert len(got_fast) == 5 and got_fast == got_text
        # The accepted ends are dropped by both as incoming connections.
        port = server.getsockname()[1]
        assert not [c for c in fast.connections() if c.local.port == port]
    finally:
        for s in clients + accepted + [server]:
            s.close()


def test_sock_diag_leaves_the_accepted_end_out_in_the_kernel():
    """Listeners come first, so the server end of a local connection is left out by the kernel
    filter (never sent, never counted) and, were it sent, dropped while the dump is parsed."""
    import socket as so

    from minerwatch.network.sockets import diag_connections, diag_listeners

    server = so.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    clients = [so.create_connection(server.getsockname()) for _ in range(5)]
    accepted = [server.accept()[0] for _ in clients]
    try:
        listening = diag_listeners(so.AF_INET)
        assert Endpoint("127.0.0.1", port) in listening
        mine = {c.getsockname()[1] for c in clients}
        for kernel_filter in (True, False):
            out = []
            seen = diag_connections(so.AF_INET, listening, out, kernel_filter=kernel_filter)
            kept = [c for c in out if c.local.port in mine]
            assert sorted(c.local.port for c in kept) == sorted(mine)
            assert all(c.remote == Endpoint("127.0.0.1", port) and c.state == "established" and c.inode for c in kept)
            assert not [c for c in out if c.local.port == port]  # the accepted ends: never built
            assert seen == len(out)
    finally:
        for s in clients + accepted + [server]:
            s.close()


def test_the_kernel_filter_leaves_out_exactly_what_a_listener_accepted():
    """The kernel runs the filter program on every socket of the dump: the ends a listener
    accepted (wildcard listener: by port; another: by address and port) are not sent, and a
    connection whose local port is a listener's on another address is sent (a miner may bind
    there on purpose). Run against the real kernel, which checks the program before it runs it."""
    import socket as so

    from minerwatch.network import sockets as mod

    wildcard = so.socket()
    wildcard.setsockopt(so.SOL_SOCKET, so.SO_REUSEADDR, 1)
    wildcard.bind(("0.0.0.0", 0))
    wildcard.listen(16)
    specific = so.socket()
    specific.bind(("127.0.0.1", 0))
    specific.listen(16)
    six = so.socket(so.AF_INET6)
    six.bind(("::1", 0))
    six.listen(16)
    held = [wildcard, specific, six]
    try:
        to_wildcard = so.create_connection(("127.0.0.1", wildcard.getsockname()[1]))
        to_specific = so.create_connection(specific.getsockname())
        to_six = so.create_connection(("::1", six.getsockname()[1]))
        # local port = the specific listener's, on another address: an outgoing connection
        beside = so.socket()
        beside.bind(("127.0.0.2", specific.getsockname()[1]))
        beside.connect(("127.0.0.1", wildcard.getsockname()[1]))
        held += [to_wildcard, to_specific, to_six, beside]
        held += [wildcard.accept()[0], wildcard.accept()[0], specific.accept()[0], six.accept()[0]]
        listening = mod.diag_listeners(so.AF_INET) | mod.diag_listeners(so.AF_INET6)
        assert mod.accepted_filter(listening)
        ours = {mod.Endpoint(s.getsockname()[0], s.getsockname()[1]) for s in held if s not in (wildcard, specific, six)}
        for family in (so.AF_INET, so.AF_INET6):
            sent = []
            for data, msg, _, fam, _ in mod.diag_messages(family, 1 << mod.TCP_ESTABLISHED, 0,
                                                          mod.accepted_filter(listening)):
                sport = mod._PORTS.unpack_from(data, msg + 4)[0]
                sent.append(mod.Endpoint(mod._diag_address(fam, data[msg + 8 : msg + 24]), sport))
            mine = {e for e in sent if e in ours}
            expected = {mod.Endpoint(s.getsockname()[0], s.getsockname()[1]) for s in
                        ((to_wildcard, to_specific, beside) if family == so.AF_INET else (to_six,))}
            assert mine == expected, (family, mine, expected)
    finally:
        for s in held:
            s.close()


def test_sock_diag_gives_back_the_same_connection_for_a_socket_it_knew():
    """An inode names one socket for its life: a connection of the last dump, in the same state,
    is that very object (nothing decoded again); a new connection is a new object."""
    import socket as so

    from minerwatch.network.sockets import ProcNetSockets

    server = so.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    sockets = ProcNetSockets("/proc")
    first_client = so.create_connection(server.getsockname())
    accepted = [server.accept()[0]]
    try:
        mine = first_client.getsockname()

        def ours(conns):
            return [c for c in conns if (c.local.ip, c.local.port) == mine]

        before = ours(sockets.connections())
        assert len(before) == 1
        again = ours(sockets.connections())
        assert again[0] is before[0]
        first_client.close()
        second_client = so.create_connection(server.getsockname())
        accepted.append(server.accept()[0])
        mine = second_client.getsockname()
        fresh = ours(sockets.connections())
        assert len(fresh) == 1 and fresh[0] is not before[0] and fresh[0].inode != before[0].inode
        second_client.close()
    finally:
        for s in accepted + [server]:
            s.close()


def test_a_kernel_that_refuses_the_filter_still_gets_netlink_dumps(monkeypatch):
    """A filter program the kernel refuses (an older audit) costs the filter, not netlink: the
    dump runs again without it, and parsing drops the accepted ends."""
    import socket as so

    from minerwatch.network import sockets as mod

    monkeypatch.setattr(mod, "accepted_filter", lambda listening: mod._OP.pack(99, 4, 8))  # no such op
    server = so.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    client = so.create_connection(server.getsockname())
    accepted = server.accept()[0]
    try:
        table = mod.ProcNetSockets("/proc")
        conns = table.connections()
        assert table.netlink and not table.kernel_filter
        local = mod.Endpoint(*client.getsockname())
        assert [c.local for c in conns if c.local == local] == [local]
        assert not [c for c in conns if c.local.port == server.getsockname()[1]]
    finally:
        for s in (client, accepted, server):
            s.close()
