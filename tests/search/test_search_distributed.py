"""Supernet training under torch's own launcher (torchrun): two CPU processes, gloo, one shared result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hwlab.search.data import load_data
from hwlab.search.train import load_checkpoint

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from hwlab.search.data import load_data
    from hwlab.search.space import SearchSpace
    from hwlab.search.supernet import Supernet
    from hwlab.search.train import TrainSettings, train_supernet

    out, rank = Path(sys.argv[1]), os.environ["RANK"]
    space = SearchSpace.of(input_size=16)
    drawn = []

    def sampler(rng):
        arch = space.sample(rng)
        drawn.append(list(arch.choices))
        return arch

    torch.manual_seed(0)
    net = Supernet(space)
    result = train_supernet(net, load_data("digits", 16), TrainSettings(epochs=1), sampler, out / "supernet.pt")
    torch.save(dict(net.named_parameters()), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({"paths": drawn, "loss": result.last_loss}))
    """
)


@pytest.mark.slow  # two training processes on two cores; run with -m slow
def test_torchrun_trains_one_supernet_on_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Each process takes half of every batch of 2 x 64, and draws its own path for each step.
    steps = -(-len(load_data("digits", 16).y_train) // 128)
    assert [len(r["paths"]) for r in ranks] == [steps, steps] and ranks[0]["paths"] != ranks[1]["paths"]
    # Gradients were averaged across processes: both end with the same weights, which rank 0 checkpointed.
    # (BN running statistics are per process until DDP broadcasts rank 0's at the next forward.)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = load_checkpoint(tmp_path / "supernet.pt")
    assert saved["epoch"] == 1
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, msg=name)
        torch.testing.assert_close(saved["model"][name], value, msg=name)
