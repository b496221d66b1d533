"""A simulated machine whose state changes by round: drift with known, exact figures."""

from __future__ import annotations

from collections.abc import Callable


class Machine:
    """A simulated machine: each call of a model advances the clock by its base time times the speed of
    the current round raised to the model's sensitivity (2: a model of tiny kernels, which a busy
    machine slows twice as much in log terms), so every timing is an exact integer number of nanoseconds."""

    def __init__(self, speeds: list[float]) -> None:
        self.now = 0
        self.speeds = speeds
        self.speed = speeds[0]

    def clock(self) -> int:
        return self.now

    def model(self, base_ns: int, sensitivity: float = 1.0) -> Callable[[], None]:
        def run() -> None:
            self.now += round(base_ns * self.speed**sensitivity)

        return run

    def on_round(self, n: int) -> None:
        self.speed = self.speeds[n - 1]
