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
import os
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


# ----------------------------------------------------------------------------------
# Sampling checks on domains no test is tuned to


def _sampling_cases():
    import sciml.pinn as P

    cases = []
    # A rotated ten-pointed star minus a disk near one tip.
    ang = 0.3 + np.pi * np.arange(10) / 5
    rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    star_v = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    hole_c, hole_r = 0.55 * np.array([np.cos(0.3), np.sin(0.3)]), 0.12
    w = np.roll(star_v, -1, axis=0)
    cr = star_v[:, 0] * w[:, 1] - w[:, 0] * star_v[:, 1]
    a_star = cr.sum() / 2
    c_star = ((star_v + w) * cr[:, None]).sum(0) / (6 * a_star)
    a_hole = np.pi * hole_r**2
    perim_star = np.sum(np.linalg.norm(w - star_v, axis=1))
    cases.append(dict(
        name="star polygon - disk",
        domain=P.Polygon(star_v) - P.Disk(hole_c, hole_r),
        centroid=(a_star * c_star - a_hole * hole_c) / (a_star - a_hole),
        volume=a_star - a_hole,
        pieces={"circle": (lambda p: np.abs(np.linalg.norm(p - hole_c, axis=1) - hole_r) < 1e-9,
                           2 * np.pi * hole_r,
                           lambda p: (hole_c - p) / hole_r)},
        perimeter=perim_star + 2 * np.pi * hole_r,
    ))
    # A rotated ellipse minus a triangle inside it.
    import scipy.special

    a, b, th = 1.2, 0.7, 0.4
    tri = np.array([[-0.3, -0.2], [0.4, -0.1], [0.0, 0.35]])
    e1, e2 = tri[1] - tri[0], tri[2] - tri[0]
    a_tri = 0.5 * abs(e1[0] * e2[1] - e1[1] * e2[0])
    e_perim = 4 * a * scipy.special.ellipe(1 - b**2 / a**2)
    t_perim = sum(np.linalg.norm(tri[i] - tri[i - 1]) for i in range(3))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])

    def ell_normal(p):
        loc = p @ rot
        n = np.stack([loc[:, 0] / a**2, loc[:, 1] / b**2], 1) @ rot.T
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    cases.append(dict(
        name="ellipse - triangle",
        domain=P.Ellipse([0, 0], (a, b), th) - P.Triangle(*tri),
        centroid=-a_tri * tri.mean(0) / (np.pi * a * b - a_tri),
        volume=np.pi * a * b - a_tri,
        pieces={"ellipse": (lambda p: np.abs(((p @ rot)[:, 0] / a) ** 2
                                             + ((p @ rot)[:, 1] / b) ** 2 - 1) < 1e-9,
                            e_perim, ell_normal)},
        perimeter=e_perim + t_perim,
    ))
    # CSG of CSG: (rectangle - disk) | disk centred on the rectangle's right side.
    rect_minus = P.Box([0, 0], [2, 1]) - P.Disk([0.5, 0.5], 0.25)
    right = P.Disk([2, 0.5], 0.5)
    area = 2 - np.pi / 16 + np.pi / 8
    cent = (2 * np.array([1, 0.5]) - np.pi / 16 * np.array([0.5, 0.5])
            + np.pi / 8 * np.array([2 + 2 / (3 * np.pi), 0.5])) / area
    cases.append(dict(
        name="(rectangle - disk) | disk",
        domain=rect_minus | right,
        centroid=cent,
        volume=area,
        pieces={"hole": (lambda p: np.abs(np.linalg.norm(p - [0.5, 0.5], axis=1) - 0.25) < 1e-9,
                         np.pi / 2, lambda p: ([0.5, 0.5] - p) / 0.25),
                "right arc": (lambda p: np.abs(np.linalg.norm(p - [2, 0.5], axis=1) - 0.5) < 1e-9,
                              np.pi / 2, lambda p: (p - [2, 0.5]) / 0.5)},
        perimeter=5 + np.pi,
    ))
    # 3-D: the unit ball minus its positive octant.
    vol_oct = np.pi / 6
    cases.append(dict(
        name="ball - octant box (3-D)",
        domain=P.Disk([0, 0, 0], 1.0) - P.Box([0, 0, 0], [2, 2, 2]),
        centroid=-vol_oct * np.full(3, 3 / 8) / (4 * np.pi / 3 - vol_oct),
        volume=7 / 8 * 4 * np.pi / 3,
        pieces={"sphere": (lambda p: np.abs(np.linalg.norm(p, axis=1) - 1) < 1e-9,
                           7 / 8 * 4 * np.pi, lambda p: p)},
        perimeter=17 * np.pi / 4,
    ))
    return cases


