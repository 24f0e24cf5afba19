"""Domains: the interface every domain shares, boxes and intervals, space x time, and
selected pieces of a boundary.

Points are arrays of shape `(n, d)` (time is the last coordinate of a `SpaceTime`);
`contains`, `normal` and `distance` take one point of shape `(d,)` (vmap outside).
Geometry is stored as static Python floats, so a domain inside a model or a loss never
turns into trainable leaves. Other shapes are in `_shapes.py`; CSG (`a | b`, `a - b`,
`a & b`) is at the end of this module, beside the base class whose operators build it;
the shared machinery (boundary pieces, rejection sampling) is in `_geometry.py`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._geometry import (
    Estimate,
    Piece,
    Proposal,
    check_n,
    fill,
    float_dtype,
    hit_fraction,
    offset,
    on_tol,
    point,
    r_and,
    r_or,
)
from ._samplers import AbstractQuadrature, AbstractSampler, Uniform, tensor_quadrature


_ESTIMATE_POINTS = 1 << 18
_PILOT_POINTS = 1 << 12


def _bounds(lower, upper, where):
    lo = tuple(float(v) for v in np.atleast_1d(np.asarray(lower, np.float64)))
    hi = tuple(float(v) for v in np.atleast_1d(np.asarray(upper, np.float64)))
    if len(lo) != len(hi):
        raise ValueError(
            f"sciml.pinn.{where}: `lower` has {len(lo)} entries but `upper` has {len(hi)}."
        )
    if not lo:
        raise ValueError(f"sciml.pinn.{where}: `lower` and `upper` are empty; give one bound "
                         "per coordinate.")
    if not all(math.isfinite(v) for v in lo + hi):
        raise ValueError(f"sciml.pinn.{where}: bounds must be finite, got {lo} and {hi}.")
    bad = [i for i, (a, b) in enumerate(zip(lo, hi)) if not a < b]
    if bad:
        i = bad[0]
        raise ValueError(
            f"sciml.pinn.{where}: need lower < upper in every coordinate, got lower[{i}] = "
            f"{lo[i]} >= upper[{i}] = {hi[i]}. Swap or fix the bounds."
        )
    return lo, hi


class AbstractDomain(eqx.Module):
    """A closed region with an interior and a boundary to sample points from.

    Every domain has `sample`, `sample_boundary`, `boundary` (pieces selected by CSG
    part or predicate), `contains`, `normal`, `volume` and `distance`, and combines with
    others by `a | b` (union), `a - b` (difference) and `a & b` (intersection).
    A concrete domain provides its bounding box, membership, a distance function, an
    interior proposal and its boundary pieces; everything else is shared.
    """

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Number of coordinates of a point."""

    @property
    @abc.abstractmethod
    def bbox(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """`(lower, upper)` of an axis-aligned box containing the domain."""

    @property
    @abc.abstractmethod
    def volume(self) -> float:
        """Area/volume: exact where known, else an `Estimate` (a float that says so)."""

    @abc.abstractmethod
    def inside(self, x: Array, strict: bool = False) -> Array:
        """Whether one point lies in the closed domain (`strict`: the open interior).

        Points within round-off of the boundary count as on it.
        """

    @abc.abstractmethod
    def distance(self, x: Array) -> Array:
        """An approximate distance function at one point: exactly zero on the boundary,
        positive inside, negative outside, with unit inward normal derivative on smooth
        boundary pieces (Sukumar & Srivastava 2022), so that `u = g + distance * N`
        imposes `u = g` on the boundary exactly.
        """

    @abc.abstractmethod
    def proposal(self) -> Proposal:
        """Interior candidates uniform on a superset, and the filter (see `Proposal`)."""

    @abc.abstractmethod
    def pieces(self) -> tuple[Piece, ...]:
        """The pieces the boundary is drawn from (see `Piece`)."""

    # ------------------------------------------------------------------------------
    # Shared by every domain

    @property
    def exact_pieces(self) -> bool:
        """Whether the pieces are exactly the boundary (no CSG filtering needed)."""
        return True

    @property
    def children(self) -> tuple[AbstractDomain, ...]:
        """Operands (CSG) or the spatial domain (`SpaceTime`); none for a primitive."""
        return ()

    @property
    def scale(self) -> float:
        lo, hi = self.bbox
        return math.sqrt(sum((b - a) ** 2 for a, b in zip(lo, hi)))

    def contains(self, x: Array) -> Array:
        """Whether one point (shape `(dim,)`) lies in the closed domain."""
        return self.inside(point(x, self.dim, f"{type(self).__name__}.contains"))

    def crosses(self, x: Array, n: Array) -> Array:
        """Whether the domain's boundary passes through `x` with outward normal `n`."""
        e = offset(self.scale, x.dtype)
        return ~self.inside(x + e * n) & self.inside(x - e * n)

    def normal(self, x: Array) -> Array:
        """Outward unit normal at a boundary point (shape `(dim,)`).

        At a hole of a CSG difference it points into the hole. Off the boundary: the
        normal of the nearest boundary piece; at a corner, that of one of the pieces
        meeting there.
        """
        x = point(x, self.dim, f"{type(self).__name__}.normal")
        pieces = self.pieces()
        dist = jnp.stack([p.dist(x) for p in pieces])
        normals = jnp.stack([p.normal(x) for p in pieces])
        if not self.exact_pieces:
            # Pieces that do not bound the result at x (a face inside a union, a hole's
            # circle outside the domain) lose to any piece that does.
            ok = jnp.stack([self.crosses(x, normals[i]) for i in range(len(pieces))])
            dist = dist + jnp.where(ok, 0.0, 10 * self.scale)
        return normals[jnp.argmin(dist)]

    def sample(
        self, key: PRNGKeyArray, n: int, sampler: AbstractSampler = Uniform()
    ) -> Array:
        """`n` interior points, uniform in area/volume, shape `(n, dim)`.

        Shapes map the sampler's unit-cube points onto themselves; CSG results draw
        from an operand (or their bounding box) and keep the points inside, in the
        order drawn, until exactly `n` are kept (so Halton points stay low-discrepancy).
        """
        check_n(n)
        return _draw(_Interior(self), key, n, sampler, f"{type(self).__name__}.sample")

    def sample_boundary(
        self, key: PRNGKeyArray, n: int, sampler: AbstractSampler = Uniform()
    ) -> Array:
        """`n` points on the boundary, uniform in length/area, shape `(n, dim)`."""
        return self.boundary().sample(key, n, sampler)

    def boundary(
        self, part: AbstractDomain | None = None, where: Callable | None = None
    ) -> Boundary:
        """The whole boundary, or the pieces selected to carry one condition.

        **Arguments:**

        - `part`: an operand of this domain's CSG tree (the same object, or an equal
          one): only the boundary that came from it, e.g. `(square - holes).boundary(
          part=holes)` for the holes' circles.
        - `where`: a predicate `where(x) -> bool` on one point (jax code), e.g.
          `lambda x: x[1] > 0.99` for a lid.

        **Returns:**

        A `Boundary` with `sample`, `normal`, `contains` and `measure`.
        """
        return Boundary(self, part, where)

    def __or__(self, other):
        return Union(self, other)

    def __sub__(self, other):
        return Difference(self, other)

    def __and__(self, other):
        return Intersection(self, other)

    def estimate_volume(self, points: int = _ESTIMATE_POINTS) -> float:
        """Quasi-Monte Carlo volume from the interior proposal (exact if it keeps all)."""
        prop = self.proposal()
        if prop.keep is None:
            return prop.support
        return _estimate(prop.support, _Interior(self), points)


class _Interior(eqx.Module):
    """A domain's interior proposal as a candidate source (see `hit_fraction`)."""

    domain: AbstractDomain

    @property
    def width(self):
        return self.domain.proposal().k

    @property
    def exact(self):
        return self.domain.proposal().keep is None

    def candidates(self, u):
        return self.domain.proposal().to_point(u), None

    def keep(self, x, aux=None):
        return self.domain.proposal().keep(x)


@eqx.filter_jit
def _draw(source, key, n, sampler, where):
    """`n` points from a candidate source (`_Interior` or `Boundary`), in exact count."""
    if source.exact:
        return source.candidates(sampler(key, n, source.width))[0]
    return fill(
        key,
        n,
        lambda k, m: source.candidates(sampler(k, m, source.width)),
        source.keep,
        hit_fraction(source, _PILOT_POINTS),
        where,
    )


def _estimate(total, source, points):
    frac = hit_fraction(source, points)
    return Estimate(total * frac, total * math.sqrt(frac * (1 - frac) / points), points)


def _walk(domain: AbstractDomain, path=()):
    yield path, domain
    for i, child in enumerate(domain.children):
        yield from _walk(child, (*path, i))


def _same(a, b) -> bool:
    return a is b or (type(a) is type(b) and eqx.tree_equal(a, b) is True)


class Boundary(eqx.Module):
    """Selected pieces of a domain's boundary, to carry one boundary condition.

    Made by `domain.boundary(part=..., where=...)`. Points drawn from it are uniform in
    length/area on the selected set, in exact counts.

    **Arguments:**

    - `domain`: the domain whose boundary this is.
    - `part`: an operand of the domain's CSG tree, or None for every piece.
    - `where`: a predicate on one point, or None.
    """

    domain: AbstractDomain
    indices: tuple[int, ...] = eqx.field(static=True)
    where: Callable | None

    def __init__(self, domain, part=None, where=None):
        if not isinstance(domain, AbstractDomain):
            raise TypeError(f"sciml.pinn.Boundary: `domain` must be a domain, got {domain!r}.")
        if where is not None and not callable(where):
            raise TypeError(
                f"sciml.pinn.Boundary: `where` must be a function of one point, got {where!r}."
            )
        pieces = domain.pieces()
        if part is None:
            indices = tuple(range(len(pieces)))
        else:
            paths = [p for p, node in _walk(domain) if _same(node, part)]
            if not paths:
                raise ValueError(
                    f"sciml.pinn.Boundary: `part` {part!r} is not an operand of the domain "
                    f"{type(domain).__name__}; pass one of the objects it was built from."
                )
            indices = tuple(
                i for i, pc in enumerate(pieces)
                if any(pc.path[: len(p)] == p for p in paths)
            )
        self.domain = domain
        self.indices = indices
        self.where = where

    def __check_init__(self):
        if not self.exact and hit_fraction(self, _PILOT_POINTS) == 0:
            raise ValueError(
                "sciml.pinn.Boundary: no boundary point was found on the selected pieces "
                f"(where={self.where!r}) among {_PILOT_POINTS} candidates; check "
                "the predicate or the part."
            )

    @property
    def dim(self) -> int:
        return self.domain.dim

    @property
    def exact(self) -> bool:
        """Whether every candidate point is kept (plain pieces of a shape, no predicate)."""
        return self.domain.exact_pieces and self.where is None

    def _pieces(self):
        all_pieces = self.domain.pieces()
        return [all_pieces[i] for i in self.indices]

    def _layout(self):
        pieces = self._pieces()
        width = max(p.k for p in pieces)
        # With several pieces the first coordinate picks one, in proportion to its
        # measure; the next coordinates place the point on it.
        return pieces, (1 if len(pieces) > 1 else 0) + width

    def candidates(self, u):
        pieces, _ = self._layout()
        if len(pieces) == 1:
            return pieces[0].to_point(u[:, : pieces[0].k]), jnp.zeros(u.shape[0], jnp.int32)
        w = np.array([p.measure for p in pieces], np.float64)
        cum = jnp.asarray(np.cumsum(w) / np.sum(w), u.dtype)
        sel = jnp.minimum(
            jnp.searchsorted(cum, u[:, 0], side="right", method="compare_all"), len(pieces) - 1
        )
        xs = jnp.stack([p.to_point(u[:, 1 : 1 + p.k]) for p in pieces])
        return jnp.take_along_axis(xs, sel[None, :, None], axis=0)[0], sel

    def keep(self, x, sel):
        """Which candidates lie on the selected boundary, each point counted once."""
        pieces = self._pieces()
        ok = jnp.ones(x.shape[0], bool)
        if self.where is not None:
            ok = ok & jax.vmap(self.where)(x).astype(bool)
        if self.domain.exact_pieces:
            return ok
        normals = jnp.stack([jax.vmap(p.normal)(x) for p in pieces])  # (P, m, d)
        n = jnp.take_along_axis(normals, sel[None, :, None], axis=0)[0]
        ok = ok & jax.vmap(self.domain.crosses)(x, n)
        # Two pieces that coincide with the same normal (a face shared by both operands
        # of a union) would double the density there: keep the copy from the first.
        tol = on_tol(self.domain.scale, x.dtype)
        dist = jnp.stack([jax.vmap(p.dist)(x) for p in pieces])  # (P, m)
        same_side = jnp.einsum("pmd,md->pm", normals, n) > 0
        earlier = jnp.arange(len(pieces))[:, None] < sel[None, :]
        dup = jnp.any(earlier & same_side & (dist <= tol), axis=0)
        return ok & ~dup

    @property
    def width(self):
        return max(self._layout()[1], 1)

    def sample(
        self, key: PRNGKeyArray, n: int, sampler: AbstractSampler = Uniform()
    ) -> Array:
        """`n` points on the selected boundary, uniform in length/area, `(n, dim)`."""
        check_n(n)
        where = f"{type(self.domain).__name__}.sample_boundary"
        return _draw(self, key, n, sampler, where)

    def normal(self, x: Array) -> Array:
        """The domain's outward unit normal at one boundary point."""
        return self.domain.normal(x)

    def contains(self, x: Array) -> Array:
        """Whether one point lies on the selected boundary (within round-off)."""
        x = point(x, self.dim, "Boundary.contains")
        pieces = self._pieces()
        tol = on_tol(self.domain.scale, x.dtype)
        on = jnp.stack([p.dist(x) <= tol for p in pieces])
        if not self.domain.exact_pieces:
            on = on & jnp.stack([self.domain.crosses(x, p.normal(x)) for p in pieces])
        ok = jnp.any(on)
        if self.where is not None:
            ok = ok & jnp.asarray(self.where(x), bool)
        return ok

    @property
    def measure(self) -> float:
        """Length/area of the selected boundary: exact for whole pieces of shapes, else
        an `Estimate`."""
        total = sum(p.measure for p in self._pieces())
        if self.exact:
            return total
        return _estimate(total, self, _ESTIMATE_POINTS)


class Box(AbstractDomain):
    """An axis-aligned box `[lower_0, upper_0] x ... x [lower_{d-1}, upper_{d-1}]`.

    **Arguments:**

    - `lower`, `upper`: sequences of floats (or floats for d = 1), `lower < upper`.
    """

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, lower, upper):
        self.lower, self.upper = _bounds(lower, upper, type(self).__name__)

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def bbox(self):
        return self.lower, self.upper

    @property
    def volume(self) -> float:
        return math.prod(b - a for a, b in zip(self.lower, self.upper))

    def _lo_hi(self, dtype=None):
        dt = float_dtype() if dtype is None else dtype
        return jnp.asarray(self.lower, dt), jnp.asarray(self.upper, dt)

    def from_unit(self, u: Array) -> Array:
        """Maps points of the unit cube, shape `(n, dim)`, onto the box."""
        lo, hi = self._lo_hi(u.dtype)
        return lo[None, :] + u * (hi - lo)[None, :]

    def proposal(self):
        return Proposal(self.dim, self.from_unit, self.volume)

    def boundary_from_unit(self, u: Array) -> Array:
        """Maps unit-cube points `(n, dim)` onto the faces (see `sample_boundary`)."""
        return self.boundary().candidates(u)[0]

    def pieces(self):
        # Face 2k is x_k = lower_k, face 2k + 1 is x_k = upper_k; a face's points take
        # the sampler's coordinates for the other axes in order.
        d = self.dim
        sides = [b - a for a, b in zip(self.lower, self.upper)]
        out = []
        for k in range(d):
            area = math.prod(sides[:k] + sides[k + 1 :])
            for upper_side in (False, True):
                out.append(
                    Piece(area, d - 1, self._face_map(k, upper_side),
                          self._face_normal(k, upper_side), self._face_dist(k, upper_side))
                )
        return tuple(out)

    def _face_map(self, k, upper_side):
        def to_point(u):
            lo, hi = self._lo_hi(u.dtype)
            cols, j = [], 0
            for a in range(self.dim):
                if a == k:
                    cols.append(jnp.full(u.shape[0], (hi if upper_side else lo)[a]))
                else:
                    cols.append(lo[a] + u[:, j] * (hi[a] - lo[a]))
                    j += 1
            return jnp.stack(cols, axis=1)

        return to_point

    def _face_normal(self, k, upper_side):
        def normal(x):
            return jnp.zeros_like(x).at[k].set(1.0 if upper_side else -1.0)

        return normal

    def _face_dist(self, k, upper_side):
        def dist(x):
            lo, hi = self._lo_hi(x.dtype)
            out = jnp.maximum(jnp.maximum(lo - x, x - hi), 0.0).at[k].set(0.0)
            across = x[k] - (hi if upper_side else lo)[k]
            return jnp.sqrt(jnp.sum(out**2) + across**2)

        return dist

    def inside(self, x, strict=False):
        lo, hi = self._lo_hi(x.dtype)
        tol = on_tol(self.scale, x.dtype)
        if strict:
            return jnp.all((x > lo + tol) & (x < hi - tol))
        return jnp.all((x >= lo - tol) & (x <= hi + tol))

    def distance(self, x):
        x = point(x, self.dim, "Box.distance")
        lo, hi = self._lo_hi(x.dtype)
        phi = None
        for k in range(self.dim):
            for side in (x[k] - lo[k], hi[k] - x[k]):
                phi = side if phi is None else r_and(phi, side)
        return phi

    def quadrature(self, rule: AbstractQuadrature | Sequence[AbstractQuadrature]):
        """Tensor-product quadrature nodes `(N, dim)` and weights `(N,)` on the box.

        **Arguments:**

        - `rule`: one rule for every axis (e.g. `GaussLegendre(64)`) or one per axis.

        **Returns:**

        `(points, weights)` with `sum(weights * f(points)) ~ integral of f`.
        """
        rules = [rule] * self.dim if isinstance(rule, AbstractQuadrature) else list(rule)
        if len(rules) != self.dim:
            raise ValueError(
                f"sciml.pinn.{type(self).__name__}.quadrature: {len(rules)} rules for a "
                f"{self.dim}-dimensional domain; give one rule or one per axis."
            )
        pts, w = tensor_quadrature(rules, self.lower, self.upper)
        return jnp.asarray(pts, float_dtype()), jnp.asarray(w, float_dtype())


