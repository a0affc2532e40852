"""TT-SVD and TT-matrix against planted TT tensors, Kronecker products, TensorLy and the T3F count."""

from __future__ import annotations

import math

import pytest
import torch
from tests import _tensorly as tly

from tensorslim.decompose import TTResult, max_tt_ranks, tt_matrix, tt_matrix_to_matrix, tt_svd, tt_to_tensor


def random_tt(shape, ranks, gen):
    return [torch.randn(ranks[k], n, ranks[k + 1], generator=gen, dtype=torch.float64)
            for k, n in enumerate(shape)]


def test_tt_to_tensor_matches_entrywise_product(gen):
    cores = random_tt((3, 4, 2, 5), (1, 2, 3, 2, 1), gen)
    full = tt_to_tensor(cores)
    for idx in [(0, 0, 0, 0), (2, 3, 1, 4), (1, 2, 0, 3)]:
        prod = torch.eye(1, dtype=torch.float64)
        for core, i in zip(cores, idx):
            prod = prod @ core[:, i, :]
        assert float(full[idx]) == pytest.approx(float(prod[0, 0]), rel=1e-12)


def test_tt_svd_recovers_planted_tt(gen):
    shape, ranks = (4, 5, 6, 3), (1, 3, 4, 2, 1)
    x = tt_to_tensor(random_tt(shape, ranks, gen))
    res = tt_svd(x, 4)
    assert isinstance(res, TTResult)
    # max_rank fixes the ranks from the shape alone (min(4, max_tt_ranks)), whatever the data
    assert res.ranks == (1, 4, 4, 3, 1)
    assert res.rel_error < 1e-12
    torch.testing.assert_close(res.to_tensor(), x)
    exact = tt_svd(x, ranks=ranks)
    assert exact.rel_error < 1e-12 and exact.ranks == ranks
    inner = tt_svd(x, ranks=ranks[1:-1])
    assert inner.ranks == ranks
    assert tt_svd(x, rel_tol=1e-10).ranks == ranks  # an accuracy target finds the planted ranks


@pytest.mark.parametrize("max_rank", [1, 2, 3, 5])
def test_tt_svd_matches_tensorly(max_rank, gen):
    x = torch.randn(4, 5, 6, 7, generator=gen, dtype=torch.float64)
    ours = tt_svd(x, max_rank)
    ref = tly.tensor_train(x, max_rank)
    assert ours.ranks == ref.ranks
    assert ours.rel_error == pytest.approx(ref.rel_error, rel=1e-9, abs=1e-12)
    direct = float(torch.linalg.norm(x - tt_to_tensor(ours.cores)) / torch.linalg.norm(x))
    assert ours.rel_error == pytest.approx(direct, rel=1e-12)


def test_tt_svd_rel_tol_meets_the_bound(gen):
    x = torch.randn(6, 7, 8, 5, generator=gen, dtype=torch.float64)
    for tol in (0.3, 0.1, 0.01):
        res = tt_svd(x, rel_tol=tol)
        assert res.rel_error <= tol + 1e-12
    assert tt_svd(x, rel_tol=0.0).rel_error < 1e-12
    capped = tt_svd(x, max_rank=2, rel_tol=0.01)
    assert max(capped.ranks) <= 2


def test_max_tt_ranks():
    assert max_tt_ranks((4, 5, 6)) == (1, 4, 6, 1)
    assert max_tt_ranks((2, 2, 2, 2)) == (1, 2, 4, 2, 1)


def test_t3f_parameter_count(gen):
    # T3F tutorial: a 784 -> 625 layer, input (7,4,7,4), output (5,5,5,5), TT-rank 4: 1,100 core parameters.
    w = torch.randn(625, 784, generator=gen)
    res = tt_matrix(w, (5, 5, 5, 5), (7, 4, 7, 4), 4)
    assert [tuple(c.shape) for c in res.cores] == [(1, 5, 7, 4), (4, 5, 4, 4), (4, 5, 7, 4), (4, 5, 4, 1)]
    assert res.num_params == 1100
    assert res.ranks == (1, 4, 4, 4, 1)
    assert res.cores[0].dtype == torch.float32


def test_tt_matrix_of_kronecker_product_has_rank_one(gen):
    # W = A1 ⊗ A2 ⊗ A3 (A_k of shape m_k × n_k) is exactly a TT matrix of rank 1 with cores A_k.
    mats = [torch.randn(m, n, generator=gen, dtype=torch.float64) for m, n in [(2, 3), (4, 2), (3, 5)]]
    w = torch.kron(torch.kron(mats[0], mats[1]), mats[2])
    res = tt_matrix(w, (2, 4, 3), (3, 2, 5), 1)
    assert res.rel_error < 1e-12
    assert res.ranks == (1, 1, 1, 1)
    torch.testing.assert_close(tt_matrix_to_matrix(res.cores), w)
    # each core is its Kronecker factor up to scale
    for core, a in zip(res.cores, mats):
        c = core[0, :, :, 0]
        cos = float((c * a).sum() / (c.norm() * a.norm()))
        assert abs(cos) == pytest.approx(1.0, abs=1e-12)


def test_tt_matrix_full_rank_round_trip_and_row_major_layout(gen):
    w = torch.randn(12, 10, generator=gen, dtype=torch.float64)
    res = tt_matrix(w, (3, 4), (5, 2), 100)
    assert res.rel_error < 1e-12
    torch.testing.assert_close(res.to_tensor(), w)
    # entry W[(i1,i2),(j1,j2)] = G1[:, i1, j1, :] G2[:, i2, j2, :] with C-order multi-indices
    g1, g2 = res.cores
    i1, i2, j1, j2 = 2, 3, 4, 1
    value = float(g1[0, i1, j1, :] @ g2[:, i2, j2, 0])
    assert value == pytest.approx(float(w[i1 * 4 + i2, j1 * 2 + j2]), rel=1e-10)


def test_tt_matrix_rejects_mismatched_shapes():
    w = torch.ones(625, 784)
    with pytest.raises(ValueError, match="does not match"):
        tt_matrix(w, (5, 5, 5, 5), (7, 4, 7, 5), 4)
    with pytest.raises(ValueError, match="same number of factors"):
        tt_matrix(w, (25, 25), (7, 4, 7, 4), 4)
    with pytest.raises(ValueError, match="2 dimensions"):
        tt_matrix(torch.ones(5, 5, 5), (5,), (25,), 2)


def test_tt_svd_rejects_invalid_ranks():
    x = torch.ones(4, 5, 6)
    with pytest.raises(ValueError, match="max_rank"):
        tt_svd(x, 0)
    with pytest.raises(ValueError, match="start and end with 1"):
        tt_svd(x, ranks=(2, 3, 3, 1))
    with pytest.raises(ValueError, match="expected 4 TT ranks"):
        tt_svd(x, ranks=(1, 2, 1))
    with pytest.raises(ValueError, match="r_1=5 is above the largest meaningful value 4"):
        tt_svd(x, ranks=(1, 5, 3, 1))
    with pytest.raises(ValueError, match="needs max_rank"):
        tt_svd(x)
    bad = x.clone()
    bad[1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        tt_svd(bad, 2)


def test_tt_params_equal_sum_of_core_sizes(gen):
    x = torch.randn(3, 4, 5, 6, generator=gen)
    res = tt_svd(x, 3)
    r = res.ranks
    assert res.num_params == sum(r[k] * n * r[k + 1] for k, n in enumerate(x.shape))
    assert res.num_params < math.prod(x.shape)
