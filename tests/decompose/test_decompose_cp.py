"""CP: the tensor power method and ALS against planted tensors (exact recovery) and TensorLy."""

from __future__ import annotations

import inspect
import itertools
import math
import statistics
import warnings

import pytest
import torch
from tests import _tensorly as tly

from tensorslim.decompose import CPResult, cp_als, cp_power, cp_to_tensor, max_cp_rank, truncated_svd
from tensorslim.decompose.cp import gevd_applies


def planted_cp(shape, rank, gen, *, orthogonal=False, weights=None):
    """A tensor with an exact rank-``rank`` CP decomposition (unit factors), and its weights and factors."""
    factors = []
    for n in shape:
        f = torch.randn(n, rank, generator=gen, dtype=torch.float64)
        f = torch.linalg.qr(f)[0] if orthogonal else f / f.norm(dim=0)
        factors.append(f)
    if weights is None:
        weights = torch.linspace(3.0, 1.0, rank, dtype=torch.float64)
    return cp_to_tensor(weights, factors), weights, factors


def best_congruence(found, planted):
    """For each planted component, the best |cosine| (product over modes) with a found component."""
    rank = planted[0].shape[1]
    scores = torch.ones(rank, found[0].shape[1], dtype=torch.float64)
    for f, p in zip(found, planted):
        scores = scores * (p.T @ (f / f.norm(dim=0))).abs()
    return scores.max(dim=1).values


# ------------------------------------------------------------------------------------------------------------
# cp_to_tensor
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 6), (3, 4, 2, 5), (2, 3, 2, 3, 2)])
def test_cp_to_tensor_matches_explicit_sum(shape, gen):
    rank = 3
    factors = [torch.randn(n, rank, generator=gen, dtype=torch.float64) for n in shape]
    weights = torch.randn(rank, generator=gen, dtype=torch.float64)
    expected = torch.zeros(shape, dtype=torch.float64)
    for r in range(rank):
        term = weights[r]
        for f in factors:
            term = torch.tensordot(term, f[:, r], dims=0) if term.ndim else term * f[:, r]
        expected += term
    torch.testing.assert_close(cp_to_tensor(weights, factors), expected)


def test_max_cp_rank():
    assert max_cp_rank((64, 64, 9)) == 64 * 9
    assert max_cp_rank((3, 4, 5)) == 12
    assert max_cp_rank((7, 7)) == 7


# ------------------------------------------------------------------------------------------------------------
# Tensor power method
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(10, 8, 9), (6, 7, 5, 8)])
def test_power_recovers_orthogonally_decomposable_tensor(shape, gen):
    # With orthonormal factors, deflation is exact: every rank-1 step finds one planted component.
    rank = 4
    x, weights, factors = planted_cp(shape, rank, gen, orthogonal=True,
                                     weights=torch.tensor([5.0, 3.5, 2.0, 1.2], dtype=torch.float64))
    res = cp_power(x, rank)
    assert isinstance(res, CPResult) and res.method == "power"
    assert res.rel_error < 1e-8
    torch.testing.assert_close(res.weights, weights, rtol=1e-8, atol=1e-10)
    assert bool((best_congruence(res.factors, factors) > 1 - 1e-10).all())
    torch.testing.assert_close(res.to_tensor(), x)


def test_power_rank_one_of_general_tensor_is_exact(gen):
    x, _, _ = planted_cp((7, 9, 4, 3), 1, gen)
    res = cp_power(x, 1)
    assert res.rel_error < 1e-10


def test_power_reported_error_and_greedy_monotonicity(gen):
    x = torch.randn(9, 8, 7, generator=gen, dtype=torch.float64)
    errors = []
    for rank in (1, 2, 4, 8):
        res = cp_power(x, rank)
        direct = float(torch.linalg.norm(x - res.to_tensor()) / torch.linalg.norm(x))
        assert res.rel_error == pytest.approx(direct, rel=1e-9, abs=1e-12)
        assert bool((res.weights >= 0).all())
        for f in res.factors:
            torch.testing.assert_close(f.norm(dim=0), torch.ones(rank, dtype=torch.float64))
        errors.append(res.rel_error)
    # deflation is greedy and deterministic: the first R components do not depend on how many follow
    assert errors == sorted(errors, reverse=True)
    first2 = cp_power(x, 2)
    first4 = cp_power(x, 4)
    torch.testing.assert_close(first4.weights[:2], first2.weights)


def test_power_close_to_tensorly_power_iteration(gen):
    # TensorLy's robust tensor power iteration (random restarts) is the independent reference.
    ratios = []
    for shape, rank in [((8, 9, 10), 5), ((6, 7, 5, 4), 6), ((5, 6, 7), 3)]:
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        ours = cp_power(x, rank).rel_error
        ref = tly.parafac_power_iteration(x, rank).rel_error
        assert ours <= ref * 1.02
        ratios.append(ours / ref)
    assert statistics.mean(ratios) <= 1.01


