"""Prepared subjects on a model's work grid: what a model with a grid of its own (``InputSpec.grid_mm``, the
pretrained model's 1 mm RAS grid) is trained on, so that training and fine-tuning read the slices prediction
gives it.

A prepared subject lies on its source T1w's grid; :func:`on_grid` resamples it onto the spec's work grid
(:func:`~mrsynth.networks.inputs.resample_inputs`, the resampling prediction uses) and slices it along the spec's
axis, keeping its intensity statistics (prediction normalizes by the input's own, on its own grid).  The result
reads like a prepared subject: :class:`~.patches.PatchDataset` takes either.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from ..io import resolve_axis
from ..networks.inputs import InputSpec, onto_work_grid, resample_inputs
from .cache import PreparedSubject


def on_grid(subject: PreparedSubject, spec: InputSpec):
    """The subject as the spec's network reads it: itself for a model on the input's grid, else resampled onto
    the work grid (:class:`GridSubject`)."""
    return GridSubject(subject, spec) if spec.grid_mm else subject


class GridSubject:
    """A prepared subject resampled onto a work grid (in memory, on first use), slice-major along the spec's
    axis."""

    def __init__(self, subject: PreparedSubject, spec: InputSpec):
        self.subject, self.spec = subject, spec

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        volumes = self.subject.native()
        grid = onto_work_grid(self.spec, volumes.affine, volumes.t1.shape, self.subject.folder)
        resampled = resample_inputs(grid, volumes.affine, volumes.t1, bits=volumes.bits, t2=volumes.t2)
        axis = resolve_axis(self.spec.axis, grid.affine)
        front = lambda volume: None if volume is None else np.ascontiguousarray(np.moveaxis(volume, axis, 0))  # noqa: E731
        return {"t1": front(resampled["t1"]), "t2": front(resampled["t2"]), "tissue": front(resampled["bits"])}

    def array(self, name: str) -> np.ndarray:
        """``t1``, ``t2`` or ``tissue`` on the work grid (slice-major)."""
        return self._arrays[name]

    @property
    def id(self) -> str:
        return self.subject.id

    @property
    def folder(self) -> Path:
        return self.subject.folder

    @property
    def meta(self) -> dict:
        return self.subject.meta

    @property
    def has_t2(self) -> bool:
        return self.subject.has_t2

    @property
    def stats(self) -> dict:
        """The source's intensity statistics: prediction normalizes by the input's own."""
        return self.subject.stats

    @property
    def axis_request(self) -> str:
        return self.spec.axis

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        return tuple(self._arrays["t1"].shape)
