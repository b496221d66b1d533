"""Sampling a power sensor while a model runs, and the energy of one inference.

A background thread reads the sensor at ``sample_hz`` only during the timed
window, so warm-up and loading never dilute the mean. Power sensors are
averaged over time (trapezoids between readings, the first taken at start and
the last at stop); energy counters (RAPL) give the mean from the counter's
difference between start and stop, and the readings in between catch each
wrap-around. The clock and the wait are injectable so the arithmetic can be
tested with fake time and exact expectations.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Tuple

from .power import Sensor, choose

Clock = Callable[[], float]  # seconds
Wait = Callable[[float], bool]  # waits up to the timeout in seconds; True once told to stop
Reading = Tuple[float, float]  # (seconds, W or µJ)

POWER_DIGITS = 6  # W: µW resolution
ENERGY_DIGITS = 9  # mJ: pJ resolution, for operators that take microseconds
DEFAULT_SAMPLE_HZ = 50.0
DEFAULT_IDLE_S = 1.0


@dataclass(frozen=True)
class Window:
    """What a sensor reported over one window. ``mean_w`` is None when it could not be read."""

    mean_w: float | None
    samples: int
    duration_s: float
    sample_hz: float
    read_errors: int = 0
    error: str | None = None
    details: dict = field(default_factory=dict)


def mean_power_w(readings: Sequence[Reading]) -> float | None:
    """Time-weighted mean of (s, W) readings; their plain mean when they span no time."""
    if not readings:
        return None
    span = readings[-1][0] - readings[0][0]
    if span <= 0:
        return sum(w for _, w in readings) / len(readings)
    area = sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(readings, readings[1:]))
    return area / span


def counter_power_w(readings: Sequence[Reading], wrap_uj: int | None) -> tuple[float | None, int]:
    """(mean W, wrap-arounds) from (s, µJ) counter readings.

    A counter that went down wrapped once at ``wrap_uj`` (``max_energy_range_uj``):
    the energy of that interval is ``wrap_uj - before + after``. With no known
    range such an interval is left out, time and energy both.
    """
    energy_uj = 0.0
    seconds = 0.0
    wraps = 0
    for (t0, e0), (t1, e1) in zip(readings, readings[1:]):
        delta = e1 - e0
        if delta < 0:
            if wrap_uj is None:
                continue
            delta += wrap_uj
            wraps += 1
        energy_uj += delta
        seconds += t1 - t0
    if seconds <= 0:
        return None, wraps
    return energy_uj / 1e6 / seconds, wraps


class PowerSampler:
    """Reads one sensor every 1/``sample_hz`` s on a thread, from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        sensor: Sensor,
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Clock = time.monotonic,
        wait: Wait | None = None,
    ) -> None:
        self.sensor = sensor
        self.period = 1.0 / sample_hz
        self._clock = clock
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._thread: threading.Thread | None = None
        self._readings: list[Reading] = []
        self._errors = 0
        self._first_error: str | None = None
        self._window: Window | None = None

    def _take(self) -> None:
        now = self._clock()
        try:
            value = float(self.sensor.read_uj() if self.sensor.counter else self.sensor.read_w())
        except (OSError, ValueError) as e:
            self._errors += 1
            if self._first_error is None:
                self._first_error = f"{type(e).__name__}: {e}"
            return
        self._readings.append((now, value))

    def _loop(self) -> None:
        due = self._clock() + self.period
        while not self._wait(max(0.0, due - self._clock())):
            self._take()
            due += self.period
            now = self._clock()
            if due < now:  # fell behind (a slow read): skip ahead rather than burst
                due = now + self.period

    def start(self) -> None:
        """Take the first reading and start the thread."""
        self.sensor.begin()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="hwlab-power", daemon=True)
        self._thread.start()

    def stop(self) -> Window:
        """Stop the thread, take the last reading and summarize; calling it again returns the same."""
        if self._window is None:
            self._stopping.set()
            if self._thread is not None:
                self._thread.join()
            self._take()
            self._window = self._summarize()
        return self._window

    def _summarize(self) -> Window:
        readings = self._readings
        span = readings[-1][0] - readings[0][0] if readings else 0.0
        hz = (len(readings) - 1) / span if span > 0 else 0.0
        details = dict(self.sensor.details())
        if self.sensor.counter:
            mean, wraps = counter_power_w(readings, self.sensor.wrap_uj())
            details.update(wraps=wraps)
        else:
            mean = mean_power_w(readings)
        error = None if mean is not None else self._first_error or "too few readings"
        return Window(mean, len(readings), span, hz, self._errors, error, details)


