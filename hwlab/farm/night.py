"""One device's night: health check, the plan's measurements, verdicts with confirmation, alerts.

:func:`device_night` is the unit of work a farm run hands out (here, or to the Dask worker that has the
device). It holds the device's lease for the whole night, so a manual ``hwlab profile`` or another farm
run never measures the device meanwhile, and it writes every result to the history database as soon as a
backend's table is complete.

Nothing measured is lost: measurements land in per-run lookup tables (``<plan dir>/farm/tables``),
appended row by row, before they are copied into the database; a second call with the same run id (a
retry after a lost link, ``hwlab farm run --resume RUN``) measures only what those tables lack, and the
database keeps one result per series, run and kind.

Errors are classified. Infrastructure errors (a lost link, an adb device offline, a command that timed
out, a lease not obtained in time) are retried ``plan.retries`` times, ``plan.retry_delay_s`` apart, and
counted against the device. A model that cannot be exported or a measurement that fails is a result of
its series, never retried.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hwlab
from hwlab.errors import (
    BackendUnavailable,
    DeviceBusy,
    ExportError,
    HostKeyChanged,
    HostKeyNotTrusted,
    HwlabError,
    NotSsh,
    RunnerError,
    TransportError,
    UnknownHostKey,
)
from hwlab.farm.baseline import common_factor, earlier_nights, night_factors, night_of, night_speed_key
from hwlab.farm.db import History, SeriesKey
from hwlab.farm.models import golden_item, reference
from hwlab.farm.plan import FarmPlan, load_plan
from hwlab.farm.regress import Thresholds, Verdict, judge_night, step_night
from hwlab.inventory import DeviceSpec, get_device
from hwlab.lease import device_lease
from hwlab.profile import Measuring, ProfileRequest, as_item, profile
from hwlab.tables import LookupTable

Log = Callable[[str], None]
CONFIGURATION = (UnknownHostKey, HostKeyChanged, HostKeyNotTrusted, NotSsh)  # retrying cannot fix these
OUT_OF_SERVICE = ("bad", "maintenance", "retired")
CONFIRM_REFERENCES = 5  # unflagged series measured again beside the flagged ones: the confirmation's own factor


def is_infrastructure(err: BaseException) -> bool:
    """Whether an error is the infrastructure's (retried, counted against the device), not a result."""
    if isinstance(err, CONFIGURATION):
        return False
    return isinstance(err, TransportError | DeviceBusy | ConnectionError | TimeoutError)


@dataclass(frozen=True)
class NightJob:
    """Everything a night of one device needs, in plain values (it travels to Dask workers)."""

    run_id: str
    plan_path: str
    db_url: str
    device: str
    inventory: str | None = None
    lease_wait_s: float = 0.0


@dataclass
class NightOutcome:
    """What a device's night came to: ``status`` is done, skipped (out of service), unhealthy (its health
    check failed tonight) or infrastructure (retries exhausted)."""

    device: str
    status: str
    message: str = ""
    results: int = 0
    errors: int = 0
    flagged: list[str] = field(default_factory=list)  # series flagged, then confirmed or not
    alerts: list[int] = field(default_factory=list)
    attempts: int = 1
    worker: str | None = None  # the Dask worker that ran it (None: this process)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def work_root(plan: FarmPlan) -> Path:
    """Where a plan's runs keep their tables: ``farm/`` beside the plan."""
    return plan.path.parent / "farm" / "tables"


def fingerprint(facts: dict[str, Any]) -> dict[str, Any]:
    """What identifies a device's software and hardware, stable across reboots."""
    runtimes = {
        name: (fact or {}).get("version")
        for name, fact in sorted((facts.get("runtimes") or {}).items())
        if isinstance(fact, dict)
    }
    return {
        "cpu_model": facts.get("cpu_model"),
        "machine": facts.get("machine"),
        "kernel": facts.get("kernel"),
        "cpu_count": facts.get("cpu_count"),
        "runtimes": runtimes,
        "runner_version": facts.get("runner_version"),
        "hwlab_version": hwlab.__version__,
    }


