"""Reference models and the builder registry (tensorslim.models)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from tensorslim import models
from tensorslim.errors import ModelError

BUILTINS = ["lenet5", "convnet", "resnet20", "resnet32", "resnet56", "vgg16", "mobilenetv2"]
FC_HEAD_MODELS = ["lenet5", "convnet", "vgg16"]  # flatten + FC heads sized by input_size


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_names_and_info():
    assert models.names() == BUILTINS
    assert models.info("lenet5").input_shape == (1, 28, 28)
    assert models.info("convnet").input_shape == (1, 28, 28)
    for name in BUILTINS[2:]:
        assert models.info(name).input_shape == (3, 32, 32)
    assert all(models.info(n).description and "\n" not in models.info(n).description for n in BUILTINS)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ModelError) as err:
        models.build("resnet18")
    message = one_line(err)
    assert "resnet18" in message and all(n in message for n in BUILTINS)
    with pytest.raises(ModelError):
        models.build_spec({"builder": "alexnet", "kwargs": {}})


@pytest.mark.parametrize("name", BUILTINS)
def test_every_model_runs_at_its_default_shape(name):
    c, h, w = models.info(name).input_shape
    # real compute for the cheap ones; shape-exact meta tensors keep the big ones fast
    device = "cpu" if name in ("lenet5", "convnet", "resnet20") else "meta"
    with torch.device(device):
        model = models.build(name, in_channels=c, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.randn(2, c, h, w))
    assert out.shape == (2, 7) and (device == "meta" or torch.isfinite(out).all())
    assert isinstance(model.features, nn.Module) and isinstance(model.classifier, nn.Sequential)
    # an explicit Flatten module feeds the head, so surgery can find flatten + FC
    kinds = [type(m) for m in model.classifier]
    assert nn.Flatten in kinds and kinds.index(nn.Flatten) < kinds.index(nn.Linear)


def test_in_channels_default_is_the_models_own():
    assert models.build("lenet5").features.conv1.in_channels == 1
    assert models.build("resnet20").features.conv1.in_channels == 3
    assert models.build("resnet20", in_channels=1).features.conv1.in_channels == 1


@pytest.mark.parametrize("name", FC_HEAD_MODELS)
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_fc_head_follows_input_size(name, size, channels):
    # on the meta device: shapes are checked exactly, nothing is computed
    with torch.device("meta"):
        model = models.build(name, in_channels=channels, num_classes=5, input_size=size).eval()
        assert model(torch.empty(1, channels, size, size)).shape == (1, 5)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_global_pool_models_take_any_size(name):
    with torch.device("meta"):
        model = models.build(name, in_channels=1, num_classes=4, input_size=64).eval()
        assert model(torch.empty(1, 1, 64, 64)).shape == (1, 4)
        assert model(torch.empty(1, 1, 28, 28)).shape == (1, 4)


def test_lenet5_hand_counts():
    model = models.build("lenet5")
    # conv1 6*1*25+6, conv2 16*6*25+16, fc1 400*120+120, fc2 120*84+84, fc3 84*10+10
    assert n_params(model) == 156 + 2416 + 48120 + 10164 + 850 == 61706
    f = model.features
    assert (f.conv1.out_channels, f.conv1.kernel_size, f.conv1.padding) == (6, (5, 5), (2, 2))
    assert (f.conv2.out_channels, f.conv2.kernel_size) == (16, (5, 5))
    fc = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in fc] == [(400, 120), (120, 84), (84, 10)]
    assert models.build("lenet5", input_size=32).classifier.fc1.in_features == 16 * 6 * 6


@pytest.mark.parametrize("name, paper, exact", [("resnet20", 0.27, 269_722), ("resnet32", 0.46, 464_154),
                                                ("resnet56", 0.85, 853_018)])
def test_resnet_params_match_the_paper(name, paper, exact):
    model = models.build(name, in_channels=3, num_classes=10)
    assert n_params(model) == exact
    assert round(n_params(model) / 1e6, 2) == paper  # He et al. 2016, table 6
    depth = int(name[len("resnet"):])
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth  # option A: the shortcuts add no layers


def test_resnet_option_a_shortcut_pads_zero_channels():
    model = models.build("resnet20", in_channels=3).eval()
    shortcut = model.features.stage2[0].shortcut
    x = torch.randn(1, 16, 32, 32)
    y = shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()


def test_resnet_option_b_adds_projections():
    a = models.build("resnet20", in_channels=3)
    b = models.build("resnet20", in_channels=3, shortcut="B")
    # two projections: 16->32 and 32->64 (1x1 conv + BN)
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    with pytest.raises(ModelError, match="shortcut"):
        models.build("resnet20", shortcut="C")


def test_vgg16_and_convnet_structure():
    vgg = models.build("vgg16", in_channels=3)
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in vgg.features if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in vgg.classifier if isinstance(m, nn.Linear)]
    assert len(convs) == 13 and len(bns) == 13 and all(c.kernel_size == (3, 3) for c in convs)
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 10)]
    assert models.build("vgg16", input_size=64).classifier.fc1.in_features == 512 * 2 * 2
    net = models.build("convnet")
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and sum(isinstance(m, nn.BatchNorm2d) for m in net.features) == 5
    assert net.classifier.fc1.in_features == 64 * 3 * 3 and net.classifier.fc1.out_features == 256
    assert any(isinstance(m, nn.Dropout) for m in net.classifier)


def test_mobilenetv2_cifar_strides_and_width():
    model = models.build("mobilenetv2", in_channels=3).eval()
    assert model.features.conv1.stride == (1, 1)
    strides = [m.stride[0] for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert strides.count(2) == 3  # 32 -> 16 -> 8 -> 4
    with torch.device("meta"):
        assert model.to("meta").features[:-1](torch.empty(1, 3, 32, 32)).shape == (1, 1280, 4, 4)
    half = models.build("mobilenetv2", in_channels=3, width_mult=0.5)
    assert n_params(half) < n_params(models.build("mobilenetv2", in_channels=3))
    assert half.features.conv1.out_channels == 16
    residual = [m for m in model.modules() if getattr(m, "use_residual", False)]
    assert len(residual) == 10  # blocks with stride 1 and equal channels (paper's rule)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"input_size": 8}, "too small"),
    ({"input_size": "big"}, "input_size"),
    ({"num_classes": 0}, "num_classes"),
    ({"in_channels": 2.5}, "in_channels"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_arguments_are_one_line_model_errors(kwargs, pattern):
    with pytest.raises(ModelError, match=pattern) as err:
        models.build("lenet5", **kwargs)
    one_line(err)


USER_MODULE = textwrap.dedent("""
    from torch import nn

    def tiny(in_channels=1, num_classes=10, hidden=8):
        return nn.Sequential(nn.Conv2d(in_channels, hidden, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(hidden, num_classes))

    tiny.input_shape = (1, 12, 12)

    def broken(**kwargs):
        raise RuntimeError("weights missing\\nsecond line")

    def not_a_model(**kwargs):
        return 42

    NOT_CALLABLE = 3
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODULE)
    (tmp_path / "bad_import.py").write_text("import no_such_module_for_tensorslim\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_build_spec_builtin_and_user_module(user_module):
    lenet = models.build_spec({"builder": "lenet5", "kwargs": {"in_channels": 3, "num_classes": 4}})
    assert lenet.features.conv1.in_channels == 3 and lenet.classifier.fc3.out_features == 4
    model = models.build_spec({"builder": "userpkg.nets:tiny", "kwargs": {"num_classes": 3, "hidden": 5}})
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 3)
    assert models.default_input_shape("userpkg.nets:tiny") == (1, 12, 12)
    assert models.default_input_shape("vgg16") == (3, 32, 32)
    assert models.resolve_factory("lenet5") is models.info("lenet5").factory


