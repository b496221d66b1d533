"""Why the supernet shares weights within a layer: separate vs nested sharing, trained side by side.

For each sharing scheme, on the bundled digits at the search's defaults (32x32, width 0.25):

* sensitivity, at initialisation and after training: how similar a path's output features stay (linear CKA
  over a batch, 1.0 = the same up to rotation and scale) when one layer's choice is changed, against another
  random path;
* training with uniform single paths: wall time, last-epoch training accuracy, and the validation accuracy
  of unseen random paths after BN recalibration (mean ± std, min, max).

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
from hwlab.space.build import seeded_rng


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
    x = data.x_train[:256]

    sensitivities, results = [], []
    for sharing in SHARING:
        with seeded_rng(0):
            net = Supernet(space, sharing)
        sensitivities.append((sharing, "init", sensitivity(net, space, x, layers)))
        start = time.perf_counter()
        trained = train_supernet(net, data, TrainSettings(epochs=args.epochs), space.sample)
        seconds = time.perf_counter() - start
        sensitivities.append((sharing, "trained", sensitivity(net, space, x, layers)))
        scores = []
        for arch in paths:
            xs = (x for x, _ in batches(data.x_train, data.y_train, 128, torch.Generator().manual_seed(0)))
            recalibrate_bn(net, arch, xs, 5)
            scores.append(accuracy(net, data.x_val, data.y_val, arch))
        results.append((sharing, seconds, trained.last_accuracy, scores))

    names = list(sensitivities[0][2])
    print("feature similarity (linear CKA) of a path with one layer's choice changed, and with another path:")
    print(f"{'sharing':>9} {'when':>8} " + " ".join(f"{n:>20}" for n in names))
    for sharing, when, cka in sensitivities:
        print(f"{sharing:>9} {when:>8} " + " ".join(f"{cka[n]:>20.3f}" for n in names))
    print()
    print(f"uniform single-path training, {args.epochs} epochs; validation accuracy of {args.paths} unseen paths:")
    print(f"{'sharing':>9} {'train s':>8} {'train acc':>10} {'val acc mean ± std':>20} {'min':>7} {'max':>7}")
    for sharing, seconds, train_acc, scores in results:
        spread = f"{statistics.mean(scores):.1%} ± {statistics.stdev(scores):.1%}"
        print(f"{sharing:>9} {seconds:>8.0f} {train_acc:>10.1%} {spread:>20} {min(scores):>7.1%} {max(scores):>7.1%}")


if __name__ == "__main__":
    main()