def Interval(a: float, b: float) -> Box:
    """The interval `[a, b]` as a one-dimensional `Box` (points of shape `(n, 1)`)."""
    return Box([a], [b])


class SpaceTime(AbstractDomain):
    """`space x [t0, t1]`: points are `(x_0, ..., x_{d-1}, t)`, time last.

    The boundary (`sample_boundary`, `boundary`, `normal`, `distance`) is the lateral
    one, `boundary(space) x [t0, t1]`, with normals `(n_space, 0)`; the initial slice
    has its own `sample_initial`.

    **Arguments:**

    - `space`: any spatial domain (`Box`, `Interval`, `Disk`, `Polygon`, CSG, ...).
    - `t0`, `t1`: the time interval, `t0 < t1`.
    """

    space: AbstractDomain
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)

    def __init__(self, space: AbstractDomain, t0: float, t1: float):
        if not isinstance(space, AbstractDomain) or isinstance(space, SpaceTime):
            raise TypeError(
                "sciml.pinn.SpaceTime: `space` must be a spatial sciml.pinn domain (a Box "
                f"or Interval, Disk, Polygon, CSG, ...), got {type(space).__name__}."
            )
        (self.t0,), (self.t1,) = _bounds([t0], [t1], "SpaceTime")
        self.space = space

    @property
    def dim(self) -> int:
        return self.space.dim + 1

    @property
    def bbox(self):
        lo, hi = self.space.bbox
        return (*lo, self.t0), (*hi, self.t1)

    @property
    def children(self):
        return (self.space,)

    @property
    def exact_pieces(self):
        return self.space.exact_pieces

    @property
    def volume(self) -> float:
        v = self.space.volume
        T = self.t1 - self.t0
        return v.scaled(T) if isinstance(v, Estimate) else v * T

    @property
    def box(self) -> Box:
        """The same region as one `Box` (time as the last axis), for a `Box` space."""
        if not isinstance(self.space, Box):
            raise TypeError(
                f"sciml.pinn.SpaceTime.box: the space is a {type(self.space).__name__}, "
                "not a Box."
            )
        return Box(self.space.lower + (self.t0,), self.space.upper + (self.t1,))

    def _time(self, u):
        return self.t0 + u * (self.t1 - self.t0)

    def proposal(self):
        p = self.space.proposal()

        def to_point(u):
            return jnp.concatenate([p.to_point(u[:, :-1]), self._time(u[:, -1:])], axis=1)

        keep = None if p.keep is None else (lambda x: p.keep(x[:, :-1]))
        return Proposal(p.k + 1, to_point, p.support * (self.t1 - self.t0), keep)

    def pieces(self):
        T = self.t1 - self.t0
        out = []
        for p in self.space.pieces():
            # The time coordinate is the last of the piece's sampler coordinates.
            def to_point(u, p=p):
                return jnp.concatenate([p.to_point(u[:, : p.k]), self._time(u[:, p.k :])],
                                       axis=1)

            def normal(x, p=p):
                return jnp.concatenate([p.normal(x[:-1]), jnp.zeros((1,), x.dtype)])

            out.append(
                Piece(p.measure * T, p.k + 1, to_point, normal,
                      lambda x, p=p: p.dist(x[:-1]), p.path).under(0)
            )
        return tuple(out)

    def inside(self, x, strict=False):
        tol = on_tol(self.t1 - self.t0, x.dtype)
        t = x[-1]
        if strict:
            in_time = (t > self.t0 + tol) & (t < self.t1 - tol)
        else:
            in_time = (t >= self.t0 - tol) & (t <= self.t1 + tol)
        return self.space.inside(x[:-1], strict) & in_time

    def normal(self, x):
        x = point(x, self.dim, "SpaceTime.normal")
        return jnp.concatenate([self.space.normal(x[:-1]), jnp.zeros((1,), x.dtype)])

    def distance(self, x):
        """The spatial domain's distance function (zero on the lateral boundary)."""
        x = point(x, self.dim, "SpaceTime.distance")
        return self.space.distance(x[:-1])

    def sample_initial(self, key, n, sampler=Uniform()):
        """Points on the initial slice `space x {t0}`."""
        check_n(n)
        x = self.space.sample(key, n, sampler)
        return jnp.concatenate([x, jnp.full((n, 1), self.t0, x.dtype)], axis=1)

    def quadrature(self, rule):
        """Tensor-product quadrature over space and time (see `Box.quadrature`)."""
        return self.box.quadrature(rule)