def test_power_stop_rules_and_random_start(gen):
    x, _, _ = planted_cp((8, 6, 5), 3, gen, orthogonal=True)
    for kwargs in ({"stop": "vectors"}, {"init": "random", "n_iter_max": 500}):
        assert cp_power(x, 3, **kwargs).rel_error < 1e-6


def test_power_lower_rank_tensor_gives_zero_extra_components(gen):
    x, _, _ = planted_cp((5, 6, 4), 2, gen, orthogonal=True)
    res = cp_power(x, 4)
    assert res.rel_error < 1e-8
    assert float(res.weights[2:].abs().max()) < 1e-6


# ------------------------------------------------------------------------------------------------------------
# ALS
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,rank", [((10, 12, 9), 4), ((6, 7, 5, 8), 3), ((12, 10, 9), 6)])
@pytest.mark.parametrize("init", ["svd", "random", "power"])
def test_als_recovers_planted_cp(shape, rank, init, gen):
    # Generic factors with rank <= every dimension: the CP decomposition is unique (Kruskal), so ALS must
    # find the planted components themselves, not just a good fit.
    x, weights, factors = planted_cp(shape, rank, gen)
    res = cp_als(x, rank, init=init, n_iter_max=500, tol=1e-14)
    assert res.rel_error < 1e-6
    assert bool((best_congruence(res.factors, factors) > 1 - 1e-6).all())
    torch.testing.assert_close(res.weights, torch.sort(weights, descending=True).values, rtol=1e-5, atol=1e-8)


def test_als_reported_error_is_exact_and_weights_sorted(gen):
    x = torch.randn(7, 8, 9, generator=gen, dtype=torch.float64)
    res = cp_als(x, 5)
    direct = float(torch.linalg.norm(x - res.to_tensor()) / torch.linalg.norm(x))
    assert res.rel_error == pytest.approx(direct, rel=1e-12)
    assert bool((res.weights[:-1] >= res.weights[1:]).all())
    assert res.method == "als" and 1 <= res.n_iter <= 100


def test_als_on_noisy_low_rank_matches_or_beats_tensorly(gen):
    # Planted rank + 10 % noise: both should reach the noise floor; ours must not be worse.
    for shape, rank in [((10, 11, 12), 4), ((8, 9, 6, 5), 5)]:
        x, _, _ = planted_cp(shape, rank, gen)
        x = x / x.norm()
        noise = torch.randn(*shape, generator=gen, dtype=torch.float64)
        x = x + 0.1 * noise / noise.norm()
        ours = cp_als(x, rank).rel_error
        ref = tly.parafac(x, rank).rel_error
        assert ours <= ref + 1e-6


def test_als_on_random_tensors_close_to_tensorly(gen):
    # Pure Gaussian tensors have many local minima: each run may land in a different one, so allow 3 % per
    # tensor, and ask to be at least as good on average.
    ratios = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorLy warns when rank > a dimension for its SVD init
        for shape, rank in [((8, 9, 10), 5), ((6, 7, 5, 4), 6), ((12, 10, 9), 15), ((5, 6, 7), 3)]:
            x = torch.randn(*shape, generator=gen, dtype=torch.float64)
            ours = cp_als(x, rank).rel_error
            ref = tly.parafac(x, rank).rel_error
            assert ours <= ref * 1.03
            ratios.append(ours / ref)
    assert statistics.mean(ratios) <= 1.0


def test_als_without_linesearch_is_plain_als_like_tensorly(gen):
    # Same SVD start (all dimensions >= rank), same updates in the same order (ours runs the longest mode
    # first and the second longest last, TensorLy mode 0, 1, 2: make them coincide): the same iterates as
    # TensorLy's parafac.
    x = torch.randn(10, 8, 9, generator=gen, dtype=torch.float64)
    ours = cp_als(x, 5, init="svd", linesearch=False)
    ref = tly.parafac(x, 5)
    assert ours.rel_error == pytest.approx(ref.rel_error, rel=1e-6)


def test_als_from_power_never_worse_than_power(gen):
    x = torch.randn(9, 10, 8, generator=gen, dtype=torch.float64)
    assert cp_als(x, 6, init="power").rel_error <= cp_power(x, 6).rel_error + 1e-12


