"""Side-by-side benchmark of tensorslim.decompose against TensorLy on conv kernels.

For every conv kernel T×S×kh×kw and every target ratio (kept fraction of parameters) it prints one row per
method with the rank, the relative reconstruction error and the wall time:

* CP-3 (kernel reshaped T×S×k²) and CP-4 (T×S×kh×kw): ours-power (tensor power method with deflation),
  ours-ALS, tensorly parafac (its defaults: SVD init, 100 iterations, tol 1e-8), all at the same rank;
* Tucker-2 (modes 0 and 1): ours partial_tucker vs tensorly partial_tucker;
* TT-SVD of the 4-way kernel: ours tt_svd vs tensorly tensor_train.

Kernels come from ``--weights PATH`` (a safetensors file of a trained model: every 4-D weight with a spatial
kernel larger than 1×1) or, without it, from a structured, smooth, trained-like *synthetic* kernel (the output
says which). Run: ``.venv/bin/python benchmarks/bench_decompose.py [--weights model.safetensors]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests._tensorly

from tests import _tensorly as tly  # noqa: E402

from tensorslim.decompose import cp_als, cp_power, partial_tucker, ranks, tt_svd  # noqa: E402


def synthetic_kernel(T: int, S: int, k: int = 3, *, seed: int = 0) -> torch.Tensor:
    """A trained-like conv kernel T×S×k×k: smooth spatial filters, decaying channel spectra, a little noise.

    Built as ``Σ_j c_j · M_j ⊗ b_j`` where ``b_j`` are the k×k 2-D DCT filters (smooth ones carry most of the
    energy: ``c_j ∝ exp(-0.6(u+v))``), and ``M_j = U_j diag(σ) V_jᵀ`` are channel mixings with a power-law
    spectrum ``σ_i = i^-0.5`` whose singular vectors are correlated across j (as in trained layers, where
    filters share directions); plus 10 % i.i.d. noise, scaled to He-initialisation size. About 3/4 of the
    channel rank is needed for 90 % of the energy of the mode-0 unfolding, a typical figure for trained
    layers (not an exactly low-rank tensor).
    """
    gen = torch.Generator().manual_seed(seed)
    grid = torch.arange(k, dtype=torch.float64)
    dct = [torch.cos(math.pi * (grid + 0.5) * u / k) for u in range(k)]
    r = min(T, S)
    sigma = torch.arange(1, r + 1, dtype=torch.float64) ** -0.5
    u0 = torch.randn(T, r, generator=gen, dtype=torch.float64)
    v0 = torch.randn(S, r, generator=gen, dtype=torch.float64)
    kernel = torch.zeros(T, S, k, k, dtype=torch.float64)
    for u in range(k):
        for v in range(k):
            basis = torch.outer(dct[u], dct[v])
            basis = basis / torch.linalg.norm(basis)
            uj, _ = torch.linalg.qr(u0 + 1.0 * torch.randn(T, r, generator=gen, dtype=torch.float64))
            vj, _ = torch.linalg.qr(v0 + 1.0 * torch.randn(S, r, generator=gen, dtype=torch.float64))
            mix = (uj * sigma) @ vj.T
            kernel += math.exp(-0.6 * (u + v)) * mix[:, :, None, None] * basis
    kernel /= kernel.norm()
    kernel += 0.1 * torch.randn(T, S, k, k, generator=gen, dtype=torch.float64) / math.sqrt(kernel.numel())
    return (kernel / kernel.std() * math.sqrt(2.0 / (S * k * k))).float()


def kernels_from_file(path: Path, max_layers: int | None) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors.torch import load_file

    state = load_file(str(path))
    count = 0
    for name, tensor in state.items():
        if tensor.ndim == 4 and tensor.shape[2] * tensor.shape[3] > 1 and tensor.shape[1] > 1:
            yield name, tensor.float()
            count += 1
            if max_layers is not None and count >= max_layers:
                return


def timed(fn: Callable[..., Any], *args: Any, repeat_below: float = 2.0,
          repeats: int = 3) -> tuple[Any, float]:
    """``(fn(*args), wall seconds)``; runs shorter than ``repeat_below`` seconds are repeated (up to
    ``repeats`` runs in all) and the fastest is reported, which damps the noise of a shared machine."""
    best = math.inf
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
        if best >= repeat_below:
            break
    return out, best


def warm_up(use_tl: bool) -> None:
    """Pay one-off costs (imports, first kernel launches) before anything is timed."""
    x = torch.randn(6, 5, 4, dtype=torch.float64)
    cp_power(x, 2)
    cp_als(x, 2)
    partial_tucker(x, (0, 1), (2, 2))
    tt_svd(x, 2)
    if use_tl:
        tly.parafac(x, 2)
        tly.partial_tucker(x, (0, 1), (2, 2))
        tly.tensor_train(x, 2)


def main(argv: list[str] | None = None) -> int:
    # TensorLy warns when it clips its SVD init to a mode's size; the table says all that matters.
    warnings.filterwarnings("ignore", module="tensorly")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="safetensors file of a trained model")
    parser.add_argument("--max-layers", type=int, default=None, help="at most this many conv layers")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25],
                        help="kept fractions of the kernel's parameters (default 0.5 0.25)")
    parser.add_argument("--shapes", type=str, nargs="+", default=["64x64x3", "128x128x3"],
                        help="synthetic kernels as TxSxk (default 64x64x3 128x128x3)")
    parser.add_argument("--no-tensorly", action="store_true", help="skip the TensorLy rows")
    parser.add_argument("--skip", type=str, nargs="*", default=[], choices=["cp3", "cp4", "tucker2", "tt"],
                        help="sections to leave out")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every method (default 1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    use_tl = not args.no_tensorly and tly.available()

    if args.weights is not None:
        if not args.weights.is_file():
            print(f"error: no such file: {args.weights}", file=sys.stderr)
            return 2
        source = f"trained weights from {args.weights}"
        kernels = list(kernels_from_file(args.weights, args.max_layers))
        if not kernels:
            print(f"error: {args.weights} has no 4-D conv weight with a spatial kernel", file=sys.stderr)
            return 2
    else:
        source = "SYNTHETIC structured, smooth, trained-like kernels (no --weights given)"
        kernels = []
        for spec in args.shapes:
            t, s, k = (int(v) for v in spec.lower().split("x"))
            kernels.append((f"synthetic_{t}x{s}x{k}x{k}", synthetic_kernel(t, s, k)))

    warm_up(use_tl)
    print(f"source: {source}")
    print(f"torch threads: {torch.get_num_threads()}; all methods run in float64; seconds = wall time, the "
          f"fastest of up to 3 runs for runs under 2 s; ratio = kept fraction of the kernel's parameters")
    header = f"{'layer':<28} {'shape':<16} {'form':<8} {'ratio':>5} {'rank':>9} {'method':<22} " \
             f"{'rel_error':>10} {'seconds':>8}"
    print(header)
    print("-" * len(header))

    def row(name: str, shape: str, form: str, ratio: float, rank: object, method: str, err: float,
            secs: float) -> None:
        print(f"{name:<28} {shape:<16} {form:<8} {ratio:>5.2f} {str(rank):>9} {method:<22} {err:>10.5f} "
              f"{secs:>8.2f}", flush=True)

    for name, kernel in kernels:
        kernel = kernel.double()
        T, S, kh, kw = (int(v) for v in kernel.shape)
        shape = f"{T}x{S}x{kh}x{kw}"
        for ratio in args.ratios:
            for form in ("cp3", "cp4"):
                if form in args.skip:
                    continue
                rank = ranks.cp_rank_for_ratio(T, S, kh, kw, ratio, form)
                tensor = kernel.reshape(T, S, kh * kw) if form == "cp3" else kernel
                res, secs = timed(cp_power, tensor, rank)
                row(name, shape, form, ratio, rank, "ours-power", res.rel_error, secs)
                res, secs = timed(cp_als, tensor, rank)
                row(name, shape, form, ratio, rank, "ours-ALS", res.rel_error, secs)
                if use_tl:
                    res, secs = timed(tly.parafac, tensor, rank)
                    row(name, shape, form, ratio, rank, "tensorly-parafac", res.rel_error, secs)
            if "tucker2" not in args.skip:
                r_in, r_out = ranks.tucker2_ranks_for_ratio(T, S, kh, kw, ratio)
                r2 = (r_out, r_in)  # partial_tucker takes ranks in the order of its modes (0 = out, 1 = in)
                label = f"{r_in},{r_out}"
                res, secs = timed(partial_tucker, kernel, (0, 1), r2)
                row(name, shape, "tucker2", ratio, label, "ours-partial_tucker", res.rel_error, secs)
                if use_tl:
                    res, secs = timed(tly.partial_tucker, kernel, (0, 1), r2)
                    row(name, shape, "tucker2", ratio, label, "tensorly-partial_tucker", res.rel_error, secs)
            if "tt" not in args.skip:
                rt = ranks.tt_rank_for_ratio(kernel.shape, ratio)
                res, secs = timed(tt_svd, kernel, rt)
                row(name, shape, "tt", ratio, rt, "ours-tt_svd", res.rel_error, secs)
                if use_tl:
                    res, secs = timed(tly.tensor_train, kernel, rt)
                    row(name, shape, "tt", ratio, rt, "tensorly-tensor_train", res.rel_error, secs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
