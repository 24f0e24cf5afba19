"""Closed forms for nucleation in hard magnets with a planar defect (Kronmueller).

Linearised micromagnetics of a uniaxial magnet (easy axis z, reversing field along
-z, variation along x) gives the eigenproblem

    -(A theta')' + K(x) theta = eps theta,   theta -> 0 at +-infinity,

and the uniform state becomes unstable at the nucleation field
`H_N = 2 eps_0 / (mu0 Ms)` (references/pinns.md, part A). For the Kronmueller /
Poeschl-Teller defect `K(x) = K1 - dK sech^2(x / r0)` with constant A the ground state is
known in closed form.

Units: any consistent set. With x in nm, A in pJ/m and K in MJ/m^3, `A / x^2` is in
MJ/m^3, so `eps` comes out in MJ/m^3 with no rescaling.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


MU0 = 4e-7 * math.pi
"""Vacuum permeability mu0 in T m / A (the pre-2019 exact value; the SI value differs by 1e-10)."""


def kronmuller_eigenvalue(k1: ArrayLike, dk: ArrayLike, r0: ArrayLike, a: ArrayLike) -> Array:
    """Lowest eigenvalue of `-A u'' + (K1 - dK sech^2(x / r0)) u = eps u` on the real line.

    `eps_0 = K1 - (A / (4 r0^2)) (sqrt(1 + 4 dK r0^2 / A) - 1)^2`.
    Limits: r0 -> 0 gives K1 (no defect); r0 -> infinity gives K1 - dK.

    **Arguments:**

    - `k1`: anisotropy constant far from the defect.
    - `dk`: depth of the anisotropy drop at the defect centre (0 <= dk).
    - `r0`: width of the defect (> 0).
    - `a`: exchange stiffness (> 0), in units consistent with `k1 * r0**2`.

    **Returns:**

    `eps_0`, broadcast over the arguments.
    """
    k1, dk, r0, a = (jnp.asarray(v) for v in (k1, dk, r0, a))
    s = jnp.sqrt(1 + 4 * dk * r0**2 / a) - 1
    return k1 - a / (4 * r0**2) * s**2


def bloch_wall_width(a: ArrayLike, k1: ArrayLike) -> Array:
    """Bloch wall width `delta_B = pi sqrt(A / K1)`."""
    return jnp.pi * jnp.sqrt(jnp.asarray(a) / jnp.asarray(k1))


def nucleation_field(eps: ArrayLike, js: ArrayLike) -> Array:
    """Nucleation field `mu0 H_N = 2 mu0 eps / Js` in tesla (`H_N = 2 eps / (mu0 Ms)`).

    **Arguments:**

    - `eps`: lowest eigenvalue in J/m^3.
    - `js`: saturation polarisation `Js = mu0 Ms` in tesla.

    **Returns:**

    `mu0 H_N` in tesla (divide by `MU0` for A/m). With `eps = K1` this is the
    anisotropy field `mu0 H_K = 2 mu0 K1 / Js` (6.71 T for K1 = 4.3 MJ/m^3, Js = 1.61 T).
    """
    return 2 * MU0 * jnp.asarray(eps) / jnp.asarray(js)


def kronmuller_family(
    k1: float,
    a: float,
    r0_range: tuple[float, float],
    dk_range: tuple[float, float],
    *,
    half_width: float | None = None,
    **kwargs,
):
    """The Kronmueller defect family as an `EigenproblemFamily` with `p = (r0, dK)`.

    `-A u'' + (K1 - dK sech^2(x / r0)) u = eps u` on `(-L, L)`, `u(+-L) = 0`.

    **Arguments:**

    - `k1`, `a`: anisotropy and exchange constants (consistent units, see module doc).
    - `r0_range`, `dk_range`: `(low, high)` of the defect width and strength.
    - `half_width`: `L`; default `20 sqrt(A / K1)`. The ground state decays like
      `exp(-sqrt((K1 - eps) / A) |x|)`; for `dK / K1 >= 0.5` and `r0 >= sqrt(A / K1)` the
      truncation raises the eigenvalue by < 1e-6 relative at this L (1e-5 at 15).
    - `**kwargs`: passed to `EigenproblemFamily` (quadrature, conditions, ...).

    **Returns:**

    The `EigenproblemFamily`.
    """
    from ..pinn import EigenproblemFamily

    if half_width is None:
        half_width = 20 * math.sqrt(a / k1)

    def potential(x, p):
        return k1 - p[1] / jnp.cosh(x / p[0]) ** 2

    return EigenproblemFamily(
        potential, (-half_width, half_width), [r0_range, dk_range], stiffness=a, **kwargs
    )
