"""Parsing a mechanism, conservation laws included, against its number of steps.

`Mechanism.from_text` computes the conservation laws (an integer basis of the left null
space of the stoichiometric matrix) by exact integer row reduction. Beside it, what the
laws were computed with before (until 2026-12-07): sympy's rational `nullspace`, then a
sympy rank test per law to keep an independent set, up to a size where it still
finishes. Two families of mechanisms:

- `independent`: `A_i -> B_i`, i = 1..n (n laws, the issue's growth case);
- `surface`: random steps over a pool of n / 3 gas and n / 3 surface species
  (adsorption `G + * <=> G*`, surface reactions `X* + Y* -> Z* + *`, gas reactions
  `G + H -> K`), seeded.

    python benchmarks/kinetics_conservation.py [--steps 20 80 160 1000 3000]
                                               [--sympy-up-to 160] [--repeats 3]
"""

import argparse
import random
import time

import numpy as np

from sciml.kinetics import Mechanism


def independent(n):
    return "\n".join(f"A{i} -> B{i}" for i in range(n))


def surface(n, seed=0):
    rng = random.Random(seed)
    pool = max(3, n // 3)
    lines = []
    for _ in range(n):
        kind = rng.randrange(3)
        a, b, c = rng.sample(range(pool), 3)
        if kind == 0:
            lines.append(f"G{a} + * <=> S{a}*")
        elif kind == 1:
            lines.append(f"S{a}* + S{b}* -> S{c}* + *")
        else:
            lines.append(f"G{a} + G{b} -> G{c}")
    return "\n".join(lines)


def sympy_laws(m):
    """The earlier procedure: sympy's nullspace, each law kept if it raises the rank."""
    import sympy

    kept = []
    for v in sympy.Matrix(m.stoichiometry.T.tolist()).nullspace():
        if sympy.Matrix(kept + [list(v)]).rank() > len(kept):
            kept.append(list(v))
    return kept


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[20, 80, 160, 1000, 3000])
    p.add_argument("--sympy-up-to", type=int, default=160)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print("| mechanism | steps | species | laws | from_text (s) | sympy, before (s) |")
    print("|---|---|---|---|---|---|")
    for family in (independent, surface):
        for n in args.steps:
            text = family(n)
            wall, m = best_of(lambda: Mechanism.from_text(text), args.repeats)
            assert not np.any(m.conservation @ m.stoichiometry)
            ref = "-"
            if n <= args.sympy_up_to:
                ref_wall, basis = best_of(lambda: sympy_laws(m), 1)
                assert len(basis) == m.conservation.shape[0]
                ref = f"{ref_wall:.3g}"
            print(
                f"| {family.__name__} | {n} | {m.n_species} | {m.conservation.shape[0]} | "
                f"{wall:.3g} | {ref} |"
            )


if __name__ == "__main__":
    main()
