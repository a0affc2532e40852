"""examples/ runs: a user nn.Module on a user Dataset, compressed, fine-tuned, saved, exported and timed."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tensorslim

ROOT = Path(__file__).resolve().parents[1]


def test_compress_your_model_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "compress_your_model.py"), "--epochs", "2",
                           "--out", str(tmp_path / "ex")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
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
