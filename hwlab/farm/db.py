"""The farm's history database: runs, devices and their health, series, results, alerts.

SQLAlchemy 2 (Core, every statement parameterised): a SQLite file by default, PostgreSQL by URL
(``postgresql+psycopg://user@host/db``). The schema is versioned in ``hwlab_meta``; a database of another
version is refused with what to do (an older one is migrated when a migration is known), and a database
that holds other tables but no version is not touched.

A result keeps its raw samples (JSON text), so any verdict can be recomputed from the database alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError

from hwlab.errors import HwlabError

SCHEMA_VERSION = 1
HEALTHS = ("good", "unknown", "bad", "maintenance", "retired")
STATES = ("idle", "reserved", "running")

metadata = MetaData()

meta_table = Table("hwlab_meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("plan_path", Text),
    Column("plan_hash", String(64)),
    Column("hwlab_version", String(32)),
    Column("git_commit", String(64)),
    Column("host", String(255)),
    Column("started_at", String(32)),
    Column("ended_at", String(32)),
    Column("status", String(16)),  # running, finished, failed
)
devices = Table(
    "devices",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("health", String(16), nullable=False, default="unknown"),
    Column("health_reason", Text, default=""),
    Column("health_changed_at", String(32)),
    Column("state", String(16), nullable=False, default="idle"),
    Column("fingerprint", Text),
    Column("fingerprint_hash", String(64)),
    Column("infra_errors", Integer, nullable=False, default=0),
)
health_events = Table(
    "health_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(128), ForeignKey("devices.name"), nullable=False),
    Column("run_id", String(64)),
    Column("health", String(16)),
    Column("reason", Text),
    Column("at", String(32)),
)
series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(128), nullable=False),
    Column("backend", String(32), nullable=False),
    Column("model", String(255), nullable=False),
    Column("metric", String(32), nullable=False),
    UniqueConstraint("device", "backend", "model", "metric"),
)
results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # night, confirm, golden
    Column("status", String(16), nullable=False),  # ok, error
    Column("error_class", String(16)),  # model, measurement, infrastructure
    Column("error", Text),
    Column("median", Float),  # of the samples on the device's reference speed (raw / speed_factor), else raw
    Column("raw_median", Float),  # of the samples as timed
    Column("ci_rel", Float),
    Column("n", Integer),
    Column("samples", Text),  # JSON list of the raw samples, as timed, in the series' unit
    Column("speed_factor", Float),  # the job's speed against the device's reference (anchors); None: unknown
    Column("fingerprint_hash", String(64)),
    Column("measured_at", String(32)),
    UniqueConstraint("run_id", "series_id", "kind"),
)
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("run_id", String(64), ForeignKey("runs.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # regression, improvement
    Column("change", Float),
    Column("p", Float),
    Column("threshold", Float),
    Column("noise", Float),
    Column("began_run_id", String(64)),  # the night the step detection places the change
    Column("created_at", String(32)),
    Column("acknowledged_at", String(32)),
    Column("acknowledged_by", String(128)),
    Column("note", Text),
    Column("resets_baseline", Boolean, nullable=False, default=False),
    UniqueConstraint("series_id", "run_id"),
)
device_errors = Table(
    "device_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(128), nullable=False),
    Column("run_id", String(64)),
    Column("error_class", String(16)),
    Column("attempt", Integer),
    Column("message", Text),
    Column("at", String(32)),
)


class DatabaseError(HwlabError):
    """The history database cannot be opened or is of another schema."""


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def database_url(db: str | None, plan_path: Path | None) -> str:
    """A SQLAlchemy URL: ``db`` as given (a URL, or a path of a SQLite file), else ``farm.db`` beside the plan."""
    if db and "://" in db:
        return db
    path = Path(db) if db else (plan_path.parent if plan_path else Path.cwd()) / "farm.db"
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class SeriesKey:
    device: str
    backend: str
    model: str
    metric: str = "latency_ms"

    def __str__(self) -> str:
        return f"{self.device}/{self.backend}/{self.model}/{self.metric}"


class History:
    """One open history database (create it with :meth:`open`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> History:
        try:
            engine = create_engine(url, future=True)
        except (ArgumentError, NoSuchModuleError) as err:
            raise DatabaseError(
                f"cannot use database URL {url!r}: {err}",
                hint="give a file path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        history = cls(engine)
        history._prepare()
        return history

    @property
    def where(self) -> str:
        """The database's URL as it may be shown (no password)."""
        return self.engine.url.render_as_string(hide_password=True)

    def _prepare(self) -> None:
        shown = self.where
        try:
            with self.engine.begin() as conn:
                names = set(inspect(conn).get_table_names())
                if "hwlab_meta" not in names:
                    if names:
                        raise DatabaseError(
                            f"{shown} holds tables but is not an hwlab farm database ({', '.join(sorted(names))})",
                            hint="give an empty database or the farm's own (farm.db beside the plan)",
                        )
                    metadata.create_all(conn)
                    conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                    return
                found = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
                version = int(found) if found and found.isdigit() else None
        except OperationalError as err:
            raise DatabaseError(
                f"cannot open the history database {shown}: {err.orig}",
                hint="check the URL, that the server runs and that the user may connect",
            ) from None
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{shown} has farm schema version {version}; this hwlab knows {SCHEMA_VERSION}",
                hint="upgrade hwlab (`pip install -U hwlab`) to read it; it is left unchanged",
            )
        raise DatabaseError(
            f"{shown} has farm schema version {found!r}, which this hwlab cannot migrate",
            hint="export what you need from it and start a new database; it is left unchanged",
        )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # --- runs --------------------------------------------------------------------------------------

    def start_run(self, run_id: str, **fields: Any) -> None:
        with self.begin() as conn:
            conn.execute(insert(runs).values(id=run_id, started_at=now(), status="running", **fields))

    def end_run(self, run_id: str, status: str) -> None:
        with self.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(ended_at=now(), status=status))

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.begin() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def runs(self) -> list[dict[str, Any]]:
        with self.begin() as conn:
            return [dict(r) for r in conn.execute(select(runs).order_by(runs.c.started_at, runs.c.id)).mappings()]

    # --- devices -----------------------------------------------------------------------------------

    def device(self, name: str) -> dict[str, Any]:
        """The device's row; a device never seen is created with health ``unknown``."""
        with self.begin() as conn:
            row = conn.execute(select(devices).where(devices.c.name == name)).mappings().first()
            if row is None:
                with contextlib.suppress(IntegrityError):  # another process created it just now
                    conn.execute(
                        insert(devices).values(
                            name=name,
                            health="unknown",
                            state="idle",
                            infra_errors=0,
                            health_reason="never checked",
                            health_changed_at=now(),
                        )
                    )
                row = conn.execute(select(devices).where(devices.c.name == name)).mappings().one()
        return dict(row)

    def devices(self) -> list[dict[str, Any]]:
        with self.begin() as conn:
            return [dict(r) for r in conn.execute(select(devices).order_by(devices.c.name)).mappings()]

    def set_health(self, name: str, health: str, reason: str, run_id: str | None = None) -> None:
        if health not in HEALTHS:
            raise DatabaseError(f"unknown health {health!r}", hint=f"use one of: {', '.join(HEALTHS)}")
        self.device(name)
        with self.begin() as conn:
            conn.execute(
                update(devices)
                .where(devices.c.name == name)
                .values(health=health, health_reason=reason, health_changed_at=now())
            )
            conn.execute(
                insert(health_events).values(device=name, run_id=run_id, health=health, reason=reason, at=now())
            )

    def set_state(self, name: str, state: str) -> None:
        assert state in STATES, state
        self.device(name)
        with self.begin() as conn:
            conn.execute(update(devices).where(devices.c.name == name).values(state=state))

    def set_fingerprint(self, name: str, fingerprint: dict[str, Any], digest: str) -> None:
        self.device(name)
        with self.begin() as conn:
            conn.execute(
                update(devices)
                .where(devices.c.name == name)
                .values(fingerprint=json.dumps(fingerprint, sort_keys=True), fingerprint_hash=digest)
            )

    def count_infra_error(self, name: str, run_id: str, attempt: int, message: str) -> None:
        self.device(name)
        with self.begin() as conn:
            conn.execute(update(devices).where(devices.c.name == name).values(infra_errors=devices.c.infra_errors + 1))
            conn.execute(
                insert(device_errors).values(
                    device=name, run_id=run_id, error_class="infrastructure", attempt=attempt, message=message, at=now()
                )
            )

    def health_events(self, name: str) -> list[dict[str, Any]]:
        with self.begin() as conn:
            query = select(health_events).where(health_events.c.device == name).order_by(health_events.c.id)
            return [dict(r) for r in conn.execute(query).mappings()]

    def device_errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        query = select(device_errors).order_by(device_errors.c.id)
        if run_id is not None:
            query = query.where(device_errors.c.run_id == run_id)
        with self.begin() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # --- series and results ------------------------------------------------------------------------

    def series_id(self, key: SeriesKey) -> int:
        where = (
            (series.c.device == key.device)
            & (series.c.backend == key.backend)
            & (series.c.model == key.model)
            & (series.c.metric == key.metric)
        )
        with self.begin() as conn:
            found = conn.execute(select(series.c.id).where(where)).scalar()
            if found is None:
                with contextlib.suppress(IntegrityError):  # another process created it just now
                    conn.execute(
                        insert(series).values(
                            device=key.device, backend=key.backend, model=key.model, metric=key.metric
                        )
                    )
                found = conn.execute(select(series.c.id).where(where)).scalar_one()
        return int(found)

    def all_series(self) -> list[dict[str, Any]]:
        with self.begin() as conn:
            query = select(series).order_by(series.c.device, series.c.backend, series.c.model, series.c.metric)
            return [dict(r) for r in conn.execute(query).mappings()]

    def add_result(self, run_id: str, key: SeriesKey, kind: str, **fields: Any) -> bool:
        """Record one result; False when the run already holds this series' result of this kind (a resumed
        run meets the rows it measured before, and keeps the first)."""
        sid = self.series_id(key)
        samples = fields.pop("samples", None)
        values = {**fields, "samples": json.dumps(list(samples)) if samples is not None else None}
        try:
            with self.begin() as conn:
                conn.execute(insert(results).values(run_id=run_id, series_id=sid, kind=kind, **values))
        except IntegrityError:
            return False
        return True

    def results(
        self, key: SeriesKey | None = None, *, run_id: str | None = None, kinds: Sequence[str] = ("night",)
    ) -> list[dict[str, Any]]:
        """Results with their series and run start, oldest run first; samples parsed."""
        query = (
            select(
                results,
                series.c.device,
                series.c.backend,
                series.c.model,
                series.c.metric,
                runs.c.started_at.label("run_started_at"),
            )
            .join(series, results.c.series_id == series.c.id)
            .join(runs, results.c.run_id == runs.c.id)
            .where(results.c.kind.in_(list(kinds)))
            .order_by(runs.c.started_at, runs.c.id, results.c.id)
        )
        if key is not None:
            query = query.where(results.c.series_id == self.series_id(key))
        if run_id is not None:
            query = query.where(results.c.run_id == run_id)
        with self.begin() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for row in rows:
            row["samples"] = json.loads(row["samples"]) if row["samples"] else []
        return rows

    # --- alerts ------------------------------------------------------------------------------------

    def add_alert(self, run_id: str, key: SeriesKey, **fields: Any) -> int:
        sid = self.series_id(key)
        with self.begin() as conn:
            existing = conn.execute(
                select(alerts.c.id).where((alerts.c.series_id == sid) & (alerts.c.run_id == run_id))
            ).scalar()
            if existing is not None:
                return int(existing)
            done = conn.execute(insert(alerts).values(run_id=run_id, series_id=sid, created_at=now(), **fields))
            return int(done.inserted_primary_key[0])

    def open_alert(self, key: SeriesKey, kind: str) -> int | None:
        """The series' unacknowledged alert of this kind, if any: a change stays one alert, night after
        night, until someone acknowledges it."""
        sid = self.series_id(key)
        query = select(alerts.c.id).where(
            (alerts.c.series_id == sid) & (alerts.c.kind == kind) & alerts.c.acknowledged_at.is_(None)
        )
        with self.begin() as conn:
            found = conn.execute(query.order_by(alerts.c.id)).scalar()
        return int(found) if found is not None else None

    def alerts(self, *, unacknowledged: bool = False, run_id: str | None = None) -> list[dict[str, Any]]:
        query = (
            select(alerts, series.c.device, series.c.backend, series.c.model, series.c.metric)
            .join(series, alerts.c.series_id == series.c.id)
            .order_by(alerts.c.id)
        )
        if unacknowledged:
            query = query.where(alerts.c.acknowledged_at.is_(None))
        if run_id is not None:
            query = query.where(alerts.c.run_id == run_id)
        with self.begin() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def acknowledge(self, alert_id: int, by: str, note: str, *, real: bool) -> dict[str, Any]:
        """Acknowledge an alert; ``real`` (a change that stays) starts the series' baseline at its night."""
        with self.begin() as conn:
            found = conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().first()
            if found is None:
                raise DatabaseError(f"no alert {alert_id}", hint="see `hwlab farm report` for the alerts' ids")
            conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id)
                .values(acknowledged_at=now(), acknowledged_by=by, note=note, resets_baseline=real)
            )
            return dict(conn.execute(select(alerts).where(alerts.c.id == alert_id)).mappings().one())

    def baseline_start(self, key: SeriesKey) -> str | None:
        """The run where the series' current baseline begins: the night of its latest change acknowledged as
        real (that night's level is the new normal), None for the whole history."""
        sid = self.series_id(key)
        query = (
            select(alerts.c.began_run_id, alerts.c.run_id)
            .where((alerts.c.series_id == sid) & alerts.c.resets_baseline)
            .order_by(alerts.c.id.desc())
        )
        with self.begin() as conn:
            row = conn.execute(query).first()
        return (row[0] or row[1]) if row else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (a report) never block the run's writes
    cursor.execute("PRAGMA busy_timeout=30000")  # Dask workers on one host write to one file
    cursor.close()
