"""DeepONet (Lu, Jin, Pang, Zhang, Karniadakis, Nat. Mach. Intell. 3, 2021).

G(u)(y) ~ sum_k b_k(u(x_1), ..., u(x_m)) t_k(y) + b_0: a branch net of the input
function at m fixed sensors, a trunk net of the output location, a dot product and
a bias. As in DeepXDE, the branch's last layer is linear and the trunk's last layer
has the activation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ..nn import Linear


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _identity(x):
    return x


class FNN(eqx.Module):
    """Fully connected net with layer sizes `[in, h1, ..., out]` (widths may differ).

    **Arguments:**

    - `sizes`: layer sizes, input first.
    - `activation`: on every hidden layer; `final_activation` on the output.
    - `weight_init`: a `jax.nn.initializers` function (default Glorot normal).
    - `key`: PRNG key.
    """

    layers: tuple[Linear, ...]
    activation: Callable
    final_activation: Callable

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: Callable = jax.nn.relu,
        final_activation: Callable = _identity,
        weight_init=jax.nn.initializers.glorot_normal(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        sizes = list(sizes)
        if len(sizes) < 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
        ):
            raise ValueError(
                f"sciml.operators.FNN: `sizes` must list >= 2 positive ints [in, ..., out], "
                f"got {sizes!r}."
            )
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            Linear(a, b, weight_init=weight_init, dtype=dtype, key=k)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.final_activation = final_activation

    def __call__(self, x: Array) -> Array:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.final_activation(self.layers[-1](x))


class _Stacked(eqx.Module):
    """p independent scalar-output nets, parameters stacked on a leading axis."""

    nets: FNN

    def __call__(self, x):
        return eqx.filter_vmap(lambda net: net(x)[0])(self.nets)


class DeepONet(eqx.Module):
    """Deep operator network, unstacked (default) or stacked.

    **Arguments:**

    - `branch_sizes`: `[m, h1, ..., p]`: m sensors in, p basis coefficients out.
      Stacked: p separate nets `[m, h1, ..., 1]` (the paper's stacked DeepONet).
    - `trunk_sizes`: `[d, h1, ..., p]`: the output location (dimension d) in.
    - `activation`: hidden activation of both nets (default ReLU);
      `branch_activation` / `trunk_activation` override it per net.
    - `stacked`: stacked branch nets (default False; unstacked generalises better and
      is smaller, Lu et al. 2021).
    - `use_bias`: add the scalar output bias b_0 (default True).
    - `output_transform`: optional `transform(u, y, g) -> value` applied to the raw
      output g, e.g. `lambda u, y, g: y[0] * g` imposes G(u)(0) = 0 exactly.
    - `weight_init`: `jax.nn.initializers` function (default Glorot normal).
    - `key`: PRNG key.

    Evaluation (one function in, `vmap` outside):

    - `model(u, y)`: one (sensor values `(m,)`, location `(d,)` or scalar) pair -> scalar;
    - `model.on_points(u, ys)`: one function at points `(n, d)` -> `(n,)`, the branch
      evaluated once;
    - `model.cartesian(us, ys)`: functions `(n1, m)` at points `(n2, d)` -> `(n1, n2)`,
      each branch and trunk evaluated once (DeepXDE's `DeepONetCartesianProd`).
    """

    branch: FNN | _Stacked
    trunk: FNN
    bias: Array | None
    output_transform: Callable | None
    sensors: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    stacked: bool = eqx.field(static=True)

    def __init__(
        self,
        branch_sizes: Sequence[int],
        trunk_sizes: Sequence[int],
        *,
        activation: Callable = jax.nn.relu,
        branch_activation: Callable | None = None,
        trunk_activation: Callable | None = None,
        stacked: bool = False,
        use_bias: bool = True,
        output_transform: Callable | None = None,
        weight_init=jax.nn.initializers.glorot_normal(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        where = "sciml.operators.DeepONet"
        branch_sizes, trunk_sizes = list(branch_sizes), list(trunk_sizes)
        if len(branch_sizes) < 2 or len(trunk_sizes) < 2:
            raise ValueError(
                f"{where}: `branch_sizes` and `trunk_sizes` need >= 2 entries [in, ..., p], "
                f"got {branch_sizes!r} and {trunk_sizes!r}."
            )
        if branch_sizes[-1] != trunk_sizes[-1]:
            raise ValueError(
                f"{where}: branch and trunk must end in the same width p, got "
                f"{branch_sizes[-1]} and {trunk_sizes[-1]}."
            )
        dtype = _default_float() if dtype is None else dtype
        bact = activation if branch_activation is None else branch_activation
        tact = activation if trunk_activation is None else trunk_activation
        bkey, tkey = jax.random.split(key)
        p = branch_sizes[-1]
        if stacked:
            keys = jax.random.split(bkey, p)
            sizes = branch_sizes[:-1] + [1]
            nets = eqx.filter_vmap(
                lambda k: FNN(sizes, activation=bact, weight_init=weight_init, dtype=dtype, key=k)
            )(keys)
            self.branch = _Stacked(nets)
        else:
            self.branch = FNN(
                branch_sizes, activation=bact, weight_init=weight_init, dtype=dtype, key=bkey
            )
        self.trunk = FNN(
            trunk_sizes,
            activation=tact,
            final_activation=tact,
            weight_init=weight_init,
            dtype=dtype,
            key=tkey,
        )
        self.bias = jnp.zeros((), dtype) if use_bias else None
        self.output_transform = output_transform
        self.sensors = branch_sizes[0]
        self.dim = trunk_sizes[0]
        self.stacked = stacked

    def _check_u(self, u):
        if u.shape != (self.sensors,):
            raise ValueError(
                f"sciml.operators.DeepONet: `u` must hold the {self.sensors} sensor values, "
                f"shape ({self.sensors},), got {u.shape}; vmap over functions outside."
            )

    def _point(self, y):
        y = jnp.asarray(y)
        if y.ndim == 0 and self.dim == 1:
            y = y[None]
        if y.shape != (self.dim,):
            raise ValueError(
                f"sciml.operators.DeepONet: a location must have shape ({self.dim},), got "
                f"{y.shape}."
            )
        return y

    def branch_features(self, u: Array) -> Array:
        """b(u), shape (p,)."""
        self._check_u(u)
        return self.branch(u)

    def trunk_features(self, y: Array) -> Array:
        """t(y), shape (p,)."""
        return self.trunk(self._point(y))

    def _finish(self, u, y, g):
        if self.bias is not None:
            g = g + self.bias
        if self.output_transform is not None:
            g = self.output_transform(u, y, g)
        return g

    def __call__(self, u: Array, y: Array) -> Array:
        y = self._point(y)
        g = jnp.dot(self.branch_features(u), self.trunk(y))
        return self._finish(u, y, g)

    def on_points(self, u: Array, ys: Array) -> Array:
        """One function at many points `(n, d)` (or `(n,)` when d = 1) -> `(n,)`."""
        if ys.ndim == 1 and self.dim > 1:
            raise ValueError(
                f"sciml.operators.DeepONet.on_points: `ys` has shape {ys.shape}, but the "
                f"trunk takes points of dimension {self.dim}: pass shape (n, {self.dim}) "
                "(ys[None] for one point)."
            )
        ys = ys[:, None] if ys.ndim == 1 else ys
        b = self.branch_features(u)
        t = jax.vmap(self.trunk_features)(ys)
        g = t @ b
        return jax.vmap(lambda y, gi: self._finish(u, y, gi))(ys, g)

    def cartesian(self, us: Array, ys: Array) -> Array:
        """Functions `(n1, m)` at shared points `(n2, d)` -> `(n1, n2)`."""
        ys = ys[:, None] if ys.ndim == 1 else ys
        b = jax.vmap(self.branch_features)(us)
        t = jax.vmap(self.trunk_features)(ys)
        g = b @ t.T
        if self.bias is not None:
            g = g + self.bias
        if self.output_transform is None:
            return g
        inner = jax.vmap(self.output_transform, in_axes=(None, 0, 0))
        return jax.vmap(inner, in_axes=(0, None, 0))(us, ys, g)