# ----------------------------------------------------------------------------------
# Constructive solid geometry: `a | b`, `a - b`, `a & b`, nesting freely.
#
# Interior points come from an operand's own map (difference, intersection) or the
# bounding box (union), filtered by membership; boundary points from the operands'
# pieces, filtered by the boundary test of `_geometry.py`. Both are uniform and come in
# exact counts. `distance` combines the operands' signed distance functions with
# R-functions (Rvachev; Sukumar & Srivastava 2022), which keep them normalised on the
# smooth parts of the boundary.



class AbstractCSG(AbstractDomain):
    """Two operands combined; `Union`, `Difference` and `Intersection` say how."""

    a: AbstractDomain
    b: AbstractDomain

    def __init__(self, a, b):
        op = type(self).__name__
        for name, d in (("left", a), ("right", b)):
            if isinstance(d, SpaceTime):
                raise TypeError(
                    f"sciml.pinn.{op}: the {name} operand is a SpaceTime; combine the spatial "
                    "domains first, then take SpaceTime(space, t0, t1) of the result."
                )
            if not isinstance(d, AbstractDomain):
                raise TypeError(
                    f"sciml.pinn.{op}: the {name} operand must be a sciml.pinn domain, got "
                    f"{type(d).__name__}."
                )
        if a.dim != b.dim:
            raise ValueError(
                f"sciml.pinn.{op}: the operands have different dimensions, {a.dim} "
                f"({type(a).__name__}) and {b.dim} ({type(b).__name__}); combine domains "
                "of one dimension."
            )
        self.a = a
        self.b = b

    def __check_init__(self):
        self._check_not_empty()

    def _check_not_empty(self):
        pass

    @property
    def dim(self):
        return self.a.dim

    @property
    def children(self):
        return (self.a, self.b)

    @property
    def exact_pieces(self):
        return False

    @property
    def volume(self):
        """A quasi-Monte Carlo `Estimate` (2^18 points from the interior proposal)."""
        return self.estimate_volume()

    def pieces(self):
        return tuple(p.under(0) for p in self.a.pieces()) + tuple(
            p.under(1) for p in self.b.pieces()
        )