def sampling_checks(n: int = 40000, seed: int = 0) -> list[dict]:
    import jax
    import jax.numpy as jnp

    import sciml.pinn as P

    rows = []
    key = jax.random.key(seed)
    for case in _sampling_cases():
        dom = case["domain"]
        k1, k2, key = jax.random.split(key, 3)
        t0 = time.perf_counter()
        x = np.asarray(dom.sample(k1, n, P.Halton()))
        xb = np.asarray(dom.sample_boundary(k2, n, P.Halton()))
        seconds = time.perf_counter() - t0
        normals = np.asarray(jax.jit(jax.vmap(dom.normal))(jnp.asarray(xb)))
        dist_b = np.asarray(jax.jit(jax.vmap(dom.distance))(jnp.asarray(xb)))
        dist_i = np.asarray(jax.jit(jax.vmap(dom.distance))(jnp.asarray(x)))
        share_err, normal_err = 0.0, 0.0
        for on, length, normal in case["pieces"].values():
            sel = on(xb)
            share_err = max(share_err, abs(sel.mean() - length / case["perimeter"]))
            normal_err = max(normal_err, float(np.max(np.abs(normals[sel] - normal(xb[sel])))))
        inside = np.asarray(jax.jit(jax.vmap(dom.contains))(jnp.asarray(x)))
        rows.append(dict(
            domain=case["name"],
            centroid_err=float(np.max(np.abs(x.mean(0) - case["centroid"]))),
            volume_rel_err=float(abs(dom.volume - case["volume"]) / case["volume"]),
            measure_rel_err=float(abs(dom.boundary().measure - case["perimeter"])
                                  / case["perimeter"]),
            share_err=float(share_err),
            normal_err=normal_err,
            max_abs_distance_on_boundary=float(np.max(np.abs(dist_b))),
            min_distance_inside=float(dist_i.min()),
            all_inside=bool(inside.all()),
            sample_s=seconds,
        ))
    return rows


# ----------------------------------------------------------------------------------
# Accuracy: the problems at full size


# name: (script, the metrics the target applies to, target). A target holds for a
# problem when every listed metric is at or below it.
ACCURACY = {
    "poisson-lshape": ("poisson_lshape", ("rel_l2_vs_fem",), 1e-2),
    "poisson2d-c": ("poisson2d_c", ("rel_l2_vs_fem",), 1e-2),
    "kovasznay": ("kovasznay", ("rel_l2_u", "rel_l2_v"), 1e-3),
    "lid-cavity": ("lid_cavity", ("max_err_u_centre", "max_err_v_centre"), 2e-2),
    "heat-holes": ("heat_holes", ("rel_l2",), None),
}


def accuracy(names, out_dir: pathlib.Path, seed: int) -> list[dict]:
    rows = []
    for name in names:
        script, keys, target = ACCURACY[name]
        out = out_dir / name
        cmd = [sys.executable, str(ROOT / "problems" / f"{script}.py"), "--out", str(out),
               "--seed", str(seed), "--quiet"]
        subprocess.run(cmd, check=True)
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        values = {k: metrics[k] for k in keys}
        met = None if target is None else all(v <= target for v in values.values())
        rows.append(dict(problem=name, values=values, target=target, met=met,
                         metrics=metrics))
    return rows


# ----------------------------------------------------------------------------------
# DeepXDE side by side (same network, same points, Adam 1e-3, float32)


