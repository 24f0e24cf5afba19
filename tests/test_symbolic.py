"""sciml.symbolic: term libraries, sparse regression, discover, backends, refused inputs."""

import importlib.util
import math
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from sciml import symbolic as ss


x, y, z = sympy.symbols("x y z")


def _uniform(n, d, seed, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (n, d))


def _max_coefficient_gap(expr, truth, symbols):
    """Largest |coefficient| of the polynomial expr - truth (0 if identical)."""
    diff = sympy.expand(expr - truth)
    if diff == 0:
        return 0.0
    return max(abs(float(c)) for c in sympy.Poly(diff, *symbols).coeffs())


# ----------------------------------------------------------------------------------
# Libraries


def test_polynomial_terms():
    assert ss.polynomials(2).terms(("x", "y")) == (1, x, y, x**2, x * y, y**2)
    assert ss.polynomials(2, bias=False).terms(("x", "y")) == (x, y, x**2, x * y, y**2)
    assert ss.polynomials(3, interactions=False).terms(("x", "y")) == (
        1,
        x,
        y,
        x**2,
        y**2,
        x**3,
        y**3,
    )
    assert ss.polynomials(2, inputs=("y",)).terms(("x", "y")) == (1, y, y**2)
    # All monomials of 3 variables up to degree 4: C(4 + 3, 3).
    assert len(ss.polynomials(4).build(("x", "y", "z"))) == math.comb(7, 3)


def test_other_libraries_terms():
    assert ss.trigonometric((1, 2.5)).terms(("x",)) == (
        sympy.sin(x),
        sympy.cos(x),
        sympy.sin(sympy.Float(2.5) * x),
        sympy.cos(sympy.Float(2.5) * x),
    )
    assert ss.rational((1.0,)).terms(("x",)) == (x / (1 + x), 1 / (1 + x))
    assert ss.rational(2, inverse=False).terms(("x", "y")) == (x / (2 + x), y / (2 + y))
    assert ss.terms("x*exp(-y)", sympy.sin(x)).terms(("x", "y")) == (
        x * sympy.exp(-y),
        sympy.sin(x),
    )
    lib = ss.polynomials(1) + ss.terms("x", "x*y") + ss.trigonometric()
    assert isinstance(lib, ss.CombinedLibrary) and len(lib.libraries) == 3
    # The repeated x is kept once.
    assert lib.build(("x", "y")).expressions == (
        1,
        x,
        y,
        x * y,
        sympy.sin(x),
        sympy.cos(x),
        sympy.sin(y),
        sympy.cos(y),
    )


def test_features_match_closed_forms():
    lib = ss.polynomials(2) + ss.trigonometric((2.0,)) + ss.rational((1.5,)) + ss.terms("x*exp(-y)")
    ts = lib.build(("x", "y"))
    X = _uniform(50, 2, 0)
    a, b = X[:, 0], X[:, 1]
    expected = np.stack(
        [
            np.ones_like(a),
            a,
            b,
            a**2,
            a * b,
            b**2,
            np.sin(2 * a),
            np.cos(2 * a),
            np.sin(2 * b),
            np.cos(2 * b),
            a / (1.5 + a),
            1 / (1.5 + a),
            b / (1.5 + b),
            1 / (1.5 + b),
            a * np.exp(-b),
        ],
        axis=1,
    )
    np.testing.assert_allclose(ts.design(X), expected, rtol=1e-14, atol=1e-15)
    feats = jax.jit(jax.vmap(ts.features))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(feats), expected, rtol=1e-13, atol=1e-15)
    # Features are differentiable: d/dx of row at a point against the closed form.
    g = jax.jacfwd(ts.features)(jnp.array([0.3, -0.2]))[:, 0]
    dx = [
        0,
        1,
        0,
        0.6,
        -0.2,
        0,
        2 * np.cos(0.6),
        -2 * np.sin(0.6),
        0,
        0,
        1.5 / 1.8**2,
        -1 / 1.8**2,
        0,
        0,
        np.exp(0.2),
    ]
    np.testing.assert_allclose(np.asarray(g), dx, rtol=1e-12, atol=1e-14)


