"""The device farm: nightly runs over the inventory, their history, and what changed.

- ``plan.py``: ``farm.yaml``, validated like the inventory;
- ``run.py``: one run (here, or on Dask workers through ``scale.py``), resumable;
- ``night.py``: one device's night: its lease, health check, measurements, verdicts, confirmation, alerts;
- ``models.py``: the plan's reference models per backend, and the golden model of the health check;
- ``regress.py``: whether tonight differs from the nights before by more than the series' own noise;
- ``db.py``: the history database (SQLAlchemy 2: SQLite or PostgreSQL);
- ``report.py``: the static HTML report with one plot per series, JSON and JUnit XML;
- ``schedule.py``: a systemd timer and service, or a cron line, for a plan.

Device exclusion (leases) lives in :mod:`hwlab.lease`, shared with ``hwlab profile``.
"""
