"""The geometry problems: their losses vanish on exact solutions, and the shipped
finite-element references agree with an independent, coarser scikit-fem solve."""

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest


PROBLEMS = pathlib.Path(__file__).resolve().parent.parent / "problems"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_problem_{name}", PROBLEMS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kovasznay_loss_vanishes_on_the_exact_flow(getkey):
    kov = _load("kovasznay")
    loss = kov.make_loss(256, 64)
    total, aux = jax.jit(lambda k: loss(kov.exact, None, key=k))(getkey())
    assert set(aux) == {"residual", "u", "v", "p"}
    np.testing.assert_allclose(total, 0.0, atol=1e-20)
    # lambda at Re = 20 (Kovasznay 1948): Re/2 - sqrt(Re^2/4 + 4 pi^2).
    np.testing.assert_allclose(kov.LAM, 10 - math.sqrt(100 + 4 * math.pi**2))
    # And a model that is not the flow has a loss.
    total, _ = loss(lambda x: kov.exact(x) * 1.1, None, key=getkey())
    assert total > 1e-3


def test_heat_holes_loss_vanishes_on_the_closed_form(getkey):
    heat = _load("heat_holes")
    loss = heat.make_loss(256, 64)
    total, aux = jax.jit(lambda k: loss(heat.exact, None, key=k))(getkey())
    assert set(aux) == {"residual", "plate", "holes", "initial"}
    np.testing.assert_allclose(total, 0.0, atol=1e-20)
    # The holes' flux is n . grad u with n pointing into the hole: for the hole
    # centred at (-0.4, -0.3), r = 0.3, at its rightmost point n = (-1, 0).
    z = jnp.asarray([-0.1, -0.3, 0.5])
    np.testing.assert_allclose(heat.hole_flux(z), -jax.grad(heat.exact)(z)[0], rtol=1e-12)


def test_cavity_and_poisson_losses_are_named_and_finite(getkey):
    cav = _load("lid_cavity")
    loss = cav.make_loss(128, 64)
    model = cav.make_model(getkey(), width=8, depth=2)
    total, aux = loss(model, None, key=getkey())
    assert set(aux) == {"residual", "lid_u", "lid_v", "wall_u", "wall_v"} and np.isfinite(total)
    batch = loss.sample(getkey())
    np.testing.assert_allclose(batch["lid_u"][:, 1], 1.0)
    assert np.all(batch["wall_u"][:, 1] < 1)
    assert cav.GHIA_Y.shape == cav.GHIA_U.shape == (17,)
    assert cav.GHIA_X.shape == cav.GHIA_V.shape == (17,)
    pc = _load("poisson2d_c")
    batch = pc.make_loss(128, 64).sample(getkey())
    np.testing.assert_allclose(np.max(np.abs(batch["outer"]), axis=1), 0.5, rtol=1e-12)
    centres = np.array([[0.3, 0.3], [-0.3, 0.3], [0.3, -0.3], [-0.3, -0.3]])
    d = np.min(np.linalg.norm(batch["holes"][:, None] - centres[None], axis=2), axis=1)
    np.testing.assert_allclose(d, 0.1, rtol=1e-12)


def _fem_lshape_coarse():
    skfem = pytest.importorskip("skfem")
    from skfem.models.poisson import laplace, unit_load

    x = np.linspace(-1, 1, 5)
    m = skfem.MeshTri.init_tensor(x, x)
    c = m.p[:, m.t].mean(axis=1)
    m = m.remove_elements(np.nonzero((c[0] > 0) & (c[1] > 0))[0]).refined(4)
    basis = skfem.Basis(m, skfem.ElementTriP2())
    u = skfem.solve(*skfem.condense(skfem.asm(laplace, basis), skfem.asm(unit_load, basis),
                                    D=basis.get_dofs()))
    return basis, u


def test_shipped_lshape_reference_matches_a_coarse_fem_solve():
    basis, u = _fem_lshape_coarse()
    ref = np.load(PROBLEMS / "references" / "poisson_lshape_fem.npz")
    xs, ys, vals = ref["x"], ref["y"], ref["u"]
    # Every 10th grid point inside, away from the re-entrant corner's singularity.
    i, j = np.meshgrid(np.arange(5, 200, 10), np.arange(5, 200, 10), indexing="ij")
    i, j = i.ravel(), j.ravel()
    keep = ~np.isnan(vals[i, j]) & (np.hypot(xs[i], ys[j]) > 0.25)
    pts = np.stack([xs[i[keep]], ys[j[keep]]])
    coarse = np.concatenate([basis.interpolator(u)(pts[:, k : k + 32])
                             for k in range(0, pts.shape[1], 32)])
    np.testing.assert_allclose(vals[i[keep], j[keep]], coarse, atol=2e-4)
    assert np.isnan(vals[150, 150]) and abs(np.nanmax(vals) - 0.1494) < 5e-4
