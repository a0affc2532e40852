"""Search space: hand-counted costs vs tensorslim.cost.profile and torch's FLOP counter, sizes, rank modes,
validation errors, and model-directory round trips of found architectures."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from search_testutil import tiny_space
from torch.utils.flop_counter import FlopCounterMode

from tensorslim import modeldir
from tensorslim.cost import profile
from tensorslim.search import SearchSpace, SearchSpaceError, build_network, default_space
from tensorslim.search.space import feature_shape, spec

# 1×8×8 input; stem 3×3 1→4; conv 3×3 4→6 stride 2; MBConv 6→6 (t=2, 3×3, residual); TCL (6,4,4)→(3,2,2); FC 12→5
ARCH = {"input_shape": [1, 8, 8], "num_classes": 5, "stem": {"width": 4, "stride": 1},
        "stages": [{"block": "conv", "depth": 1, "width": 6, "kernel": 3, "expansion": 1, "stride": 2},
                   {"block": "mbconv", "depth": 1, "width": 6, "kernel": 3, "expansion": 2, "stride": 1}],
        "pool_to": None, "head": {"kind": "tcl", "rank": [3, 2, 2], "bn": "before"}}


def test_hand_count_matches_profile_and_flop_counter():
    # params: stem 36 + BN 8; conv 216 + BN 12; expand 72 + BN 24; depthwise 108 + BN 24; project 72 + BN 12;
    # TCL factors 3·6 + 2·4 + 2·4 = 34 + BN(before, 6 ch) 12; Linear 12·5 + 5 = 65
    hand_params = 36 + 8 + 216 + 12 + 72 + 24 + 108 + 24 + 72 + 12 + 34 + 12 + 65
    # MACs: stem 4·9·64; conv 6·4·9·16; expand 12·6·16; depthwise 12·9·16; project 6·12·16;
    # TCL best order (H, W, then C): 6·4·4·2 + 6·2·4·2 + 6·2·2·3 = 360; Linear 60
    hand_macs = 2304 + 3456 + 1152 + 1728 + 1152 + 360 + 60
    model = build_network(**ARCH)
    total = profile(model, ARCH["input_shape"]).total
    assert total.params == hand_params == sum(p.numel() for p in model.parameters())
    assert total.macs == hand_macs
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 1, 8, 8))
    assert counter.get_total_flops() == 2 * hand_macs
    assert feature_shape(ARCH) == (6, 4, 4)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 160, 160)])
def test_default_space_builds_for_each_input_size(shape):
    space = default_space(shape, 10)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(2):
        trial = study.ask()
        arch = space.suggest(trial, "auto")
        study.tell(trial, 0.0)
        c, h, w = feature_shape(arch)
        assert space.min_head_hw <= min(h, w) and max(h, w) <= space.head_hw_max
        model = build_network(**arch).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *shape))
        assert out.shape == (2, 10)
        assert json.loads(json.dumps(arch)) == arch  # JSON-able


def test_fixed_ranks_are_fractions_of_the_head_input(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        arch = space.suggest(trial, "fixed", (0.5, 0.25, 1.0))
        study.tell(trial, 0.0)
        c, h, w = feature_shape(arch)
        assert arch["head"]["rank"] == [max(1, round(0.5 * c)), max(1, round(0.25 * h)), w]
        assert not any(name.startswith("rank_") for name in trial.params)


def test_auto_ranks_are_decisions(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = space.suggest(trial, "auto")
    dims = feature_shape(arch)
    fr = [trial.params[f"rank_{m}"] for m in "chw"]
    assert arch["head"]["rank"] == [max(1, min(d, round(f * d))) for f, d in zip(fr, dims)]


def test_trl_head():
    space = tiny_space(heads=["trl"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    arch = space.suggest(study.ask(), "auto")
    assert arch["head"]["kind"] == "trl" and len(arch["head"]["rank"]) == 4
    assert build_network(**arch)(torch.randn(2, *space.input_shape)).shape == (2, 3)


def test_no_valid_architecture_is_one_line_error():
    with pytest.raises(SearchSpaceError, match="no valid architecture") as err:
        SearchSpace(input_shape=(1, 3, 3), num_classes=2, stem_strides=[4])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [{"kernels": [2]}, {"blocks": ["lstm"]}, {"stages": [5]}, {"rank_fractions": [0]},
                                 {"heads": []}, {"downsample": [3]}])
def test_bad_space_is_one_line_error(bad):
    with pytest.raises(SearchSpaceError) as err:
        tiny_space(**bad)
    assert "\n" not in str(err.value)


def test_bad_fixed_ranks(space):
    study = optuna.create_study()
    with pytest.raises(SearchSpaceError, match="fixed_ranks"):
        space.suggest(study.ask(), "fixed", (0.5, 2.0, 0.5))
    with pytest.raises(SearchSpaceError, match="rank_mode"):
        space.suggest(study.ask(), "manual")


def test_space_round_trips_through_json(space):
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space and again.fingerprint() == space.fingerprint()
    with pytest.raises(SearchSpaceError, match="unknown key"):
        SearchSpace.from_dict({**space.to_dict(), "colour": 3})


def test_found_architecture_saves_and_loads(tmp_path):
    model = modeldir.build(spec(ARCH), ARCH["input_shape"]).eval()
    modeldir.save(model, tmp_path / "m")
    back = modeldir.load(tmp_path / "m").eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
