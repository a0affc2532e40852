"""Shared helpers of the decomposition package: input checks, dtype handling, unfoldings, errors.

Every public routine of :mod:`tensorslim.decompose` converts its input with :func:`prepare`, which rejects
non-finite entries and returns a float64 working copy together with the dtype the results must be given back
in. Problems caused by the caller's input raise :class:`ValueError` with a one-line message; the layers stage
turns it into a ``DecompositionError`` naming the layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

WORK_DTYPE = torch.float64
"""Dtype of all internal arithmetic."""


def result_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype results are returned in: the input's own floating dtype, else torch's default dtype."""
    return tensor.dtype if tensor.dtype.is_floating_point else torch.get_default_dtype()


def prepare(tensor: object, name: str = "tensor", *, min_ndim: int = 1,
            ndim: int | None = None) -> tuple[torch.Tensor, torch.dtype]:
    """Validate ``tensor`` and return ``(float64 copy on its device, dtype for the results)``.

    Raises ValueError for complex input, a wrong number of dimensions, empty tensors and NaN/inf entries.
    """
    if not isinstance(tensor, torch.Tensor):
        try:
            tensor = torch.as_tensor(tensor)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} must be a tensor, got {type(tensor).__name__}") from exc
    if tensor.is_complex():
        raise ValueError(f"{name} must be real, got dtype {tensor.dtype}")
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)})")
    out_dtype = result_dtype(tensor)
    work = tensor.detach().to(WORK_DTYPE, copy=True)  # always a private copy: callers may mutate it
    if not bool(torch.isfinite(work).all()):
        bad = int((~torch.isfinite(work)).sum())
        raise ValueError(f"{name} has {bad} NaN/inf entries (shape {tuple(tensor.shape)})")
    return work, out_dtype


def check_int(value: object, name: str, *, low: int = 1, high: int | None = None, what: str = "") -> int:
    """Return ``value`` as an int within ``[low, high]`` or raise ValueError with a one-line reason."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be an integer, got {value!r}") from exc
        if as_int != value:
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = as_int
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        suffix = f" ({what})" if what else ""
        raise ValueError(f"{name}={value} is above the largest meaningful value {high}{suffix}")
    return value


def check_positive_float(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0) or raise ValueError."""
    try:
        as_float = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(as_float) or as_float < 0 or (as_float == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return as_float


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding: the mode's index gives the rows, the other indices (in order) the columns."""
    return torch.movedim(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def mode_dot(tensor: torch.Tensor, matrix: torch.Tensor, mode: int) -> torch.Tensor:
    """``tensor ×_mode matrix``: contract the tensor's ``mode`` with the columns of ``matrix`` (J × I)."""
    moved = torch.movedim(tensor, mode, -1)
    return torch.movedim(moved @ matrix.transpose(0, 1), -1, mode)


def relative_error(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    """``||reference - approximation||_F / ||reference||_F`` (0 if both are 0, inf if only the first is)."""
    num = float(torch.linalg.vector_norm(reference - approximation))
    den = float(torch.linalg.vector_norm(reference))
    return _ratio(num, den)


def relative_error_from_squares(residual_sq: float, total_sq: float) -> float:
    """``sqrt(residual_sq / total_sq)`` with the residual clipped at 0 (it can come out slightly negative)."""
    return _ratio(math.sqrt(max(residual_sq, 0.0)), math.sqrt(max(total_sq, 0.0)))


def _ratio(num: float, den: float) -> float:
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def leading_left_vectors(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """The ``rank`` leading left singular vectors of ``matrix`` (I × J), as an I × rank matrix.

    Wide matrices (J much larger than I) go through the eigendecomposition of the I × I Gram matrix, which is
    much cheaper than an SVD of the whole matrix and accurate for the leading subspace in float64; other
    shapes use a thin SVD.
    """
    rows, cols = matrix.shape
    if cols > 2 * rows:
        gram = matrix @ matrix.transpose(0, 1)
        _, vecs = torch.linalg.eigh(gram)
        return vecs.flip(-1)[:, :rank].contiguous()
    u, _, _ = thin_svd(matrix)
    return u[:, :rank].contiguous()


def thin_svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, S, Vh`` of the thin SVD, computed on whichever of the matrix and its transpose is tall.

    torch's CPU SVD is several times faster on a tall row-major matrix than on a wide one (LAPACK is
    column-major), so wide matrices are transposed first and the factors swapped back.
    """
    if matrix.shape[0] < matrix.shape[1]:
        u, s, vh = torch.linalg.svd(matrix.transpose(0, 1).contiguous(), full_matrices=False)
        return vh.transpose(0, 1), s, u.transpose(0, 1)
    return torch.linalg.svd(matrix.contiguous(), full_matrices=False)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values (descending), computed on the tall orientation (see :func:`thin_svd`)."""
    if matrix.shape[0] < matrix.shape[1]:
        matrix = matrix.transpose(0, 1)
    return torch.linalg.svdvals(matrix.contiguous())


def as_shape(values: Sequence[int] | int, name: str) -> tuple[int, ...]:
    """Validate a shape-like sequence of positive ints."""
    if isinstance(values, int):
        values = (values,)
    try:
        out = tuple(check_int(v, f"{name}[{i}]") for i, v in enumerate(values))
    except TypeError as exc:
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}") from exc
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out
