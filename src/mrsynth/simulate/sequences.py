"""T1-weighted sequences of other scanners than HCP's, and relaxation at 1.5 T: the pretraining engine's variety.

Besides the MPRAGE of :mod:`.signal` (drawn here with any TI, TR and flip angle):

* :class:`SPGR`: a spoiled gradient echo (FLASH, SPGR, T1-FFE), the steady state
  ``PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2)`` with ``E1 = exp(-TR / T1)`` (T2 stands in for T2*,
  which the tissue table does not hold; at TE of a few ms the difference is small);
* a spin-echo T1w (:class:`~.signal.SpinEcho` with short TR and TE), as many clinical and BraTS "T1n" scans
  are: weak grey/white contrast, CSF dark.

At 1.5 T, T1 is shorter than at 3 T and T2 about the same: :func:`at_field` scales each tissue's T1 and T2 by
ratios of measurements at both fields: grey and white matter T1 x0.78 (about what Rooney et al., Magn Reson
Med 2007;57:308-318, and Stanisz et al., Magn Reson Med 2005;54:507-512, found for white matter; Stanisz's own
grey-matter ratio, 0.62, rests on a 3 T value far above the 1331 ms of our table, so the white-matter ratio is
taken for both), blood T1 x0.75 and muscle T1 x0.71, T2 x0.88 (Stanisz); fat T1 x0.90 and T2 x0.85 (de
Bazelaire et al., Radiology 2004;230:652-659); CSF and the eye unchanged.
Derived tissues (deep grey nuclei, brain stem) are mixed again from the scaled grey and white matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import tissues as T


@dataclass(frozen=True)
class SPGR:
    """A spoiled gradient-echo steady state (FLASH / SPGR)."""

    tr: float = 20.0
    te: float = 4.0
    flip_deg: float = 25.0

    def signal(self, tissues: list[T.Tissue]) -> np.ndarray:
        t1, t2, pd = (np.array([getattr(t, f) for t in tissues]) for f in ("t1", "t2", "pd"))
        alpha, e1 = np.deg2rad(self.flip_deg), np.exp(-self.tr / t1)
        return pd * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1) * np.exp(-self.te / np.maximum(t2, 1e-3))


#: T1 and T2 at 1.5 T relative to 3 T, per tissue of :data:`.tissues.TISSUES` (see the module docstring).
AT_1_5T = {
    "wm": (0.78, 1.0),
    "cerebellar_wm": (0.78, 1.0),
    "gm": (0.78, 1.0),
    "cerebellar_gm": (0.78, 1.0),
    "blood": (0.75, 1.05),
    "muscle": (0.71, 0.88),
    "fat": (0.90, 0.85),
    # pathology (mrsynth.simulate.pathology): water-rich tissue, taken to change like white matter; necrosis as fluid
    "ms_lesion": (0.78, 1.0),
    "tumour": (0.78, 1.0),
    "oedema": (0.78, 1.0),
}
#: Tissues mixed from grey and white matter (:data:`.tissues.TISSUES`): the weight of grey matter.
MIXED = {"deep_gm": 0.6, "brainstem": 0.3}


def at_field(values: dict[str, T.Tissue], tesla: float) -> dict[str, T.Tissue]:
    """A subject's tissue values (at 3 T) as they are at ``tesla`` (3 or 1.5)."""
    if tesla == 3.0:
        return dict(values)
    if tesla != 1.5:
        raise ValueError(f"relaxation is known at 1.5 T and 3 T, not {tesla} T")
    out = {}
    for name, tissue in values.items():
        t1_ratio, t2_ratio = AT_1_5T.get(name, (1.0, 1.0))
        out[name] = replace(tissue, t1=tissue.t1 * t1_ratio, t2=tissue.t2 * t2_ratio)
    for name, weight in MIXED.items():
        if name in out:
            mixed = T.mix(out["gm"], out["wm"], weight, values[name].source)
            out[name] = replace(mixed, pd=values[name].pd)
    return out
