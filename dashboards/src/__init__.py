"""The one source of minerwatch's Grafana dashboards: helpers (grafana.py), one module per
dashboard (fleet.py, host.py) and build.py, which turns them into JSON and the README table.

Run `python dashboards/generate.py` after a change; never edit the JSON by hand.
"""
