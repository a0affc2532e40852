"""Per-layer cost profiles (tensorslim.cost), checked against torch's FlopCounterMode and hand counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tensorslim import models
from tensorslim.cost import profile
from tensorslim.errors import ModelError

REPO = Path(__file__).resolve().parents[1]


def reference_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Independent reference: torch's FLOP counter on one batch-1 forward pass, halved."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *input_shape, device=device))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", models.names())
def test_builtin_totals_match_flop_counter(name):
    shape = models.info(name).input_shape
    # real weights for the small ones; the meta device (exact shapes, no compute) keeps the big ones fast
    device = "cpu" if name in ("lenet5", "convnet", "resnet20") else "meta"
    with torch.device(device):
        model = models.build(name, in_channels=shape[0], num_classes=10)
    prof = profile(model, shape)
    assert prof.total.macs == reference_macs(model, shape)
    assert prof.total.params == n_params(model) == sum(row.params for row in prof.layers)
    assert prof.total.output_shape == (10,)
    assert not prof.total.measured  # standard layers only: every MAC comes from a formula


@pytest.mark.parametrize("name, channels, size", [("lenet5", 3, 32), ("convnet", 1, 64), ("vgg16", 1, 28)])
def test_other_input_sizes_match_flop_counter(name, channels, size):
    with torch.device("meta"):  # shape-exact, nothing computed
        model = models.build(name, in_channels=channels, num_classes=7, input_size=size)
    prof = profile(model, (channels, size, size))
    assert prof.total.macs == reference_macs(model, (channels, size, size))
    assert prof.total.params == n_params(model)


def test_lenet5_hand_counts():
    prof = profile(models.build("lenet5"), (1, 28, 28))
    expected = {  # name: (params, MACs, output shape)
        "features.conv1": (6 * 25 + 6, 6 * 28 * 28 * 25, (6, 28, 28)),
        "features.pool1": (0, 0, (6, 14, 14)),
        "features.conv2": (16 * 6 * 25 + 16, 16 * 10 * 10 * 6 * 25, (16, 10, 10)),
        "features.pool2": (0, 0, (16, 5, 5)),
        "classifier.flatten": (0, 0, (400,)),
        "classifier.fc1": (400 * 120 + 120, 400 * 120, (120,)),
        "classifier.fc2": (120 * 84 + 84, 120 * 84, (84,)),
        "classifier.fc3": (84 * 10 + 10, 84 * 10, (10,)),
    }
    for name, (params, macs, shape) in expected.items():
        row = prof.layer(name)
        assert (row.params, row.macs, row.output_shape) == (params, macs, shape), name
        assert row.weight_bytes == 4 * params and row.output_bytes == 4 * (shape[0] if len(shape) == 1 else
                                                                          shape[0] * shape[1] * shape[2])
    assert prof.layer("features.conv1").macs == 117_600 and prof.layer("features.conv2").macs == 240_000
    assert (prof.total.params, prof.total.macs) == (61_706, 416_520)
    assert prof.total.weight_bytes == 4 * 61_706
    # new activations only: in-place ReLUs and the Flatten view are not counted twice
    assert prof.total.output_bytes == 4 * (6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84 + 10)
    assert [row.name for row in prof.layers][:3] == ["features.conv1", "features.relu1", "features.pool1"]


@pytest.mark.parametrize("layer, shape, hand", [
    (nn.Conv2d(8, 12, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=4), (8, 17, 11),
     12 * (8 // 4) * 3 * 5 * 8 * 11),  # out 12×8×11
    (nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), (6, 10, 10), 6 * 1 * 9 * 100),
    (nn.Conv1d(4, 10, 3, stride=2), (4, 21), 10 * 4 * 3 * 10),
    (nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), (2, 4, 6, 6), 3 * 2 * 9 * 4 * 6 * 6),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), (4, 5, 5), 4 * 25 * (6 // 2) * 9),
    (nn.Linear(20, 30), (7, 20), 7 * 20 * 30),  # applied to every row of a 7×20 input
])
def test_layer_formulas(layer, shape, hand):
    prof = profile(layer, shape)
    assert prof.total.macs == hand == reference_macs(layer, shape)
    assert prof.layers[0].name == "" and prof.total.params == n_params(layer)


class MatmulLayer(nn.Module):
    """A user's layer with no formula: the MACs must be measured, not counted as 0."""

    def __init__(self, n: int, m: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, m))

    def forward(self, x):
        return torch.matmul(x, self.weight)


class Bilinear(nn.Module):
    """A container that computes in its own forward besides calling children."""

    def __init__(self):
        super().__init__()
        self.left = nn.Linear(6, 4)
        self.mix = nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        h = self.left(x)
        return h @ self.mix @ h.transpose(-1, -2)


def test_custom_matmul_layers_are_measured():
    model = nn.Sequential(nn.Flatten(), MatmulLayer(12, 5), nn.ReLU(), MatmulLayer(5, 3))
    prof = profile(model, (3, 4))
    assert prof.total.macs == reference_macs(model, (3, 4)) == 12 * 5 + 5 * 3
    row = prof.layer("1")
    assert row.measured and row.macs == 60 and row.kind == "MatmulLayer" and row.params == 60
    assert prof.total.measured and "measured" in prof.table()

    container = Bilinear()
    prof = profile(container, (3, 6))
    assert prof.total.macs == reference_macs(container, (3, 6)) == 3 * 6 * 4 + 3 * 4 * 4 + 3 * 4 * 3
    assert prof.layer("left").macs == 3 * 6 * 4 and not prof.layer("left").measured
    root = prof.layer("")
    assert root.measured and root.macs == 3 * 4 * 4 + 3 * 4 * 3 and root.params == 16
    assert prof.total.params == n_params(container)