def _hull(a, b):
    (la, ha), (lb, hb) = a.bbox, b.bbox
    return (tuple(map(min, la, lb)), tuple(map(max, ha, hb)))


def _empty(domain, what):
    frac = domain.estimate_volume(_PILOT_POINTS)
    if frac == 0:
        raise ValueError(
            f"sciml.pinn.{type(domain).__name__}: {what} is empty (no point of "
            f"{_PILOT_POINTS} quasi-random candidates lies in it); check the operands' "
            "positions and sizes."
        )


class Union(AbstractCSG):
    """`a | b`: points in either operand.

    Operands that share a face make `distance` zero on it (it is inside the union);
    build such shapes as one `Polygon` when the distance function matters.
    """

    @property
    def bbox(self):
        return _hull(self.a, self.b)

    def inside(self, x, strict=False):
        return self.a.inside(x, strict) | self.b.inside(x, strict)

    def distance(self, x):
        x = point(x, self.dim, "Union.distance")
        return r_or(self.a.distance(x), self.b.distance(x))

    def proposal(self):
        lo, hi = self.bbox
        box = Box(lo, hi)
        return Proposal(self.dim, box.from_unit, box.volume, jax.vmap(self.inside))


class Difference(AbstractCSG):
    """`a - b`: points of `a` not inside `b`; on `b`'s boundary the normal points into
    `b` (into a hole)."""

    def _check_not_empty(self):
        _empty(self, f"{type(self.a).__name__} - {type(self.b).__name__}")

    @property
    def bbox(self):
        return self.a.bbox

    def inside(self, x, strict=False):
        return self.a.inside(x, strict) & ~self.b.inside(x, not strict)

    def distance(self, x):
        x = point(x, self.dim, "Difference.distance")
        return r_and(self.a.distance(x), -self.b.distance(x))

    def proposal(self):
        p = self.a.proposal()

        def keep(x):
            out = ~jax.vmap(lambda y: self.b.inside(y, True))(x)
            return out if p.keep is None else out & p.keep(x)

        return Proposal(p.k, p.to_point, p.support, keep)

    def pieces(self):
        return tuple(p.under(0) for p in self.a.pieces()) + tuple(
            p.flipped().under(1) for p in self.b.pieces()
        )


