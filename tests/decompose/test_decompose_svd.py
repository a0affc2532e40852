"""truncated_svd against numpy.linalg.svd and exact low-rank matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tensorslim.decompose import SVDResult, singular_values, truncated_svd


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40)])
def test_matches_numpy_eckart_young(shape, gen):
    a = torch.randn(*shape, generator=gen, dtype=torch.float64)
    rank = 7
    res = truncated_svd(a, rank)
    assert isinstance(res, SVDResult)
    assert res.U.shape == (shape[0], rank) and res.S.shape == (rank,) and res.Vh.shape == (rank, shape[1])
    s_np = np.linalg.svd(a.numpy(), compute_uv=False)
    np.testing.assert_allclose(res.S.numpy(), s_np[:rank], rtol=1e-12)
    # Eckart–Young: the error is the norm of the discarded singular values, and the reported error is exact.
    expected = np.sqrt((s_np[rank:] ** 2).sum() / (s_np ** 2).sum())
    direct = float(torch.linalg.norm(a - res.to_matrix()) / torch.linalg.norm(a))
    assert res.rel_error == pytest.approx(expected, rel=1e-10)
    assert res.rel_error == pytest.approx(direct, rel=1e-10)
    torch.testing.assert_close(res.U.T @ res.U, torch.eye(rank, dtype=torch.float64))
    torch.testing.assert_close(res.Vh @ res.Vh.T, torch.eye(rank, dtype=torch.float64))


def test_exact_for_planted_low_rank(gen):
    a = torch.randn(25, 4, generator=gen, dtype=torch.float64) @ torch.randn(4, 60, generator=gen,
                                                                             dtype=torch.float64)
    res = truncated_svd(a, 4)
    assert res.rel_error < 1e-12
    torch.testing.assert_close(res.to_matrix(), a)


def test_full_rank_is_exact_and_dtype_is_kept(gen):
    a = torch.randn(6, 9, generator=gen)
    res = truncated_svd(a, 6)
    assert res.U.dtype == torch.float32 and res.S.dtype == torch.float32
    assert res.rel_error < 1e-12
    torch.testing.assert_close(res.to_matrix(), a, atol=1e-5, rtol=1e-5)


def test_input_not_modified(gen):
    a = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    before = a.clone()
    truncated_svd(a, 2)
    assert torch.equal(a, before)


@pytest.mark.parametrize("rank", [0, -1, 7])
def test_rejects_bad_rank(rank):
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(torch.ones(6, 9), rank)


def test_rejects_non_finite_and_wrong_ndim():
    a = torch.ones(4, 4)
    a[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        truncated_svd(a, 1)
    b = torch.ones(4, 4)
    b[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        truncated_svd(b, 1)
    with pytest.raises(ValueError, match="2 dimensions"):
        truncated_svd(torch.ones(2, 3, 4), 1)


def test_error_messages_are_one_line():
    for bad in (lambda: truncated_svd(torch.ones(3, 3), 5), lambda: truncated_svd(torch.ones(3), 1)):
        with pytest.raises(ValueError) as info:
            bad()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape", [(12, 90), (90, 12)])
def test_singular_values_match_numpy(shape, gen):
    a = torch.randn(*shape, generator=gen)
    s = singular_values(a)
    assert s.dtype == torch.float64
    np.testing.assert_allclose(s.numpy(), np.linalg.svd(a.double().numpy(), compute_uv=False), rtol=1e-10)