def test_cp3_and_cp4_views_of_a_conv_kernel(gen):
    kernel = torch.randn(16, 8, 3, 3, generator=gen)
    cp3 = cp_als(kernel.reshape(16, 8, 9), 10)
    cp4 = cp_als(kernel, 10)
    assert [tuple(f.shape) for f in cp3.factors] == [(16, 10), (8, 10), (9, 10)]
    assert [tuple(f.shape) for f in cp4.factors] == [(16, 10), (8, 10), (3, 10), (3, 10)]
    assert cp3.weights.dtype == torch.float32 and all(f.dtype == torch.float32 for f in cp4.factors)


# ------------------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [cp_power, cp_als])
def test_rejects_invalid_input(fn):
    good = torch.ones(3, 4, 5)
    with pytest.raises(ValueError, match="rank"):
        fn(good, 0)
    with pytest.raises(ValueError, match="largest meaningful value 12"):  # 3·4·5 / 5 fibres
        fn(good, 13)
    fn(good, 12)  # the bound itself is allowed
    bad = good.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        fn(bad, 2)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn(torch.ones(5), 1)


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="init"):
        cp_als(torch.ones(3, 4, 5), 2, init="hosvd")
    with pytest.raises(ValueError, match="stop"):
        cp_power(torch.ones(3, 4, 5), 2, stop="never")
    with pytest.raises(ValueError, match="tol"):
        cp_power(torch.ones(3, 4, 5), 2, tol=float("nan"))
    with pytest.raises(ValueError, match="precision"):
        cp_als(torch.ones(3, 4, 5), 2, precision="half")


@pytest.mark.parametrize("fn", [cp_power, cp_als])
def test_input_tensor_is_not_modified(fn, gen):
    # cp_power deflates a residual in place: it must be a private copy even for float64 input.
    for x in (torch.randn(6, 5, 4, generator=gen, dtype=torch.float64),
              torch.randn(5, 6, 4, generator=gen, dtype=torch.float64).permute(1, 0, 2)):
        before = x.clone()
        fn(x, 3)
        assert torch.equal(x, before)


def test_zero_tensor_gives_zero_weights():
    for fn in (cp_power, cp_als):
        res = fn(torch.zeros(3, 4, 5), 2)
        assert res.rel_error == 0.0
        assert float(res.weights.abs().max()) == 0.0


def test_deterministic(gen):
    x = torch.randn(6, 7, 8, generator=gen, dtype=torch.float64)
    for fn, kwargs in itertools.product((cp_power, cp_als), ({}, {"seed": 3})):
        a, b = fn(x, 4, **kwargs), fn(x, 4, **kwargs)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)


def test_on_a_matrix_both_reach_the_eckart_young_optimum(gen):
    # For a matrix, CP is a low-rank factorisation: the truncated SVD error is the optimum, and deflation
    # with exact rank-1 steps reproduces the SVD itself.
    a = torch.randn(20, 6, generator=gen, dtype=torch.float64) @ torch.randn(6, 15, generator=gen,
                                                                            dtype=torch.float64)
    a = a + 0.01 * torch.randn(20, 15, generator=gen, dtype=torch.float64)
    optimum = truncated_svd(a, 4).rel_error
    assert cp_power(a, 4, tol=1e-14, n_iter_max=2000).rel_error == pytest.approx(optimum, rel=1e-6)
    assert cp_als(a, 4, n_iter_max=2000, tol=1e-15).rel_error == pytest.approx(optimum, rel=1e-6)


# ------------------------------------------------------------------------------------------------------------
# Option names: one spelling across algorithms
# ------------------------------------------------------------------------------------------------------------

def _keyword_options(fn):
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_both_algorithms_share_option_names():
    shared = {"init", "n_iter_max", "tol", "seed"}
    assert _keyword_options(cp_power) == shared | {"stop"}
    assert _keyword_options(cp_als) == shared | {"linesearch", "precision"}


# A non-default value of every option, and the options it needs to have an effect.
NON_DEFAULT = {
    cp_power: {"init": ({"init": "random"}, {}), "n_iter_max": ({"n_iter_max": 1}, {}),
               "tol": ({"tol": 0.5}, {}), "seed": ({"seed": 1}, {"init": "random"}),
               "stop": ({"stop": "vectors"}, {})},
    cp_als: {"init": ({"init": "random"}, {}), "n_iter_max": ({"n_iter_max": 1}, {}),
             "tol": ({"tol": 0.5}, {}), "seed": ({"seed": 1}, {"init": "random"}),
             "linesearch": ({"linesearch": False}, {}),
             "precision": ({"precision": "mixed"}, {})},
}


@pytest.mark.parametrize("fn", [cp_power, cp_als])
def test_every_option_changes_the_result(fn, gen):
    x = torch.randn(8, 7, 9, generator=gen, dtype=torch.float64)
    assert set(NON_DEFAULT[fn]) == _keyword_options(fn)  # a new option needs a row here
    for name, (value, base) in NON_DEFAULT[fn].items():
        ref = fn(x, 4, **base)
        res = fn(x, 4, **base, **value)
        assert not torch.equal(res.to_tensor(), ref.to_tensor()), name


