"""Tissue relaxation and proton-density values at 3 T, and which tissue each label code is.

Sources (every value below names one):

* [W99] Wansapura JP, Holland SK, Dunn RS, Ball WS. NMR relaxation times in the human
  brain at 3.0 tesla. J Magn Reson Imaging 1999;9:531-538 (frontal GM and WM, T1 and T2).
* [S05] Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T.
  Magn Reson Med 2005;54:507-512 (GM T2, blood, skeletal muscle).  For GM T2 we take
  S05's 99 ms rather than W99's frontal 110 ms, the top of the reported 3 T range: with
  110 ms no equivalent TE gives both the HCP templates' WM/GM and CSF/GM T2w ratios.
* [B04] de Bazelaire CMJ et al. MR imaging relaxation times of abdominal and pelvic
  tissues measured in vivo at 3.0 T. Radiology 2004;230:652-659 (subcutaneous fat).
* [E93] Ernst T, Kreis R, Ross BD. Absolute quantitation of water and metabolites in the
  human brain. I. Compartments and water. J Magn Reson B 1993;102:1-8 (water content,
  used as proton density: GM 0.78, WM 0.65, CSF 0.97).
* [A09] Atlas SW (ed.). Magnetic Resonance Imaging of the Brain and Spine, 4th ed.,
  table 2.1 (CSF T2 2200 ms at 3 T).
* [C10] The CSF T1 of 4.3 s assumed by FSL's asl_calib (Chappell et al., BASIL), in line
  with in-vivo CSF T1 measurements of 4.2-4.5 s.
* [D13] Du J, Bydder GM. Qualitative and quantitative ultrashort-TE MRI of cortical bone.
  NMR Biomed 2013;26:489-506 (cortical bone T2* about 0.4 ms: no signal at TE >= 2 ms).

Values marked *derived* are not measured: deep grey nuclei and brain stem are mixtures
of the GM and WM values (their T1 and T2 lie between cortex and white matter), the eye
is water (CSF values), and the proton densities of fat, muscle, blood and bone are
round figures of their water/fat proton content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    t1: float  # ms
    t2: float  # ms
    pd: float  # relative proton density (pure water = 1)
    source: str


def mix(a: Tissue, b: Tissue, weight_a: float, source: str) -> Tissue:
    """A *derived* tissue: relaxation rates and PD mixed linearly (fast-exchange model)."""
    rate = lambda x, y: 1.0 / (weight_a / x + (1 - weight_a) / y)
    return Tissue(rate(a.t1, b.t1), rate(a.t2, b.t2), weight_a * a.pd + (1 - weight_a) * b.pd, source)


GM = Tissue(1331.0, 99.0, 0.78, "T1 [W99], T2 [S05], PD [E93]")
WM = Tissue(832.0, 79.6, 0.65, "T1/T2 [W99], PD [E93]")
CSF = Tissue(4300.0, 2200.0, 0.97, "T1 [C10], T2 [A09], PD [E93]")

TISSUES: dict[str, Tissue] = {
    "background": Tissue(1000.0, 100.0, 0.0, "air: no protons"),
    "gm": GM,
    "wm": WM,
    "csf": CSF,
    "deep_gm": mix(GM, WM, 0.6, "derived: 60 % GM / 40 % WM"),
    "brainstem": mix(GM, WM, 0.3, "derived: 30 % GM / 70 % WM"),
    "cerebellar_gm": GM,
    "cerebellar_wm": WM,
    "blood": Tissue(1932.0, 275.0, 0.85, "T1/T2 [S05] (arterial blood), PD derived"),
    "fat": Tissue(382.0, 68.0, 0.9, "T1/T2 [B04] (subcutaneous fat), PD derived"),
    "muscle": Tissue(1412.0, 50.0, 0.75, "T1/T2 [S05] (skeletal muscle), PD derived"),
    "bone": Tissue(250.0, 0.4, 0.1, "T2* [D13]; T1 and PD derived (no signal at TE >= 2 ms)"),
    "eye": Tissue(4300.0, 2200.0, 0.99, "derived: vitreous taken as water (CSF values)"),
}
NAMES = tuple(TISSUES)
INDEX = {name: i for i, name in enumerate(NAMES)}

#: FreeSurfer code -> tissue, for label-map anatomies.  Codes not listed use
#: ``CLASS_TISSUE`` of their mrsynth.labels class.
CODE_TISSUE: dict[int, str] = {
    0: "background",
    2: "wm",
    41: "wm",
    77: "wm",
    85: "wm",
    251: "wm",
    252: "wm",
    253: "wm",
    254: "wm",
    255: "wm",
    5001: "wm",
    5002: "wm",
    3: "gm",
    42: "gm",
    7: "cerebellar_wm",
    46: "cerebellar_wm",
    8: "cerebellar_gm",
    47: "cerebellar_gm",
    16: "brainstem",
    126: "brainstem",
    30: "blood",
    62: "blood",
    165: "bone",
    258: "muscle",
    259: "eye",
}
CLASS_TISSUE = {
    "grey_matter": "gm",
    "white_matter": "wm",
    "csf": "csf",
    "subcortical": "deep_gm",
    "vessel": "blood",
    "cerebellum": "cerebellar_gm",
    "unknown": "muscle",
}

#: SynthSeg's undocumented extra-cerebral codes (500s): our reading of each, from where
#: it lies in the 20 shared label maps (distance from the brain, touching the air or
#: not, position), the tissue simulated for it and the FreeSurfer code written for it.
SYNTHSEG_EXTRA: dict[int, tuple[str, int, str]] = {
    502: ("bone", 165, "inferior-anterior face, many pieces: jaw / teeth"),
    506: ("eye", 259, "two blobs 7 cm anterior: the eyes"),
    507: ("muscle", 258, "largest head tissue, everywhere around the skull: soft tissue"),
    508: ("fat", 258, "around the eyes: orbital fat"),
    509: ("muscle", 258, "nose, touches the air: nasal mucosa and cartilage"),
    511: ("fat", 258, "outermost layer touching the air all round: scalp (skin and fat)"),
    512: ("brainstem", 126, "below the brain stem: spinal cord"),
    514: ("blood", 258, "thin pieces near the skull: extra-cerebral vessels"),
    515: ("bone", 165, "shell 10 mm from the brain: skull"),
    516: ("fat", 258, "between skull and scalp: diploe marrow and subcutaneous fat"),
    530: ("wm", 258, "behind the eyes: optic nerve"),
}


def tissue_of_code(code: int) -> str:
    """The simulated tissue of one label code."""
    from .. import labels

    if code in CODE_TISSUE:
        return CODE_TISSUE[code]
    if code in SYNTHSEG_EXTRA:
        return SYNTHSEG_EXTRA[code][0]
    return CLASS_TISSUE[labels.class_of(code) or "unknown"]


def written_code(code: int) -> int:
    """The FreeSurfer code written to ``wmparc`` for a label code (SynthSeg 500s remapped)."""
    return SYNTHSEG_EXTRA[code][1] if code in SYNTHSEG_EXTRA else code


def jittered(rng: np.random.Generator, relative_sd: float = 0.05) -> dict[str, Tissue]:
    """Per-subject tissue values: T1, T2 and PD each scaled by a log-normal factor."""
    out = {}
    for name, tissue in TISSUES.items():
        f1, f2, fp = np.exp(rng.normal(0.0, relative_sd, 3))
        out[name] = Tissue(
            tissue.t1 * f1, tissue.t2 * f2, tissue.pd * min(fp, 1.0 / max(tissue.pd, 1e-6)), tissue.source
        )
    return out
