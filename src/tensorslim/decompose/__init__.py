"""Tensor decompositions on torch tensors: SVD, CP (power method, ALS), (partial) Tucker, TT, TT-matrix.

Pure math: torch tensors in, small frozen dataclasses out (every result reports ``rel_error``, the relative
Frobenius error of the approximation). Arithmetic runs in float64; results come back in the input's dtype.
Invalid input (rank 0 or above what the shape allows, NaN/inf entries, shape mismatches) raises ValueError
with a one-line message. Rank *selection* lives in :mod:`tensorslim.decompose.ranks`.

TensorLy is not a dependency: the tests and benchmarks use it as an independent reference (``tests/_tensorly.py``).
"""

from . import ranks
from .cp import CPResult, cp_als, cp_power, cp_to_tensor, max_cp_rank
from .svd import SVDResult, singular_values, truncated_svd
from .tt import TTResult, max_tt_ranks, tt_matrix, tt_matrix_to_matrix, tt_svd, tt_to_tensor
from .tucker import TuckerResult, partial_tucker, tucker, tucker_to_tensor

__all__ = [
    "CPResult",
    "SVDResult",
    "TTResult",
    "TuckerResult",
    "cp_als",
    "cp_power",
    "cp_to_tensor",
    "max_cp_rank",
    "max_tt_ranks",
    "partial_tucker",
    "ranks",
    "singular_values",
    "truncated_svd",
    "tt_matrix",
    "tt_matrix_to_matrix",
    "tt_svd",
    "tt_to_tensor",
    "tucker",
    "tucker_to_tensor",
]
