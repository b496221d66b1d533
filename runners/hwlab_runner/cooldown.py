"""Waiting for the device to cool down before a model, so each starts from a similar thermal state."""

from __future__ import annotations

import time
from typing import Callable

from . import sysinfo

POLL_S = 0.5


def cool_down(
    max_temp_c: float | None,
    pause_s: float,
    timeout_s: float,
    root: str = "/",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Wait until the hottest thermal zone is below ``max_temp_c``, then sleep ``pause_s``.

    The wait polls every 0.5 s and gives up after ``timeout_s`` (the model is
    then measured anyway; its ``temp_c_before`` shows it started hot). Without a
    limit or a readable zone there is no wait. Returns the seconds spent, pause included.
    """
    start = clock()
    if max_temp_c is not None:
        while True:
            temp = sysinfo.max_temp_c(root)
            if temp is None or temp < max_temp_c or clock() - start >= timeout_s:
                break
            sleep(POLL_S)
    if pause_s > 0:
        sleep(pause_s)
    return clock() - start
