"""Constructive solid geometry: `a | b`, `a - b`, `a & b`, nesting freely.

Interior points come from an operand's own map (difference, intersection) or the
bounding box (union), filtered by membership; boundary points from the operands'
pieces, filtered by the boundary test of `_geometry.py`. Both are uniform and come in
exact counts. `distance` combines the operands' signed distance functions with
R-functions (Rvachev; Sukumar & Srivastava 2022), which keep them normalised on the
smooth parts of the boundary.
"""

from __future__ import annotations

import jax

from ._domains import _PILOT_POINTS, AbstractDomain, Box, SpaceTime
from ._geometry import Proposal, point, r_and, r_or


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

