"""The search space: uniform sampling, mutation and crossover stay inside it, the architecture file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from hwlab.errors import HwlabError, SpaceError
from hwlab.search.record import ArchRecord
from hwlab.search.sampling import LatencyBinSampler
from hwlab.search.space import Arch, SearchSpace
from hwlab.space import SPOS_CHANNEL_SCALES, SPOS_NUM_LAYERS

SPACE = SearchSpace.of(input_size=16, channel_search=True)


def test_sampling_is_uniform_over_choices_and_scales() -> None:
    rng = random.Random(0)
    draws = [SPACE.sample(rng) for _ in range(4000)]
    choices = np.array([a.choices for a in draws])
    scales = np.array([[SPOS_CHANNEL_SCALES.index(s) for s in a.scales] for a in draws])
    for layer in range(SPOS_NUM_LAYERS):
        # Uniform: a chi-square test per layer does not reject at the 0.1% level.
        assert chisquare(np.bincount(choices[:, layer], minlength=4)).pvalue > 1e-3
        assert chisquare(np.bincount(scales[:, layer], minlength=len(SPOS_CHANNEL_SCALES))).pvalue > 1e-3
    # Layers are drawn independently: choices of two layers agree about a quarter of the time.
    assert abs(np.mean(choices[:, 0] == choices[:, 1]) - 0.25) < 0.03


def test_mutation_and_crossover_stay_in_the_space() -> None:
    rng = random.Random(1)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    changed = []
    for _ in range(500):
        m = SPACE.mutate(a, rng, 0.1)
        SPACE.check(m)
        changed.append(sum(x != y for x, y in zip(m.choices, a.choices, strict=True)))
        c = SPACE.crossover(a, b, rng)
        SPACE.check(c)
        for i in range(SPOS_NUM_LAYERS):  # each layer's genes come together from one parent
            assert (c.choices[i], c.scales[i]) in ((a.choices[i], a.scales[i]), (b.choices[i], b.scales[i]))
    # A gene is redrawn with p = 0.1 and lands on a new value 3/4 of the time: 20 * 0.1 * 0.75 = 1.5 changes.
    assert 1.2 < np.mean(changed) < 1.8


def test_mutation_without_channel_search_keeps_scales_at_one() -> None:
    space = SearchSpace.of(input_size=16)
    rng = random.Random(2)
    arch = space.sample(rng)
    for _ in range(50):
        arch = space.mutate(arch, rng, 0.5)
        assert set(arch.scales) == {1.0}


def test_arch_rejects_bad_genes() -> None:
    with pytest.raises(SpaceError, match="20 choices"):
        Arch((0,) * 19, (1.0,) * 19)
    with pytest.raises(SpaceError, match="0..3"):
        Arch((4,) + (0,) * 19, (1.0,) * 20)
    with pytest.raises(SpaceError, match="scale 0.3"):
        SPACE.check(Arch((0,) * 20, (0.3,) * 20))


def test_latency_bin_sampler_visits_every_bin_evenly() -> None:
    space = SearchSpace.of(input_size=16)

    def macs(archs: list[Arch]) -> np.ndarray:  # a deterministic cost with a spread, standing in for latency
        return np.array([space.cost(a)[0] for a in archs], dtype=float)

    sampler = LatencyBinSampler(space, macs, bins=4, probe=400, seed=0)
    rng = random.Random(3)
    counts = np.bincount([sampler.bin_of(sampler(rng)) for _ in range(400)], minlength=4)
    assert chisquare(counts).pvalue > 1e-3
    with pytest.raises(HwlabError, match="at least 2"):
        LatencyBinSampler(space, macs, bins=1)


def test_arch_record_round_trips_and_names_bad_files(tmp_path: Path) -> None:
    arch = SPACE.sample(random.Random(4))
    path = ArchRecord(SPACE, arch, {"search": {"latency_budget_ms": 1.5}}).save(tmp_path / "a" / "arch.json")
    back = ArchRecord.load(path)
    assert back.arch == arch and back.space == SPACE and back.extra["search"]["latency_budget_ms"] == 1.5
    (tmp_path / "bad.json").write_text(json.dumps({"choices": [0] * 20}))
    with pytest.raises(HwlabError, match="not an architecture file"):
        ArchRecord.load(tmp_path / "bad.json")
    with pytest.raises(HwlabError, match="no architecture file"):
        ArchRecord.load(tmp_path / "missing.json")
