"""TensorLy as an independent reference for the tests and benchmarks: thin wrappers returning tensorslim's
result types.

TensorLy is a dev extra only: nothing in ``src/tensorslim`` imports it; the tests and benchmarks that compare
against it import this module (``from tests._tensorly import ...``; benchmarks put the repository root on
``sys.path``), so an API change there is fixed here once. TensorLy is imported lazily and run
on its PyTorch backend, set only for the duration of each call (thread-locally) and restored afterwards.
Inputs are converted to float64 torch tensors; results come back as float64 torch tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from tensorslim.decompose._common import WORK_DTYPE, prepare, relative_error
from tensorslim.decompose.cp import CPResult, cp_to_tensor
from tensorslim.decompose.tt import TTResult, tt_to_tensor
from tensorslim.decompose.tucker import TuckerResult, tucker_to_tensor


def available() -> bool:
    """Whether TensorLy can be imported."""
    try:
        import tensorly  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _pytorch_backend() -> Iterator[Any]:
    import tensorly as tl

    with tl.backend_context("pytorch", local_threadsafe=True):
        yield tl


def to_tensorly(tensor: torch.Tensor) -> torch.Tensor:
    """A float64, contiguous torch tensor (what TensorLy's PyTorch backend takes)."""
    work, _ = prepare(tensor, "tensor")
    return work.contiguous()


def from_tensorly(value: Any) -> torch.Tensor:
    """Back to a float64 torch tensor (also accepts numpy arrays from other backends)."""
    return torch.as_tensor(value).to(WORK_DTYPE)


def parafac(tensor: torch.Tensor, rank: int, *, init: str = "svd", n_iter_max: int = 100, tol: float = 1e-8,
            seed: int = 0, linesearch: bool = False) -> CPResult:
    """TensorLy ``parafac`` (CP-ALS) with TensorLy's own defaults; weights/factors normalised like ours."""
    x = to_tensorly(tensor)
    with _pytorch_backend() as tl:
        from tensorly.decomposition import parafac as tl_parafac

        cp = tl_parafac(x, rank, n_iter_max=n_iter_max, init=init, tol=tol, random_state=seed,
                        normalize_factors=True, linesearch=linesearch)
        weights, factors = cp
        if weights is None:
            weights = tl.ones(rank)
    weights = from_tensorly(weights)
    factors = [from_tensorly(f) for f in factors]
    return CPResult(weights=weights, factors=tuple(factors), rel_error=relative_error(x, cp_to_tensor(weights,
                    factors)), method="tensorly-parafac")


def parafac_power_iteration(tensor: torch.Tensor, rank: int, *, n_repeat: int = 10,
                            n_iteration: int = 10) -> CPResult:
    """TensorLy ``parafac_power_iteration`` (robust tensor power iteration with deflation)."""
    x = to_tensorly(tensor)
    with _pytorch_backend():
        from tensorly.decomposition import parafac_power_iteration as tl_power

        weights, factors = tl_power(x, rank, n_repeat=n_repeat, n_iteration=n_iteration)
    weights = from_tensorly(weights)
    factors = [from_tensorly(f) for f in factors]
    return CPResult(weights=weights, factors=tuple(factors),
                    rel_error=relative_error(x, cp_to_tensor(weights, factors)), method="tensorly-power")


def partial_tucker(tensor: torch.Tensor, modes: Sequence[int], ranks: Sequence[int], *, n_iter_max: int = 100,
                   tol: float = 1e-4) -> TuckerResult:
    """TensorLy ``partial_tucker`` (HOOI on the given modes) with TensorLy's defaults."""
    x = to_tensorly(tensor)
    modes = tuple(int(m) for m in modes)
    with _pytorch_backend():
        from tensorly.decomposition import partial_tucker as tl_partial_tucker

        (core, factors), _ = tl_partial_tucker(x, list(ranks), modes=list(modes), n_iter_max=n_iter_max,
                                               tol=tol)
    core = from_tensorly(core)
    factors = [from_tensorly(f) for f in factors]
    return TuckerResult(core=core, factors=tuple(factors), modes=modes,
                        rel_error=relative_error(x, tucker_to_tensor(core, factors, modes)))


def tucker(tensor: torch.Tensor, ranks: Sequence[int], *, n_iter_max: int = 100,
           tol: float = 1e-4) -> TuckerResult:
    """TensorLy ``tucker`` (HOOI on every mode)."""
    x = to_tensorly(tensor)
    with _pytorch_backend():
        from tensorly.decomposition import tucker as tl_tucker

        core, factors = tl_tucker(x, list(ranks), n_iter_max=n_iter_max, tol=tol)
    core = from_tensorly(core)
    factors = [from_tensorly(f) for f in factors]
    modes = tuple(range(x.ndim))
    return TuckerResult(core=core, factors=tuple(factors), modes=modes,
                        rel_error=relative_error(x, tucker_to_tensor(core, factors, modes)))


def tensor_train(tensor: torch.Tensor, rank: int | Sequence[int]) -> TTResult:
    """TensorLy ``tensor_train`` (TT-SVD); ``rank`` is a max rank or the ``d+1`` ranks."""
    x = to_tensorly(tensor)
    with _pytorch_backend():
        from tensorly.decomposition import tensor_train as tl_tensor_train

        tt = tl_tensor_train(x, rank if isinstance(rank, int) else list(rank))
    cores = [from_tensorly(c) for c in tt.factors]
    return TTResult(cores=tuple(cores), rel_error=relative_error(x, tt_to_tensor(cores)))
