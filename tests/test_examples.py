"""examples/ runs: a user nn.Module on a user Dataset, compressed, fine-tuned, saved, exported and timed."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tensorslim

ROOT = Path(__file__).resolve().parents[1]


def _example(tmp_path, *args, epochs=1, env=None):
    """Run the example into ``tmp_path/ex`` in a fresh interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "examples" / "compress_your_model.py"), "--epochs", str(epochs),
                           "--out", str(tmp_path / "ex"), *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env=env)


def test_compress_your_model_example_runs(tmp_path):
    proc = _example(tmp_path, epochs=2)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["model", "test", "acc", "params", "MACs"] and lines[2].startswith("small")
    assert "ORT batch 1, 1 thread" in proc.stdout
    assert (tmp_path / "ex" / "small.onnx").is_file() and (tmp_path / "ex" / "dense.onnx").is_file()
    with pytest.raises(tensorslim.TensorSlimError, match="trust"):  # it names the user's factory
        tensorslim.load(tmp_path / "ex" / "small")
    sys.path.insert(0, str(ROOT))
    try:
        small = tensorslim.load(tmp_path / "ex" / "small", trust_code=True)
    finally:
        sys.path.remove(str(ROOT))
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    dense_params, small_params = (int(line.split()[2].replace(",", "")) for line in lines[1:3])
    assert small_params == sum(p.numel() for p in small.parameters()) < dense_params


def _check_torchvision_run(proc, tmp_path):
    assert proc.returncode == 0, proc.stderr
    assert "ORT batch 1, 1 thread" in proc.stdout
    meta = json.loads((tmp_path / "ex" / "small" / "model.json").read_text())
    assert meta["spec"]["builder"].startswith("torchvision.models:")
    dense_params, small_params = (int(line.split()[2].replace(",", "")) for line in proc.stdout.splitlines()[1:3])
    assert small_params < dense_params
    return meta


def test_compress_your_model_with_a_torchvision_model(tmp_path):
    pytest.importorskip("torchvision")
    _check_torchvision_run(_example(tmp_path, "--torchvision", "resnet18"), tmp_path)
    small = tensorslim.load(tmp_path / "ex" / "small")  # a torchvision builder needs no trust
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


_STAND_IN = '''
from torch import nn


def list_models():
    return ["tiny"]


def tiny(num_classes=1000, weights=None):
    assert weights is None
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(),
                         nn.Linear(64, num_classes))
'''


def test_torchvision_path_of_the_example_on_a_stand_in_package(tmp_path):
    """Without torchvision here, a package with its API (list_models, NAME(num_classes, weights)) stands in:
    the plan comes from the model's own layer names, and the saved directory loads without trust."""
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the real one is tested")
    pkg = tmp_path / "tv" / "torchvision" / "models"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(_STAND_IN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "tv"), os.environ.get("PYTHONPATH", "")])}
    meta = _check_torchvision_run(_example(tmp_path, "--torchvision", "tiny", env=env), tmp_path)
    methods = {r["name"]: r["method"] for r in meta["compression"]["layers"]}
    assert methods == {"2": "tucker2", "7": "svd", "9": "svd"}  # the 3-channel stem and the 1×1 conv stay dense
    code = (f"import tensorslim, torch; m = tensorslim.load({str(tmp_path / 'ex' / 'small')!r}); "
            "print(tuple(m(torch.randn(2, 3, 32, 32)).shape))")
    proc = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "(2, 10)", proc.stderr


def test_torchvision_option_without_torchvision_is_one_error_line(tmp_path):
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed")
    proc = _example(tmp_path, "--torchvision", "resnet18")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --torchvision needs torchvision (pip install torchvision)"]
    assert not (tmp_path / "ex").exists()