_DEEPXDE_DRIVER = """
import json, os, sys, time
os.environ["DDE_BACKEND"] = "pytorch"
import numpy as np
import deepxde as dde
import torch
case, path, speed_steps, train_steps, out = sys.argv[1:6]
speed_steps, train_steps = int(speed_steps), int(train_steps)
dde.config.set_random_seed(0)
f = np.load(path)
anchors = f["anchors"].astype(np.float32)
if case == "lshape":
    geom = dde.geometry.Polygon([[0, 0], [1, 0], [1, -1], [-1, -1], [-1, 1], [0, 1]])

    def pde(x, y):
        return -dde.grad.hessian(y, x, i=0, j=0) - dde.grad.hessian(y, x, i=1, j=1) - 1

    bcs = [dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on: on)]
    weights, layers = [1, 10], [2] + [50] * 4 + [1]
else:
    re = 20
    nu = 1 / re
    lam = re / 2 - np.sqrt(re**2 / 4 + 4 * np.pi**2)
    geom = dde.geometry.Rectangle([-0.5, -0.5], [1, 1.5])

    def pde(x, y):
        u, v = y[:, 0:1], y[:, 1:2]
        ux = dde.grad.jacobian(y, x, i=0, j=0); uy = dde.grad.jacobian(y, x, i=0, j=1)
        vx = dde.grad.jacobian(y, x, i=1, j=0); vy = dde.grad.jacobian(y, x, i=1, j=1)
        px = dde.grad.jacobian(y, x, i=2, j=0); py = dde.grad.jacobian(y, x, i=2, j=1)
        uxx = dde.grad.hessian(y, x, component=0, i=0, j=0)
        uyy = dde.grad.hessian(y, x, component=0, i=1, j=1)
        vxx = dde.grad.hessian(y, x, component=1, i=0, j=0)
        vyy = dde.grad.hessian(y, x, component=1, i=1, j=1)
        return [u * ux + v * uy + px - nu * (uxx + uyy),
                u * vx + v * vy + py - nu * (vxx + vyy), ux + vy]

    ue = lambda x: 1 - np.exp(lam * x[:, 0:1]) * np.cos(2 * np.pi * x[:, 1:2])
    ve = lambda x: lam / (2 * np.pi) * np.exp(lam * x[:, 0:1]) * np.sin(2 * np.pi * x[:, 1:2])
    pe = lambda x: 0.5 * (1 - np.exp(2 * lam * x[:, 0:1]))
    outflow = lambda x, on: on and np.isclose(x[0], 1)
    bcs = [dde.icbc.DirichletBC(geom, ue, lambda _, on: on, component=0),
           dde.icbc.DirichletBC(geom, ve, lambda _, on: on, component=1),
           dde.icbc.DirichletBC(geom, pe, outflow, component=2)]
    weights, layers = [1, 1, 1, 1, 1, 1], [2] + [50] * 4 + [3]
data = dde.data.PDE(geom, pde, bcs, num_domain=0, num_boundary=0, anchors=anchors)
net = dde.nn.FNN(layers, "tanh", "Glorot normal")
model = dde.Model(data, net)
model.compile("adam", lr=1e-3, loss_weights=weights)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
model.train(iterations=50, display_every=100000, verbose=0)  # warm-up
t0 = time.perf_counter()
model.train(iterations=speed_steps, display_every=100000, verbose=0)
sps = speed_steps / (time.perf_counter() - t0)
if train_steps:
    t0 = time.perf_counter()
    model.train(iterations=train_steps, display_every=100000, verbose=0)
    np.save(out, model.predict(f["eval"].astype(np.float32)))
    train_s = time.perf_counter() - t0
else:
    train_s = 0.0
print(json.dumps({"steps_per_s": sps, "threads": torch.get_num_threads(),
                  "n_train": int(len(data.train_x)), "n_bc": [int(n) for n in data.num_bcs],
                  "train_s": train_s, "version": dde.__version__, "torch": torch.__version__}))
"""


def _side_by_side_case(case: str, seed: int):
    """(model, loss, batch, eval points, error(pred_on_eval) -> dict) in float32."""
    import jax
    import jax.numpy as jnp


    sys.path.insert(0, str(ROOT / "problems"))
    key = jax.random.key(seed)
    mkey, bkey = jax.random.split(key)
    if case == "lshape":
        import poisson_lshape as prob

        loss = prob.make_loss(1200, 120)
        batch = loss.fixed_batch(bkey)
        xs, ys, u_ref = prob.load_reference()
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        ok = ~np.isnan(u_ref)
        ev = np.stack([X[ok], Y[ok]], 1)

        def error(pred):
            pred = np.asarray(pred).reshape(-1)
            return {"rel_l2": float(np.linalg.norm(pred - u_ref[ok]) / np.linalg.norm(u_ref[ok]))}

        anchors = np.concatenate([batch["residual"], batch["boundary"]])
    else:
        import kovasznay as prob

        loss = prob.make_loss(2601, 400)
        batch = loss.fixed_batch(bkey)
        # u and v on the same boundary points (and the outflow's), as DeepXDE filters
        # one set of anchors for every condition.
        both = jnp.concatenate([batch["u"], batch["p"]])
        batch = dict(batch, u=both, v=both)
        xs, ys = np.linspace(-0.5, 1.0, 101), np.linspace(-0.5, 1.5, 101)
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        ev = np.stack([X.ravel(), Y.ravel()], 1)
        ref = np.asarray(jax.vmap(prob.exact)(jnp.asarray(ev)))

        def error(pred):
            pred = np.asarray(pred)
            return {f"rel_l2_{c}": float(np.linalg.norm(pred[:, i] - ref[:, i])
                                         / np.linalg.norm(ref[:, i])) for i, c in enumerate("uv")}

        anchors = np.asarray(jnp.concatenate([batch["residual"], both]))
    model = prob.make_model(mkey)
    return model, loss, batch, ev, error, np.asarray(anchors)


