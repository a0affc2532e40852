"""ONNX export: every exported file is checked against PyTorch with our own ONNX Runtime session here."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tensorslim.errors import TensorSlimError
from tensorslim.export import ExportError, VerificationError, export_onnx, inspect_onnx, node_summary


def ort_run(path, x: torch.Tensor) -> np.ndarray:
    """Independent reference: a fresh ORT session, first output."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def assert_matches_torch(model: nn.Module, path, x: torch.Tensor, tol: float = 1e-4) -> None:
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = ort_run(path, x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * float(np.abs(ref).max()))


def assert_one_line(err: BaseException) -> None:
    msg = str(err)
    assert msg and "\n" not in msg and "\x1b" not in msg, msg


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 10))
        bn = self.features[1]  # non-trivial running statistics, so that folding BN is actually tested
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.head(self.features(x))


class MatmulEinsum(nn.Module):
    """A factorised linear map written with matmul and einsum (never forming the product of the factors)."""

    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.randn(24, 4))
        self.v = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        h = torch.einsum("ni,ir->nr", x, self.u)
        return torch.matmul(h, self.v)


class Reconstructs(nn.Module):
    """Rebuilds the dense kernel from two factors on every forward: the pattern export must flag."""

    def __init__(self) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.randn(8, 2))
        self.v = nn.Parameter(torch.randn(2, 3 * 9))

    def forward(self, x):
        return F.conv2d(x, (self.u @ self.v).view(8, 3, 3, 3), padding=1)


class Svd(nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x)[1]


class FrozenBatch(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])  # traced as a constant by the TorchScript exporter
        return x.reshape(n, -1) * 2


class MoveDim(nn.Module):
    """``movedim`` with a negative axis: the TorchScript exporter writes an invalid ``perm`` for it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3))

    def forward(self, x):
        return torch.matmul(x.movedim(1, -1), self.w).movedim(-1, 1)


class Drifting(nn.Module):
    """Its output changes between calls: the exported graph cannot match the next PyTorch run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * float(self.calls)


def test_conv_bn_linear_export_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = ConvNet().train()
    real = torch.randn(7, 3, 12, 12)
    res = export_onnx(model, tmp_path / "net.onnx", (3, 12, 12), inputs=real)
    assert model.training, "the model's mode must be restored"
    assert res.path.is_file() and res.file_bytes == res.path.stat().st_size
    assert [(c.source, c.samples) for c in res.checks] == [("random", 1), ("random", 3), ("inputs", 7)]
    assert res.max_rel_err is not None and res.max_rel_err < 1e-4
    ops = node_summary(res.path)
    assert ops["Conv"] == 2 and ops["Gemm"] == 1 and "BatchNormalization" not in ops  # BN folded
    assert not res.reconstructs_weights
    info = inspect_onnx(res.path)
    assert info.inputs[0][1][0] == "batch" and info.inputs[0][1][1:] == [3, 12, 12]
    for batch in (1, 5):  # dynamic batch, checked with our own session
        assert_matches_torch(model, res.path, torch.randn(batch, 3, 12, 12))
    assert list(tmp_path.iterdir()) == [res.path]  # no temporary left behind


def test_matmul_einsum_module_exports_plain_ops(tmp_path):
    torch.manual_seed(1)
    model = MatmulEinsum()
    res = export_onnx(model, tmp_path / "mm.onnx", (24,))
    ops = node_summary(res.path)
    assert ops.get("MatMul", 0) + ops.get("Einsum", 0) == 2
    assert res.weight_only_nodes == [] and res.onnx_params == 24 * 4 + 4 * 6
    assert_matches_torch(model, res.path, torch.randn(5, 24))


def test_fixed_batch_and_opset(tmp_path):
    torch.manual_seed(2)
    model = ConvNet()
    res = export_onnx(model, tmp_path / "b4.onnx", (3, 8, 8), batch=4, opset=13)
    info = inspect_onnx(res.path)
    assert info.opset == 13 and res.opset == 13
    assert info.inputs[0][1] == [4, 3, 8, 8]
    assert [c.samples for c in res.checks] == [4]
    assert_matches_torch(model, res.path, torch.randn(4, 3, 8, 8))


def test_auto_falls_back_to_dynamo(tmp_path):
    torch.manual_seed(4)
    model = MoveDim()
    try:
        export_onnx(model, tmp_path / "m.onnx", (6, 4, 5), exporter="torchscript")
    except ExportError as err:
        assert "invalid graph" in str(err)
    else:  # a torch whose TorchScript exporter handles negative movedim axes: nothing falls back
        pytest.skip("the TorchScript exporter of this torch exports negative movedim axes correctly")
    res = export_onnx(model, tmp_path / "m.onnx", (6, 4, 5))
    assert res.exporter == "dynamo" and "torchscript exporter failed" in res.notes[0]
    assert not (tmp_path / "m.onnx.data").exists()  # the dynamo exporter's weights stay inside the one file
    assert_matches_torch(model, res.path, torch.randn(2, 6, 4, 5))