def device_night(job: NightJob, log: Log = lambda _: None) -> NightOutcome:
    """Run one device's night of ``job.run_id``, retrying infrastructure errors as the plan says. Any other
    error of hwlab's (an SSH host key not trusted, a device the inventory describes wrongly) makes the device
    bad, with the error as the reason, and the other devices' nights go on."""
    plan = load_plan(Path(job.plan_path))
    history = History.open(job.db_url)
    device = get_device(job.device, job.inventory)
    health = history.device(device.name)
    if health["health"] in OUT_OF_SERVICE:
        log(f"{device.name}: skipped, health {health['health']} ({health['health_reason']})")
        return NightOutcome(device.name, "skipped", f"health {health['health']}: {health['health_reason']}")
    attempt = 0
    checked: list[bool] = []  # set once tonight's health check passed
    while True:
        attempt += 1
        try:
            outcome = _night(plan, history, device, job, log, checked)
            outcome.attempts = attempt
            return outcome
        except HwlabError as err:
            if not is_infrastructure(err):  # e.g. a host key that is not trusted: the device is not usable
                log(f"{device.name}: {type(err).__name__}: {err.message}")
                return _unhealthy(history, job, device, f"{type(err).__name__}: {err.message}")
            history.count_infra_error(device.name, job.run_id, attempt, f"{type(err).__name__}: {err.message}")
            if attempt > plan.retries:
                log(f"{device.name}: infrastructure error, {attempt} attempts: {err.message}")
                # Before the health check passed, the device failed it; after, the next night's check decides.
                health = "unknown" if checked else "bad"
                history.set_health(
                    device.name, health, f"infrastructure error, {attempt} attempts: {err.message}", job.run_id
                )
                return NightOutcome(
                    device.name, "infrastructure", f"{type(err).__name__}: {err.message}", attempts=attempt
                )
            log(
                f"{device.name}: {type(err).__name__}: {err.message}; retry {attempt} of {plan.retries} "
                f"in {plan.retry_delay_s:g} s"
            )
            time.sleep(plan.retry_delay_s)
        finally:
            history.set_state(device.name, "idle")


def _night(
    plan: FarmPlan, history: History, device: DeviceSpec, job: NightJob, log: Log, checked: list[bool]
) -> NightOutcome:
    from hwlab.doctor import diagnose
    from hwlab.measure.runtimes import check_backend
    from hwlab.transport import connect

    outcome = NightOutcome(device.name, "done")
    with device_lease(device.name, job.lease_wait_s, owner=f"farm run {job.run_id}", ttl_s=plan.lease_ttl_s):
        history.set_state(device.name, "reserved")
        transport = connect(device)
        try:
            facts, findings = diagnose(device, transport)
            if facts is None:
                return _unhealthy(history, job, device, "; ".join(f.what for f in findings))
            prints = fingerprint(facts)
            digest = _digest(prints)
            history.set_fingerprint(device.name, prints, digest)
            backends = [b for b in plan.backends if b in device.runtimes]
            for backend in backends:
                try:
                    check_backend(backend, facts, device)
                except BackendUnavailable as err:
                    return _unhealthy(history, job, device, f"{backend}: {err.message}")
            if not backends:
                return _unhealthy(history, job, device, f"runs none of the plan's backends {list(plan.backends)}")
            history.set_state(device.name, "running")
            nightly = Nightly(plan, history, device, job, transport, facts, digest, log)
            # The golden model is always judged on raw samples: a device that became slower as a whole is
            # what the health check is for (drift correction would divide that out).
            health = replace(plan.thresholds, min_change=plan.max_slowdown, k=0.0, correction="none")
            golden = nightly.measure(backends[0], [golden_item()], "golden", health)
            slower = [v for v in golden.confirmed.values() if v.kind == "regression"]
            if golden.errors or slower:
                why = golden.errors[0] if golden.errors else f"golden model {slower[0].change:+.0%} against its history"
                return _unhealthy(history, job, device, why)
            if health_of(history, device.name) != "good":
                history.set_health(device.name, "good", "health check passed", job.run_id)
            log(f"{device.name}: health check passed")
            checked.append(True)
            for backend in backends:
                done = nightly.night(backend)
                outcome.results += done.results
                outcome.errors += len(done.errors)
                outcome.flagged += [str(k) for k in done.flagged]
                outcome.alerts += done.alerts
        finally:
            transport.close()
    return outcome


