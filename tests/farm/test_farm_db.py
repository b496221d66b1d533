"""The history database on SQLite and on a real PostgreSQL server: schema, versions, the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from farmkit import fresh_postgres_url, synthetic_nights
from sqlalchemy import create_engine, text

from hwlab.farm.baseline import earlier_nights
from hwlab.farm.db import DatabaseError, History, SeriesKey, database_url
from hwlab.farm.regress import Night, judge
from hwlab.farm.report import gather

KEY = SeriesKey("board", "onnxruntime", "mobilenet")


def _history_of_nights(history: History, levels: list[float]) -> None:
    synthetic_nights(history, KEY, levels, alerts=False)


def test_results_alerts_and_acknowledgements_round_trip(db_url: str) -> None:
    history = History.open(db_url)
    _history_of_nights(history, [1.0] * 5 + [1.3])
    runs = [r["id"] for r in history.runs()]
    assert len(runs) == 6 and all(r["status"] == "finished" for r in history.runs())
    nights = history.results(KEY)
    assert [n["run_id"] for n in nights] == runs and len(nights[0]["samples"]) == 100
    assert not history.add_result(runs[0], KEY, "night", status="ok", samples=[1.0])  # one per run, series, kind
    before = [n for _, n in earlier_nights(history, KEY, runs[-1])]
    verdict = judge(before, Night(runs[-1], tuple(nights[-1]["samples"])))
    assert verdict.kind == "regression" and len(before) == 5
    alert = history.add_alert(runs[-1], KEY, kind="regression", change=verdict.change, p=verdict.p,
                              threshold=verdict.threshold, noise=verdict.noise, began_run_id=runs[-1])  # fmt: skip
    assert [a["id"] for a in history.alerts(unacknowledged=True)] == [alert]
    assert history.baseline_start(KEY) is None
    history.acknowledge(alert, "ops", "new runtime", real=True)
    assert history.alerts(unacknowledged=True) == [] and history.baseline_start(KEY) == runs[-1]
    later = "20261209T000000Z-test"
    history.start_run(later, plan_hash="h")
    assert [r for r, _ in earlier_nights(history, KEY, later)] == [runs[-1]]  # the baseline restarted
    history.set_health("board", "bad", "golden model +60%", later)
    assert history.device("board")["health"] == "bad"
    assert [e["health"] for e in history.health_events("board")] == ["bad"]
    with pytest.raises(DatabaseError, match="unknown health"):
        history.set_health("board", "sick", "")


def test_sqlite_and_postgresql_give_the_same_report(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    reports = []
    for url in (f"sqlite:///{tmp_path / 'farm.db'}", fresh_postgres_url(postgres)):
        history = History.open(url)
        _history_of_nights(history, [1.0] * 8 + [1.2, 1.2])
        report = gather(history).to_json()
        for run in report["runs"]:
            run.pop("started_at"), run.pop("ended_at")
        for series in report["series"]:
            for night in series["nights"]:
                night.pop("started_at")
        reports.append({k: report[k] for k in ("runs", "series", "alerts", "unacknowledged_regressions")})
    assert reports[0] == reports[1]
    assert reports[0]["series"][0]["verdict"]["kind"] == "regression"


def test_a_database_of_another_schema_is_refused_and_left_unchanged(db_url: str) -> None:
    History.open(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE hwlab_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(DatabaseError, match="version 99; this hwlab knows 1") as info:
        History.open(db_url)
    assert "upgrade hwlab" in str(info.value)
    with engine.begin() as conn:
        conn.execute(text("UPDATE hwlab_meta SET value = '0' WHERE key = 'schema_version'"))
    with pytest.raises(DatabaseError, match="cannot migrate"):
        History.open(db_url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT value FROM hwlab_meta")).scalar() == "0"
    engine.dispose()


def test_a_foreign_database_is_not_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER)"))
    with pytest.raises(DatabaseError, match="not an hwlab farm database"):
        History.open(url)
    with engine.begin() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
    assert names == ["invoices"]


def test_database_urls_and_bad_ones(tmp_path: Path) -> None:
    assert database_url(None, tmp_path / "farm.yaml") == f"sqlite:///{(tmp_path / 'farm.db').resolve()}"
    assert database_url("postgresql+psycopg://u@h/db", None) == "postgresql+psycopg://u@h/db"
    with pytest.raises(DatabaseError, match="cannot use database URL"):
        History.open("nosuchdialect://x")
    with pytest.raises(DatabaseError, match="cannot open the history database") as info:
        History.open("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "server runs" in str(info.value)
