"""Explore's rung-(b) screen over whole models, against a brute-force enumeration written here: additive costs
and errors on made-up layer spaces (no model is built)."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

from tensorslim.explore.screen import screen

BASE = {"params": 1000.0, "macs": 5000.0}


def _spaces(layers: int, options: int, seed: int = 0):
    """Layers with ``options`` points each: (params, MACs) saved against dense and an error, all made up."""
    rng = random.Random(seed)
    live, table = [], {}
    for j in range(layers):
        pts = []
        for i in range(options):
            key = f"m:{i}"
            pts.append(SimpleNamespace(key=key, error=round(rng.uniform(0.01, 0.5), 4)))
            table[(f"l{j}", key)] = (-rng.randint(10, 150), -rng.randint(50, 700))
        live.append(SimpleNamespace(name=f"l{j}", survivors=pts))
    return live, table


def _costs(table):
    def costs(choice):
        out = dict(BASE)
        for layer, key in choice.items():
            if key != "dense":
                dp, dm = table[(layer, key)]
                out["params"] += dp
                out["macs"] += dm
        return out
    return costs


def _brute(live, table, limits, objectives):
    """Every combination: feasible ones, not dominated on (costs, summed error), by error."""
    err = {(s.name, p.key): p.error for s in live for p in s.survivors}
    rows = []
    for keys in itertools.product(*[["dense", *[p.key for p in s.survivors]] for s in live]):
        choice = {s.name: k for s, k in zip(live, keys)}
        if all(k == "dense" for k in keys):
            continue
        c = _costs(table)(choice)
        if all(c[k] / BASE[k] <= v for k, v in limits):
            e = sum(err[(n, k)] for n, k in choice.items() if k != "dense")
            rows.append((choice, [c[o] for o in objectives if o != "accuracy"] + [e]))

    def dominated(v):
        return any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v)) for _, w in rows)

    return sorted([(ch, v) for ch, v in rows if not dominated(v)], key=lambda r: r[1][-1])


def test_an_enumerable_space_gives_exactly_the_smallest_errors_of_the_feasible_front():
    live, table = _spaces(3, 4)  # 5^3 = 125 combinations
    limits = [("params", 0.8)]
    picks, info = screen(live, _costs(table), BASE, ("macs", "accuracy"), limits, n=5, evaluations=1000)
    ref = _brute(live, table, limits, ("macs", "accuracy"))
    assert info["exhaustive"] and info["evaluated"] == 125 and info["front"] == len(ref)
    assert picks == [ch for ch, _ in ref[:5]]
    assert info["summed_error"] == [round(v[-1], 4) for _, v in ref[:5]]


def test_a_large_space_is_searched_and_every_pick_is_feasible_and_undominated_among_the_picks():
    live, table = _spaces(6, 6, seed=1)  # 7^6 = 117,649 combinations, 600 judged
    limits = [("params", 0.6), ("macs", 0.7)]
    picks, info = screen(live, _costs(table), BASE, ("macs", "accuracy"), limits, n=8, evaluations=600)
    assert not info["exhaustive"] and 0 < info["evaluated"] <= 600 and len(picks) == 8
    err = {(s.name, p.key): p.error for s in live for p in s.survivors}
    rows = []
    for ch in picks:
        c = _costs(table)(ch)
        assert c["params"] <= 600 and c["macs"] <= 3500
        rows.append((c["macs"], sum(err[(n, k)] for n, k in ch.items() if k != "dense")))
    assert [e for _, e in rows] == sorted(e for _, e in rows)  # smallest error first
    for a in rows:
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in rows)
    # it searches: the best pick beats the best of 600 combinations drawn at random
    rng = random.Random(2)
    drawn = []
    for _ in range(600):
        ch = {s.name: rng.choice(["dense", *[p.key for p in s.survivors]]) for s in live}
        c = _costs(table)(ch)
        if c["params"] <= 600 and c["macs"] <= 3500:
            drawn.append(sum(err[(n, k)] for n, k in ch.items() if k != "dense"))
    assert rows[0][1] <= min(drawn)


def test_without_cost_limits_the_picks_spread_along_the_first_cost_and_n_zero_is_nothing():
    live, table = _spaces(3, 4, seed=3)
    picks, info = screen(live, _costs(table), BASE, ("macs", "accuracy"), [], n=3, evaluations=1000)
    ref = _brute(live, table, [], ("macs", "accuracy"))
    macs = sorted(v[0] for _, v in ref)
    got = sorted(_costs(table)(ch)["macs"] for ch in picks)
    assert len(picks) == 3 and got[0] == macs[0] and got[-1] == macs[-1]  # both ends of the front
    assert screen(live, _costs(table), BASE, ("macs", "accuracy"), [], n=0, evaluations=10)[0] == []
