"""Domains beyond boxes: disks and balls, ellipses, polygons, CSG and space x time.

Every check is against an independent truth: centroids and second moments in closed
form, perimeters from elementary geometry or scipy's elliptic integral, normals from
the parametrisation, and the distance function's zero set and gradient.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

import sciml.pinn as P


def _vm(f, x):
    return np.asarray(jax.jit(jax.vmap(f))(jnp.asarray(x)))


def _check_distance(domain, x_in, x_b, x_out=None, smooth=None):
    """Zero on the boundary, positive inside, negative outside; grad = inward normal."""
    np.testing.assert_allclose(_vm(domain.distance, x_b), 0.0, atol=1e-12)
    assert np.all(_vm(domain.distance, x_in) > 0)
    if x_out is not None:
        assert np.all(_vm(domain.distance, x_out) < 0)
    sel = x_b if smooth is None else x_b[smooth(x_b)]
    grad = _vm(jax.grad(domain.distance), sel)
    np.testing.assert_allclose(grad, -_vm(domain.normal, sel), atol=1e-9)
    # Second derivatives exist inside (the hard-constraint ansatz needs a Laplacian).
    assert np.all(np.isfinite(_vm(lambda x: jnp.trace(jax.hessian(domain.distance)(x)),
                                  x_in[:200])))


def test_disk_and_ball(getkey):
    for center, r in (([0.3, -0.2], 0.7), ([0.1, 0.2, -0.3], 0.5)):
        ball = P.Disk(center, r)
        d, c = ball.dim, np.array(center)
        exact_volume = math.pi * r**2 if d == 2 else 4 / 3 * math.pi * r**3
        np.testing.assert_allclose(ball.volume, exact_volume, rtol=1e-14)
        x = np.asarray(ball.sample(getkey(), 20000, P.Halton()))
        assert x.shape == (20000, d)
        np.testing.assert_allclose(x.mean(0), c, atol=3e-3)
        # E|x - c|^2 = d / (d + 2) r^2 for the uniform ball.
        np.testing.assert_allclose(np.mean(np.sum((x - c) ** 2, 1)), d / (d + 2) * r**2,
                                   rtol=3e-3)
        xb = np.asarray(ball.sample_boundary(getkey(), 4000, P.Halton()))
        np.testing.assert_allclose(np.linalg.norm(xb - c, axis=1), r, rtol=1e-13)
        # Uniform on the sphere: E[(x_i - c_i)^2] = r^2 / d on every axis.
        np.testing.assert_allclose(np.mean((xb - c) ** 2, 0), r**2 / d, rtol=2e-2)
        np.testing.assert_allclose(_vm(ball.normal, xb), (xb - c) / r, atol=1e-13)
        assert _vm(ball.contains, x).all() and not _vm(ball.contains, c + 1.01 * (xb - c)).any()
        _check_distance(ball, x, xb, c + 1.2 * (xb - c))


def test_ellipse_moments_perimeter_shares_normals(getkey):
    c, (a, b), ang = np.array([0.5, -0.2]), (1.0, 0.4), 0.6
    ell = P.Ellipse(c, (a, b), ang)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    np.testing.assert_allclose(ell.volume, math.pi * a * b)
    perimeter = 4 * a * scipy.special.ellipe(1 - b**2 / a**2)
    np.testing.assert_allclose(ell.perimeter, perimeter, rtol=1e-12)
    x = np.asarray(ell.sample(getkey(), 20000, P.Halton()))
    np.testing.assert_allclose(x.mean(0), c, atol=2e-3)
    cov = rot @ np.diag([a**2 / 4, b**2 / 4]) @ rot.T
    np.testing.assert_allclose(np.cov(x.T), cov, atol=2e-3)
    xb = np.asarray(ell.sample_boundary(getkey(), 20000, P.Halton()))
    loc = (xb - c) @ rot
    np.testing.assert_allclose((loc[:, 0] / a) ** 2 + (loc[:, 1] / b) ** 2, 1.0, atol=1e-12)
    theta = np.mod(np.arctan2(loc[:, 1] / b, loc[:, 0] / a), 2 * np.pi)
    # Uniform in arc length: the share of theta in [0, pi/4] is its arc over the perimeter.
    arc = scipy.integrate.quad(lambda t: math.hypot(a * math.sin(t), b * math.cos(t)), 0,
                               math.pi / 4)[0]
    np.testing.assert_allclose(np.mean(theta < math.pi / 4), arc / perimeter, atol=3e-3)
    # The normal is the tangent (-a sin t, b cos t) turned clockwise, in the global frame.
    n_loc = np.stack([b * np.cos(theta), a * np.sin(theta)], 1)
    n = (n_loc / np.linalg.norm(n_loc, axis=1, keepdims=True)) @ rot.T
    np.testing.assert_allclose(_vm(ell.normal, xb), n, atol=1e-12)
    _check_distance(ell, x, xb[:2000], c + 1.1 * (xb[:500] - c))


L_SHAPE = [[0, 0], [1, 0], [1, -1], [-1, -1], [-1, 1], [0, 1]]


@pytest.mark.parametrize("reverse", [False, True])
def test_polygon_l_shape(getkey, reverse):
    verts = np.array(L_SHAPE[::-1] if reverse else L_SHAPE, float)
    poly = P.Polygon(verts)
    np.testing.assert_allclose(poly.volume, 3.0)
    np.testing.assert_allclose(poly.perimeter, 8.0)
    x = np.asarray(poly.sample(getkey(), 20000, P.Halton()))
    # [-1, 1]^2 (area 4, centroid 0) minus [0, 1]^2 (area 1, centroid (1/2, 1/2)).
    np.testing.assert_allclose(x.mean(0), [-1 / 6, -1 / 6], atol=3e-3)
    assert _vm(poly.contains, x).all()
    assert not ((x[:, 0] > 0) & (x[:, 1] > 0)).any()
    xb = np.asarray(poly.sample_boundary(getkey(), 16000, P.Halton()))
    # Edge by edge: share = length / 8, normal = the edge's outward normal.
    v = np.array(L_SHAPE, float)
    w = np.roll(v, -1, axis=0)
    normals = _vm(poly.normal, xb)
    for a, b in zip(v, w):
        d = b - a
        cross = (xb[:, 0] - a[0]) * d[1] - (xb[:, 1] - a[1]) * d[0]
        t = ((xb - a) @ d) / (d @ d)
        on = (np.abs(cross) < 1e-12) & (t > 1e-9) & (t < 1 - 1e-9)
        np.testing.assert_allclose(on.mean(), np.linalg.norm(d) / 8, atol=3e-3)
        # L_SHAPE is clockwise: outward is the edge direction turned counter-clockwise.
        np.testing.assert_allclose(normals[on], np.tile([-d[1], d[0]], (on.sum(), 1))
                                   / np.linalg.norm(d), atol=1e-14)
    outside = np.array([[0.5, 0.5], [1.2, 0.0], [-1.1, 0.3], [0.2, 1.3]])
    not_corner = lambda p: np.min(np.linalg.norm(p[:, None] - v[None], axis=2), 1) > 0.05  # noqa: E731
    _check_distance(poly, x, xb, outside, smooth=not_corner)
    # Just inside an edge the gradient is the inward normal too (the limit is smooth).
    p = np.array([[-0.5, -1 + 1e-7], [-1 + 1e-6, 0.3]])
    np.testing.assert_allclose(_vm(jax.grad(poly.distance), p), [[0, 1], [1, 0]], atol=1e-5)


def test_polygon_nonconvex_centroid_and_samplers(getkey):
    # A non-convex heptagon no code path is tuned to; centroid by the shoelace formula.
    v = np.array([[0, 0], [3, -0.5], [2.2, 1], [3.1, 2.5], [1.2, 1.6], [0.4, 3], [-0.6, 1.1]])
    w = np.roll(v, -1, axis=0)
    cr = v[:, 0] * w[:, 1] - w[:, 0] * v[:, 1]
    area = cr.sum() / 2
    centroid = ((v + w) * cr[:, None]).sum(0) / (6 * area)
    poly = P.Polygon(v)
    np.testing.assert_allclose(poly.volume, area)
    for sampler, tol in ((P.Halton(), 3e-3), (P.LatinHypercube(), 2e-2), (P.Uniform(), 2e-2)):
        x = np.asarray(poly.sample(getkey(), 20000, sampler))
        assert x.shape == (20000, 2) and _vm(poly.contains, x).all()
        np.testing.assert_allclose(x.mean(0), centroid, atol=tol)
    tri = P.Triangle([0, 0], [0, 2], [3, 0])  # clockwise
    x = np.asarray(tri.sample(getkey(), 20000, P.Halton()))
    np.testing.assert_allclose(x.mean(0), [1, 2 / 3], atol=3e-3)
    np.testing.assert_allclose(tri.volume, 3.0)


def test_polygon_errors():
    with pytest.raises(ValueError, match="intersect"):
        P.Polygon([[0, 0], [1, 1], [1, 0], [0, 1]])  # a bow tie
    with pytest.raises(ValueError, match="degenerate"):
        P.Polygon([[0, 0], [1, 1], [2, 2]])
    with pytest.raises(ValueError, match=r"edges 0 \(\(0, 0\) -> \(1, 1\)\) and 2"):
        P.Polygon([[0, 0], [1, 1], [2, 2], [1, 1 + 1e-15]])
    with pytest.raises(ValueError, match="coincide"):
        P.Polygon([[0, 0], [1, 0], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="double back"):
        P.Polygon([[0, 0], [2, 0], [1, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        P.Polygon([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="at least 3"):
        P.Polygon([[0, 0], [1, 0]])


def test_shape_errors():
    with pytest.raises(ValueError, match="radius.*> 0"):
        P.Disk([0.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="radius.*> 0"):
        P.Disk([0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="Interval"):
        P.Disk([0.0], 1.0)
    with pytest.raises(ValueError, match="semi_axes"):
        P.Ellipse([0, 0], (1.0, 0.0))
    with pytest.raises(ValueError, match="positive int"):
        P.Disk([0.0, 0.0], 1.0).sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="positive int"):
        P.Polygon(L_SHAPE).sample_boundary(jax.random.key(0), 0)


def test_difference_with_a_hole(getkey):
    sq, hole = P.Box([-1, -1], [1, 1]), P.Disk([0.3, 0.2], 0.4)
    dom = sq - hole
    ah, c = math.pi * 0.16, np.array([0.3, 0.2])
    vol = dom.volume
    assert isinstance(vol, P.Estimate) and "Monte Carlo" in repr(vol)
    np.testing.assert_allclose(vol, 4 - ah, atol=3 * vol.stderr + 1e-3)
    for sampler in (P.Halton(), P.LatinHypercube()):
        x = np.asarray(dom.sample(getkey(), 20000, sampler))
        assert x.shape == (20000, 2)
        assert np.all(np.linalg.norm(x - c, axis=1) >= 0.4) and np.all(np.abs(x) <= 1)
        np.testing.assert_allclose(x.mean(0), -ah * c / (4 - ah), atol=1e-2)
    xb = np.asarray(dom.sample_boundary(getkey(), 20000, P.Halton()))
    on_circle = np.abs(np.linalg.norm(xb - c, axis=1) - 0.4) < 1e-12
    on_square = np.abs(np.max(np.abs(xb), axis=1) - 1) < 1e-12
    assert np.all(on_circle | on_square)
    np.testing.assert_allclose(on_circle.mean(), 0.8 * math.pi / (8 + 0.8 * math.pi), atol=3e-3)
    # At the hole the outward normal points into the hole.
    normals = _vm(dom.normal, xb)
    np.testing.assert_allclose(normals[on_circle], (c - xb[on_circle]) / 0.4, atol=1e-13)
    # Selecting the hole's part: only the circle, its exact length.
    inner = dom.boundary(part=hole)
    xh = np.asarray(inner.sample(getkey(), 1000))
    np.testing.assert_allclose(np.linalg.norm(xh - c, axis=1), 0.4, rtol=1e-13)
    np.testing.assert_allclose(inner.measure, 0.8 * math.pi, rtol=1e-3)
    np.testing.assert_allclose(dom.boundary(part=sq).measure, 8.0, rtol=1e-3)
    outside = np.array([[0.3, 0.2], [0.35, 0.3], [1.5, 0.0]])
    smooth = lambda p: np.min(np.abs(np.abs(p) - 1), axis=1) > 0.05  # noqa: E731
    _check_distance(dom, x, xb, outside, smooth=smooth)


def test_csg_of_csg(getkey):
    # The right half of a square with a centred hole: (square - disk) & right box.
    holed = P.Box([-1, -1], [1, 1]) - P.Disk([0, 0], 0.5)
    right = P.Box([0, -2], [2, 2])
    dom = holed & right
    area = 2 - math.pi / 8
    cx = (2 * 0.5 - (math.pi / 8) * (4 * 0.5 / (3 * math.pi))) / area
    x = np.asarray(dom.sample(getkey(), 20000, P.Halton()))
    np.testing.assert_allclose(x.mean(0), [cx, 0.0], atol=3e-3)
    np.testing.assert_allclose(dom.volume, area, rtol=2e-3)
    xb = np.asarray(dom.sample_boundary(getkey(), 20000, P.Halton()))
    perim = 5 + math.pi / 2
    on_cut = np.abs(xb[:, 0]) < 1e-12  # x = 0, |y| in [0.5, 1]
    on_arc = np.abs(np.linalg.norm(xb, axis=1) - 0.5) < 1e-12
    assert np.all(np.abs(xb[on_cut, 1]) >= 0.5 - 1e-12) and np.all(xb[:, 0] >= -1e-12)
    np.testing.assert_allclose(on_cut.mean(), 1 / perim, atol=3e-3)
    np.testing.assert_allclose(on_arc.mean(), (math.pi / 2) / perim, atol=3e-3)
    normals = _vm(dom.normal, xb)
    np.testing.assert_allclose(normals[on_cut], np.tile([-1.0, 0.0], (on_cut.sum(), 1)))
    np.testing.assert_allclose(normals[on_arc], -xb[on_arc] / 0.5, atol=1e-13)
    np.testing.assert_allclose(_vm(dom.distance, xb), 0.0, atol=1e-12)
    assert np.all(_vm(dom.distance, x) > 0)
    np.testing.assert_allclose(dom.boundary().measure, perim, rtol=2e-3)


def test_union_of_disks_and_shared_faces(getkey):
    # Two overlapping disks: the boundary is the two outer arcs, by length.
    r1, r2, dist = 1.0, 0.6, 1.0
    a1 = math.acos((dist**2 + r1**2 - r2**2) / (2 * dist * r1))
    a2 = math.acos((dist**2 + r2**2 - r1**2) / (2 * dist * r2))
    arc1, arc2 = r1 * (2 * math.pi - 2 * a1), r2 * (2 * math.pi - 2 * a2)
    dom = P.Disk([0, 0], r1) | P.Disk([dist, 0], r2)
    xb = np.asarray(dom.sample_boundary(getkey(), 20000, P.Halton()))
    on1 = np.abs(np.linalg.norm(xb, axis=1) - r1) < 1e-12
    on2 = np.abs(np.linalg.norm(xb - [dist, 0], axis=1) - r2) < 1e-12
    assert np.all(on1 ^ on2)
    assert np.all(np.linalg.norm(xb[on1] - [dist, 0], axis=1) >= r2 - 1e-12)
    np.testing.assert_allclose(on1.mean(), arc1 / (arc1 + arc2), atol=3e-3)
    np.testing.assert_allclose(dom.boundary().measure, arc1 + arc2, rtol=2e-3)
    # Overlapping boxes sharing a bottom and a top: measured once, not twice; the
    # overlap's inner faces are not boundary.
    boxes = P.Box([0, 0], [2, 1]) | P.Box([1, 0], [3, 1])
    xb = np.asarray(boxes.sample_boundary(getkey(), 16000, P.Halton()))
    inner = (xb[:, 1] > 1e-9) & (xb[:, 1] < 1 - 1e-9) & (xb[:, 0] > 1e-9) & (xb[:, 0] < 3 - 1e-9)
    assert not inner.any()
    np.testing.assert_allclose(boxes.boundary().measure, 8.0, rtol=2e-3)
    middle_bottom = (np.abs(xb[:, 1]) < 1e-12) & (xb[:, 0] > 1) & (xb[:, 0] < 2)
    np.testing.assert_allclose(middle_bottom.mean(), 1 / 8, atol=3e-3)


def test_cube_minus_ball_3d(getkey):
    c, r = np.array([0.2, 0.1, -0.3]), 0.5
    dom = P.Box([-1, -1, -1], [1, 1, 1]) - P.Disk(c, r)
    vb = 4 / 3 * math.pi * r**3
    x = np.asarray(dom.sample(getkey(), 20000, P.Halton()))
    np.testing.assert_allclose(x.mean(0), -vb * c / (8 - vb), atol=5e-3)
    xb = np.asarray(dom.sample_boundary(getkey(), 20000, P.Halton()))
    on_ball = np.abs(np.linalg.norm(xb - c, axis=1) - r) < 1e-12
    np.testing.assert_allclose(on_ball.mean(), math.pi / (24 + math.pi), atol=3e-3)
    np.testing.assert_allclose(_vm(dom.normal, xb[on_ball]), (c - xb[on_ball]) / r, atol=1e-12)


def test_csg_errors():
    sq = P.Box([0, 0], [1, 1])
    with pytest.raises(ValueError, match="different dimensions"):
        sq | P.Box([0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        sq & P.Box([2, 2], [3, 3])
    with pytest.raises(ValueError, match="empty"):
        P.Disk([0, 0], 1.0) & P.Disk([1.9, 1.9], 1.0)  # boxes overlap, disks do not
    with pytest.raises(ValueError, match="empty"):
        sq - P.Box([-1, -1], [2, 2])
    with pytest.raises(TypeError, match="SpaceTime"):
        P.SpaceTime(sq, 0, 1) | sq
    with pytest.raises(TypeError, match="domain"):
        sq | 3.0
    with pytest.raises(ValueError, match="not an operand"):
        (sq - P.Disk([0.5, 0.5], 0.2)).boundary(part=P.Disk([0.5, 0.5], 0.3))
    with pytest.raises(ValueError, match="no boundary point"):
        sq.boundary(where=lambda x: x[0] > 5)


def test_boundary_by_predicate_and_space_time(getkey):
    box = P.Box([0, 0], [2, 1])
    lid = box.boundary(where=lambda x: x[1] > 1 - 1e-9)
    xl = np.asarray(lid.sample(getkey(), 500, P.Halton()))
    assert xl.shape == (500, 2)
    np.testing.assert_allclose(xl[:, 1], 1.0)
    np.testing.assert_allclose(xl[:, 0].mean(), 1.0, atol=2e-2)
    np.testing.assert_allclose(lid.measure, 2.0, rtol=2e-3)
    assert bool(lid.contains(jnp.array([0.5, 1.0])))
    assert not bool(lid.contains(jnp.array([0.0, 0.5])))
    hole = P.Disk([1.0, 0.5], 0.25)
    st = P.SpaceTime(box - hole, 0.0, 2.0)
    assert st.dim == 3
    x = np.asarray(st.sample(getkey(), 2000, P.Halton()))
    assert np.all(np.linalg.norm(x[:, :2] - [1, 0.5], axis=1) >= 0.25)
    assert np.all((x[:, 2] >= 0) & (x[:, 2] <= 2))
    xb = np.asarray(st.boundary(part=hole).sample(getkey(), 1000, P.Halton()))
    np.testing.assert_allclose(np.linalg.norm(xb[:, :2] - [1, 0.5], axis=1), 0.25, rtol=1e-12)
    np.testing.assert_allclose(xb[:, 2].mean(), 1.0, atol=2e-2)
    n = _vm(st.normal, xb)
    np.testing.assert_allclose(n[:, :2], ([1, 0.5] - xb[:, :2]) / 0.25, atol=1e-12)
    np.testing.assert_allclose(n[:, 2], 0.0)
    x0 = np.asarray(st.sample_initial(getkey(), 100))
    np.testing.assert_allclose(x0[:, 2], 0.0)
    np.testing.assert_allclose(_vm(st.distance, xb), 0.0, atol=1e-12)


def test_csg_sampling_compiles_once_and_vmaps(getkey):
    dom = P.Box([-1, -1], [1, 1]) - P.Disk([0, 0], 0.5)

    @jax.jit
    @eqx_assert_max_traces(1)
    def draw(key):
        return dom.sample(key, 256, P.Halton()), dom.sample_boundary(key, 64, P.Halton())

    a, b = draw(getkey())
    a2, _ = draw(getkey())
    assert a.shape == (256, 2) and b.shape == (64, 2) and not np.allclose(a, a2)
    keys = jax.random.split(getkey(), 3)
    xs = jax.vmap(lambda k: dom.sample(k, 100))(keys)
    assert xs.shape == (3, 100, 2) and bool(jnp.all(jnp.linalg.norm(xs, axis=-1) >= 0.5))


def eqx_assert_max_traces(n):
    import equinox as eqx

    return eqx.debug.assert_max_traces(max_traces=n)