class OwnMacs(nn.Module):
    """Stands in for a tensorslim.layers factorized layer: reports its own MACs; children get no rows."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 2, 1, bias=False)
        self.second = nn.Conv2d(2, 5, 3, padding=1)
        self.seen: list[tuple[int, ...]] = []

    def macs(self, input_shape):
        self.seen.append(tuple(input_shape))
        c, h, w = input_shape
        return h * w * (c * 2 + 2 * 5 * 9)

    def forward(self, x):
        return self.second(self.first(x))


def test_modules_with_a_macs_method_are_one_unit():
    model = nn.Sequential(OwnMacs(), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 8 * 8, 2))
    prof = profile(model, (3, 8, 8))
    assert model[0].seen == [(3, 8, 8)]
    assert [row.name for row in prof.layers] == ["0", "1", "2", "3"]
    assert prof.layer("0").params == 3 * 2 + 2 * 5 * 9 + 5 and not prof.layer("0").measured
    assert prof.total.macs == reference_macs(model, (3, 8, 8))


def test_shared_and_tied_modules_count_once():
    shared = nn.Linear(8, 8)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    prof = profile(model, (8,))
    assert [row.name for row in prof.layers] == ["0", "1"]
    assert prof.layer("0").calls == 2 and prof.layer("0").macs == 2 * 64 == reference_macs(model, (8,))
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    prof = profile(tied, (4,))
    assert prof.total.params == n_params(tied) == 16 and prof.layer("1").params == 0


def test_user_module_through_build_spec(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Gram(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.matmul(x.flatten(2), x.flatten(2).transpose(1, 2)).flatten(1)\n\n"
        "def net(in_channels=3, num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), Gram(),\n"
        "                         nn.Linear(16, num_classes))\n")
    model = models.build_spec({"builder": f"{path}:net", "kwargs": {"num_classes": 5}})
    prof = profile(model, (3, 6, 6))
    assert prof.total.macs == reference_macs(model, (3, 6, 6)) == 4 * 3 * 9 * 36 + 4 * 36 * 4 + 16 * 5
    assert prof.layer("2").measured and prof.total.params == n_params(model)


def test_vgg16_imagenet_example(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    with torch.device("meta"):  # 138 M parameters: shapes only
        model = models.build_spec({"builder": "examples.vgg16_imagenet:vgg16", "kwargs": {}})
        by_path = models.build_spec({"builder": str(REPO / "examples" / "vgg16_imagenet.py") + ":vgg16"})
    assert models.default_input_shape("examples.vgg16_imagenet:vgg16") == (3, 224, 224)
    prof = profile(model, (3, 224, 224))
    assert prof.total.params == 138_357_544 == n_params(model) == n_params(by_path)
    assert prof.total.macs == reference_macs(model, (3, 224, 224))
    assert 15.4e9 < prof.total.macs < 15.6e9
    assert prof.layer("classifier.0").params == 25088 * 4096 + 4096
    assert prof.total.output_shape == (1000,)


def test_wrong_input_shape_names_shape_and_layer():
    model = models.build("lenet5")
    with pytest.raises(ModelError) as err:
        profile(model, (3, 28, 28))
    message = str(err.value)
    assert "\n" not in message and "3x28x28" in message and "'features.conv1' (Conv2d)" in message
    with pytest.raises(ModelError, match=r"1x32x32 .*'classifier\.fc1' \(Linear\)"):
        profile(model, (1, 32, 32))
    for bad in [(0, 28, 28), (), "1,28,28", (1.5, 28)]:
        with pytest.raises(ModelError, match="input shape"):
            profile(model, bad)


def test_profile_restores_mode_and_does_not_train():
    model = models.build("convnet").train()
    model.classifier.eval()
    before = model.features.bn1.running_mean.clone()
    profile(model, (1, 28, 28))
    assert model.training and model.features.training and not model.classifier.training
    assert torch.equal(model.features.bn1.running_mean, before)  # ran in eval mode


def test_to_dict_and_table():
    prof = profile(models.build("resnet20", in_channels=3), (3, 32, 32))
    data = json.loads(json.dumps(prof.to_dict()))
    assert data["input_shape"] == [3, 32, 32] and data["total"]["macs"] == prof.total.macs
    assert len(data["layers"]) == len(prof.layers)
    first = data["layers"][0]
    assert set(first) >= {"name", "kind", "params", "macs", "weight_bytes", "output_bytes", "output_shape"}
    assert first["output_shape"] == [16, 32, 32]
    # BN buffers (running stats, int64 counter) count towards weight bytes
    bn = prof.layer("features.bn1")
    assert bn.params == 32 and bn.weight_bytes == 4 * (32 + 32) + 8
    text = prof.table()
    lines = text.splitlines()
    assert f"{prof.total.macs:,}" in lines[-1] and lines[-1].startswith("total")
    assert "features.stage2.0.shortcut" in text and "ShortcutA" in text
    assert len({len(line) for line in lines}) == 1  # aligned: every line ends in a right-aligned number column
    assert "40,551,040" in text and "269,722" in text


def test_bilinear_formula_and_unseen_weights_warn():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.bilinear = nn.Bilinear(4, 6, 3)

        def forward(self, x):
            return self.bilinear(x[..., :4], x[..., 4:])

    prof = profile(Pair(), (2, 10))
    assert prof.total.macs == 2 * 4 * 6 * 3  # hand count; torch's flop counter sees 0 here

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    with pytest.warns(UserWarning, match="'attn' .*counted as 0"):
        profile(Attention(), (5, 8))