def test_build_spec_file_path_form(user_module, monkeypatch):
    path = user_module / "userpkg" / "nets.py"
    model = models.build_spec({"builder": f"{path}:tiny", "kwargs": {}})
    assert isinstance(model, nn.Sequential) and model[-1].out_features == 10
    monkeypatch.chdir(user_module)
    assert isinstance(models.build_spec({"builder": "userpkg/nets.py:tiny"}), nn.Sequential)


@pytest.mark.parametrize("builder, pattern", [
    ("no_such_package.nets:tiny", "cannot import no_such_package.nets"),
    ("bad_import:anything", "no_such_module_for_tensorslim"),
    ("userpkg.nets:missing", "no attribute 'missing'"),
    ("userpkg.nets:NOT_CALLABLE", "not callable"),
    ("userpkg.nets:broken", "RuntimeError: weights missing"),
    ("userpkg.nets:not_a_model", "returned int, not a torch.nn.Module"),
    ("does/not/exist.py:f", "not found"),
    ("userpkg.nets:", "expected 'package.module:factory'"),
])
def test_build_spec_errors_are_one_line(user_module, builder, pattern):
    with pytest.raises(ModelError, match=pattern) as err:
        models.build_spec({"builder": builder, "kwargs": {}})
    one_line(err)


@pytest.mark.parametrize("spec", [None, {"kwargs": {}}, {"builder": "lenet5", "kwargs": [1]}, {"builder": 3}])
def test_malformed_specs(spec):
    with pytest.raises(ModelError) as err:
        models.build_spec(spec)
    one_line(err)


def test_summary_rows_are_json_and_match_the_models():
    rows = models.summary_rows()
    assert [r["name"] for r in rows] == BUILTINS
    json.dumps(rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["lenet5"]["params"] == 61706 and by_name["lenet5"]["macs"] == 416_520
    assert by_name["resnet20"]["params"] == 269_722 and by_name["resnet20"]["input_shape"] == [3, 32, 32]


def test_module_builder_found_from_the_working_directory(monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(repo))])
    for name in ("examples", "examples.vgg16_imagenet"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with torch.device("meta"):
        model = models.build_spec({"builder": "examples.vgg16_imagenet:vgg16", "kwargs": {"num_classes": 10}})
    assert model.classifier[-1].out_features == 10
    assert str(repo) in sys.path  # appended, so it never shadows installed packages


def test_builtin_spec_kwargs_cannot_break_the_call():
    with pytest.raises(ModelError, match="name") as err:
        models.build_spec({"builder": "lenet5", "kwargs": {"name": "x"}})
    one_line(err)