def test_weight_reconstruction_is_flagged(tmp_path):
    model = Reconstructs()
    res = export_onnx(model, tmp_path / "r.onnx", (3, 6, 6), exporter="torchscript")
    assert res.reconstructs_weights
    assert any(n.startswith("MatMul") for n in res.weight_only_nodes)
    assert_matches_torch(model, res.path, torch.randn(2, 3, 6, 6))


def test_unsupported_operator_names_module_and_op(tmp_path):
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Identity(), Svd()))
    dest = tmp_path / "svd.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(model, dest, (4, 4), exporter="torchscript")
    assert_one_line(info.value)
    assert "'body.1' (Svd)" in str(info.value) and "linalg_svd" in str(info.value)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_failing_forward_names_module(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 3))
    with pytest.raises(ExportError) as info:
        export_onnx(model, tmp_path / "x.onnx", (4, 4))
    assert_one_line(info.value)
    assert "'1' (Linear)" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_frozen_batch_is_caught_and_old_file_kept(tmp_path):
    dest = tmp_path / "f.onnx"
    dest.write_bytes(b"previous")
    with pytest.raises(VerificationError) as info:
        export_onnx(FrozenBatch(), dest, (4,), exporter="torchscript")
    assert_one_line(info.value)
    assert "batch 1" in str(info.value)
    assert dest.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [dest]


def test_output_mismatch_raises(tmp_path):
    with pytest.raises(VerificationError) as info:
        export_onnx(Drifting(), tmp_path / "d.onnx", (3,), exporter="torchscript")
    assert_one_line(info.value)
    assert "max relative error" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"input_shape": None}, "input shape is required"),
        ({"input_shape": (3, 0, 8)}, "positive integers"),
        ({"input_shape": "3,8,8"}, "sequence"),
        ({"batch": 0}, "batch"),
        ({"batch": "many"}, "batch"),
        ({"batch": True}, "batch"),
        ({"opset": 99}, "opset 99"),
        ({"opset": 21, "exporter": "torchscript"}, "opset 21"),
        ({"rtol": -1.0}, "rtol"),
        ({"exporter": "tflite"}, "exporter"),
        ({"inputs": torch.randn(2, 3, 5, 5)}, "sample shape"),
        ({"inputs": "images"}, "inputs"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, needle):
    args = {"input_shape": (3, 8, 8), **kwargs}
    with pytest.raises(TensorSlimError) as info:
        export_onnx(ConvNet(), tmp_path / "m.onnx", args.pop("input_shape"), **args)
    assert_one_line(info.value)
    assert needle in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_targets(tmp_path):
    with pytest.raises(ExportError, match="nn.Module"):
        export_onnx("model.pt", tmp_path / "m.onnx", (3, 8, 8))
    with pytest.raises(ExportError, match="directory"):
        export_onnx(ConvNet(), tmp_path, (3, 8, 8))


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model\n", bytes(range(256)) * 4])
def test_not_onnx_file(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(ExportError) as info:
        node_summary(bad)
    assert_one_line(info.value)
    assert "not an ONNX model" in str(info.value)
    with pytest.raises(ExportError, match="not found"):
        node_summary(tmp_path / "missing.onnx")


def test_node_summary_matches_onnx(tmp_path):
    res = export_onnx(ConvNet(), tmp_path / "n.onnx", (3, 8, 8))
    graph = onnx.load(str(res.path)).graph
    expected: dict[str, int] = {}
    for node in graph.node:
        expected[node.op_type] = expected.get(node.op_type, 0) + 1
    assert node_summary(res.path) == expected
    assert res.onnx_params == sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == 1)


# ---- tensorslim's own models and layers --------------------------------------------------------------------

has_models = importlib.util.find_spec("tensorslim.models") is not None
has_layers = importlib.util.find_spec("tensorslim.layers") is not None


@pytest.mark.skipif(not has_models, reason="tensorslim.models not available")
@pytest.mark.parametrize("name", ["lenet5", "convnet", "resnet20"])
def test_reference_models_export(tmp_path, name):
    from tensorslim import models

    torch.manual_seed(0)
    model = models.build(name)
    shape = tuple(models.info(name).input_shape)
    res = export_onnx(model, tmp_path / f"{name}.onnx", shape)
    ops = node_summary(res.path)
    assert ops["Conv"] >= 2 and ops["Gemm"] >= 1 and "BatchNormalization" not in ops
    assert not res.reconstructs_weights
    assert_matches_torch(model, res.path, torch.randn(2, *shape))


