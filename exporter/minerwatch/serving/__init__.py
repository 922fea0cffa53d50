"""Exposing: the metric families collectors yield, their exposition, and the HTTP server.

    metrics.py       metric families, as client_python's custom collectors build them
    exposition.py    the text and OpenMetrics formats, byte-identical to client_python's
    self_metrics.py  the exporter's own process_* and python_* series
    config_hashes.py hashes of the configuration in effect (minerwatch_config_hash_info)
    web.py           the HTTP server: what to answer (landing page, metrics, health, auth, limits)
    web_loop.py      one thread waiting on every connection: limit, timeouts, TLS handshakes
    web_conn.py      one connection's non-blocking I/O, plain or TLS
    web_workers.py   the worker threads that answer whole requests
    web_http.py      HTTP/1.x request heads parsed within fixed limits, answers formatted
    web_config.py    --web.config.file in exporter-toolkit's format (TLS, headers, rate limit)
    web_auth.py      basic auth with bcrypt, one check at a time
    web_scrape.py    scrapes that arrive together share one collection
"""
