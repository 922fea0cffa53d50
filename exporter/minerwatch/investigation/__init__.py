"""For people, not Prometheus: what on-call staff and investigators run on a host or afterwards.

    scan.py               `minerwatch scan`: one pass over the host, suspects and why
    evidence.py           `minerwatch evidence`: a bundle per process, copied safely
    bundles.py            a bundle written whole or not at all, and its manifest of hashes
    verification.py       `minerwatch evidence verify`: a bundle or a directory of them, against the record
    custody.py            the host's record of each bundle's manifest hash (the exporter reads it too)
    interrupts.py         signals and a deadline that end a collection without a half-written bundle
    report.py             `minerwatch report`: what a miner took, from Prometheus's history
    report_prometheus.py  Prometheus's HTTP API, treated as untrusted (bounded in size and time)
    report_html.py        the report as one self-contained HTML page
    report_pdf.py         report.pdf: the page printed by headless Chromium, hash and page numbers on each page
    i18n.py               Kazakh, Russian or English: the catalogues in locale/*.po, dates and numbers
    evidence_summary.py   a bundle's evidence.json as text a person reads, in the chosen language

The commands are loaded only when invoked (cli.LazyGroup): `serve` never imports them
(custody.py aside: the evidence collector reads the record file with it).
"""
