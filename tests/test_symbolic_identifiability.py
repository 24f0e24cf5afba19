"""`discover` says when the samples do not single out its formula (one trajectory)."""

import contextlib
import warnings

import numpy as np
import pytest
import scipy.integrate
import sympy

from sciml import symbolic as ss


x, y = sympy.symbols("x y")


def _lotka_volterra(n=200):
    """One trajectory of the UPINN Lotka-Volterra system, t in [0, 3], at tight tolerance."""
    t = np.linspace(0.0, 3.0, n)
    sol = scipy.integrate.solve_ivp(
        lambda _, s: [1.3 * s[0] - 0.9 * s[0] * s[1], -1.8 * s[1] + 0.8 * s[0] * s[1]],
        (0.0, 3.0), [0.44249296, 4.6280594], t_eval=t, rtol=1e-11, atol=1e-12)
    return t, sol.y.T


def _normalised_quadratic_library(S):
    """[1, x, y, x^2, x y, y^2] on the samples, each column scaled to unit RMS."""
    a, b = S[:, 0], S[:, 1]
    A = np.stack([np.ones_like(a), a, b, a**2, a * b, b**2], axis=1)
    return A / np.sqrt(np.mean(A**2, axis=0))


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ss.IllConditionedLibraryWarning)
        yield


def test_one_trajectory_with_a_network_sized_error_warns():
    # The hidden term 0.5 x y sampled along one trajectory, with a smooth error of 0.1 %
    # of its RMS (what a trained network leaves): the default selection returns a
    # six-term polynomial. It must say that the samples cannot tell.
    t, S = _lotka_volterra()
    f = 0.5 * S[:, 0] * S[:, 1]
    values = f + 1e-3 * np.sqrt(np.mean(f**2)) * np.sin(2 * t + 0.3)
    cond = np.linalg.cond(_normalised_quadratic_library(S))
    assert 50 < cond < 100  # nearly collinear only for an error of this size
    with pytest.warns(ss.IllConditionedLibraryWarning) as record:
        d = ss.discover(values, S, names=("x", "y"), library=ss.polynomials(2))
    assert record[0].filename == __file__  # points at the caller
    message = str(record[0].message)
    assert len(d.support[0]) > 1  # the confident wrong formula it used to return silently
    assert d.identifiable == (False,)
    np.testing.assert_allclose(d.condition_number, cond, rtol=1e-10)
    assert f"condition number {cond:.3g}" in message
    assert "HiddenTermODE.identify" in message and "lets the data decide" in message
    # It names the sparsest candidate whose terms stand above their bound: x*y with its
    # least-squares coefficient on the samples.
    c = np.linalg.lstsq((S[:, 0] * S[:, 1])[:, None], values, rcond=None)[0][0]
    assert f"is {float(f'{c:.4g}')}*x*y" in message


def test_exact_values_on_one_trajectory_are_singled_out():
    # Without an error no other support fits: the exact term, and no warning.
    _, S = _lotka_volterra()
    with _no_warning():
        d = ss.discover(0.5 * S[:, 0] * S[:, 1], S, names=("x", "y"))
    assert d.support == ((x * y,),) and d.identifiable == (True,)
    np.testing.assert_allclose(float(d.expression.coeff(x * y)), 0.5, rtol=1e-12)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_box_samples_recover_the_formula_without_a_warning(noise):
    rng = np.random.default_rng(0)
    S = rng.uniform(-1, 1, (300, 2))
    f = 0.5 * S[:, 0] * S[:, 1]
    values = f + noise * np.sqrt(np.mean(f**2)) * rng.standard_normal(300)
    with _no_warning():
        d = ss.discover(values, S, names=("x", "y"), library=ss.polynomials(2))
    assert d.support == ((x * y,),) and d.identifiable == (True,)
    cond = np.linalg.cond(_normalised_quadratic_library(S))
    assert cond < 5
    np.testing.assert_allclose(d.condition_number, cond, rtol=1e-10)
    assert abs(float(d.expression.coeff(x * y)) - 0.5) < 5e-3


def test_resolution_is_the_held_out_error_times_the_inflation_factor():
    # resolution_j = 1.5 rho sqrt(VIF_j): rho the relative error with each third of the
    # samples predicted from the other two, VIF_j = [(A^T A / n)^-1]_jj of the unit-RMS
    # library, 1.5 the documented margin; computed here by hand.
    rng = np.random.default_rng(1)
    S = rng.uniform(0, 1, (90, 2))
    values = 1.0 + 2.0 * S[:, 0] * S[:, 1] + 0.05 * rng.standard_normal(90)
    d = ss.discover(values, S, names=("x", "y"), library=ss.polynomials(2))
    A = _normalised_quadratic_library(S)
    vif = np.diag(np.linalg.inv(A.T @ A / 90))
    keep = d.coefficients[0] != 0
    pred = np.empty(90)
    for block in (slice(0, 30), slice(30, 60), slice(60, 90)):
        train = np.ones(90, bool)
        train[block] = False
        c = np.linalg.lstsq(A[train][:, keep], values[train], rcond=None)[0]
        pred[block] = A[block][:, keep] @ c
    rho = np.linalg.norm(pred - values) / np.linalg.norm(values)
    np.testing.assert_allclose(d.resolution[0], 1.5 * rho * np.sqrt(vif), rtol=1e-8)


def test_identities_of_the_terms_do_not_warn_but_collinear_samples_do():
    # x/(1+x) + 1/(1+x) = 1 makes the library singular everywhere: the expression is
    # not unique, the function is, so no warning.
    S = np.random.default_rng(2).uniform(0, 2, (100, 2))
    lib = ss.polynomials(1) + ss.rational((1.0,), inputs=("x",))
    with _no_warning():
        d = ss.discover(3 * S[:, 0] / (1 + S[:, 0]) - S[:, 1], S, names=("x", "y"),
                        library=lib)
    assert d.condition_number > 1e12 and d.identifiable == (True,)
    # Samples on the line y = 2x: x y and x^2 agree there but nowhere else.
    u = np.linspace(0.1, 1.0, 50)
    line = np.stack([u, 2 * u], axis=1)
    with pytest.warns(ss.IllConditionedLibraryWarning, match="condition number"):
        d = ss.discover(0.5 * line[:, 0] * line[:, 1], line, names=("x", "y"))
    assert d.identifiable == (False,) and d.condition_number > 1e12