def idle_baseline(
    sensor: Sensor,
    idle_s: float,
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    sleep: Callable[[float], None] = time.sleep,
) -> Window:
    """The sensor's mean while the runner does nothing for ``idle_s`` seconds."""
    sampler = PowerSampler(sensor, sample_hz)
    sampler.start()
    try:
        sleep(idle_s)
    finally:
        window = sampler.stop()
    return window


@dataclass(frozen=True)
class PowerPlan:
    """The job's power measurement: the sensor (None with a reason) and its idle baseline."""

    sensor: Sensor | None
    reason: str | None = None
    sample_hz: float = DEFAULT_SAMPLE_HZ
    idle: Window | None = None

    def unavailable(self) -> dict[str, Any]:
        """The result's ``power`` object when there are no numbers to give."""
        return {"sensor": self.sensor.name if self.sensor else None, "reason": self.reason}


def plan_power(
    root: str,
    wanted: Sequence[str] | None,
    sample_hz: float = DEFAULT_SAMPLE_HZ,
    idle_s: float = DEFAULT_IDLE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> PowerPlan:
    """Choose the sensor and measure the idle baseline, once per job, before the first model."""
    sensor, reason = choose(root, wanted)
    if sensor is None:
        return PowerPlan(None, reason, sample_hz)
    if idle_s <= 0:
        return PowerPlan(sensor, None, sample_hz)
    idle = idle_baseline(sensor, idle_s, sample_hz, sleep)
    if idle.mean_w is None:
        return PowerPlan(sensor, f"reading {sensor.name} failed during the idle baseline: {idle.error}", sample_hz)
    return PowerPlan(sensor, None, sample_hz, idle)


def power_result(plan: PowerPlan, window: Window, mean_us: float) -> dict[str, Any]:
    """The result line's ``power`` object for one model.

    ``energy_mj`` is ``power_w`` × the mean time of one call (``summary.mean_us``),
    both as written in the line, so a host recomputing it gets the same number;
    ``active_w`` is what the model adds above idle and ``dynamic_energy_mj`` its energy.
    """
    sensor = plan.sensor
    assert sensor is not None
    out: dict[str, Any] = {
        "sensor": sensor.name,
        "kind": sensor.kind,
        "description": sensor.description,
        "sample_hz": round(window.sample_hz, 1),
        "samples": window.samples,
        "window_s": round(window.duration_s, 6),
        "read_errors": window.read_errors,
    }
    if window.mean_w is None:
        out["reason"] = f"reading {sensor.name} failed during the window: {window.error}"
        return out
    power_w = round(window.mean_w, POWER_DIGITS)
    idle_w = round(plan.idle.mean_w, POWER_DIGITS) if plan.idle and plan.idle.mean_w is not None else None
    active_w = round(power_w - idle_w, POWER_DIGITS) if idle_w is not None else None
    out.update(
        idle_w=idle_w,
        active_w=active_w,
        power_w=power_w,
        energy_mj=round(power_w * mean_us / 1000.0, ENERGY_DIGITS),
        dynamic_energy_mj=round(active_w * mean_us / 1000.0, ENERGY_DIGITS) if active_w is not None else None,
        details=window.details,
    )
    return out
