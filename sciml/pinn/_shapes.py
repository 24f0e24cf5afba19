"""Shapes: balls (`Disk`, any dimension), ellipses, simple polygons and triangles.

Each maps the sampler's unit-cube points onto its interior and its boundary with maps
that are uniform in area and in length, so samples come in exact counts without
rejection and a low-discrepancy sampler stays low-discrepancy on the shape.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ._domains import AbstractDomain
from ._geometry import Piece, Proposal, on_tol, point


def _vector(value, where, name, dim=None):
    try:
        v = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sciml.pinn.{where}: `{name}` must be a sequence of floats, got "
                         f"{value!r}.") from None
    if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
        want = f"{dim} floats" if dim is not None else "a flat sequence of floats"
        raise ValueError(f"sciml.pinn.{where}: `{name}` must be {want}, got shape {v.shape}.")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"sciml.pinn.{where}: `{name}` must be finite, got {value!r}.")
    return tuple(float(a) for a in v)


def _positive(value, where, name):
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"sciml.pinn.{where}: `{name}` must be a finite number > 0, got "
                         f"{value!r}.")
    return v


def _safe_unit(v):
    norm2 = jnp.sum(v * v)
    pos = norm2 > 0
    return v / jnp.where(pos, jnp.sqrt(jnp.where(pos, norm2, 1)), 1)


def _sphere(u, d):
    """Unit-cube points `(m, k)` onto the unit sphere in R^d, uniform in area.

    k = 1 for d = 2 (the angle), 2 for d = 3 (Archimedes: z uniform), d otherwise
    (normalised Gaussians by the inverse normal CDF).
    """
    if d == 2:
        a = 2 * jnp.pi * u[:, 0]
        return jnp.stack([jnp.cos(a), jnp.sin(a)], axis=1)
    if d == 3:
        z = 1 - 2 * u[:, 0]
        a = 2 * jnp.pi * u[:, 1]
        r = jnp.sqrt(jnp.maximum(1 - z * z, 0))
        return jnp.stack([r * jnp.cos(a), r * jnp.sin(a), z], axis=1)
    tiny = jnp.finfo(u.dtype).tiny
    g = ndtri(jnp.clip(u, tiny, 1 - jnp.finfo(u.dtype).epsneg))
    return g / jnp.linalg.norm(g, axis=1, keepdims=True)


def _sphere_k(d):
    return 1 if d == 2 else 2 if d == 3 else d


class Disk(AbstractDomain):
    """A ball `|x - center| <= radius` in any dimension >= 2 (a disk in 2-D).

    **Arguments:**

    - `center`: sequence of floats (its length is the dimension).
    - `radius`: a float > 0.
    """

    center: tuple[float, ...] = eqx.field(static=True)
    radius: float = eqx.field(static=True)

    def __init__(self, center, radius):
        self.center = _vector(center, "Disk", "center")
        if len(self.center) < 2:
            raise ValueError(
                f"sciml.pinn.Disk: `center` has {len(self.center)} coordinate(s); a ball "
                "needs >= 2 (for one dimension use Interval(c - r, c + r))."
            )
        self.radius = _positive(radius, "Disk", "radius")

    @property
    def dim(self):
        return len(self.center)

    @property
    def bbox(self):
        return (tuple(c - self.radius for c in self.center),
                tuple(c + self.radius for c in self.center))

    @property
    def volume(self):
        d = self.dim
        return math.pi ** (d / 2) / math.gamma(d / 2 + 1) * self.radius**d

    @property
    def area(self):
        """Area of the bounding sphere (the circumference in 2-D)."""
        return self.dim * self.volume / self.radius

    def _c(self, dtype):
        return jnp.asarray(self.center, dtype)

    def inside(self, x, strict=False):
        r = jnp.linalg.norm(x - self._c(x.dtype))
        tol = on_tol(self.scale, x.dtype)
        return r < self.radius - tol if strict else r <= self.radius + tol

    def distance(self, x):
        x = point(x, self.dim, "Disk.distance")
        v = x - self._c(x.dtype)
        return (self.radius**2 - jnp.sum(v * v)) / (2 * self.radius)

    def proposal(self):
        d, k = self.dim, _sphere_k(self.dim)

        def to_point(u):
            rho = self.radius * u[:, k : k + 1] ** (1.0 / d)
            return self._c(u.dtype)[None, :] + rho * _sphere(u[:, :k], d)

        return Proposal(k + 1, to_point, self.volume)

    def pieces(self):
        d = self.dim

        def to_point(u):
            return self._c(u.dtype)[None, :] + self.radius * _sphere(u, d)

        def normal(x):
            return _safe_unit(x - self._c(x.dtype))

        def dist(x):
            return jnp.abs(jnp.linalg.norm(x - self._c(x.dtype)) - self.radius)

        return (Piece(self.area, _sphere_k(d), to_point, normal, dist),)


_ELLIPSE_TABLE = 4096


class Ellipse(AbstractDomain):
    """The ellipse `(x'/a)^2 + (y'/b)^2 <= 1` in the frame rotated by `angle` about
    `center` (2-D).

    **Arguments:**

    - `center`: `(cx, cy)`.
    - `semi_axes`: `(a, b)`, both > 0 (along x' and y').
    - `angle`: rotation of the x' axis from the x axis, in radians (default 0).
    """

    center: tuple[float, float] = eqx.field(static=True)
    semi_axes: tuple[float, float] = eqx.field(static=True)
    angle: float = eqx.field(static=True)

    def __init__(self, center, semi_axes, angle: float = 0.0):
        self.center = _vector(center, "Ellipse", "center", 2)
        a, b = _vector(semi_axes, "Ellipse", "semi_axes", 2)
        self.semi_axes = (_positive(a, "Ellipse", "semi_axes[0]"),
                          _positive(b, "Ellipse", "semi_axes[1]"))
        angle = float(angle)
        if not math.isfinite(angle):
            raise ValueError(f"sciml.pinn.Ellipse: `angle` must be finite, got {angle!r}.")
        self.angle = angle

    @property
    def dim(self):
        return 2

    @property
    def bbox(self):
        a, b = self.semi_axes
        c, s = math.cos(self.angle), math.sin(self.angle)
        hx, hy = math.hypot(a * c, b * s), math.hypot(a * s, b * c)
        return ((self.center[0] - hx, self.center[1] - hy),
                (self.center[0] + hx, self.center[1] + hy))

    @property
    def volume(self):
        return math.pi * self.semi_axes[0] * self.semi_axes[1]

    def _arc_table(self):
        """Arc length `s(theta)` on a fine grid; the periodic trapezoid rule is
        spectrally accurate, so `perimeter` is exact to round-off."""
        a, b = self.semi_axes
        th = np.linspace(0.0, 2 * np.pi, _ELLIPSE_TABLE + 1)
        speed = np.hypot(a * np.sin(th), b * np.cos(th))
        s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(th))])
        return th, s

    @property
    def perimeter(self):
        return float(self._arc_table()[1][-1])

    def _rot(self, dtype):
        c, s = math.cos(self.angle), math.sin(self.angle)
        return jnp.asarray([[c, -s], [s, c]], dtype)

    def _local(self, x):
        return self._rot(x.dtype).T @ (x - jnp.asarray(self.center, x.dtype))

    def _global(self, xl):
        """Local points `(m, 2)` to global ones."""
        return xl @ self._rot(xl.dtype).T + jnp.asarray(self.center, xl.dtype)[None, :]

    def inside(self, x, strict=False):
        phi = self.distance(x)
        tol = on_tol(self.scale, x.dtype)
        return phi > tol if strict else phi >= -tol

    def distance(self, x):
        # (1 - q) / |grad q| is normalised on the ellipse but blows up at the centre;
        # adding (1 - q)^2 under the root keeps it smooth and equal to it on the ellipse.
        x = point(x, 2, "Ellipse.distance")
        a, b = self.semi_axes
        xl = self._local(x)
        one_minus_q = 1 - (xl[0] / a) ** 2 - (xl[1] / b) ** 2
        grad2 = 4 * ((xl[0] / a**2) ** 2 + (xl[1] / b**2) ** 2)
        return one_minus_q / jnp.sqrt(grad2 + 4 * one_minus_q**2 / min(a, b) ** 2)

    def proposal(self):
        a, b = self.semi_axes

        def to_point(u):
            rho = jnp.sqrt(u[:, 1])
            t = 2 * jnp.pi * u[:, 0]
            return self._global(jnp.stack([a * rho * jnp.cos(t), b * rho * jnp.sin(t)], 1))

        return Proposal(2, to_point, self.volume)

    def pieces(self):
        a, b = self.semi_axes
        th, s = self._arc_table()

        # theta at equal steps of arc length: the map is then a table look-up, no search.
        table = np.interp(np.linspace(0, s[-1], _ELLIPSE_TABLE + 1), s, th)

        def to_point(u):
            pos = u[:, 0] * _ELLIPSE_TABLE
            j = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, _ELLIPSE_TABLE - 1)
            tab = jnp.asarray(table, u.dtype)
            t = tab[j] + (pos - j) * (tab[j + 1] - tab[j])
            return self._global(jnp.stack([a * jnp.cos(t), b * jnp.sin(t)], 1))

        def normal(x):
            xl = self._local(x)
            return self._rot(x.dtype) @ _safe_unit(jnp.stack([xl[0] / a**2, xl[1] / b**2]))

        return (Piece(float(s[-1]), 1, to_point, normal, lambda x: jnp.abs(self.distance(x))),)


# ----------------------------------------------------------------------------------
# Polygons


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _segments_meet(p1, p2, q1, q2, tol):
    """Whether closed segments p1p2 and q1q2 share a point (within `tol`)."""

    def orient(a, b, c):
        v = _cross(b - a, c - a)
        return 0 if abs(v) <= tol * max(np.linalg.norm(b - a), 1e-300) else np.sign(v)

    def on(a, b, c):  # c on segment ab, given collinear
        return (min(a[0], b[0]) - tol <= c[0] <= max(a[0], b[0]) + tol
                and min(a[1], b[1]) - tol <= c[1] <= max(a[1], b[1]) + tol)

    o1, o2 = orient(p1, p2, q1), orient(p1, p2, q2)
    o3, o4 = orient(q1, q2, p1), orient(q1, q2, p2)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return ((o1 == 0 and on(p1, p2, q1)) or (o2 == 0 and on(p1, p2, q2))
            or (o3 == 0 and on(q1, q2, p1)) or (o4 == 0 and on(q1, q2, p2)))


def _fmt(p):
    return "(" + ", ".join(f"{float(c):g}" for c in p) + ")"


def _check_simple(v, tol):
    n = len(v)
    for i in range(n):
        a, b = v[i], v[(i + 1) % n]
        c = v[(i + 2) % n]
        # An edge that doubles back over the next one (a spike) has no area beside it.
        if abs(_cross(b - a, c - b)) <= tol * np.linalg.norm(b - a) and np.dot(b - a, c - b) < 0:
            raise ValueError(
                f"sciml.pinn.Polygon: edges {i} and {(i + 1) % n} double back over each other "
                f"at vertex {(i + 1) % n} {_fmt(b)}: the polygon is degenerate."
            )
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if _segments_meet(a, b, v[j], v[(j + 1) % n], tol):
                raise ValueError(
                    f"sciml.pinn.Polygon: edges {i} ({_fmt(a)} -> {_fmt(b)}) and {j} "
                    f"({_fmt(v[j])} -> {_fmt(v[(j + 1) % n])}) intersect: the polygon "
                    "must be simple (no self-intersections). Reorder the vertices along the "
                    "boundary, or split the shape into polygons combined with |."
                )


def _ear_clip(v):
    """Triangles (index triples) of a simple counter-clockwise polygon."""
    idx = list(range(len(v)))
    # Vertices on a straight line through their neighbours add no area: drop them.
    changed = True
    while changed and len(idx) > 3:
        changed = False
        for k in range(len(idx)):
            a, b, c = v[idx[k - 1]], v[idx[k]], v[idx[(k + 1) % len(idx)]]
            if abs(_cross(b - a, c - b)) <= 1e-14 * np.linalg.norm(c - a) ** 2:
                idx.pop(k)
                changed = True
                break
    tris = []
    while len(idx) > 3:
        for k in range(len(idx)):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            a, b, c = v[i0], v[i1], v[i2]
            if _cross(b - a, c - b) <= 0:
                continue  # reflex or flat: not an ear
            others = [v[j] for j in idx if j not in (i0, i1, i2)]
            if any(_in_triangle(p, a, b, c) for p in others):
                continue
            tris.append((i0, i1, i2))
            idx.pop(k)
            break
        else:
            raise ValueError("sciml.pinn.Polygon: could not triangulate the polygon; is it "
                             "simple?")
    tris.append(tuple(idx))
    return tuple(tris)


def _in_triangle(p, a, b, c):
    d1, d2, d3 = _cross(b - a, p - a), _cross(c - b, p - b), _cross(a - c, p - c)
    return d1 >= 0 and d2 >= 0 and d3 >= 0


class Polygon(AbstractDomain):
    """A simple polygon (2-D), vertices in either orientation.

    Interior points are drawn triangle by triangle (ear clipping), boundary points edge
    by edge in proportion to length. `distance` is the R-equivalence of the edges'
    trimmed-segment distance functions (Sukumar & Srivastava 2022), signed by membership.

    **Arguments:**

    - `vertices`: `(n, 2)` points along the boundary, n >= 3, no edge crossing another;
      a closing copy of the first vertex is dropped.
    """

    vertices: tuple[tuple[float, float], ...] = eqx.field(static=True)
    triangles: tuple[tuple[int, int, int], ...] = eqx.field(static=True)

    def __init__(self, vertices):
        try:
            v = np.asarray(vertices, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"sciml.pinn.Polygon: `vertices` must be an (n, 2) array of "
                             f"floats, got {vertices!r}.") from None
        if v.ndim != 2 or v.shape[1] != 2:
            raise ValueError(
                f"sciml.pinn.Polygon: `vertices` must have shape (n, 2), got {v.shape}."
            )
        if not np.all(np.isfinite(v)):
            raise ValueError("sciml.pinn.Polygon: `vertices` must be finite.")
        if len(v) > 3 and np.array_equal(v[0], v[-1]):
            v = v[:-1]
        if len(v) < 3:
            raise ValueError(
                f"sciml.pinn.Polygon: need at least 3 vertices, got {len(v)}."
            )
        scale = float(np.max(np.ptp(v, axis=0)))
        tol = 1e-12 * max(scale, 1e-300)
        lengths = np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)
        short = np.flatnonzero(lengths <= tol)
        if short.size:
            i = int(short[0])
            raise ValueError(
                f"sciml.pinn.Polygon: vertices {i} and {(i + 1) % len(v)} coincide at "
                f"{_fmt(v[i])}: the polygon is degenerate; remove the repeated vertex."
            )
        _check_simple(v, tol)
        area = 0.5 * np.sum(_cross(v, np.roll(v, -1, axis=0)))
        if abs(area) <= 1e-12 * scale**2:
            raise ValueError(
                f"sciml.pinn.Polygon: the vertices enclose no area (signed area {area:.3g}): "
                "the polygon is degenerate (collinear vertices?)."
            )
        if area < 0:
            v = v[::-1]
        self.vertices = tuple((float(a), float(b)) for a, b in v)
        self.triangles = _ear_clip(v)

    @property
    def dim(self):
        return 2

    def _v(self, dtype):
        v = jnp.asarray(self.vertices, dtype)
        return v, jnp.roll(v, -1, axis=0)

    @property
    def bbox(self):
        v = np.asarray(self.vertices)
        return tuple(v.min(0).tolist()), tuple(v.max(0).tolist())

    @property
    def volume(self):
        v = np.asarray(self.vertices)
        return float(0.5 * np.sum(_cross(v, np.roll(v, -1, axis=0))))

    @property
    def perimeter(self):
        v = np.asarray(self.vertices)
        return float(np.sum(np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)))

    def _edge_dist(self, x):
        v, w = self._v(x.dtype)
        d = w - v
        t = jnp.clip(jnp.sum((x[None, :] - v) * d, 1) / jnp.sum(d * d, 1), 0, 1)
        gap = x[None, :] - (v + t[:, None] * d)
        return jnp.sqrt(jnp.sum(gap * gap, 1))

    def inside(self, x, strict=False):
        near = jnp.min(self._edge_dist(x)) <= on_tol(self.scale, x.dtype)
        inner = _parity_of(x, *self._v(x.dtype))
        return inner & ~near if strict else inner | near

    def distance(self, x):
        x = point(x, 2, "Polygon.distance")
        v, w = self._v(x.dtype)
        return _polygon_adf(x, v, w)

    def proposal(self):
        vs = np.asarray(self.vertices)
        tri = np.asarray(self.triangles)
        a, b, c = vs[tri[:, 0]], vs[tri[:, 1]], vs[tri[:, 2]]
        areas = 0.5 * np.abs(_cross(b - a, c - a))
        cum = np.cumsum(areas) / np.sum(areas)

        def to_point(u):
            k = jnp.searchsorted(jnp.asarray(cum, u.dtype), u[:, 0], side="right",
                                 method="compare_all")
            k = jnp.minimum(k, len(areas) - 1)
            A, B, C = (jnp.asarray(p, u.dtype)[k] for p in (a, b, c))
            s = jnp.sqrt(u[:, 1:2])
            r = u[:, 2:3]
            return (1 - s) * A + s * ((1 - r) * B + r * C)

        return Proposal(3, to_point, self.volume)

    def pieces(self):
        vs = self.vertices
        out = []
        for i in range(len(vs)):
            a, b = np.asarray(vs[i]), np.asarray(vs[(i + 1) % len(vs)])
            d = b - a
            length = float(np.linalg.norm(d))
            nrm = np.array([d[1], -d[0]]) / length  # outward for counter-clockwise order

            def to_point(u, a=a, d=d):
                a, d = jnp.asarray(a, u.dtype), jnp.asarray(d, u.dtype)
                return a[None, :] + u[:, :1] * d[None, :]

            def normal(x, nrm=nrm):
                return jnp.asarray(nrm, x.dtype)

            def dist(x, i=i):
                return self._edge_dist(x)[i]

            out.append(Piece(length, 1, to_point, normal, dist))
        return tuple(out)


def Triangle(a, b, c) -> Polygon:
    """The triangle with vertices `a`, `b`, `c` (either orientation), as a `Polygon`."""
    return Polygon([a, b, c])


def _edge_adfs(x, v, w):
    """Trimmed-segment distance functions of every edge at `x` (Sukumar & Srivastava
    2022, eq. 19): zero on the segment, positive elsewhere, ~ distance near it."""
    d = w - v
    length = jnp.sqrt(jnp.sum(d * d, 1))
    f = _cross(x[None, :] - v, d) / length
    mid = 0.5 * (v + w)
    t = ((0.5 * length) ** 2 - jnp.sum((x[None, :] - mid) ** 2, 1)) / length
    phi = jnp.sqrt(t * t + f**4)
    return jnp.sqrt(f * f + (0.5 * (phi - t)) ** 2)


def _adf_raw(x, v, w):
    omega = _edge_adfs(x, v, w)
    # R-equivalence with m = 2: 1/omega^2 = sum 1/omega_i^2.
    total = 1 / jnp.sqrt(jnp.sum(1 / omega**2))
    inside = _parity_of(x, v, w)
    return jnp.where(inside, total, -total)


def _parity_of(x, v, w):
    """Whether `x` is inside by the crossing-number rule (undecided on the boundary)."""
    straddle = (v[:, 1] > x[1]) != (w[:, 1] > x[1])
    dy = jnp.where(straddle, w[:, 1] - v[:, 1], 1)
    xcross = v[:, 0] + (x[1] - v[:, 1]) * (w[:, 0] - v[:, 0]) / dy
    return jnp.sum(straddle & (x[0] < xcross)) % 2 == 1


@jax.custom_jvp
def _polygon_adf(x, v, w):
    return _adf_raw(x, v, w)


@_polygon_adf.defjvp
def _polygon_adf_jvp(primals, tangents):
    # Exactly on the boundary the edge functions have a kink (|f|): the signed function
    # is smooth there and its derivative is the inward normal of the edge. Elsewhere
    # differentiate normally, at a point moved off the boundary so no NaN leaks.
    x, v, w = primals
    dx = tangents[0]
    value = _adf_raw(x, v, w)
    on = value == 0
    far = jnp.min(v, axis=0) - jnp.max(jnp.ptp(v, axis=0)) - 1  # outside the bbox
    x_safe = jnp.where(on, far, x)
    _, d_regular = jax.jvp(lambda y: _adf_raw(y, v, w), (x_safe,), (dx,))
    d = w - v
    seg = jnp.sqrt(jnp.sum(d * d, 1))
    t = jnp.clip(jnp.sum((x[None, :] - v) * d, 1) / seg**2, 0, 1)
    gap = x[None, :] - (v + t[:, None] * d)
    i = jnp.argmin(jnp.sum(gap * gap, 1))
    inward = jnp.stack([-d[i, 1], d[i, 0]]) / seg[i]
    return value, jnp.where(on, inward @ dx, d_regular)
