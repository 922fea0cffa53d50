"""Mining-pool connections: what the network collector (collectors/network.py) builds on.

    sockets.py      the host's outgoing TCP connections, and the owner process of the matching ones
    sniffer.py      Stratum, TLS server names, proxy and SOCKS requests on the wire (a packet socket, a thread)
    dns.py          DNS answers the host receives: parsed, and pool addresses learned from them
    dns_pending.py  the DNS queries the host sent and awaits: only their answers are learned
    dns_client.py   Windows: pool addresses and look-ups from the DNS client's log (windows/dns_events.py)
    pools.py        the pool lists (shipped, IOC files, reloaded on change) and the opt-in resolver
    monitor.py      which connections go to a pool, on what evidence; the `pool_connection` signal
    settings.py     the `network:` config section
    resolve.py      `minerwatch resolve-pools`: resolve the pool names centrally, for the desks

Data flows one way: sockets, wire and lists -> monitor -> the process table and the collector.
"""
