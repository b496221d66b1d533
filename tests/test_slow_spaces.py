"""Heavy end-to-end checks (`pytest -m slow`): whole spaces at full size on every installed backend."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.deploy import Deployer
from hwlab.measure.runtimes import available_backends
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.space import SposConfig, get_space, spos_arch_ops
from hwlab.tables import LookupTable
from hwlab.transport import LocalTransport

pytestmark = pytest.mark.slow

QUICK = stopping(min_time_s=0.02, max_time_s=0.5, min_count=5)


def test_full_spos_space_serves_every_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profile SPOS at 224 with two channel scales; any architecture's ops are then all in the table."""
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    params = {"input_size": 224, "channel_scales": (0.6, 1.0)}
    specs = get_space("spos", **params)
    transport = LocalTransport()
    backends = available_backends(Deployer(transport, LOCAL_DEFAULT).facts(), LOCAL_DEFAULT)
    assert "onnxruntime" in backends
    config = SposConfig(input_size=224, channel_scales=(0.6, 1.0))
    rng = random.Random(0)
    for backend in backends:
        request = ProfileRequest(
            device=LOCAL_DEFAULT, backend=backend, specs=specs, space="spos", space_params=params,
            tables_root=tmp_path / "t", settings=QUICK,
        )  # fmt: skip
        report = profile(request, transport=transport)
        assert report.errors == [] and len(report.measured) == len(specs)
        table = LookupTable(report.table.folder)
        for _ in range(50):
            choices = [rng.randrange(4) for _ in range(20)]
            scales = [rng.choice((0.6, 1.0)) for _ in range(20)]
            ops = spos_arch_ops(config, choices, scales)
            assert sum(table.latency_ms(op.key) for op in ops) > 0
