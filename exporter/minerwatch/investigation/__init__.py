"""For people, not Prometheus: what on-call staff and investigators run on a host or afterwards.

    scan.py               `minerwatch scan`: one pass over the host, suspects and why
    evidence.py           `minerwatch evidence`: a bundle per process, copied safely, and `verify`
    interrupts.py         signals and a deadline that end a collection without a half-written bundle
    report.py             `minerwatch report`: what a miner took, from Prometheus's history
    report_prometheus.py  Prometheus's HTTP API, treated as untrusted (bounded in size and time)
    report_html.py        the report as one self-contained HTML page

The commands are loaded only when invoked (cli.LazyGroup): `serve` never imports them.
"""
