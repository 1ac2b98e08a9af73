"""MRI signal model: HCP-like T1w (MPRAGE) and T2w (spin-echo-like) contrasts, bias field, Rician noise.

T1w: the HCP MPRAGE (TR 2400 ms, TI 1000 ms, TE 2.14 ms, flip 8 degrees, echo spacing
7.6 ms).  The signal is the steady state of a Bloch simulation of the whole sequence per
tissue: inversion, recovery to the readout train, ``readout_pulses`` low-angle pulses
(the k-space centre at TI), recovery to the next inversion; repeated until the
longitudinal magnetisation no longer changes.  The train's saturation is what makes
MPRAGE's grey/white contrast milder than a plain inversion-recovery formula predicts.

T2w: ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` with TR 3200 ms.  HCP's T2w is a SPACE
sequence with a nominal TE of 565 ms; its variable refocusing flip angles mix stimulated
echoes into the signal, so its T2 contrast is that of a conventional spin echo at a much
shorter *equivalent* TE (Busse et al., Magn Reson Med 2006;55:1030-1037).  We use an
equivalent TE of 140 ms: with the tissue table it gives WM/GM 0.64 and CSF/GM 2.8 for
pure tissues; after partial volume, the simulated images land near the HCP template's
median ratios WM/GM 0.71 and CSF/GM 1.85 (tests/test_simulate.py checks them).  A
shorter TE raises WM/GM but drops CSF/GM below the template's, a longer one the reverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .tissues import Tissue


@dataclass(frozen=True)
class MPRAGE:
    tr: float = 2400.0
    ti: float = 1000.0
    te: float = 2.14
    flip_deg: float = 8.0
    echo_spacing: float = 7.6
    readout_pulses: int = 160  # assumed: 320 partition lines with 2x GRAPPA

    def signal(self, tissues: list[Tissue]) -> np.ndarray:
        t1 = np.array([t.t1 for t in tissues])
        t2 = np.array([t.t2 for t in tissues])
        pd = np.array([t.pd for t in tissues])
        alpha = np.deg2rad(self.flip_deg)
        half_train = self.readout_pulses // 2 * self.echo_spacing
        before = self.ti - half_train
        after = self.tr - self.ti - (self.readout_pulses - self.readout_pulses // 2) * self.echo_spacing
        if before <= 0 or after <= 0:
            raise ValueError("readout train does not fit between inversion and TR")

        def recover(mz, time):
            return 1.0 + (mz - 1.0) * np.exp(-time / t1)

        mz = np.ones_like(t1)
        for _ in range(200):
            start = mz
            mz = recover(-mz, before)
            for pulse in range(self.readout_pulses):
                if pulse == self.readout_pulses // 2:
                    centre = mz * np.sin(alpha)
                mz = recover(mz * np.cos(alpha), self.echo_spacing)
            mz = recover(mz, after)
            if np.max(np.abs(mz - start)) < 1e-7:
                break
        return pd * np.abs(centre) * np.exp(-self.te / t2)


@dataclass(frozen=True)
class SpinEcho:
    tr: float = 3200.0
    te: float = 140.0  # equivalent TE of HCP's SPACE T2w (see module docstring)

    def signal(self, tissues: list[Tissue]) -> np.ndarray:
        t1 = np.array([t.t1 for t in tissues])
        t2 = np.array([t.t2 for t in tissues])
        pd = np.array([t.pd for t in tissues])
        return pd * (1.0 - np.exp(-self.tr / t1)) * np.exp(-self.te / t2)


def protocol_dict(t1w: MPRAGE = MPRAGE(), t2w: SpinEcho = SpinEcho()) -> dict:
    return {"t1w": asdict(t1w), "t2w": asdict(t2w)}


def _upsampling_basis(length: int, control_points: int) -> np.ndarray:
    """``(length, control_points)`` cubic-spline weights: column j is control point j's footprint."""
    identity = np.eye(control_points)
    columns = [
        ndimage.zoom(identity[j], length / control_points, order=3, mode="nearest", grid_mode=True)[:length]
        for j in range(control_points)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def smooth_random_field(rng: np.random.Generator, shape, control_points: int = 4) -> np.ndarray:
    """A smooth zero-mean, unit-SD random field on ``shape``: a coarse random grid upsampled
    with cubic splines, one axis at a time (separable, so cheap even for large volumes)."""
    field = rng.standard_normal((control_points,) * 3).astype(np.float32)
    for axis, length in enumerate(shape):
        basis = _upsampling_basis(length, control_points)
        field = np.moveaxis(np.tensordot(basis, field, axes=([1], [axis])), 0, axis)
    sample = field[::4, ::4, ::4]
    return ((field - sample.mean()) / (sample.std() + 1e-12)).astype(np.float32)


def bias_field(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    """A smooth multiplicative bias field ``exp(strength * field)`` (receive-coil shading)."""
    return np.exp(strength * smooth_random_field(rng, shape)).astype(np.float32)


def rician(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of SD ``sigma`` per channel."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.hypot(real, imaginary).astype(np.float32)
