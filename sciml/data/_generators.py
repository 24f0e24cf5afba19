"""Operator datasets with their own reference solvers (Lu et al. 2021, DeepONet §4).

Each generator draws input functions u from a space (`GRF`, `Chebyshev`), evaluates
them at the sensors, solves for G(u) with a reference solver at tight tolerance, and
returns a `TripleCartesianProd` (a shared set of output points) or a `Triple`
(`RandomPoints`: fresh random points per function, as in DeepONet's ODE data).

- `antiderivative`: s' = u, s(a) = 0, exact (the cubic interpolant integrated by
  Gauss quadrature).
- `nonlinear_ode`: s' = -s^2 + u, s(a) = 0 (diffrax, adaptive); some u drive s to
  -infinity in finite time: those are dropped and redrawn, with a warning.
- `pendulum`: s1' = s2, s2' = -k sin(s1) + u(t), s(0) = 0; G(u) = s1.
- `diffusion_reaction`: s_t = D s_xx + k s^2 + u(x) on [0, 1]^2, zero initial and
  boundary values (Crank-Nicolson finite differences).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._layouts import Triple, TripleCartesianProd
from ._spaces import AbstractFunctionSpace, _check_num, default_float


class RandomPoints(eqx.Module):
    """Output points drawn uniformly at random, `per_function` for each input u.

    Passed as `points=` to a generator, it makes a `Triple` dataset (DeepONet's ODE
    data uses `per_function=1`).
    """

    per_function: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if isinstance(self.per_function, bool) or not isinstance(self.per_function, int) or (
            self.per_function < 1
        ):
            raise ValueError(
                f"sciml.data.RandomPoints: `per_function` must be a positive int, got "
                f"{self.per_function!r}."
            )


def _check_space(space, where):
    if not isinstance(space, AbstractFunctionSpace):
        raise TypeError(
            f"{where}: `space` must be a function space such as sciml.data.GRF(0.2), got "
            f"{space!r}."
        )


def _sensor_points(space, sensors, where):
    a, b = space.domain
    dtype = default_float()
    if isinstance(sensors, int | np.integer) and not isinstance(sensors, bool):
        if sensors < 1:
            raise ValueError(f"{where}: `sensors` must be >= 1, got {sensors}.")
        return jnp.linspace(a, b, int(sensors), dtype=dtype)
    x = jnp.asarray(sensors, dtype)
    if x.ndim != 1 or x.shape[0] < 1:
        raise ValueError(
            f"{where}: `sensors` must be an int (equispaced sensors) or a 1-d array of "
            f"locations, got shape {x.shape}."
        )
    return x


def _output_points(space, points, sensor_x, where):
    if points is None:
        return sensor_x
    if isinstance(points, RandomPoints):
        return points
    if isinstance(points, int | np.integer) and not isinstance(points, bool):
        a, b = space.domain
        return jnp.linspace(a, b, int(points), dtype=default_float())
    y = jnp.asarray(points, default_float())
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{where}: `points` must be None (the sensors), an int, a 1-d array or "
            f"sciml.data.RandomPoints(...), got shape {y.shape}."
        )
    return y


def _draw_points(space, points: RandomPoints, key, num):
    a, b = space.domain
    return jax.random.uniform(key, (num, points.per_function), default_float(), a, b)


def _build(
    space,
    *,
    num,
    sensors,
    points,
    key,
    solve: Callable,
    where: str,
    valid: Callable | None = None,
    max_rounds: int = 20,
    raw: bool = False,
):
    """Draws functions, solves, filters invalid solutions and redraws until `num`."""
    _check_space(space, where)
    num = _check_num(num, where)
    sensor_x = _sensor_points(space, sensors, where)
    out_pts = _output_points(space, points, sensor_x, where)
    random_points = isinstance(out_pts, RandomPoints)
    kept_u, kept_y, kept_s, dropped, drawn = [], [], [], 0, 0
    for r in range(max_rounds):
        need = num - sum(len(u) for u in kept_u)
        if need <= 0:
            break
        # Draw a little more than needed after a round with failures.
        batch = need if r == 0 else max(need + need // 2, 8)
        fkey, pkey = jax.random.split(jax.random.fold_in(key, r))
        feats = space.sample(fkey, batch)
        drawn += batch
        u = jax.jit(jax.vmap(lambda f, x: space.evaluate(f, x), (0, None)))(feats, sensor_x)
        if random_points:
            pts = _draw_points(space, out_pts, pkey, batch)
            pts = jnp.sort(pts, axis=1)
            s = jax.jit(jax.vmap(solve))(feats, pts)
        else:
            pts = None
            s = jax.jit(jax.vmap(solve, (0, None)))(feats, out_pts)
        ok = np.array(jnp.all(jnp.isfinite(s), axis=tuple(range(1, s.ndim))))
        if valid is not None:
            ok &= np.asarray(valid(s))
        dropped += int((~ok).sum())
        kept_u.append(np.asarray(u)[ok])
        kept_s.append(np.asarray(s)[ok])
        kept_y.append(None if pts is None else np.asarray(pts)[ok])
    u = np.concatenate(kept_u)[:num]
    s = np.concatenate(kept_s)[:num]
    if len(u) < num:
        raise RuntimeError(
            f"{where}: only {len(u)} of {num} functions gave a valid solution after "
            f"{drawn} draws; use a smoother space or a shorter domain."
        )
    if dropped:
        warnings.warn(
            f"{where}: dropped {dropped} of {drawn} drawn input functions whose solution "
            "blew up or left the allowed range, and drew replacements.",
            stacklevel=3,
        )
    if raw:
        return u, s
    if random_points:
        pts = np.concatenate(kept_y)[:num]
        p = out_pts.per_function
        return Triple(np.repeat(u, p, axis=0), pts.reshape(-1, 1), s.reshape(-1, 1))
    return TripleCartesianProd(u, np.asarray(out_pts)[:, None], s)


def antiderivative(
    space: AbstractFunctionSpace,
    *,
    num: int,
    key: PRNGKeyArray,
    sensors: int | Array = 100,
    points=None,
):
    """Data for the antiderivative operator G(u)(x) = int_a^x u(t) dt.

    The reference is exact: the space's own antiderivative of each u (for a `GRF`,
    the cubic interpolant integrated by Gauss quadrature).

    **Arguments:**

    - `space`: where u comes from, e.g. `sciml.data.GRF(0.2)`.
    - `num`: number of input functions.
    - `key`: PRNG key.
    - `sensors`: number of equispaced sensors on the domain (default 100), or their
      locations.
    - `points`: output locations: `None` (the sensors: "aligned" data), an int
      (equispaced), an array, or `RandomPoints(per_function)`.

    **Returns:**

    A `TripleCartesianProd` (or a `Triple` with `RandomPoints`).
    """
    return _build(
        space,
        num=num,
        sensors=sensors,
        points=points,
        key=key,
        solve=lambda f, x: space.antiderivative(f, x),
        where="sciml.data.antiderivative",
    )


def _tolerances(rtol, atol):
    f64 = default_float() == jnp.float64
    return (1e-10 if f64 else 1e-6) if rtol is None else rtol, (
        (1e-10 if f64 else 1e-6) if atol is None else atol
    )


def solve_ode(
    rhs: Callable,
    y0: Array,
    ts: Array,
    *,
    t0: float,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 16384,
    step_ts: Array | None = None,
) -> Array:
    """Reference solution of y' = rhs(t, y) at sorted times `ts` (diffrax, adaptive).

    Failed solves (blow-up, too many steps) give non-finite values, never an error,
    so callers can filter them.

    **Arguments:**

    - `rhs`: `rhs(t, y) -> dy/dt`.
    - `y0`: initial state at `t0`.
    - `ts`: sorted output times `>= t0`.
    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances (default 1e-10 in float64, 1e-6 in float32).
    - `max_steps`: step budget.
    - `step_ts`: times where `rhs` has a kink (a jump in a derivative), e.g. the grid
      nodes of a piecewise-linear input; the solver lands a step on each of them instead
      of stepping across, which an embedded error estimate sees poorly (with a GRF input
      on 200 nodes, Tsit5 at 1e-10 was off by 1e-7 without them).

    **Returns:**

    The states at `ts`, shape `ts.shape + y0.shape`.
    """
    rtol, atol = _tolerances(rtol, atol)
    solver = diffrax.Tsit5() if solver is None else solver
    dtype = jnp.result_type(y0)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if step_ts is not None:
        controller = diffrax.ClipStepSizeController(controller, step_ts=step_ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: rhs(t, y)),
        solver,
        t0=jnp.asarray(t0, dtype),
        t1=ts[-1],
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    return jnp.where(ok, sol.ys, jnp.inf)


def nonlinear_ode(
    space: AbstractFunctionSpace,
    *,
    num: int,
    key: PRNGKeyArray,
    sensors: int | Array = 100,
    points=None,
    bound: float = 10.0,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
):
    """Data for the nonlinear ODE operator s' = -s^2 + u(x), s(a) = 0.

    For a GRF with l = 0.2 a few u in a thousand drive s to -infinity in finite time;
    solutions that fail or leave |s| <= `bound` are dropped (with a warning saying
    how many) and replaced by fresh draws, so exactly `num` functions come back.

    **Arguments:** as `antiderivative`, plus

    - `bound`: largest |s| kept (default 10).
    - `solver`, `rtol`, `atol`: the reference solver (see `solve_ode`).

    **Returns:**

    A `TripleCartesianProd` (or a `Triple` with `RandomPoints`).
    """
    a = space.domain[0]

    def solve(f, x):
        def rhs(t, s):
            return -(s**2) + space.evaluate(f, t)

        return solve_ode(
            rhs, jnp.zeros((), f.dtype), x, t0=a, solver=solver, rtol=rtol, atol=atol,
            step_ts=space.kinks,
        )

    return _build(
        space,
        num=num,
        sensors=sensors,
        points=points,
        key=key,
        solve=solve,
        valid=lambda s: jnp.all(jnp.abs(s) <= bound, axis=-1),
        where="sciml.data.nonlinear_ode",
    )


def pendulum(
    space: AbstractFunctionSpace,
    *,
    num: int,
    key: PRNGKeyArray,
    sensors: int | Array = 100,
    points=None,
    k: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
):
    """Data for the forced gravity pendulum: s1' = s2, s2' = -k sin(s1) + u(t), s(0) = 0.

    G(u) = s1, the angle, on the space's domain [0, T] (DeepONet: k = 1, T = 1 or 3;
    the error grows quickly with T).

    **Arguments:** as `antiderivative`, plus `k` and the reference solver options.

    **Returns:**

    A `TripleCartesianProd` (or a `Triple` with `RandomPoints`).
    """
    a = space.domain[0]

    def solve(f, x):
        def rhs(t, s):
            return jnp.stack([s[1], -k * jnp.sin(s[0]) + space.evaluate(f, t)])

        ys = solve_ode(
            rhs, jnp.zeros((2,), f.dtype), x, t0=a, solver=solver, rtol=rtol, atol=atol,
            step_ts=space.kinks,
        )
        return ys[:, 0]

    return _build(
        space,
        num=num,
        sensors=sensors,
        points=points,
        key=key,
        solve=solve,
        where="sciml.data.pendulum",
    )


def solve_diffusion_reaction(
    source: Array,
    *,
    diffusion: float = 0.01,
    reaction: float = 0.01,
    nt: int = 100,
    length: float = 1.0,
    duration: float = 1.0,
) -> Array:
    """s_t = D s_xx + k s^2 + u(x), s(x, 0) = 0, s(0, t) = s(L, t) = 0, by finite differences.

    Crank-Nicolson in time for diffusion, the reaction term linearised as
    k s^n s^{n+1} (= k s(t_{n+1/2})^2 + O(dt^2)), so each step is one tridiagonal
    solve and the scheme is second order in space and time.

    **Arguments:**

    - `source`: u at the `nx` equispaced nodes of [0, L] (boundaries included).
    - `diffusion`, `reaction`: D and k (DeepONet: 0.01 and 0.01).
    - `nt`: number of time nodes on [0, duration] (initial time included).
    - `length`, `duration`: L and the final time.

    **Returns:**

    s on the grid, shape `(nt, nx)`: row j is time `j * duration / (nt - 1)`.
    """
    source = jnp.asarray(source)
    nx = source.shape[0]
    if source.ndim != 1 or nx < 3:
        raise ValueError(
            f"solve_diffusion_reaction: `source` must be 1-d with >= 3 nodes, got shape "
            f"{source.shape}."
        )
    if nt < 2:
        raise ValueError(f"solve_diffusion_reaction: `nt` must be >= 2, got {nt}.")
    dtype = source.dtype
    h = length / (nx - 1)
    dt = duration / (nt - 1)
    n = nx - 2
    r = diffusion * dt / (2 * h**2)
    f = source[1:-1]
    off = jnp.full((n,), -r, dtype)
    lower = off.at[0].set(0.0)
    upper = off.at[-1].set(0.0)

    def lap(s):
        padded = jnp.concatenate([jnp.zeros((1,), dtype), s, jnp.zeros((1,), dtype)])
        return padded[:-2] - 2 * s + padded[2:]

    def step(s, _):
        # k s^n s^{n+1} = k (s^{n+1/2})^2 + O(dt^2): linear in s^{n+1}, second order.
        diag = 1 + 2 * r - dt * reaction * s
        rhs = s + r * lap(s) + dt * f
        new = jax.lax.linalg.tridiagonal_solve(lower, diag, upper, rhs[:, None])[:, 0]
        return new, new

    s0 = jnp.zeros((n,), dtype)
    _, traj = jax.lax.scan(step, s0, None, length=nt - 1)
    interior = jnp.concatenate([s0[None], traj])
    zeros = jnp.zeros((nt, 1), dtype)
    return jnp.concatenate([zeros, interior, zeros], axis=1)


def diffusion_reaction(
    space: AbstractFunctionSpace,
    *,
    num: int,
    key: PRNGKeyArray,
    sensors: int | Array = 100,
    grid: tuple[int, int] = (100, 100),
    points: RandomPoints | None = None,
    diffusion: float = 0.01,
    reaction: float = 0.01,
):
    """Data for the diffusion-reaction operator u(x) -> s(x, t) of DeepONet's §4.

    s_t = D s_xx + k s^2 + u(x) on x, t in [0, 1] with zero initial and boundary
    values, solved by `solve_diffusion_reaction` on an `(nx, nt)` grid.

    **Arguments:**

    - `space`: the source u on [0, 1], e.g. `sciml.data.GRF(0.2)`.
    - `num`, `key`, `sensors`: as `antiderivative`.
    - `grid`: `(nx, nt)` finite-difference nodes (default 100 x 100).
    - `points`: `None` gives every grid node to every function (trunk `(nx * nt, 2)`
      of `(x, t)` pairs, x fastest); `RandomPoints(P)` gives P random grid nodes per
      function (DeepONet's data) as a `Triple`.
    - `diffusion`, `reaction`: D and k (default 0.01 each).

    **Returns:**

    A `TripleCartesianProd` with trunk `(x, t)` columns (or a `Triple`).
    """
    where = "sciml.data.diffusion_reaction"
    _check_space(space, where)
    if tuple(space.domain) != (0.0, 1.0):
        raise ValueError(f"{where}: `space` must live on (0, 1), got domain {space.domain}.")
    nx, nt = grid
    x = jnp.linspace(0.0, 1.0, nx, dtype=default_float())
    t = jnp.linspace(0.0, 1.0, nt, dtype=default_float())
    tt, xx = jnp.meshgrid(t, x, indexing="ij")
    trunk = jnp.stack([xx.reshape(-1), tt.reshape(-1)], axis=1)

    def solve(f, _):
        s = solve_diffusion_reaction(
            space.evaluate(f, x), diffusion=diffusion, reaction=reaction, nt=nt
        )
        return s.reshape(-1)

    u, s = _build(
        space,
        num=num,
        sensors=sensors,
        points=jnp.zeros((1,), default_float()),  # unused: `solve` returns the whole grid
        key=key,
        solve=solve,
        where=where,
        raw=True,
    )
    full = TripleCartesianProd(u, np.asarray(trunk), s)
    if points is None:
        return full
    if not isinstance(points, RandomPoints):
        raise TypeError(f"{where}: `points` must be None or RandomPoints(P), got {points!r}.")
    return full.sample_points(points.per_function, key=jax.random.fold_in(key, 10_000))