def _layer_cases():
    from tensorslim import layers as L

    return {
        "SVDLinear": (lambda: L.SVDLinear(64, 32, 8), (64,), {"Gemm", "MatMul"}),
        "CPConv2d-cp3": (lambda: L.CPConv2d(8, 16, 3, 4, padding=1), (8, 10, 10), {"Conv"}),
        "CPConv2d-cp4": (lambda: L.CPConv2d(8, 16, 3, 4, form="cp4", padding=1), (8, 10, 10), {"Conv"}),
        "Tucker2Conv2d": (lambda: L.Tucker2Conv2d(8, 16, 3, (4, 6), padding=1), (8, 10, 10), {"Conv"}),
        "TTLinear": (lambda: L.TTLinear((4, 4, 4), (2, 4, 4), 3), (64,), {"MatMul"}),
        "TTConv2d": (lambda: L.TTConv2d((2, 4), (4, 4), 3, 3, padding=1), (8, 10, 10), {"Conv", "MatMul"}),
    }


class TensorRegressionHeads(nn.Module):
    """TCL, TRL (Tucker and CP) and TCLHead side by side, exported once (keeps the test fast)."""

    def __init__(self) -> None:
        super().__init__()
        from tensorslim import layers as L

        self.tcl = nn.Sequential(L.TCL((8, 6, 6), (4, 3, 3)), nn.Flatten(), nn.Linear(36, 10))
        self.trl = L.TRL((8, 6, 6), 10, (4, 3, 3, 5))
        self.trl_cp = L.TRL((8, 6, 6), 10, 5, kind="cp")
        self.head = L.TCLHead((8, 6, 6), 10, (4, 3, 3))

    def forward(self, x):
        return self.tcl(x) + self.trl(x) + self.trl_cp(x) + self.head(x)


@pytest.mark.skipif(not has_layers, reason="tensorslim.layers not available")
@pytest.mark.parametrize("case", ["SVDLinear", "CPConv2d-cp3", "CPConv2d-cp4", "Tucker2Conv2d", "TTLinear",
                                  "TTConv2d"])
def test_factorized_layers_export_as_plain_ops(tmp_path, case):
    make, shape, expected_ops = _layer_cases()[case]
    torch.manual_seed(0)
    layer = make()
    res = export_onnx(layer, tmp_path / "layer.onnx", shape)
    ops = node_summary(res.path)
    assert expected_ops & set(ops), ops
    assert not res.reconstructs_weights, res.weight_only_nodes
    assert res.onnx_params - res.padded_params <= res.torch_params  # the dense weight is never stored
    assert_matches_torch(layer, res.path, torch.randn(3, *shape))


@pytest.mark.skipif(not has_layers, reason="tensorslim.layers not available")
def test_tensor_regression_layers_export(tmp_path):
    torch.manual_seed(0)
    model = TensorRegressionHeads()
    res = export_onnx(model, tmp_path / "trl.onnx", (8, 6, 6))
    ops = node_summary(res.path)
    assert "MatMul" in ops and not res.reconstructs_weights
    assert_matches_torch(model, res.path, torch.randn(3, 8, 6, 6))


@pytest.mark.skipif(importlib.util.find_spec("tensorslim.resolve") is None, reason="no tensorslim.resolve")
def test_export_target_model_dir_with_dataset_images(tmp_path):
    from tensorslim import data, modeldir, models
    from tensorslim.export.onnx import export_target

    if "lenet5" not in models.names() or "digits" not in data.names():
        pytest.skip("lenet5 or the digits dataset not registered")
    torch.manual_seed(0)
    model = modeldir.build({"builder": "lenet5", "kwargs": {}}, (1, 28, 28))
    modeldir.save(model, tmp_path / "lenet", input_shape=(1, 28, 28), dataset="digits")
    res = export_target(tmp_path / "lenet", tmp_path / "lenet.onnx", samples=20)
    assert ("inputs", 20) in [(c.source, c.samples) for c in res.checks]
    images = next(iter(data.batches(data.load("digits", "test", augment=False), 4)))[0]
    assert_matches_torch(model, res.path, images)  # the real images, through our own session
    with pytest.raises(TensorSlimError):
        export_target(tmp_path / "lenet", tmp_path / "other.onnx", dataset="no-such-dataset")
    assert not (tmp_path / "other.onnx").exists()


def test_package_exports_resolve():
    import tensorslim.export as ex

    for name in ex.__all__:
        assert getattr(ex, name) is not None
    with pytest.raises(AttributeError):
        ex.no_such_name  # noqa: B018