def deepxde_side_by_side(python: str, seed: int, speed_steps: int, wall_s: float,
                         rounds: int = 2) -> list[dict]:
    import jax
    import optax

    import sciml

    rows = []
    for case in ("lshape", "kovasznay"):
        with jax.enable_x64(False):
            model, loss, batch, ev, error, anchors = _side_by_side_case(case, seed)
            batch = jax.tree.map(lambda a: a.astype(np.float32), batch)

            def ours(steps):
                return sciml.fit(model, loss, optax.adam(1e-3), steps=steps,
                                 key=jax.random.key(seed), data=batch, progress=False)

            with tempfile.TemporaryDirectory() as d:
                path = pathlib.Path(d) / "points.npz"
                np.savez(path, anchors=anchors.astype(np.float32), eval=ev.astype(np.float32))
                driver = pathlib.Path(d) / "driver.py"
                driver.write_text(_DEEPXDE_DRIVER)
                dde_runs, our_sps = [], []
                for _ in range(rounds):
                    for threads in (1, 2):
                        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                        out = subprocess.run(
                            [python, str(driver), case, str(path), str(speed_steps), "0",
                             str(pathlib.Path(d) / "pred.npy")],
                            env=env, capture_output=True, text=True, check=False)
                        if out.returncode != 0:
                            raise RuntimeError(f"DeepXDE failed: {out.stderr.strip()[-2000:]}")
                        dde_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    our_sps.append(ours(speed_steps).timings["steps_per_second"])
                best = max(dde_runs, key=lambda r: r["steps_per_s"])
                # Equal wall time: each side trains for `wall_s` seconds at its best rate.
                env = dict(os.environ, OMP_NUM_THREADS=str(best["threads"]))
                dde_steps = int(best["steps_per_s"] * wall_s)
                out = subprocess.run(
                    [python, str(driver), case, str(path), "10", str(dde_steps),
                     str(pathlib.Path(d) / "pred.npy")],
                    env=env, capture_output=True, text=True, check=True)
                dde_train = json.loads(out.stdout.strip().splitlines()[-1])
                dde_err = error(np.load(pathlib.Path(d) / "pred.npy"))
                our_steps = int(max(our_sps) * wall_s)
                res = ours(our_steps)
                import jax.numpy as jnp

                our_err = error(jax.vmap(res.model)(jnp.asarray(ev, jnp.float32)))
            rows.append(dict(
                case=case, deepxde_steps_per_s=best["steps_per_s"], deepxde_threads=best["threads"],
                sciml_steps_per_s=max(our_sps), ratio=max(our_sps) / best["steps_per_s"],
                all_deepxde=[round(r["steps_per_s"], 1) for r in dde_runs],
                all_sciml=[round(x, 1) for x in our_sps],
                wall_s=wall_s, deepxde_steps=dde_steps, deepxde_train_s=dde_train["train_s"],
                deepxde_error=dde_err, sciml_steps=our_steps,
                sciml_train_s=res.timings["total"], sciml_error=our_err,
                deepxde_n_train=best["n_train"], deepxde_version=best["version"],
                torch=best["torch"],
            ))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="sampling",
                   choices=("sampling", "references", "accuracy", "deepxde"))
    p.add_argument("--problems", nargs="*", default=list(ACCURACY), choices=list(ACCURACY),
                   help="for --part accuracy: which problems (default all)")
    p.add_argument("--out", default="runs/geometry", help="for --part accuracy")
    p.add_argument("--deepxde-python", default=None,
                   help="python of a venv with torch and deepxde (for --part deepxde)")
    p.add_argument("--speed-steps", type=int, default=500)
    p.add_argument("--wall", type=float, default=120.0,
                   help="seconds of training each side gets for the accuracy comparison")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.part == "references":
        print(json.dumps(write_references(), indent=1))
    elif args.part == "sampling":
        import jax

        jax.config.update("jax_enable_x64", True)
        for row in sampling_checks(seed=args.seed):
            print(json.dumps(row))
    elif args.part == "accuracy":
        for row in accuracy(args.problems, pathlib.Path(args.out), args.seed):
            print(json.dumps(row))
    else:
        if not args.deepxde_python:
            p.error("--part deepxde needs --deepxde-python (a venv with torch and deepxde)")
        deepxde_side_by_side(args.deepxde_python, args.seed, args.speed_steps, args.wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())