def test_library_errors():
    with pytest.raises(ValueError, match="no terms"):
        ss.polynomials(0, bias=False).build(("x",))
    with pytest.raises(ValueError, match="no terms"):
        ss.terms().build(("x",))
    with pytest.raises(ValueError, match="unknown input names"):
        ss.terms("x*z").build(("x", "y"))
    with pytest.raises(ValueError, match="unknown inputs"):
        ss.polynomials(2, inputs=("q",)).build(("x", "y"))
    with pytest.raises(ValueError, match="non-negative int"):
        ss.polynomials(-1)
    with pytest.raises(ValueError, match="positive"):
        ss.trigonometric((0.0,))
    with pytest.raises(ValueError, match="non-zero"):
        ss.rational((0.0,))
    with pytest.raises(ValueError, match="could not read"):
        ss.terms("x*(")
    with pytest.raises(TypeError, match="term libraries"):
        ss.combine(ss.polynomials(1), "x")
    ts = ss.rational((-0.5,)).build(("x",))
    with pytest.raises(ValueError, match="not finite at 1 of the 3 samples"):
        ts.design(np.array([[0.0], [0.5], [1.0]]))


# ----------------------------------------------------------------------------------
# Sparse regression


@pytest.mark.parametrize(
    "criterion",
    [ss.KFold(5), ss.BIC(), ss.BIC(gamma=1.0), ss.AIC()],
    ids=["kfold", "bic", "ebic", "aic"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_recovery_of_sparse_polynomials(criterion, seed):
    rng = np.random.default_rng(100 + seed)
    ts = ss.polynomials(3).build(("x", "y", "z"))
    m = len(ts)
    true = np.zeros(m)
    idx = rng.choice(m, size=4, replace=False)
    # Coefficients of mixed sizes and signs, the smallest 50x below the largest.
    true[idx] = rng.choice([-1, 1], 4) * np.array([2.5, 1.0, 0.3, 0.05])
    X = _uniform(200, 3, seed)
    b = ts.design(X) @ true
    fit = ss.STLSQ(criterion=criterion).solve(ts.design(X), b)
    np.testing.assert_array_equal(fit.support, true != 0)
    # Clean data: the refit on the right support is exact to roundoff.
    np.testing.assert_allclose(fit.coefficients, true, rtol=0, atol=1e-10)


def test_fixed_thresholds_and_raw_units():
    ts = ss.polynomials(2).build(("x", "y"))
    X = _uniform(100, 2, 3)
    true = np.array([0.0, 2.0, 0.0, 0.0, -0.04, 1.0])
    b = ts.design(X) @ true
    # Raw-unit threshold 0.1 removes the true 0.04 x*y term (PySINDy's convention) ...
    fit = ss.STLSQ(threshold=0.1, normalise=False).solve(ts.design(X), b)
    np.testing.assert_array_equal(fit.support, [0, 1, 0, 0, 0, 1])
    # ... a threshold below it keeps it, exactly.
    fit = ss.STLSQ(threshold=0.01, normalise=False).solve(ts.design(X), b)
    np.testing.assert_allclose(fit.coefficients, true, atol=1e-12)
    # A path of (normalised) thresholds with selection also finds it.
    fit = ss.STLSQ(threshold=(0.001, 0.1, 1.0)).solve(ts.design(X), b)
    np.testing.assert_allclose(fit.coefficients, true, atol=1e-12)


def test_few_samples_and_criterion_errors():
    # Fewer samples than folds: leave-one-out, still exact on clean data.
    X = np.array([[0.1], [0.5], [0.9], [1.3]])
    fit = ss.STLSQ().solve(ss.polynomials(2).build(("x",)).design(X), 3 * X[:, 0] ** 2)
    np.testing.assert_allclose(fit.coefficients, [0, 0, 3], atol=1e-12)
    with pytest.raises(ValueError, match="folds"):
        ss.KFold(1)
    with pytest.raises(ValueError, match="gamma"):
        ss.BIC(gamma=2.0)
    with pytest.raises(ValueError, match="threshold"):
        ss.STLSQ(threshold=-1.0)
    with pytest.raises(TypeError, match="criterion"):
        ss.STLSQ(criterion="bic")


def test_stlsq_against_lstsq_and_ridge():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(80, 5))
    b = rng.normal(size=80)
    # Threshold 0 is plain least squares.
    coef, support = ss.stlsq(A, b, 0.0)
    assert support.all()
    np.testing.assert_allclose(coef, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-12)
    # Ridge: the normal equations (A^T A / n + lambda I) c = A^T b / n.
    coef, _ = ss.stlsq(A, b, 0.0, ridge=0.3)
    ref = np.linalg.solve(A.T @ A / 80 + 0.3 * np.eye(5), A.T @ b / 80)
    np.testing.assert_allclose(coef, ref, rtol=1e-12)


def test_collinear_library_recovers_sparse_truth():
    # Polynomials, sines and rational terms are nearly collinear on [-1, 1]: the full
    # fit has large cancelling coefficients and only the elimination path finds x*y.
    rng = np.random.default_rng(0)
    X = _uniform(300, 2, 0)
    b = -0.9 * X[:, 0] * X[:, 1]
    b = b + 0.01 * np.sqrt(np.mean(b**2)) * rng.standard_normal(300)
    lib = ss.polynomials(3) + ss.trigonometric((1, 2)) + ss.rational((2.0,))
    d = ss.discover(b, X, names=("x", "y"), library=lib)
    assert d.support == ((x * y,),)
    assert abs(float(d.expression.coeff(x * y)) + 0.9) < 1e-2


# ----------------------------------------------------------------------------------
# discover


def _noisy_xy(seed=0, n=300, noise=0.01):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    clean = -0.9 * X[:, 0] * X[:, 1]
    # 1 % noise relative to the RMS of the target.
    return X, clean + noise * np.sqrt(np.mean(clean**2)) * rng.standard_normal(n)


@pytest.mark.parametrize("criterion", [ss.BIC(), ss.KFold(5)], ids=["bic", "kfold"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_xy_within_1e_2(criterion, seed):
    X, b = _noisy_xy(seed)
    d = ss.discover(b, X, names=("x", "y"), backend=ss.STLSQ(criterion=criterion))
    assert isinstance(d.expression, sympy.Expr)
    assert d.support == ((x * y,),)
    assert _max_coefficient_gap(d.expression, -0.9 * x * y, (x, y)) < 1e-2
    assert d.error < 0.02  # about the 1 % noise
    assert d.latex == sympy.latex(d.expression)


def test_vector_output_from_a_jax_function():
    def fn(s):
        a, b, c = s
        return jnp.stack([1.5 - 2 * a + 0.3 * a * b**2, b**3 - 0.5 * a * c, 4.0 * c])

    X = _uniform(120, 3, 4)
    d = ss.discover(fn, X, names=("a", "b", "c"), library=ss.polynomials(3))
    a, b, c = sympy.symbols("a b c")
    truth = (1.5 - 2 * a + 0.3 * a * b**2, b**3 - 0.5 * a * c, 4 * c)
    assert isinstance(d.expression, tuple) and len(d.expression) == 3
    for e, t in zip(d.expression, truth):
        assert _max_coefficient_gap(e, t, (a, b, c)) < 1e-10
    assert d.support == ((1, a, a * b**2), (a * c, b**3), (c,))
    assert d.coefficients.shape == (3, len(d.terms))
    assert d.error < 1e-12
    assert d.jax_fn(jnp.array([0.1, 0.2, 0.3])).shape == (3,)


def test_trigonometric_and_rational_recovery():
    X = _uniform(200, 2, 5, 0.0, 2.0)
    b = 2 * np.sin(X[:, 0]) - 0.5 * np.cos(2 * X[:, 1]) + 3 * X[:, 0] / (1 + X[:, 0])
    lib = ss.polynomials(1) + ss.trigonometric((1, 2)) + ss.rational((1.0,))
    d = ss.discover(b, {"x": X[:, 0], "y": X[:, 1]}, library=lib)
    truth = 2 * sympy.sin(x) - sympy.Rational(1, 2) * sympy.cos(2 * y) + 3 * x / (1 + x)
    assert set(d.support[0]) == {sympy.sin(x), sympy.cos(2 * y), x / (1 + x)}
    diff = sympy.lambdify((x, y), d.expression - truth)(X[:, 0], X[:, 1])
    np.testing.assert_allclose(diff, 0, atol=1e-10)


def test_one_input_as_a_vector():
    u = np.linspace(0.1, 0.9, 60)
    d = ss.discover(u - u**2, u, names=("u",))
    uu = sympy.Symbol("u")
    assert _max_coefficient_gap(d.expression, uu - uu**2, (uu,)) < 1e-12
    # A scalar input is accepted by the function of one input.
    np.testing.assert_allclose(float(d.jax_fn(0.5)), 0.25, rtol=1e-12)


def test_jax_fn_agrees_with_sympy_and_differentiates():
    X, b = _noisy_xy(3)
    lib = ss.polynomials(2) + ss.trigonometric()
    d = ss.discover(b + np.sin(X[:, 1]), X, names=("x", "y"), library=lib)
    expr = d.expression
    Z = _uniform(40, 2, 9, -2, 2)
    ref = sympy.lambdify((x, y), expr, modules="numpy")(Z[:, 0], Z[:, 1])
    got = jax.jit(jax.vmap(d.jax_fn))(jnp.asarray(Z))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-14)
    grad_ref = [
        sympy.lambdify((x, y), sympy.diff(expr, s), modules="numpy")(0.3, -0.7) for s in (x, y)
    ]
    np.testing.assert_allclose(
        np.asarray(jax.grad(d.jax_fn)(jnp.array([0.3, -0.7]))), grad_ref, rtol=1e-12
    )
    # The coefficients are the one inexact leaf, so they are what sciml.fit trains.
    leaves = [leaf for leaf in jax.tree.leaves(d.jax_fn) if isinstance(leaf, jax.Array)]
    assert len(leaves) == 1 and leaves[0].shape == (sum(len(s) for s in d.support),)


def test_float32_when_x64_is_off():
    X = _uniform(300, 2, 6)
    lib = ss.polynomials(3) + ss.trigonometric()
    with jax.enable_x64(False):
        d = ss.discover(
            lambda s: -0.9 * s[0] * s[1] + 0.5 * s[1] ** 2, X, names=("x", "y"), library=lib
        )
        assert d.jax_fn.coefficients.dtype == jnp.float32
        assert d.jax_fn(jnp.ones(2)).dtype == jnp.float32
    # float32 roundoff (1e-7) is not mistaken for signal: no junk terms.
    assert set(d.support[0]) == {x * y, y**2}
    # rtol 1e-6: the samples were computed in float32.
    assert _max_coefficient_gap(d.expression, -0.9 * x * y + 0.5 * y**2, (x, y)) < 1e-6


def test_symbolic_function_from_free_expressions():
    expr = 0.5 * x**2 / (1.3 + y) - 2.0 * sympy.exp(-0.7 * x)
    f = ss.SymbolicFunction.from_expressions([expr], ("x", "y"), scalar=True)
    assert f.coefficients.shape == (4,)
    assert sympy.simplify(f.expression - expr) == 0
    p = jnp.array([0.4, 0.9])
    ref = 0.5 * 0.4**2 / 2.2 - 2.0 * np.exp(-0.28)
    np.testing.assert_allclose(float(f(p)), ref, rtol=1e-13)
    # Equal constants are separate parameters (they used to be tied into one, so no
    # fit could reach 2x - y from 0.5x + 0.5y).
    g = ss.SymbolicFunction.from_expressions([0.5 * x + 0.5 * y], ("x", "y"), scalar=True)
    assert g.coefficients.shape == (2,)
    grad = jax.grad(lambda c: eqx.tree_at(lambda h: h.coefficients, g, c)(p))(g.coefficients)
    np.testing.assert_allclose(sorted(np.asarray(grad)), [0.4, 0.9], rtol=1e-13)


def test_default_backend_never_imports_pysr():
    X, b = _noisy_xy(0)
    ss.discover(b, X, names=("x", "y"))
    assert "pysr" not in sys.modules and "juliacall" not in sys.modules


# ----------------------------------------------------------------------------------
# Optional backends


def test_pysr_without_julia_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    start = time.perf_counter()
    with pytest.raises(ss.BackendUnavailableError, match="(Julia|pysr)"):
        ss.PySR()
    # Pretend pysr is installed: the missing Julia is what is refused, before any import.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "pysr" else real(name, *a)
    )
    with pytest.raises(ss.BackendUnavailableError, match="needs a Julia runtime"):
        ss.PySR()
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "no-julia"))
    with pytest.raises(ss.BackendUnavailableError, match="PYTHON_JULIAPKG_EXE"):
        ss.PySR()
    assert time.perf_counter() - start < 30  # loose: a download would take far longer
    assert "pysr" not in sys.modules and "juliacall" not in sys.modules


