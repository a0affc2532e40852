"""Tucker / partial Tucker (HOSVD + HOOI) against planted Tucker tensors and TensorLy."""

from __future__ import annotations

import pytest
import torch
from tests import _tensorly as tly

from tensorslim.decompose import TuckerResult, partial_tucker, tucker, tucker_to_tensor


def planted_tucker(shape, ranks, modes, gen):
    core_shape = list(shape)
    for m, r in zip(modes, ranks):
        core_shape[m] = r
    core = torch.randn(*core_shape, generator=gen, dtype=torch.float64)
    factors = [torch.linalg.qr(torch.randn(shape[m], r, generator=gen, dtype=torch.float64))[0]
               for m, r in zip(modes, ranks)]
    return tucker_to_tensor(core, factors, modes)


def orthonormal(f):
    return torch.allclose(f.T @ f, torch.eye(f.shape[1], dtype=f.dtype), atol=1e-10)


def test_tucker2_of_conv_kernel_recovers_planted_ranks(gen):
    kernel = planted_tucker((32, 24, 3, 3), (6, 5), (0, 1), gen)
    res = partial_tucker(kernel, (0, 1), (6, 5))
    assert isinstance(res, TuckerResult)
    assert tuple(res.core.shape) == (6, 5, 3, 3)
    assert [tuple(f.shape) for f in res.factors] == [(32, 6), (24, 5)]
    assert res.modes == (0, 1) and res.ranks == (6, 5)
    assert res.rel_error < 1e-12
    assert all(orthonormal(f) for f in res.factors)
    torch.testing.assert_close(res.to_tensor(), kernel)


def test_full_tucker_recovers_planted_tensor(gen):
    x = planted_tucker((9, 10, 11), (3, 4, 5), (0, 1, 2), gen)
    res = tucker(x, (3, 4, 5))
    assert res.rel_error < 1e-12 and tuple(res.core.shape) == (3, 4, 5)


@pytest.mark.parametrize("shape,modes,ranks", [
    ((20, 16, 3, 3), (0, 1), (7, 5)),
    ((12, 14, 10), (0, 2), (4, 6)),
    ((10, 9, 8, 7), (1, 2, 3), (3, 3, 3)),
])
def test_partial_tucker_matches_or_beats_tensorly(shape, modes, ranks, gen):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    ours = partial_tucker(x, modes, ranks)
    ref = tly.partial_tucker(x, modes, ranks)
    assert ours.rel_error <= ref.rel_error + 1e-9
    assert ours.rel_error >= ref.rel_error - 0.02  # the same local optimum region, not a different problem
    direct = float(torch.linalg.norm(x - ours.to_tensor()) / torch.linalg.norm(x))
    assert ours.rel_error == pytest.approx(direct, rel=1e-12)


def test_full_tucker_matches_or_beats_tensorly(gen):
    x = torch.randn(8, 9, 10, generator=gen, dtype=torch.float64)
    assert tucker(x, (3, 4, 5)).rel_error <= tly.tucker(x, (3, 4, 5)).rel_error + 1e-9


def test_hosvd_only_and_hooi_improves(gen):
    x = torch.randn(12, 11, 10, generator=gen, dtype=torch.float64)
    hosvd = partial_tucker(x, (0, 1, 2), (4, 4, 4), n_iter_max=0)
    hooi = partial_tucker(x, (0, 1, 2), (4, 4, 4), tol=0.0, n_iter_max=30)
    assert hosvd.n_iter == 0 and hooi.n_iter == 30
    assert hooi.rel_error <= hosvd.rel_error + 1e-12
    # HOSVD factors are the leading left singular vectors of each unfolding
    u, _, _ = torch.linalg.svd(x.reshape(12, -1), full_matrices=False)
    proj_ours = hosvd.factors[0] @ hosvd.factors[0].T
    torch.testing.assert_close(proj_ours, u[:, :4] @ u[:, :4].T)


def test_full_rank_is_exact_and_dtype_kept(gen):
    x = torch.randn(5, 6, 7, generator=gen)
    res = tucker(x, (5, 6, 7))
    assert res.core.dtype == torch.float32 and res.rel_error < 1e-6


def test_int_rank_and_negative_mode(gen):
    x = torch.randn(6, 7, 8, generator=gen, dtype=torch.float64)
    a = partial_tucker(x, (-1,), 3)
    b = partial_tucker(x, (2,), (3,))
    assert a.modes == (2,) and torch.equal(a.core, b.core)
    assert tucker(x, 2).ranks == (2, 2, 2)


def test_rejects_invalid_input():
    x = torch.ones(4, 5, 6)
    with pytest.raises(ValueError, match="largest meaningful value 4"):
        partial_tucker(x, (0, 1), (5, 2))
    with pytest.raises(ValueError, match="rank of mode 1"):
        partial_tucker(x, (0, 1), (2, 0))
    with pytest.raises(ValueError, match="2 ranks for 1 modes"):
        partial_tucker(x, (0,), (2, 2))
    with pytest.raises(ValueError, match="distinct"):
        partial_tucker(x, (0, 0), (2, 2))
    with pytest.raises(ValueError, match="mode"):
        partial_tucker(x, (3,), (2,))
    bad = x.clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        tucker(bad, 2)
