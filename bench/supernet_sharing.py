"""Why the supernet shares weights within a layer: separate vs nested sharing, trained side by side.

For each sharing scheme, on the bundled digits at the search's defaults (32x32, width 0.25):

* sensitivity at initialisation: how similar a path's output features stay (linear CKA over a batch, 1.0 =
  the same up to rotation and scale) when one early layer's choice is changed, against a fresh random path;
* the same supernet trained with uniform single paths: last-epoch training accuracy and the validation
  accuracy of unseen random paths after BN recalibration (mean ± std), and the wall time.

    .venv/bin/python bench/supernet_sharing.py [--epochs 30] [--paths 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from hwlab.search.bn import recalibrate_bn
from hwlab.search.data import batches, load_data
from hwlab.search.space import Arch, SearchSpace
from hwlab.search.supernet import SHARING, Supernet
from hwlab.search.train import TrainSettings, accuracy, train_supernet


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    ka, kb = a @ a.T, b @ b.T
    return float((ka * kb).sum() / (ka.norm() * kb.norm()))


@torch.no_grad()
def sensitivity(net: Supernet, space: SearchSpace, x: torch.Tensor, layers: list[int]) -> dict[str, float]:
    """CKA between a path's features and those of the path with one layer's choice changed (train-mode BN)."""
    net.train()
    base = space.sample(random.Random(1))
    reference = net.features(x, base)
    out = {}
    for layer in layers:
        choices = list(base.choices)
        choices[layer] = (choices[layer] + 1) % 4
        out[f"layer {layer} changed"] = linear_cka(reference, net.features(x, Arch(tuple(choices), base.scales)))
    out["another random path"] = linear_cka(reference, net.features(x, space.sample(random.Random(2))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=TrainSettings().epochs)
    parser.add_argument("--paths", type=int, default=10, help="random paths scored after training")
    args = parser.parse_args()
    data = load_data("digits", 32)
    space = SearchSpace.of(32, 0.25, data.num_classes)
    rng = random.Random(99)
    paths = [space.sample(rng) for _ in range(args.paths)]
    layers = [0, 4, 8, 12, 16]

    print(f"{'sharing':>9} " + " ".join(f"{name:>20}" for name in [f"layer {i} changed" for i in layers]))
    for sharing in SHARING:
        torch.manual_seed(0)
        cka = sensitivity(Supernet(space, sharing), space, data.x_train[:256], layers)
        print(f"{sharing:>9} " + " ".join(f"{v:>20.3f}" for k, v in cka.items() if k.startswith("layer"))
              + f"   (another random path: {cka['another random path']:.3f})")  # fmt: skip

    print()
    print(f"{'sharing':>9} {'train s':>8} {'train acc':>10} {'random paths, val acc':>24}")
    for sharing in SHARING:
        torch.manual_seed(0)
        net = Supernet(space, sharing)
        start = time.perf_counter()
        trained = train_supernet(net, data, TrainSettings(epochs=args.epochs), space.sample)
        seconds = time.perf_counter() - start
        scores = []
        for arch in paths:
            xs = (x for x, _ in batches(data.x_train, data.y_train, 128, torch.Generator().manual_seed(0)))
            recalibrate_bn(net, arch, xs, 5)
            scores.append(accuracy(net, data.x_val, data.y_val, arch))
        spread = f"{statistics.mean(scores):.1%} ± {statistics.stdev(scores):.1%}"
        print(f"{sharing:>9} {seconds:>8.0f} {trained.last_accuracy:>10.1%} {spread:>24}")


if __name__ == "__main__":
    main()
