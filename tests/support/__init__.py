"""Helpers of the test suite, one module each (fixtures stay in tests/conftest.py).

    processes            free_port, stop_pid, wait_for, Spawner (real processes under a chosen name)
    repo                 ROOT, FIXTURES, the offline config and `offline(args)`
    wallets              wallet addresses for stand-ins and fixtures
    promtool             check_metrics (`promtool check metrics` on an exposition)
    servers              Debian's Prometheus and Alertmanager, a webhook sink
    alertmanager_config  the shipped Alertmanager config rewired to one webhook
    exporter             a real `minerwatch serve` process, scraped over HTTP
    procfs               a small fake /proc tree built from Python
    golden, e2e_serve    the golden end-to-end run on tests/fixtures/e2e
    fakeminer, pool      miner and pool stand-ins (run as processes)
    rhythm_pool          a pool stand-in that also pushes jobs unasked, as real pools do
    license_server       a license server answering heartbeats, or an RPC master handing out tasks
    compute_worker       a native compute job without miner strings (a miner, throttled, or a solver)
    hashing_node         a solo RandomX miner on Debian's librandomx (or a stand-in library)
    config_miners        busy processes configured by files: quiet miners, services with pools
    netns, netclient     network namespaces and a client run inside them
    dnsserver            a DNS server on 127.0.0.0/8
    socks_relay          a SOCKS5/SOCKS4a/HTTP CONNECT relay on 127.0.0.1 (run as a process)
    relay_client         a client hiding TLS with no server name behind a SOCKS5 relay
    cli                  `minerwatch ARGS` run as a process (to its end, or left running)
    hostile_files        a process that swaps a file for a FIFO or grows it while minerwatch reads it
    idle_clients         idle connections held against a server; Threads and VmRSS of a process
    dnsforge             forged DNS answers sent to the host (unsolicited, mismatched, broadcast)
    bpf                  a classic-BPF interpreter: the sniffer's kernel filter run on test packets
    hostile_prometheus   a Prometheus stand-in that answers too much, too deep, too slow or not finite
    messages             the gettext messages the report and evidence summary use (for the catalogue tests)
    fakes/               stand-ins for what this machine lacks: NVML, winreg, pywin32

Test modules import `from support.<module> import ...`: pytest puts tests/ on sys.path
(rootdir conftest, no __init__.py in tests/). Processes started with `python -m tests.support.X`
from the repository root find the same package.
"""