class Intersection(AbstractCSG):
    """`a & b`: points in both operands."""

    def _check_not_empty(self):
        (la, ha), (lb, hb) = self.a.bbox, self.b.bbox
        if any(max(p, q) > min(r, s) for p, q, r, s in zip(la, lb, ha, hb)):
            raise ValueError(
                f"sciml.pinn.Intersection: the operands' bounding boxes do not overlap "
                f"({la}..{ha} and {lb}..{hb}): the intersection is empty."
            )
        _empty(self, "the intersection")

    @property
    def bbox(self):
        (la, ha), (lb, hb) = self.a.bbox, self.b.bbox
        return tuple(map(max, la, lb)), tuple(map(min, ha, hb))

    def inside(self, x, strict=False):
        return self.a.inside(x, strict) & self.b.inside(x, strict)

    def distance(self, x):
        x = point(x, self.dim, "Intersection.distance")
        return r_and(self.a.distance(x), self.b.distance(x))

    def proposal(self):
        pa, pb = self.a.proposal(), self.b.proposal()
        # Draw from the operand with the smaller proposal, filter by the other.
        p, other = (pa, self.b) if pa.support <= pb.support else (pb, self.a)

        def keep(x):
            out = jax.vmap(other.inside)(x)
            return out if p.keep is None else out & p.keep(x)

        return Proposal(p.k, p.to_point, p.support, keep)

