"""Fourier neural operator (Li, Kovachki, Azizzadenesheli, Liu, Bhattacharya, Stuart,
Anandkumar, ICLR 2021, arXiv 2010.08895), in 1-D and 2-D.

    u(x) -> v = P(u(x), x) -> L layers v <- sigma(W v + K v) -> Q(v)(x),

with P (lifting) and W pointwise linear maps, Q a pointwise two-layer net, and K a
spectral convolution: K v = irfft(R . rfft(v)) with R acting on the lowest `modes`
frequencies only (all higher ones set to zero). As in the authors' scripts, the last
Fourier layer has no activation.

The complex weights R are stored as two real arrays. For a real loss L and a complex
leaf z = x + i y, `jax.grad` returns dL/dx - i dL/dy, the conjugate of the ascent
direction; an optax update subtracts it, so the real part descends and the imaginary
part ascends. Real leaves make every optimiser see the true gradient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray


def _default_float():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_modes(modes, where) -> tuple[int, ...]:
    modes = (modes,) if isinstance(modes, int) and not isinstance(modes, bool) else modes
    try:
        modes = tuple(modes)
    except TypeError:
        modes = None
    if (
        not modes
        or len(modes) > 2
        or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in modes)
    ):
        raise ValueError(
            f"{where}: `modes` must be a positive int (1-D) or a tuple of one or two "
            f"positive ints, e.g. (12, 12) for 2-D, got {modes!r}."
        )
    return modes


def _check_positive(value, name, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: `{name}` must be a positive int, got {value!r}.")
    return value


def _corners(modes):
    """Index tuples of the kept frequency blocks of an rfftn output (channel axis first).

    The last axis is halved by the real FFT, so only its lowest modes exist; every
    other axis keeps its lowest positive and its lowest negative frequencies."""
    *full, last = modes
    choices = [(slice(0, m), slice(-m, None)) for m in full]
    return [(slice(None), *c, slice(0, last)) for c in itertools.product(*choices)]


def _spectral_shape(in_channels, out_channels, modes):
    return (2 ** (len(modes) - 1), out_channels, in_channels, *modes)


class SpectralConv(eqx.Module):
    """Spectral convolution K v = irfft(R . rfft(v)) on the lowest `modes` frequencies.

    Along the last grid axis the frequencies 0, ..., m - 1 are kept; along the first of
    two axes both 0, ..., m - 1 and -m, ..., -1 (two weight blocks). The result is real:
    as for `numpy.fft.irfftn`, the imaginary part of a coefficient that must be real
    (frequency 0 of the last axis) is dropped.

    **Arguments:**

    - `in_channels`, `out_channels`: channel counts.
    - `modes`: an int (1-D) or a tuple of one or two ints (the kept modes per axis).
    - `scale`: the weights are `scale * U[0, 1)` in real and imaginary part (default
      `1 / (in_channels * out_channels)`, as in the authors' scripts).
    - `key`: PRNG key; or `weights=(real, imag)`, two arrays of shape `(2 ** (d - 1),
      out_channels, in_channels, *modes)` (block 1 of 2-D: the negative frequencies of
      the first axis), to set the weights instead of drawing them.

    Call with one field `v` of shape `(in_channels, *grid)`, each grid size `>= 2 *
    modes` of its axis; returns `(out_channels, *grid)`.
    """

    weight_real: Array
    weight_imag: Array
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        *,
        scale: float | None = None,
        dtype=None,
        key: PRNGKeyArray | None = None,
        weights: tuple[Array, Array] | None = None,
    ):
        where = "sciml.operators.SpectralConv"
        self.in_channels = _check_positive(in_channels, "in_channels", where)
        self.out_channels = _check_positive(out_channels, "out_channels", where)
        self.modes = _check_modes(modes, where)
        shape = _spectral_shape(in_channels, out_channels, self.modes)
        if (key is None) == (weights is None):
            raise ValueError(f"{where}: pass exactly one of `key` and `weights`.")
        if weights is None:
            dtype = _default_float() if dtype is None else dtype
            scale = 1.0 / (in_channels * out_channels) if scale is None else scale
            weights = scale * np.asarray(jax.random.uniform(key, (2, *shape), dtype))
        real, imag = (jnp.asarray(w) for w in weights)
        if real.shape != shape or imag.shape != shape:
            raise ValueError(
                f"{where}: `weights` must be two arrays of shape {shape}, got "
                f"{real.shape} and {imag.shape}."
            )
        self.weight_real, self.weight_imag = real, imag

    @property
    def dim(self) -> int:
        return len(self.modes)

    def check_input(self, v: Array, where: str = "sciml.operators.SpectralConv"):
        """Raises a ValueError unless `v` is one field `(in_channels, *grid)` fine enough."""
        grid = v.shape[1:]
        if v.ndim != 1 + self.dim or v.shape[0] != self.in_channels:
            raise ValueError(
                f"{where}: expected one {self.dim}-D field of shape ({self.in_channels}, "
                f"{', '.join(['n'] * self.dim)}) (channels first; vmap over examples "
                f"outside), got shape {v.shape}."
            )
        for axis, (n, m) in enumerate(zip(grid, self.modes)):
            if n < 2 * m:
                raise ValueError(
                    f"{where}: grid axis {axis} has {n} points, fewer than 2 * modes = "
                    f"{2 * m}; keep at most n // 2 modes ({n // 2}) or use a finer grid."
                )

    def __call__(self, v: Array) -> Array:
        self.check_input(v)
        axes = tuple(range(1, v.ndim))
        vh = jnp.fft.rfftn(v, axes=axes)
        weight = jax.lax.complex(self.weight_real, self.weight_imag)
        out = jnp.zeros((self.out_channels, *vh.shape[1:]), vh.dtype)
        for block, index in zip(weight, _corners(self.modes)):
            out = out.at[index].set(jnp.einsum("oi...,i...->o...", block, vh[index]))
        return jnp.fft.irfftn(out, s=v.shape[1:], axes=axes)


class _Pointwise(eqx.Module):
    """A linear map of the channels at every grid point (a 1x1 convolution)."""

    weight: Array
    bias: Array

    def __init__(self, weight, bias):
        self.weight, self.bias = jnp.asarray(weight), jnp.asarray(bias)

    def __call__(self, v):
        bias = self.bias.reshape(self.bias.shape + (1,) * (v.ndim - 1))
        return jnp.einsum("oi,i...->o...", self.weight, v) + bias


def _coordinates(grid, periodic, dtype):
    """Coordinate channels on the unit square: x = linspace(0, 1, n) per axis, or
    (cos 2 pi x, sin 2 pi x) with x = j / n when `periodic`."""
    axes = []
    for n in grid:
        if periodic:
            x = 2 * jnp.pi * jnp.arange(n, dtype=dtype) / n
            axes.append([jnp.cos(x), jnp.sin(x)])
        else:
            axes.append([jnp.linspace(0.0, 1.0, n, dtype=dtype)])
    mesh = []
    for axis, funcs in enumerate(axes):
        shape = [1] * len(grid)
        shape[axis] = grid[axis]
        mesh += [jnp.broadcast_to(f.reshape(shape), grid) for f in funcs]
    return jnp.stack(mesh)


def _draw_layers(lift_in, out_channels, modes, width, layers, projection, dtype, key):
    """The FNO's layers from one uniform draw, carved up in numpy.

    Drawn array by array, every shape and op compiles on its own: ~15 s for the paper's
    1-D model on a busy 2-core machine, against well under a second for one draw."""
    spectral = _spectral_shape(width, width, modes)
    linears = [(lift_in, width)] + [(width, width)] * layers
    linears += [(width, projection), (projection, out_channels)]
    sizes = [2 * math.prod(spectral)] * layers + [(i + 1) * o for i, o in linears]
    flat = np.asarray(jax.random.uniform(key, (sum(sizes),), dtype))
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    convs = tuple(
        SpectralConv(width, width, modes, weights=piece.reshape(2, *spectral) / width**2)
        for piece in pieces[:layers]
    )
    maps = []
    for (i, o), piece in zip(linears, pieces[layers:]):
        # torch.nn.Linear's and Conv1d's default, which the authors' scripts train from.
        bound = 1.0 / math.sqrt(i)
        piece = (2 * piece - 1) * bound
        maps.append(_Pointwise(piece[: i * o].reshape(o, i), piece[i * o :]))
    return maps[0], convs, tuple(maps[1 : layers + 1]), tuple(maps[layers + 1 :])


class FNO(eqx.Module):
    """Fourier neural operator on a uniform grid of the unit interval or square.

    **Arguments:**

    - `in_channels`, `out_channels`: channels of the input field a and the output u.
    - `modes`: kept Fourier modes: an int or `(m,)` for 1-D, `(m1, m2)` for 2-D (the
      paper: 16 in 1-D, (12, 12) in 2-D).
    - `width`: channels inside the Fourier layers (the paper: 64 in 1-D, 32 in 2-D).
    - `layers`: number of Fourier layers (default 4).
    - `projection`: hidden width of the projection Q (default 128).
    - `activation`: between Fourier layers and inside Q (default GELU).
    - `padding`: zero padding appended to each grid axis after the lifting, as a
      fraction of the grid size (default 0: periodic data). A fraction, not a count,
      keeps the padded domain the same at every resolution; the authors pad Darcy's
      85-point grid by 9 (about 0.1).
    - `periodic`: coordinate channels `(cos 2 pi x, sin 2 pi x)` with `x = j / n` per
      axis (periodic data on [0, 1)); default False: `x = linspace(0, 1, n)` per axis,
      as in the paper.
    - `key`: PRNG key.

    Call with one input field `a` of shape `(in_channels, nx)` or `(in_channels, nx,
    ny)` (channels first; `vmap` over examples outside), every grid size at least twice
    its modes; returns `(out_channels, nx[, ny])`. The same weights evaluate on any such
    grid; see the README for when the values agree across grids.
    """

    lift: _Pointwise
    spectral: tuple[SpectralConv, ...]
    pointwise: tuple[_Pointwise, ...]
    project: tuple[_Pointwise, _Pointwise]
    activation: Callable
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    padding: float = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        width: int,
        *,
        layers: int = 4,
        projection: int = 128,
        activation: Callable = jax.nn.gelu,
        padding: float = 0.0,
        periodic: bool = False,
        dtype=None,
        key: PRNGKeyArray,
    ):
        where = "sciml.operators.FNO"
        for name, value in [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("width", width),
            ("layers", layers),
            ("projection", projection),
        ]:
            _check_positive(value, name, where)
        modes = _check_modes(modes, where)
        if not (isinstance(padding, int | float) and 0 <= padding <= 1):
            raise ValueError(
                f"{where}: `padding` is a fraction of the grid size in [0, 1] (e.g. 0.1), "
                f"got {padding!r}."
            )
        if periodic and padding:
            raise ValueError(
                f"{where}: `periodic=True` with `padding={padding}`: padding is for "
                "non-periodic inputs; drop one of them."
            )
        dtype = jnp.dtype(_default_float() if dtype is None else dtype)
        coords = len(modes) * (2 if periodic else 1)
        self.lift, self.spectral, self.pointwise, self.project = _draw_layers(
            in_channels + coords, out_channels, modes, width, layers, projection, dtype, key
        )
        self.activation = activation
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        self.width = width
        self.padding = float(padding)
        self.periodic = bool(periodic)

    @property
    def dim(self) -> int:
        return len(self.modes)

    def _check(self, a):
        where = "sciml.operators.FNO"
        shape = ", ".join(["n"] * self.dim)
        if a.ndim != 1 + self.dim or a.shape[0] != self.in_channels:
            hint = (
                " (for one channel pass a[None])"
                if a.ndim == self.dim and self.in_channels == 1
                else ""
            )
            raise ValueError(
                f"{where}: expected one {self.dim}-D input field of shape "
                f"({self.in_channels}, {shape}) (channels first; vmap over examples "
                f"outside), got shape {a.shape}{hint}. The model's `modes` "
                f"{self.modes} set its dimension."
            )
        for axis, (n, m) in enumerate(zip(a.shape[1:], self.modes)):
            if n < 2 * m:
                raise ValueError(
                    f"{where}: grid axis {axis} of the input has {n} points, fewer than "
                    f"2 * modes = {2 * m}; evaluate on a grid of at least {2 * m} points "
                    "or build the model with fewer modes."
                )

    def __call__(self, a: Array) -> Array:
        self._check(a)
        grid = a.shape[1:]
        coords = _coordinates(grid, self.periodic, a.dtype)
        v = self.lift(jnp.concatenate([a, coords]))
        pads = [math.ceil(self.padding * n) for n in grid]
        if any(pads):
            v = jnp.pad(v, [(0, 0)] + [(0, p) for p in pads])
        last = len(self.spectral) - 1
        for i, (k, w) in enumerate(zip(self.spectral, self.pointwise)):
            v = k(v) + w(v)
            if i < last:
                v = self.activation(v)
        v = v[(slice(None), *(slice(0, n) for n in grid))]
        return self.project[1](self.activation(self.project[0](v)))
