"""Tensor Ring: TR-SVD and TR-ALS against entrywise traces, planted rings, explicit design matrices and TensorLy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tests import _tensorly as tly

from tensorslim.decompose.tensor_ring import (
    TRResult,
    _gram,
    _rhs,
    max_tr_ranks,
    resolve_tr_ranks,
    tr_als,
    tr_svd,
    tr_to_tensor,
)


def random_ring(shape, ranks, gen, dtype=torch.float64):
    n = len(shape)
    return [torch.randn(ranks[k], shape[k], ranks[(k + 1) % n], generator=gen, dtype=dtype) for k in range(n)]


def entry(cores, idx) -> float:
    """``trace(G_1[:, i_1, :] ⋯ G_N[:, i_N, :])`` by explicit matrix products."""
    prod = torch.eye(cores[0].shape[0], dtype=cores[0].dtype)
    for core, i in zip(cores, idx):
        prod = prod @ core[:, i, :]
    return float(torch.trace(prod))


def tensorly_tr_to_tensor(cores) -> torch.Tensor:
    with tly._pytorch_backend():
        from tensorly.tr_tensor import tr_to_tensor as tl_tr_to_tensor

        return tl_tr_to_tensor([c.contiguous() for c in cores])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def planted(shape, ranks, gen, noise: float) -> tuple[torch.Tensor, float]:
    """A TR tensor plus Gaussian noise of relative size ``noise``; also the relative noise floor."""
    clean = tr_to_tensor(random_ring(shape, ranks, gen))
    e = torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    e *= noise * clean.norm() / e.norm()
    x = clean + e
    return x, float(e.norm() / x.norm())


# --------------------------------------------------------------------------------------------- tr_to_tensor


@pytest.mark.parametrize("shape, ranks", [((3, 4, 2, 5), (2, 3, 1, 4)), ((5,), (3,)), ((2, 3), (2, 2)),
                                          ((3, 2, 2, 3, 2), (1, 2, 3, 2, 2))])
def test_tr_to_tensor_matches_traces_and_tensorly(shape, ranks, gen):
    cores = random_ring(shape, ranks, gen)
    full = tr_to_tensor(cores)
    assert full.shape == shape
    for idx in itertools.islice(itertools.product(*[range(n) for n in shape]), 0, None, 7):
        assert float(full[idx]) == pytest.approx(entry(cores, idx), rel=1e-11, abs=1e-11)
    if len(shape) > 1:  # TensorLy's tr_to_tensor needs two cores at least
        assert rel(full, tensorly_tr_to_tensor(cores)) < 1e-13


def test_tr_with_r0_one_is_a_tensor_train(gen):
    from tensorslim.decompose import tt_to_tensor

    cores = random_ring((3, 4, 5), (1, 2, 3), gen)
    assert rel(tr_to_tensor(cores), tt_to_tensor(cores)) < 1e-14


def test_tr_to_tensor_refuses_open_rings(gen):
    with pytest.raises(ValueError, match="ring must close"):
        tr_to_tensor([torch.randn(2, 3, 3), torch.randn(3, 4, 1)])
    with pytest.raises(ValueError, match="3 dimensions"):
        tr_to_tensor([torch.randn(2, 3)])


# ---------------------------------------------------------------------------------------------------- tr_svd


@pytest.mark.parametrize("shape, r0", [((4, 5, 6, 3), 1), ((4, 5, 6, 3), 2), ((4, 5, 6, 3), 4), ((6, 2, 3), 3),
                                       ((2, 8), 2), ((9, 4, 5), 3)])
def test_tr_svd_is_exact_at_full_ranks(shape, r0, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    ranks = max_tr_ranks(shape, r0)
    assert ranks[0] == r0
    res = tr_svd(x, ranks)
    assert isinstance(res, TRResult) and res.ranks == ranks
    assert [tuple(c.shape) for c in res.cores] == [(ranks[k], n, ranks[(k + 1) % len(shape)])
                                                   for k, n in enumerate(shape)]
    assert res.rel_error < 1e-12
    assert rel(res.to_tensor(), x) < 1e-12
    assert res.num_params == sum(c.numel() for c in res.cores)


def test_max_tr_ranks():
    assert max_tr_ranks((4, 5, 6, 3)) == (1, 4, 18, 3)  # the TT-SVD ranks
    assert max_tr_ranks((4, 5, 6, 3), 2) == (2, 2, 10, 6)
    with pytest.raises(ValueError, match="r0=5"):
        max_tr_ranks((4, 5, 6), 5)


@pytest.mark.parametrize("ranks", [(1, 2, 3, 3), (2, 2, 3, 3), (1, 4, 4, 2), (2, 1, 2, 2), (3, 1, 3, 4)])
def test_tr_svd_matches_tensorly(ranks, gen):
    x = torch.randn(4, 5, 6, 7, generator=gen, dtype=torch.float64)
    ours = tr_svd(x, ranks)
    with tly._pytorch_backend() as tl:
        from tensorly.decomposition import tensor_ring

        ref = tensor_ring(x, [*ranks, ranks[0]])
        ref_full = tl.tr_to_tensor(ref)
    assert tuple(f.shape[0] for f in ref.factors) == ours.ranks
    assert ours.rel_error == pytest.approx(rel(ref_full, x), rel=1e-9)
    assert ours.rel_error == pytest.approx(rel(tr_to_tensor(ours.cores), x), rel=1e-12)


def test_tr_svd_refuses_ranks_it_cannot_reach(gen):
    x = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="r_0·r_1 = 6"):
        tr_svd(x, (2, 3, 2))
    with pytest.raises(ValueError, match="r_2=9"):
        tr_svd(x, (1, 2, 9))  # r_2 <= min(r_1 n_2, n_3 r_0) = 6


@pytest.mark.parametrize("ranks, message", [(0, ">= 1"), ((2, 2), "expected 3 TR ranks"),
                                            ((2, 2, 2, 3), "last TR rank must equal the first"),
                                            ("2", "int or a sequence"), (True, "int or a sequence")])
def test_bad_ranks(ranks, message):
    with pytest.raises(ValueError, match=message):
        resolve_tr_ranks((4, 5, 6), ranks)
    assert resolve_tr_ranks((4, 5, 6), (2, 3, 1, 2)) == (2, 3, 1)  # TensorLy's N+1 form


def test_bad_tensors_and_options(gen):
    x = torch.randn(3, 4, 5, generator=gen)
    x[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tr_als(x, 2)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        tr_svd(torch.ones(4), 1)
    y = torch.randn(3, 4, 5, generator=gen)
    with pytest.raises(ValueError, match="init"):
        tr_als(y, 2, init="cp")
    with pytest.raises(ValueError, match="tol"):
        tr_als(y, 2, tol=-1.0)


# ---------------------------------------------------------------------------------------------------- tr_als


def test_normal_equations_equal_the_explicit_design_matrix(gen):
    """The Gram (transfer matrices) and right-hand side (chunked contraction) equal Qᵀ Q and X_(k) Q."""
    shape, ranks = (3, 4, 2, 5), (2, 3, 4, 2)
    cores = random_ring(shape, ranks, gen)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    n = len(shape)
    for k in range(n):
        ra, rb = ranks[k], ranks[(k + 1) % n]
        # Q[b, rest, a]: the ring without core k, the other modes in ring order k+1, …, k-1.
        q = cores[(k + 1) % n]
        for j in range(2, n):
            q = torch.tensordot(q, cores[(k + j) % n], dims=1)
        design = q.reshape(rb, -1, ra).permute(1, 2, 0).reshape(-1, ra * rb)  # rows: rest, columns (a, b)
        unfolding = x.permute([(k + j) % n for j in range(n)]).reshape(shape[k], -1)
        assert rel(_gram(cores, k), design.T @ design) < 1e-12
        assert rel(_rhs(x, cores, k), unfolding @ design) < 1e-12
        # each fitted slice reproduces the model: Σ_ab G[a, i, b] Q[b, rest, a] is X̂'s unfolding
        model = tr_to_tensor(cores).permute([(k + j) % n for j in range(n)]).reshape(shape[k], -1)
        g = cores[k].permute(1, 0, 2).reshape(shape[k], ra * rb)
        assert rel(g @ design.T, model) < 1e-12


@pytest.mark.parametrize("shape, ranks", [((6, 7, 8, 5), (3, 3, 3, 3)),  # no rotation of TR-SVD reaches r²=9
                                          ((5, 6, 7), (2, 3, 2)),  # TR-SVD from the second mode
                                          ((4, 6, 9, 2, 4), (3, 3, 3, 3, 3)),
                                          ((4, 4, 4, 4, 3), (2, 2, 3, 2, 2))])  # TR-SVD from the first mode
def test_tr_als_reaches_the_noise_floor_of_a_planted_ring(shape, ranks, gen):
    x, floor = planted(shape, ranks, gen, noise=1e-3)
    res = tr_als(x, ranks, n_iter_max=500, tol=1e-12, seed=1)
    assert res.ranks == ranks and res.n_iter >= 1
    assert res.rel_error <= floor * 1.001  # the best rank-`ranks` ring is at most the noise away
    # and it fits no more of the noise than its number of parameters allows (about a share P / entries of it)
    assert res.rel_error >= floor * math.sqrt(1 - res.num_params / x.numel()) * 0.95
    assert res.rel_error == pytest.approx(rel(tr_to_tensor(res.cores), x), rel=1e-9)


@pytest.mark.parametrize("shape, ranks", [((6, 7, 8, 5), (3, 3, 3, 3)), ((5, 6, 4), (2, 3, 4)),
                                          ((6, 5, 7), (1, 3, 4)), ((4, 5, 6, 7), (2, 2, 3, 3))])
def test_tr_als_is_no_worse_than_tensorly(shape, ranks, gen):
    x, _ = planted(shape, ranks, gen, noise=0.05)
    ours = tr_als(x, ranks, n_iter_max=300, tol=1e-10)
    with tly._pytorch_backend() as tl:
        from tensorly.decomposition import tensor_ring_als

        ref = tensor_ring_als(x, [*ranks, ranks[0]], n_iter_max=300, tol=1e-10, random_state=0)
        ref_err = rel(tl.tr_to_tensor(ref), x)
    assert ours.rel_error <= ref_err * (1 + 1e-4) + 1e-9


def test_tr_als_error_never_increases(gen):
    x, _ = planted((5, 6, 4, 3), (2, 3, 2, 2), gen, noise=0.2)
    errors = [tr_als(x, (2, 3, 2, 2), n_iter_max=k, tol=0.0, init="random", seed=3).rel_error for k in range(8)]
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]


def test_tr_als_exact_at_full_ranks_and_from_svd(gen):
    x = torch.randn(4, 5, 6, generator=gen, dtype=torch.float64)
    ranks = max_tr_ranks(x.shape, 2)
    res = tr_als(x, ranks)
    assert res.rel_error < 1e-10
    assert tr_als(x, ranks, n_iter_max=0).rel_error == pytest.approx(tr_svd(x, ranks).rel_error, abs=1e-14)


def test_tr_als_random_start_recovers_an_exact_ring(gen):
    ranks = (2, 3, 2)
    x = tr_to_tensor(random_ring((5, 6, 7), ranks, gen))
    res = tr_als(x, ranks, init="random", n_iter_max=1000, tol=1e-14, seed=0)
    assert res.rel_error < 1e-6


def test_tr_als_redundant_ranks_and_float32(gen):
    x, floor = planted((4, 5, 6), (2, 2, 2), gen, noise=1e-3)
    small = tr_als(x, 2, n_iter_max=300, tol=1e-12)
    big = tr_als(x, 5, n_iter_max=50, tol=1e-12)  # far more parameters than the data needs: singular Grams
    assert math.isfinite(big.rel_error) and big.rel_error <= small.rel_error + 1e-9
    f32 = tr_als(x.float(), 2, n_iter_max=300, tol=1e-12)
    assert all(c.dtype == torch.float32 for c in f32.cores)
    assert f32.rel_error == pytest.approx(small.rel_error, rel=1e-3)
    zero = tr_als(torch.zeros(3, 4, 5), 2)
    assert zero.rel_error == 0.0
