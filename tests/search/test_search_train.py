"""Training: the supernet learns the digits, an interrupted run resumes to the same weights, data sources."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwlab.errors import DataError, HwlabError
from hwlab.search.bn import recalibrate_bn
from hwlab.search.data import load_data
from hwlab.search.space import SearchSpace
from hwlab.search.supernet import Supernet
from hwlab.search.train import TrainSettings, accuracy, load_checkpoint, train_supernet
from hwlab.space.build import seeded_rng

SPACE = SearchSpace.of(input_size=16)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_data("digits", size=16, seed=0)


def test_digits_are_split_stratified_and_standardised(digits) -> None:  # type: ignore[no-untyped-def]
    assert digits.x_train.shape[1:] == (3, 16, 16) and digits.num_classes == 10
    assert len(digits.y_train) + len(digits.y_val) == 1797
    assert set(digits.y_val.tolist()) == set(range(10))
    assert abs(float(digits.x_train.mean())) < 1e-3 and abs(float(digits.x_train.std()) - 1) < 0.05
    assert not set(map(bytes, digits.x_train.numpy()[:50])) & set(map(bytes, digits.x_val.numpy()))


def test_interrupted_supernet_training_resumes_to_the_same_weights(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = TrainSettings(epochs=2, batch_size=128, lr=0.05, seed=3)

    def fresh() -> Supernet:
        with seeded_rng(0):
            return Supernet(SPACE)

    whole = fresh()
    done = train_supernet(whole, digits, settings, SPACE.sample, tmp_path / "whole.pt")
    assert done.resumed_from == 0 and np.isfinite(done.last_loss)

    class Stop(Exception):
        pass

    def stop_in_second_epoch(phase: str, step: int, total: int, label: str) -> None:
        if step > total // 2:
            raise Stop

    cut = fresh()
    with pytest.raises(Stop):
        train_supernet(cut, digits, settings, SPACE.sample, tmp_path / "cut.pt", stop_in_second_epoch)
    assert load_checkpoint(tmp_path / "cut.pt")["epoch"] == 1
    resumed = fresh()
    again = train_supernet(resumed, digits, settings, SPACE.sample, tmp_path / "cut.pt")
    assert again.resumed_from == 1
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # A finished checkpoint is reused as it is; other settings are refused, not silently mixed.
    assert train_supernet(fresh(), digits, settings, SPACE.sample, tmp_path / "whole.pt").resumed_from == 2
    with pytest.raises(HwlabError, match="other settings"):
        train_supernet(fresh(), digits, TrainSettings(epochs=3), SPACE.sample, tmp_path / "whole.pt")
    arch = SPACE.sample(random.Random(0))
    assert 0.0 <= accuracy(whole, digits.x_val, digits.y_val, arch) <= 1.0


def test_a_checkpoint_holding_code_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(HwlabError, match="cannot load checkpoint"):
        load_checkpoint(path)


def test_user_data_from_npz_and_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8), y=np.arange(40) % 4)
    data = load_data(tmp_path / "d.npz", size=16, val_fraction=0.25)
    assert data.num_classes == 4 and data.x_train.shape[1:] == (3, 16, 16) and len(data.y_val) == 8
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    folder = load_data(tmp_path / "imgs", size=16)
    assert folder.num_classes == 2 and len(folder.y_train) + len(folder.y_val) == 10
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 8, 8)))
    with pytest.raises(DataError, match="not arrays x and y"):
        load_data(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="no data at"):
        load_data(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((0, 8, 8)), np.zeros(0, dtype=int), "holds 0 labelled images"),
        (np.zeros((4, 8, 8)), np.array([0, 1, 0, 10**9]), "the largest is 1000000000 but 3 classes have images"),
        (np.zeros((4, 8, 8)), np.array([0, 1, -1, 1]), "label -1 is negative"),
        (np.zeros((6, 8, 8)), np.zeros(4, dtype=int), "same number of samples"),
    ],
)
def test_inconsistent_data_files_are_refused_before_training(tmp_path: Path, x, y, message) -> None:  # type: ignore[no-untyped-def]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match=message):
        load_data(tmp_path / "d.npz", size=8)


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / label / "0.png")
    (tmp_path / "b" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"1\.png cannot be read as an image"):
        load_data(tmp_path, size=8)


@pytest.mark.slow  # 40 s of training (bench/supernet_sharing.py measures it at length); run with -m slow
def test_uniform_path_training_learns_the_digits(digits) -> None:  # type: ignore[no-untyped-def]
    """The point of the supernet: paths never trained as such score well above chance (10%)."""
    with seeded_rng(0):
        net = Supernet(SPACE)
    result = train_supernet(net, digits, TrainSettings(epochs=15), SPACE.sample)
    assert result.last_accuracy > 0.3
    rng = random.Random(99)
    for arch in (SPACE.sample(rng) for _ in range(3)):
        recalibrate_bn(net, arch, (digits.x_train[i : i + 128] for i in range(0, 640, 128)), 5)
        assert accuracy(net, digits.x_val, digits.y_val, arch) > 0.25