def health_of(history: History, name: str) -> str:
    return str(history.device(name)["health"])


def _unhealthy(history: History, job: NightJob, device: DeviceSpec, why: str) -> NightOutcome:
    history.set_health(device.name, "bad", f"health check failed: {why}", job.run_id)
    return NightOutcome(device.name, "unhealthy", why)


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Measured:
    """What one measuring pass gave: series written, error messages, flags, confirmed verdicts, alerts."""

    results: int = 0
    errors: list[str] = field(default_factory=list)
    flagged: list[SeriesKey] = field(default_factory=list)
    confirmed: dict[SeriesKey, Verdict] = field(default_factory=dict)
    alerts: list[int] = field(default_factory=list)


@dataclass
class Nightly:
    """The measuring half of a night, over the device's open transport and the run's tables."""

    plan: FarmPlan
    history: History
    device: DeviceSpec
    job: NightJob
    transport: Any
    facts: dict[str, Any]
    fingerprint_hash: str  # recorded with every result
    log: Log

    def night(self, backend: str) -> Measured:
        """The plan's reference set (and space) on ``backend``: results, verdicts, confirmed alerts."""
        ref = reference(self.plan, backend)
        done = Measured()
        if ref.elsewhere:
            self.log(f"{self.device.name}/{backend}: {', '.join(ref.elsewhere)}: another backend's format, not here")
        for key, why in ref.errors.items():
            self.history.add_result(
                self.job.run_id,
                SeriesKey(self.device.name, backend, key),
                "night",
                status="error",
                error_class="model",
                error=why,
            )
            done.errors.append(f"{key}: {why}")
        items: list[Any] = list(ref.items)
        if self.plan.space is not None:
            from hwlab.space import SpaceContext, get_space

            name, params = self.plan.space
            items += get_space(name, SpaceContext(work_root(self.plan), self.device.name, backend), **params)
        measured = self.measure(backend, items, "night", self.plan.thresholds)
        measured.errors = done.errors + measured.errors
        return measured

    def measure(self, backend: str, items: Sequence[Any], kind: str, thresholds: Thresholds) -> Measured:
        """Measure ``items`` into the run's ``kind`` table, record them, judge each series against its
        history, and re-measure what is flagged once (confirmation) before it becomes an alert."""
        done = Measured()
        table, failure = self._profile(backend, items, f"farm-{self.job.run_id}-{kind}")
        keys = [as_item(item).key for item in items]
        for key in keys:
            written, error = self._record(table, backend, key, kind, failure)
            done.results += written
            if error:
                done.errors.append(f"{key}: {error}")
        if kind == "night" and thresholds.correction == "common":
            done.alerts += self._night_speed(backend, keys, thresholds)
        verdicts = {}
        for key in keys:
            series = SeriesKey(self.device.name, backend, key)
            verdict = self._judge(series, kind, thresholds)
            if verdict is not None and verdict.flagged:
                verdicts[series] = verdict
        done.flagged = list(verdicts)
        if not verdicts:
            return done
        self.log(f"{self.device.name}/{backend}: {len(verdicts)} series flagged, measuring them again to confirm")
        by_key = {as_item(item).key: item for item in items}
        confirm_kind = "confirm" if kind == "night" else f"{kind}-confirm"
        flagged = [s.model for s in verdicts]
        common = kind == "night" and thresholds.correction == "common"
        references = [k for k in keys if k not in flagged and self._ok_tonight(backend, k)][:CONFIRM_REFERENCES]
        again, failure = self._profile(backend, [by_key[k] for k in flagged + (references if common else [])],
                                       f"farm-{self.job.run_id}-{confirm_kind}")  # fmt: skip
        for model in flagged + (references if common else []):
            self._record(again, backend, model, confirm_kind, failure)
        if common:
            self._record_factor(backend, references, thresholds, confirm_kind)
        for series, first in verdicts.items():
            second = self._judge(series, confirm_kind, thresholds)
            if second is None or second.kind != first.kind:
                self.log(f"{series}: {first.kind} of {first.change:+.1%} not confirmed")
                continue
            done.confirmed[series] = second
            if kind == "night":
                done.alerts.append(self._alert(series, first, second))
        return done

    def _ok_tonight(self, backend: str, key: str) -> bool:
        rows = self.history.results(SeriesKey(self.device.name, backend, key), run_id=self.job.run_id)
        return any(r["status"] == "ok" for r in rows)

    def _profile(self, backend: str, items: Sequence[Any], table_name: str) -> tuple[LookupTable, str | None]:
        """Measure what the run's table lacks; the table, and why the measurement failed (the runner
        crashed, an export failed: the result of every item left without a row, never retried)."""
        m = self.plan.measuring
        measuring = Measuring(m.get("threads"), _mask(m.get("core_mask")), m.get("governor"), m.get("power"))
        request = ProfileRequest.of(
            self.device,
            backend,
            measuring,
            specs=list(items),
            space="farm",
            table_name=table_name,
            tables_root=work_root(self.plan),
            settings=self.plan.settings(),
        )
        where = f"{self.device.name}/{backend}"

        def progress(phase: str, done: int, total: int, _label: str) -> None:
            if phase == "measure" and done:
                self.log(f"{where}: {table_name.rsplit('-', 1)[-1]} {done}/{total} measured")

        try:
            return profile(request, progress, transport=self.transport, facts=self.facts).table, None
        except (RunnerError, ExportError) as err:
            self.log(f"{self.device.name}/{backend}: measurement failed: {err.message}")
            return LookupTable.at(request.tables_root, request.table_id), f"{type(err).__name__}: {err.message}"

    def _record(
        self, table: LookupTable, backend: str, key: str, kind: str, failure: str | None
    ) -> tuple[int, str | None]:
        """Copy one table row into the database (once); (1 if written now, the row's error if it failed).
        A key without a row gets ``failure`` as its error (None: nothing to record)."""
        series = SeriesKey(self.device.name, backend, key)
        row = table.rows().get(key) if table.exists else None
        if row is None:
            if failure is None:
                return 0, None
            row = {"status": "error", "error": failure}
        if row.get("status") != "ok":
            error = str(row.get("error") or row.get("status"))
            written = self.history.add_result(
                self.job.run_id,
                series,
                kind,
                status="error",
                error_class="measurement",
                error=error,
                measured_at=row.get("measured_at"),
            )
            return int(written), error
        samples = [s / 1000.0 for s in table.samples(key).get("samples_us") or []]
        factor = row.get("speed_factor")
        raw = float(statistics.median(samples)) if samples else row.get("raw_median_ms")
        written = self.history.add_result(
            self.job.run_id,
            series,
            kind,
            status="ok",
            samples=samples,
            median=raw / factor if raw is not None and factor else raw,
            raw_median=raw,
            ci_rel=row.get("ci_rel"),
            n=row.get("n"),
            speed_factor=row.get("speed_factor"),
            fingerprint_hash=self.fingerprint_hash,
            measured_at=row.get("measured_at"),
        )
        return int(written), None

    def _night_speed(self, backend: str, keys: Sequence[str], thresholds: Thresholds) -> list[int]:
        """Record tonight's common factor (hwlab/farm/baseline.py) as the night-speed series, and judge that
        series raw: a change of the whole device. Its evidence is every series of the night, so there is
        nothing to measure again: a flag is an alert at once."""
        series = night_speed_key(self.device.name, backend)
        factor, ratios = self._record_factor(backend, keys, thresholds, "night")
        if factor is None:
            return []
        verdict = self._judge(series, "night", replace(thresholds, correction="none"))
        if verdict is None or not verdict.flagged:
            return []
        return [self._alert(series, verdict, verdict, "none")]

    def _record_factor(
        self, backend: str, keys: Sequence[str], thresholds: Thresholds, kind: str
    ) -> tuple[float | None, list[float]]:
        """Compute and record the common factor of tonight's ``kind`` results over ``keys`` (a confirmation
        without enough references takes the night's)."""
        run = self.job.run_id
        factor, ratios = common_factor(self.history, self.device.name, backend, run, keys,
                                       thresholds.baseline_nights, thresholds.min_baseline_nights, kind)  # fmt: skip
        recorded = factor
        if recorded is None and kind != "night":
            recorded = night_factors(self.history, self.device.name, backend).get(run)
        self.history.add_result(run, night_speed_key(self.device.name, backend), kind, status="ok",
                                samples=ratios or [recorded or 1.0], median=recorded or 1.0,
                                raw_median=recorded or 1.0, n=len(ratios))  # fmt: skip
        return factor, ratios

    def _judge(self, series: SeriesKey, kind: str, thresholds: Thresholds) -> Verdict | None:
        """Tonight's ``kind`` result of the series against the nights before (since its baseline began)."""
        base_kind = "golden" if kind.startswith("golden") else "night"
        tonight = [r for r in self.history.results(series, run_id=self.job.run_id, kinds=(kind,)) if r["samples"]]
        if not tonight:
            return None
        correction = thresholds.correction
        factors = tonights = None
        if correction == "common":
            factors = night_factors(self.history, series.device, series.backend)
            tonights = (
                night_factors(self.history, series.device, series.backend, kind) if kind == "confirm" else factors
            )
        before = earlier_nights(self.history, series, self.job.run_id, base_kind, correction=correction,
                                factors=factors)  # fmt: skip
        return judge_night([n for _, n in before], night_of(tonight[0], correction, tonights), thresholds)

    def _alert(self, series: SeriesKey, first: Verdict, second: Verdict, correction: str | None = None) -> int:
        """A new alert for a confirmed change, or the open one of the same change (one alert per change);
        the step is located on the nights as they were judged (``correction``, default the plan's)."""
        still = self.history.open_alert(series, first.kind)
        if still is not None:
            self.log(f"{series}: still {first.kind} {first.change:+.1%} (alert #{still}, unacknowledged)")
            return still
        correction = correction or self.plan.thresholds.correction
        factors = night_factors(self.history, series.device, series.backend)
        before = earlier_nights(self.history, series, self.job.run_id, correction=correction, factors=factors)
        tonight = self.history.results(series, run_id=self.job.run_id, kinds=("night",))[0]
        nights = [n for _, n in before] + [night_of(tonight, correction, factors)]
        runs = [r for r, _ in before] + [self.job.run_id]
        step = step_night(nights)
        began = runs[step] if step is not None else self.job.run_id
        self.log(
            f"{series}: {first.kind} {first.change:+.1%} (confirmed {second.change:+.1%}, p={first.p:.1e}, "
            f"threshold {first.threshold:.1%}), began {began}"
        )
        return self.history.add_alert(
            self.job.run_id,
            series,
            kind=first.kind,
            change=first.change,
            p=first.p,
            threshold=first.threshold,
            noise=first.noise,
            began_run_id=began,
        )


def _mask(value: Any) -> tuple[int, ...] | str | None:
    return tuple(value) if isinstance(value, list) else value
