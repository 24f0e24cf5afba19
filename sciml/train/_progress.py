"""Progress meters: how `fit` reports steps between chunks (as diffrax's
`AbstractProgressMeter` does for a solve). Host-side objects, never traced."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx


class AbstractProgressMeter(eqx.Module):
    """Shows the progress of a run. `fit` calls `start` once, `update` after every chunk
    of compiled steps and `close` at the end (also when the run stops or fails); only
    process 0 of a multi-host run shows progress.

    A meter is a description; what it draws lives in the handle `start` returns, so one
    meter object can serve several runs.
    """

    @abc.abstractmethod
    def start(self, total: int, initial: int) -> Any:
        """Begins a run of `total` steps of which `initial` are done (a resumed run);
        returns the handle passed to `update` and `close`."""

    @abc.abstractmethod
    def update(self, handle: Any, steps: int, terms: dict[str, float]) -> None:
        """`steps` more steps ran; `terms` are the loss and aux terms of the last one."""

    @abc.abstractmethod
    def close(self, handle: Any) -> None:
        """Ends the run."""


class NoProgressMeter(AbstractProgressMeter):
    """Shows nothing."""

    def start(self, total, initial):
        return None

    def update(self, handle, steps, terms):
        pass

    def close(self, handle):
        pass


class TqdmProgressMeter(AbstractProgressMeter):
    """A tqdm bar with the first `max_terms` loss terms as its postfix (the default)."""

    max_terms: int = eqx.field(default=5, static=True)

    def start(self, total, initial):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, dynamic_ncols=True, leave=True, unit="step")

    def update(self, handle, steps, terms):
        handle.update(steps)
        shown = list(terms.items())[: self.max_terms]
        handle.set_postfix({k: f"{v:.3e}" for k, v in shown}, refresh=False)

    def close(self, handle):
        handle.close()


def as_meter(progress) -> AbstractProgressMeter:
    """`fit`'s `progress` argument as a meter: True (tqdm), False (none) or a meter."""
    if isinstance(progress, AbstractProgressMeter):
        return progress
    if isinstance(progress, bool):
        return TqdmProgressMeter() if progress else NoProgressMeter()
    raise TypeError(
        "sciml.fit: `progress` must be True (a tqdm bar), False (none) or a "
        f"sciml.AbstractProgressMeter, got {progress!r}."
    )
