"""The TensorLy adapter (tests/_tensorly.py): nothing in the package imports tensorly (a dev extra only); the
adapter leaves TensorLy's backend as it found it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from tests import _tensorly as tly

import tensorslim
from tensorslim.decompose import CPResult, TTResult, TuckerResult, cp_to_tensor

SRC = Path(tensorslim.__file__).resolve().parent


def _imports_tensorly(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorly" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tensorly":
            return True
    return False


def test_nothing_in_the_package_imports_tensorly():
    importers = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if _imports_tensorly(p))
    assert importers == []
    assert _imports_tensorly(Path(tly.__file__))  # the check does find the adapter's imports


def test_backend_is_restored_and_results_are_ours(gen):
    import tensorly as tl

    before = tl.get_backend()
    x = torch.randn(5, 6, 7, generator=gen, dtype=torch.float64)
    cp = tly.parafac(x, 3)
    tk = tly.partial_tucker(x, (0, 1), (2, 3))
    tt = tly.tensor_train(x, 2)
    assert tl.get_backend() == before
    assert isinstance(cp, CPResult) and isinstance(tk, TuckerResult) and isinstance(tt, TTResult)
    assert cp.weights.dtype == torch.float64 and len(cp.factors) == 3
    direct = float(torch.linalg.norm(x - cp_to_tensor(cp.weights, cp.factors)) / torch.linalg.norm(x))
    assert cp.rel_error == pytest.approx(direct, rel=1e-12)
    assert tk.core.shape == (2, 3, 7) and tt.ranks == (1, 2, 2, 1)


def test_adapter_validates_input():
    bad = torch.ones(3, 4, 5)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        tly.parafac(bad, 2)