def test_pysindy_backend():
    if importlib.util.find_spec("pysindy") is None:
        with pytest.raises(ss.BackendUnavailableError, match="pysindy"):
            ss.PySINDy()
        return
    X, b = _noisy_xy(0)
    d = ss.discover(b, X, names=("x", "y"), backend=ss.PySINDy())
    assert d.support == ((x * y,),)
    assert _max_coefficient_gap(d.expression, -0.9 * x * y, (x, y)) < 1e-2


# ----------------------------------------------------------------------------------
# Refused inputs


def test_bad_inputs_raise_before_work():
    X, b = _noisy_xy(0)
    calls = []

    def fn(s):
        calls.append(1)
        return s[0] * s[1]

    with pytest.raises(ValueError, match=r"shape \(300,\) or \(300, k\)"):
        ss.discover(b[:-1], X, names=("x", "y"))
    with pytest.raises(ValueError, match=r"shape \(300,\) or \(300, k\)"):
        ss.discover(b.reshape(300, 1, 1), X, names=("x", "y"))
    bad = b.copy()
    bad[[4, 7]] = np.nan
    with pytest.raises(ValueError, match="NaN/inf at 2 samples"):
        ss.discover(bad, X, names=("x", "y"))
    Xbad = X.copy()
    Xbad[3, 1] = np.inf
    with pytest.raises(ValueError, match="`inputs` has NaN/inf in 1 samples"):
        ss.discover(fn, Xbad, names=("x", "y"))
    with pytest.raises(ValueError, match="no terms"):
        ss.discover(fn, X, names=("x", "y"), library=ss.polynomials(0, bias=False))
    with pytest.raises(ValueError, match="unknown input names"):
        ss.discover(fn, X, names=("x", "y"), library=ss.terms("x*z"))
    with pytest.raises(ValueError, match="has 3 names but `inputs` has 2 columns"):
        ss.discover(fn, X, names=("x", "y", "z"))
    with pytest.raises(ValueError, match="different lengths"):
        ss.discover(fn, {"x": X[:, 0], "y": X[:-1, 1]})
    with pytest.raises(ValueError, match="identifiers"):
        ss.discover(fn, X, names=("x", "y z"))
    with pytest.raises(TypeError, match="backend object"):
        ss.discover(fn, X, names=("x", "y"), backend="stlsq")
    with pytest.raises(TypeError, match="term library"):
        ss.discover(fn, X, names=("x", "y"), library=[x * y])
    assert not calls  # fn was never evaluated
    with pytest.raises(ValueError, match="NaN/inf"):
        ss.discover(lambda s: jnp.log(s[0]), X, names=("x", "y"))
