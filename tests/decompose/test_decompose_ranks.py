"""Rank selection: energy, EVBMF on planted low-rank + noise matrices, MUSCO weakening, closed-form rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tensorslim.decompose import ranks, truncated_svd

# ------------------------------------------------------------------------------------------------------------
# energy_rank
# ------------------------------------------------------------------------------------------------------------


def test_energy_rank_hand_counts():
    s = [3.0, 2.0, 1.0, 0.5]  # squares 9, 4, 1, 0.25 of total 14.25
    assert ranks.energy_rank(s, 0.5) == 1  # 9/14.25 = 0.63
    assert ranks.energy_rank(s, 0.64) == 2
    assert ranks.energy_rank(s, 13 / 14.25) == 2  # exactly reached
    assert ranks.energy_rank(s, 0.95) == 3  # 14/14.25 = 0.982
    assert ranks.energy_rank(s, 1.0) == 4
    assert ranks.energy_rank(torch.tensor([0.5, 3.0, 1.0, 2.0]), 0.64) == 2  # order does not matter
    assert ranks.energy_rank([0.0, 0.0], 0.9) == 1


def test_energy_rank_matches_truncated_svd_error(gen):
    a = torch.randn(30, 40, generator=gen, dtype=torch.float64)
    s = np.linalg.svd(a.numpy(), compute_uv=False)
    r = ranks.energy_rank(torch.from_numpy(s), 0.9)
    assert truncated_svd(a, r).rel_error <= math.sqrt(0.1) + 1e-12
    assert truncated_svd(a, r - 1).rel_error > math.sqrt(0.1)


@pytest.mark.parametrize("energy", [0.0, -0.1, 1.5, float("nan")])
def test_energy_rank_rejects_bad_energy(energy):
    with pytest.raises(ValueError, match="energy"):
        ranks.energy_rank([1.0, 2.0], energy)


def test_energy_rank_rejects_negative_values():
    with pytest.raises(ValueError, match="non-negative"):
        ranks.energy_rank([1.0, -2.0], 0.5)


# ------------------------------------------------------------------------------------------------------------
# EVBMF
# ------------------------------------------------------------------------------------------------------------


def planted(L, M, rank, sigma, gen, strength=2.0):
    """Rank-``rank`` signal whose singular values sit ``strength``× above the noise edge σ(√L + √M)."""
    u = torch.linalg.qr(torch.randn(L, rank, generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(M, rank, generator=gen, dtype=torch.float64))[0]
    edge = sigma * (math.sqrt(L) + math.sqrt(M))
    s = torch.linspace(2.0 * strength, strength, rank, dtype=torch.float64) * edge
    return (u * s) @ v.T + sigma * torch.randn(L, M, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("L,M,rank,sigma", [(40, 60, 4, 0.5), (60, 40, 6, 1.0), (100, 100, 10, 0.1),
                                             (64, 576, 20, 0.2), (30, 300, 3, 1.0), (128, 1152, 40, 0.05)])
def test_evbmf_recovers_planted_rank_and_noise(L, M, rank, sigma, gen):
    y = planted(L, M, rank, sigma, gen)
    found, details = ranks.evbmf(y)
    assert found == rank
    assert details.rank == rank and len(details.estimates) == rank
    assert details.sigma2 == pytest.approx(sigma ** 2, rel=0.1)
    assert details.transposed == (L > M)
    assert details.shape == (min(L, M), max(L, M))
    # kept components are shrunk, never inflated; pruned ones lie below the threshold
    assert all(0 < e < g for e, g in zip(details.estimates, details.singular_values))
    assert details.singular_values[rank] <= details.threshold < details.singular_values[rank - 1]


def test_evbmf_pure_noise_has_rank_zero(gen):
    found, details = ranks.evbmf(torch.randn(80, 120, generator=gen, dtype=torch.float64))
    assert found == 0
    assert details.sigma2 == pytest.approx(1.0, rel=0.1)


def test_evbmf_exact_low_rank_without_noise(gen):
    y = torch.randn(30, 5, generator=gen, dtype=torch.float64) @ torch.randn(5, 50, generator=gen,
                                                                             dtype=torch.float64)
    assert ranks.evbmf(y)[0] == 5


def test_evbmf_is_transpose_invariant(gen):
    y = planted(30, 70, 5, 0.3, gen)
    a, da = ranks.evbmf(y)
    b, db = ranks.evbmf(y.T)
    assert a == b == 5 and da.sigma2 == pytest.approx(db.sigma2, rel=1e-9)


def test_evbmf_known_noise_and_constants(gen):
    # τ̲ solves log(τ+1) + α·log(τ/α+1) = τ; for α = 1 the papers quote τ̲ ≈ 2.5129.
    y = planted(50, 50, 3, 0.2, gen)
    found, details = ranks.evbmf(y, sigma2=0.04)
    assert found == 3 and details.sigma2 == 0.04 and not details.sigma2_estimated
    assert details.tau_lower == pytest.approx(2.5129, abs=1e-4)
    alpha, tau = 1.0, details.tau_lower
    assert math.log1p(tau) + alpha * math.log1p(tau / alpha) - tau == pytest.approx(0.0, abs=1e-12)
    assert details.threshold == pytest.approx(math.sqrt(50 * 0.04 * (1 + tau) * (1 + alpha / tau)))
    # a huge assumed noise prunes everything
    assert ranks.evbmf(y, sigma2=100.0)[0] == 0


def test_evbmf_zero_matrix_and_invalid_input():
    assert ranks.evbmf(torch.zeros(5, 7))[0] == 0
    with pytest.raises(ValueError, match="2 dimensions"):
        ranks.evbmf(torch.ones(3, 4, 5))
    with pytest.raises(ValueError, match="sigma2"):
        ranks.evbmf(torch.ones(3, 4), sigma2=-1.0)
    bad = torch.ones(3, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        ranks.evbmf(bad)


def test_tucker2_ranks_evbmf_reads_both_channel_modes(gen):
    # kernel with mode-0 rank 6 and mode-1 rank 4, plus noise
    core = torch.randn(6, 4, 3, 3, generator=gen, dtype=torch.float64)
    u = torch.linalg.qr(torch.randn(48, 6, generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(32, 4, generator=gen, dtype=torch.float64))[0]
    kernel = torch.einsum("abkl,ta,sb->tskl", core * 20, u, v)
    kernel = kernel + 0.05 * torch.randn(kernel.shape, generator=gen, dtype=torch.float64)
    assert ranks.tucker2_ranks_evbmf(kernel) == (4, 6)  # (R_in, R_out), the order of every Tucker-2 API
    # weakened against the channel counts: int(32 - 0.8·28) = int(9.6) = 9, int(48 - 0.8·42) = int(14.4) = 14
    assert ranks.tucker2_ranks_evbmf(kernel, k=0.8, min_rank=8) == (9, 14)


def test_tucker2_ranks_evbmf_reports_no_signal_as_rank_zero(gen):
    noise = torch.randn(16, 8, 3, 3, generator=gen, dtype=torch.float64)
    assert ranks.tucker2_ranks_evbmf(noise) == (0, 0)
    assert ranks.tucker2_ranks_evbmf(noise, k=0.8) == (0, 0)  # not weakened up to a full-size layer


# ------------------------------------------------------------------------------------------------------------
# MUSCO weakening
# ------------------------------------------------------------------------------------------------------------


def test_weakened_evbmf_musco_cases():
    # MUSCO's own unit-test values (rank 16, vbmf rank 8, min_rank 2, then min_rank 10)
    assert ranks.weakened_evbmf(16, 8, k=0.0, min_rank=2) == 16
    assert ranks.weakened_evbmf(16, 8, k=1.0, min_rank=2) == 8
    assert ranks.weakened_evbmf(16, 8, k=0.5, min_rank=2) == 12
    assert ranks.weakened_evbmf(16, 8, k=1.0, min_rank=10) == 10
    # defaults k=0.8, min_rank=21
    assert ranks.weakened_evbmf(256, 40) == 83  # 256 - 0.8·216 = 83.2
    assert ranks.weakened_evbmf(64, 10) == 21  # int(20.8) = 20, raised to min_rank
    assert ranks.weakened_evbmf(21, 3) == 21  # small layers left alone
    assert ranks.weakened_evbmf(16, 3) == 16
    assert ranks.weakened_evbmf(100, 0) == 100  # EVBMF found nothing: leave the layer
    assert ranks.weakened_evbmf(100, 100) == 100
    assert ranks.weakened_evbmf(50, 25, k=0.6) == 35  # exact integer despite float round-off


def test_weakened_evbmf_rejects_bad_input():
    with pytest.raises(ValueError, match="k must"):
        ranks.weakened_evbmf(64, 10, k=1.5)
    with pytest.raises(ValueError, match="rank_vbmf"):
        ranks.weakened_evbmf(64, 65)
    with pytest.raises(ValueError, match="rank_full"):
        ranks.weakened_evbmf(0, 0)


# ------------------------------------------------------------------------------------------------------------
# Parameter counts and rank-for-ratio rules (hand counts)
# ------------------------------------------------------------------------------------------------------------


def test_param_counts_by_hand():
    assert ranks.tucker2_params(8, 4, 3, 3, (2, 5)) == 138  # 2·4 + 9·2·5 + 5·8
    assert ranks.tt_params((35, 20, 35, 20), 4) == 1100  # the T3F layer
    assert ranks.tt_params((4, 4, 4), 2) == 8 + 16 + 8
    assert ranks.tt_params((4, 4, 4), [1, 3, 2, 1]) == 12 + 24 + 8


def test_cp_rank_for_ratio_nnabla_rule():
    # nnabla: R = ⌊(1 − CR)·T·S·k²/(T + S + k²)⌋, CR = 1 − ratio. 64·64·9 = 36864.
    assert ranks.cp_rank_for_ratio(64, 64, 3, 3, 0.5) == 134  # 18432/137 = 134.5
    assert ranks.cp_rank_for_ratio(64, 64, 3, 3, 0.5, "cp4") == 137  # 18432/134 = 137.6
    assert ranks.cp_rank_for_ratio(128, 64, 3, 3, 0.25) == 91  # 18432/201 = 91.7
    for T, S, ratio, form in [(64, 64, 0.5, "cp3"), (256, 128, 0.2, "cp4"), (32, 3, 0.3, "cp3")]:
        r = ranks.cp_rank_for_ratio(T, S, 3, 3, ratio, form)
        budget = ratio * T * S * 9
        per_rank = T + S + (9 if form == "cp3" else 3 + 3)  # CP-3 R(S + k² + T), CP-4 R(S + kh + kw + T)
        assert r * per_rank <= budget < (r + 1) * per_rank
    with pytest.raises(ValueError, match="form"):
        ranks.cp_rank_for_ratio(64, 64, 3, 3, 0.5, "cp5")


def test_tucker2_ranks_for_ratio():
    # T = S: ρ = (sqrt(1 + ratio·k⁴) − 1)/k² = (sqrt(41.5) − 1)/9 = 0.6047 -> 38.7 -> 38
    assert ranks.tucker2_ranks_for_ratio(64, 64, 3, 3, 0.5) == (38, 38)
    assert ranks.tucker2_params(64, 64, 3, 3, (38, 38)) == 17860 <= 18432 < ranks.tucker2_params(64, 64, 3, 3,
                                                                                                    (39, 39))
    # T ≠ S: 9·8192ρ² + (64² + 128²)ρ − 0.25·9·8192 = 0 -> ρ = 0.3760 -> (48, 24)
    assert ranks.tucker2_ranks_for_ratio(128, 64, 3, 3, 0.25) == (24, 48)
    assert ranks.tucker2_params(128, 64, 3, 3, (24, 48)) <= 0.25 * 128 * 64 * 9
    # equal ranks: 9R² + 192R − 18432 = 0 -> R = 35.6 -> 35
    assert ranks.tucker2_ranks_for_ratio(128, 64, 3, 3, 0.25, balance="equal") == (35, 35)
    # an RGB first layer: R_in clipped up to 1, R_out lowered so that the budget still holds
    r = ranks.tucker2_ranks_for_ratio(64, 3, 3, 3, 0.5)
    assert r == (1, 11) and ranks.tucker2_params(64, 3, 3, 3, r) <= 0.5 * 64 * 3 * 9


def test_tt_rank_for_ratio():
    assert ranks.tt_rank_for_ratio((4, 4, 4), 0.5) == 2  # budget 32: rank 2 costs 8+16+8 = 32, rank 3 60
    # T3F layer 625×784: 1% of 490,625 = 4,906 -> rank 8 (3,960 params); rank 9 needs 4,950
    assert ranks.tt_rank_for_ratio((5, 5, 5, 5), 0.01, in_shape=(7, 4, 7, 4)) == 8
    assert ranks.tt_params((35, 20, 35, 20), 9) > 0.01 * 490_000
    # even ratio 1 does not allow the exact TT ranks when their cores outgrow the dense tensor:
    # (4,4,4) at rank 4 costs 16+64+16 = 96 > 64; rank 3 costs 60
    assert ranks.tt_rank_for_ratio((4, 4, 4), 1.0) == 3
    with pytest.raises(ValueError, match="same number of factors"):
        ranks.tt_rank_for_ratio((5, 5), 0.5, in_shape=(7, 4, 7))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.2, float("nan")])
def test_ratio_must_be_a_kept_fraction(ratio):
    calls = (
        lambda: ranks.cp_rank_for_ratio(4, 4, 3, 3, ratio),
        lambda: ranks.tucker2_ranks_for_ratio(4, 4, 3, 3, ratio),
        lambda: ranks.tt_rank_for_ratio((4, 4), ratio),
    )
    for call in calls:
        with pytest.raises(ValueError, match="kept fraction"):
            call()

