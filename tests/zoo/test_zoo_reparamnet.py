"""The reparamnet family: seeded draws of both forms, every block and dynamic conv, a deploy form that is the
conversion of its train form with non-trivial BN, and graphs the predictor splits into known kernels."""

from __future__ import annotations

import functools
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from hwlab.predictors.graph import module_kernels
from hwlab.predictors.kernels import FusionRules
from hwlab.reparam import RepBlock, check_equivalence, reparam
from hwlab.reparam.dynamic import CondConv, SEConv, WeightNetConv
from hwlab.reparam.nets import randomise_bn
from hwlab.space.build import seed_of
from hwlab.zoo import MAX_MACS, MIN_MACS, count_macs_params, reparamnet_like, sample_family, zoo_model
from hwlab.zoo import reparamnet as family
from hwlab.zoo.model import seeded_module


def test_same_seed_same_names_and_both_forms_drawn() -> None:
    models = sample_family("reparamnet", 30, seed=5)
    assert [m.name for m in models] == [m.name for m in sample_family("reparamnet", 30, seed=5)]
    assert all(MIN_MACS <= m.macs <= MAX_MACS and m.name.startswith("reparamnet-r") for m in models)
    assert {m.config["form"] for m in models} == {"train", "deploy"}
    blocks = Counter((kind, act) for m in models for s in m.config["stages"] for kind, act in s["blocks"])
    assert set(blocks) == {(kind, act) for kind in family.KINDS for act in family.ACTS}
    dynamic = {s["dynamic"] for m in models for s in m.config["stages"]}
    assert dynamic == {None, *family.DYNAMIC}
    assert all(len(s["blocks"]) == s["depth"] and s["width"] % 8 == 0 for m in models for s in m.config["stages"])


def test_the_name_says_the_form_each_block_and_the_dynamic_conv() -> None:
    config = {"input_size": 64, "form": "deploy", "stages": [
        {"width": 32, "depth": 1, "stride": 2, "blocks": [["repvgg", "frelu"]], "dynamic": None},
        {"width": 64, "depth": 3, "stride": 2, "blocks": [["repvgg", "relu"], ["acb", "frelu"], ["conv", "relu"]],
         "dynamic": "weightnet"},
    ]}  # fmt: skip
    assert family.config_name(config) == "reparamnet-r64-deploy-c32s2_rf-c64s2_r_af_c_wn"
    train = {**config, "form": "train"}
    # Train form: every branch's conv (3x3 + 1x1; ACNet's 3x3 + 1x3 + 3x1); deploy form: one 3x3 conv a block.
    extra = 32 * 32 * 32 * 3 * 1 + 16 * 16 * 64 * 32 * 1 + 16 * 16 * 64 * 64 * 6  # repvgg 1x1s, the acb's 1x3 + 3x1
    assert family.config_macs(train) - family.config_macs(config) == extra


@pytest.mark.parametrize("form", ["train", "deploy"])
def test_each_form_builds_counts_its_macs_and_runs(form: str) -> None:
    rng = random.Random(12)
    model = next(m for m in iter(lambda: reparamnet_like(rng), None) if m.config["form"] == form)
    module = model.build()
    assert not module.training
    assert count_macs_params(module, model.input_shape)[0] == model.macs
    converted = [m for m in module.modules() if isinstance(m, RepBlock)]
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert (bool(converted), bool(norms)) == ((True, True) if form == "train" else (False, False))
    with torch.no_grad():
        assert torch.isfinite(module(torch.randn(model.input_shape))).all()


def test_the_deploy_form_is_its_train_form_converted_with_non_trivial_bn() -> None:
    rng = random.Random(4)
    model = next(m for m in iter(lambda: reparamnet_like(rng), None) if m.config["form"] == "deploy")
    train = seeded_module(model.name, functools.partial(family.build, model.config))
    randomise_bn(train, seed_of(model.name))
    variances = torch.cat([m.running_var for m in train.modules() if isinstance(m, nn.BatchNorm2d)])
    assert variances.min() < 0.7 and variances.max() > 1.3  # randomise_bn's spread, beyond the zoo's own
    deployed = model.build()
    assert str(deployed) == str(reparam(train))
    check_equivalence(train, deployed, model.input_shape)  # ReparamError beyond the tolerance
    assert all(torch.equal(a, b) for a, b in zip(deployed.state_dict().values(), reparam(train).state_dict().values(),
                                                 strict=True))  # fmt: skip


def test_dynamic_convs_follow_the_config() -> None:
    config = {"input_size": 32, "form": "train", "stages": [
        {"width": 16, "depth": 1, "stride": 2, "blocks": [["conv", "relu"]], "dynamic": "weightnet"},
        {"width": 24, "depth": 1, "stride": 2, "blocks": [["conv", "relu"]], "dynamic": "se"},
        {"width": 32, "depth": 1, "stride": 1, "blocks": [["conv", "relu"]], "dynamic": "condconv"},
    ]}  # fmt: skip
    model = zoo_model("reparamnet", config)
    module = model.build()
    kinds = [type(m) for m in module.modules() if isinstance(m, WeightNetConv | SEConv | CondConv)]
    assert kinds == [WeightNetConv, SEConv, CondConv]
    assert count_macs_params(module, model.input_shape)[0] == model.macs


def test_every_kernel_of_the_family_is_known_and_holds_a_dynconv(tmp_path: Path) -> None:
    """Each op of these graphs has a category (nothing unknown: module_kernels raises otherwise), and the
    family holds what the default fit must learn: a conv whose weight is computed."""
    found: Counter[str] = Counter()
    for model in sorted(sample_family("reparamnet", 6, seed=0), key=lambda m: m.macs)[:4]:
        kernels = module_kernels(model.build(), torch.randn(model.input_shape), FusionRules(frozenset()),
                                 cache_dir=tmp_path)  # fmt: skip
        found.update(k.type for k in kernels)
    assert {"conv", "relu", "add", "gap", "flatten", "fc"} <= set(found)
    assert found["dynconv"] >= 1 and found["dwconv"] == found["minmax"] >= 1
