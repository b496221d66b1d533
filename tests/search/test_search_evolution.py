"""Search on a tiny supernet with latency from a real lookup table of the tiny space, measured here.

The table is profiled with onnxruntime on the local device, so every latency the search sees was measured;
the searches must return only architectures within the budget, never score one twice, and the random
baseline must spend the same number of evaluations.
"""

from __future__ import annotations

import random
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hwlab.cli import main
from hwlab.errors import BudgetUnmet, HwlabError, TableError
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.search.data import load_data
from hwlab.search.evolution import Constraints, EvolutionSettings, check_reachable, evolution_search, random_search
from hwlab.search.job import ScoreSettings, SearchPlan, supernet_scorer, write_outputs
from hwlab.search.latency import TableLatency
from hwlab.search.space import SearchSpace, arch_key
from hwlab.search.supernet import Supernet
from hwlab.space import spos_config_ops
from hwlab.space.build import seeded_rng
from hwlab.tables import LookupTable, TableId

SPACE = SearchSpace.of(input_size=16)
SMALL = EvolutionSettings(population=12, iterations=4, parents=4, mutations=5, crossovers=5)


@pytest.fixture(scope="module")
def table_latency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TableLatency]:
    home = tmp_path_factory.mktemp("evo")
    mp = pytest.MonkeyPatch()
    mp.setenv("HWLAB_CACHE", str(home / "cache"))
    request = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=spos_config_ops(SPACE.config),
                             space="spos", tables_root=home / "tables",
                             settings=stopping(min_time_s=0.02, max_time_s=0.2, min_count=10))  # fmt: skip
    report = profile(request)
    assert not report.errors
    yield TableLatency(SPACE, report.table)
    mp.undo()


@pytest.fixture(scope="module")
def scorer():  # type: ignore[no-untyped-def]
    data = load_data("digits", size=16)
    with seeded_rng(0):
        supernet = Supernet(SPACE)
    return supernet_scorer(supernet, data, ScoreSettings(recal_batches=1, recal_batch_size=64))


def test_table_latency_is_the_sum_of_measured_ops(table_latency: TableLatency) -> None:
    from hwlab.space import spos_arch_ops

    arch = SPACE.sample(random.Random(0))
    expected = sum(table_latency.ms[op.key] for op in spos_arch_ops(SPACE.config, arch.choices, arch.scales))
    assert table_latency([arch])[0] == pytest.approx(expected)


def test_searches_return_only_architectures_within_the_budget(  # type: ignore[no-untyped-def]
    table_latency: TableLatency, scorer, tmp_path: Path
) -> None:
    sample = [SPACE.sample(random.Random(i)) for i in range(300)]
    budget = float(np.quantile(table_latency(sample), 0.3))  # most of the space is over budget
    constraints = Constraints(latency_ms=budget)
    evo = evolution_search(SPACE, table_latency, scorer, constraints, SMALL, seed=1)
    assert evo.rejected > 0
    assert all(c.latency_ms <= budget for c in evo.evaluated)
    assert table_latency([evo.best.arch])[0] <= budget
    keys = [arch_key(c.arch) for c in evo.evaluated]
    assert len(keys) == len(set(keys))
    assert len(evo.history) == SMALL.iterations and evo.history == sorted(evo.history)

    rnd = random_search(SPACE, table_latency, scorer, len(evo.evaluated), constraints, seed=1)
    assert len(rnd.evaluated) == len(evo.evaluated)
    assert all(c.latency_ms <= budget for c in rnd.evaluated)

    plan = SearchPlan(SPACE, constraints=constraints)
    files = write_outputs(tmp_path / "out", plan, evo, table_latency.name)
    assert files["plot"].stat().st_size > 0 and files["arch"].exists()
    front = evo.pareto
    assert all(a.latency_ms <= b.latency_ms and a.accuracy < b.accuracy for a, b in zip(front, front[1:], strict=False))


def test_constraints_on_macs_and_params_reject_too(table_latency: TableLatency, scorer) -> None:  # type: ignore[no-untyped-def]
    sample = [SPACE.sample(random.Random(i)) for i in range(200)]
    costs = np.array([SPACE.cost(a) for a in sample])
    macs, params = (int(np.quantile(costs[:, i], 0.5)) for i in range(2))
    result = random_search(SPACE, table_latency, scorer, 10, Constraints(macs=macs, params=params), seed=2)
    assert all(c.macs <= macs and c.params <= params for c in result.evaluated)
    assert result.rejected > 0


def test_an_impossible_budget_names_the_fastest_candidate_drawn(table_latency: TableLatency, scorer) -> None:  # type: ignore[no-untyped-def]
    first = float(table_latency([SPACE.sample(random.Random(3))])[0])  # what random_search(seed=3) draws first
    budget = first / 10
    with pytest.raises(HwlabError, match=r"fastest of [\d,]+ drawn is predicted at [\d.]+ ms") as err:
        random_search(SPACE, table_latency, scorer, 5, Constraints(latency_ms=budget), seed=3, max_draws=64)
    fastest = float(re.search(r"at ([\d.]+) ms", str(err.value)).group(1))
    assert budget < fastest <= first + 1e-3


def test_an_impossible_budget_stops_evolution_and_its_check_with_the_fastest_named(
    table_latency: TableLatency, scorer
) -> None:  # type: ignore[no-untyped-def]
    sample = [SPACE.sample(random.Random(i)) for i in range(100)]
    budget = float(min(table_latency(sample))) / 10  # nothing in the space is that fast
    settings = EvolutionSettings(population=8, iterations=2, parents=2, mutations=2, crossovers=2, max_draws=64)
    for attempt in (
        lambda: evolution_search(SPACE, table_latency, scorer, Constraints(latency_ms=budget), settings, seed=4),
        lambda: check_reachable(SPACE, table_latency, Constraints(latency_ms=budget), seed=4, max_draws=64),
    ):
        with pytest.raises(BudgetUnmet, match=r"the fastest of [\d,]+ drawn is predicted at [\d.]+ ms"):
            attempt()
    reachable = check_reachable(SPACE, table_latency, Constraints(latency_ms=float(max(table_latency(sample)))))
    assert reachable.latency_ms <= float(max(table_latency(sample)))


def test_an_incomplete_table_names_the_exact_profile_command_that_completes_it(
    table_latency: TableLatency, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    source = LookupTable(Path(table_latency.name.removeprefix("table ")))
    copy = LookupTable.at(tmp_path / "t", TableId("local", "onnxruntime", "spos-16"))
    shutil.copytree(source.folder, copy.folder)
    dropped = next(iter(copy.keys()))
    copy.drop({dropped})
    with pytest.raises(TableError, match="lacks 1 of the space's") as err:
        TableLatency(SPACE, LookupTable(copy.folder))
    command = err.value.hint.removeprefix("profile this space first: ")
    argv = shlex.split(command)
    assert argv[:2] == ["hwlab", "profile"]
    assert main([*argv[1:], "--min-time", "0.01", "--max-time", "0.1", "--min-count", "5"]) == 0
    assert LookupTable(copy.folder).keys() == source.keys()
    TableLatency(SPACE, LookupTable(copy.folder))  # complete now
