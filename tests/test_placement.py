"""Core masks from the device's clusters; threads capped at the cores they are pinned to."""

from __future__ import annotations

import pytest

from hwlab.errors import HwlabError
from hwlab.measure.placement import place

RK3399 = {  # as the runner's facts report an RK3399: 4 x A53 at 1.416 GHz, 2 x A72 at 1.8 GHz
    "online_cpus": [0, 1, 2, 3, 4, 5],
    "affinity": [0, 1, 2, 3, 4, 5],
    "clusters": [{"max_khz": 1416000, "cpus": [0, 1, 2, 3]}, {"max_khz": 1800000, "cpus": [4, 5]}],
}


def test_big_and_little_clusters() -> None:
    assert place("big", 2, RK3399).core_mask == (4, 5)
    little = place("little", 4, RK3399)
    assert little.core_mask == (0, 1, 2, 3) and little.notes == ("core mask: little cluster (1.42 GHz)",)


def test_threads_capped_at_the_mask() -> None:
    with pytest.warns(UserWarning, match="threads capped from 4 to 2"):
        placed = place("big", 4, RK3399)
    assert placed.threads == 2 and placed.notes[-1] == "threads capped from 4 to 2: the mask has 2 CPUs"
    with pytest.warns(UserWarning, match="threads capped from 8 to 6"):
        assert place(None, 8, RK3399).threads == 6


def test_explicit_mask_must_exist() -> None:
    assert place((0, 5), 2, RK3399).core_mask == (0, 5)
    with pytest.raises(HwlabError, match=r"names CPUs \[7\] that the device does not have"):
        place((5, 7), 1, RK3399)


def test_no_clusters_falls_back_to_all_cpus_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="no CPU clusters"):
        placed = place("big", 1, {"online_cpus": [0, 1], "clusters": []})
    assert placed.core_mask is None and placed.notes == ("core mask: big (unresolved: no cpufreq)",)