@pytest.mark.parametrize("fn", [cp_power, cp_als])
def test_deprecated_option_names_still_work(fn, gen):
    x = torch.randn(6, 7, 5, generator=gen, dtype=torch.float64)
    new = fn(x, 3, n_iter_max=2, init="random", seed=4)
    with pytest.warns(DeprecationWarning, match="'max_iter' is deprecated, use 'n_iter_max'"):
        old = fn(x, 3, max_iter=2, init="random", seed=4)
    torch.testing.assert_close(old.to_tensor(), new.to_tensor(), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="'random_state'"):
        old = fn(x, 3, n_iter_max=2, init="random", random_state=4)
    torch.testing.assert_close(old.to_tensor(), new.to_tensor(), rtol=0, atol=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_iters'"):
        fn(x, 3, n_iters=2)


# ------------------------------------------------------------------------------------------------------------
# GEVD start and the noise floor of planted problems
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,rank", [((12, 9, 10), 6), ((10, 9, 3, 3), 8), ((7, 15, 2), 7)])
def test_gevd_start_is_exact_on_an_exact_cp_tensor(shape, rank, gen):
    # Jennrich / GEVD is algebraic: on an exact rank-R tensor whose two longest modes are >= R, the start
    # itself (no ALS sweep) reproduces the tensor, and one sweep keeps it.
    x, _, factors = planted_cp(shape, rank, gen)
    assert gevd_applies(shape, rank)
    start = cp_als(x, rank, init="gevd", n_iter_max=0)
    assert start.rel_error < 1e-8
    assert bool((best_congruence(start.factors, factors) > 1 - 1e-8).all())


def test_gevd_applies():
    assert gevd_applies((64, 64, 9), 64) and gevd_applies((64, 128, 3, 3), 64)
    assert not gevd_applies((64, 63, 9), 64)  # second longest mode shorter than the rank
    assert not gevd_applies((20, 30), 5)  # a matrix
    assert not gevd_applies((20, 30, 1), 5)  # a single slice: no pencil


def test_auto_start_keeps_svd_where_the_tensor_is_far_from_rank_r(gen):
    # On a Gaussian tensor GEVD does not fit much better than SVD after one sweep, so "auto" continues from
    # the SVD start: exactly the iterates of init="svd".
    x = torch.randn(12, 10, 9, generator=gen, dtype=torch.float64)
    auto, svd = cp_als(x, 6), cp_als(x, 6, init="svd")
    torch.testing.assert_close(auto.to_tensor(), svd.to_tensor(), rtol=0, atol=0)


def test_als_reaches_the_noise_floor_of_a_planted_conv_kernel():
    # A rank-24 kernel 48×40×9 (Gaussian factors) plus 2 % Gaussian noise. The planted factors fit the data
    # with relative error ||N|| / ||X|| (the noise floor), and the best rank-24 fit is a little below it;
    # a stalled ALS (a swamp, a local minimum) stays far above: from TensorLy's SVD start (init="svd") ALS
    # ends at ~7× the floor on this very tensor. The floor is independent of any CP code.
    gen = torch.Generator().manual_seed(7)
    shape, rank = (48, 40, 9), 24
    factors = [torch.randn(n, rank, generator=gen, dtype=torch.float64) for n in shape]
    clean = torch.einsum("ir,jr,kr->ijk", *factors)
    clean = clean / clean.norm()
    noise = torch.randn(*shape, generator=gen, dtype=torch.float64)
    noise = 0.02 * noise / noise.norm()
    x = clean + noise
    floor = float(noise.norm() / x.norm())
    dof = rank * (sum(shape) - len(shape) + 1)
    for precision in ("float64", "mixed"):  # "mixed": float32 GEMMs until close, then float64
        res = cp_als(x, rank, precision=precision)
        assert res.rel_error <= 1.05 * floor
        # the fitted model cannot beat the floor by more than the noise its parameters can absorb
        assert res.rel_error >= floor * math.sqrt(1 - 2 * dof / x.numel())


def test_als_auto_start_at_rank_one_falls_back_to_svd():
    """Rank 1 leaves the GEVD start no pencil to diagonalise (one middle direction): the SVD start is used."""
    from tensorslim.decompose import cp_als

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(n, 1, generator=g, dtype=torch.float64) for n in (4, 4, 9))
    x = torch.einsum("ir,jr,kr->ijk", a, b, c)
    assert cp_als(x, 1).rel_error < 1e-8
