"""The ``ants-atlas`` masks method: the HCP MNI152 template registered to the T1w with ANTs.

Method ``ants-atlas``: the HCP MNI152 template shipped in ``assets/hcp-mni152`` (a 2 mm
whole-head T1w, its 1 mm brain mask and the 1 mm ``Avgwmparc`` label map) is registered to the
subject's T1w with ANTs (``antspyx``, the ``masks`` extra): a rigid, an affine, then SyN, all at 2 mm,
which is enough to carry labels and fast on a CPU.  The brain mask (linear interpolation,
threshold 0.5) and the labels (nearest label) are warped onto the subject's own grid, so any
orientation and voxel size works and the results lie on the input's grid.  A skull-stripped
input (less than ``STRIPPED_MAX_ML`` of signal, most of the rest exactly at the background value)
is registered to the template's brain instead of its head; where that guess fits badly, the other
one is tried (a tightly cropped head has little more signal than a brain).  A whole-head
registration that still fits badly is refined brain to brain (the metric restricted to a band
around the warped brain), the refinement kept where it fits better.  The labels are the HCP
average subject's wmparc codes, mapped to the paper's eight classes by :mod:`mrsynth.labels`
like any FreeSurfer segmentation.
"""

from __future__ import annotations

import os
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from .. import labels
from ..errors import InputError
from ..logs import log
from .common import STRIPPED, WHOLE_HEAD, AutoMasks, contrast_warnings, looks_skull_stripped

METHOD = "ants-atlas"  # the method's name in records
VERSION = 4  # 2: badly fitting registrations tried again; 3: also as the other input kind; 4: refined brain to brain
ATLAS = "hcp-mni152"
REGISTRATION_MM = 2.0
#: A registration whose warped template correlates less than this with the T1w inside the warped brain is
#: tried again with another sampling seed (fits seen: 0.77 for good registrations of simulated heads, 0.39-0.59 for
#: the ones that misplaced the brain; benchmarks/RESULTS.md, masks), at most REGISTRATION_ATTEMPTS times in all.
MIN_REGISTRATION_FIT = 0.65
REGISTRATION_ATTEMPTS = 3
#: A whole-head registration that fits badly is refined brain to brain, within this distance of the warped brain.
BRAIN_BAND_MM = 8.0
DEFAULT_ANTS_SEED = 20261125
EXTRA_HINT = "automatic masks need the `masks` extra (antspyx): pip install 'mrsynth[masks]'"


def provenance() -> dict:
    """What made automatic masks: recorded with every prepared subject and prediction that uses them."""
    return {"method": METHOD, "version": VERSION, "atlas": ATLAS, "antspyx": _version("antspyx")}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _ants():
    try:
        import ants
    except ImportError as error:
        raise InputError(f"{EXTRA_HINT} ({error})") from None
    return ants


def atlas_file(name: str) -> Path:
    return Path(str(resources.files("mrsynth") / "assets" / ATLAS / name))


def to_ants(volume: np.ndarray, affine: np.ndarray):
    """A NIfTI-style array and affine (RAS) as an ANTs image (ITK's LPS physical space).

    ITK needs orthonormal direction cosines: a sheared affine gets the nearest rotation.
    """
    ants = _ants()
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    u, _, vt = np.linalg.svd(lps[:, :3] / spacing)
    direction = u @ vt
    return ants.from_numpy(
        np.asarray(volume, np.float32), origin=tuple(lps[:, 3]), spacing=tuple(spacing), direction=direction
    )


class _Template:
    """The template registered to one subject: its head (or brain) and 1 mm brain mask, and the subject at 2 mm."""

    def __init__(self, subject):
        self.ants = ants = _ants()
        head = ants.image_read(str(atlas_file("MNI152_T1_2mm.nii.gz")))
        self.brain_1mm = ants.image_read(str(atlas_file("MNI152_T1_1mm_brain_mask.nii.gz")))
        self.images = {
            WHOLE_HEAD: head,
            STRIPPED: head * ants.resample_image_to_target(self.brain_1mm, head, interp_type="linear"),
        }
        self.fixed = ants.resample_image(subject, (REGISTRATION_MM,) * 3, use_voxels=False, interp_type=0)

    def fit_of(self, registration: dict) -> tuple[float, np.ndarray]:
        """How well a registration fits (:func:`registration_fit`), and the warped brain it was measured in."""
        warped_brain = self.warp(self.brain_1mm, registration, self.fixed, "linear") > 0.5
        return registration_fit(registration["warpedmovout"].numpy(), self.fixed.numpy(), warped_brain), warped_brain

    def warp(self, image, registration: dict, onto, interpolator: str) -> np.ndarray:
        return self.ants.apply_transforms(
            fixed=onto, moving=image, transformlist=registration["fwdtransforms"], interpolator=interpolator
        ).numpy()

    def register(self, seed: int, kind: str) -> tuple[float, dict]:
        """The template of ``kind`` (head or brain) registered rigidly, affinely, then by SyN, with ANTs' seed."""
        os.environ["ANTS_RANDOM_SEED"] = str(seed)  # fixes ANTs' sampling; ITK's threaded metric still varies
        registration = self.ants.registration(
            fixed=self.fixed,
            moving=self.images[kind],
            type_of_transform="SyNRA",
            aff_iterations=(200, 100, 50),
            aff_shrink_factors=(4, 2, 1),
            aff_smoothing_sigmas=(2, 1, 0),
            reg_iterations=(40, 20, 0),
            verbose=False,
        )
        return self.fit_of(registration)[0], registration

    def refine_on_brain(self, registration: dict, fit: float) -> tuple[float, dict, bool]:
        """A whole-head registration again, brain to brain (the fit inside a band around the warped brain): the
        scalp and skull no longer pull the brain out of place.  Kept only where it fits better."""
        from scipy import ndimage

        _, warped_brain = self.fit_of(registration)
        band = ndimage.binary_dilation(warped_brain, iterations=max(1, round(BRAIN_BAND_MM / REGISTRATION_MM)))
        refined = self.ants.registration(
            fixed=self.fixed,
            moving=self.images[STRIPPED],
            type_of_transform="SyN",
            initial_transform=[registration["fwdtransforms"][-1]],
            mask=self.fixed.new_image_like(band.astype(np.float32)),
            mask_all_stages=True,
            aff_iterations=(100, 50),
            aff_shrink_factors=(2, 1),
            aff_smoothing_sigmas=(1, 0),
            reg_iterations=(40, 20, 0),
            verbose=False,
        )
        refined_fit = self.fit_of(refined)[0]
        return (refined_fit, refined, True) if refined_fit > fit else (fit, registration, False)


def _best_of_both_kinds(template: _Template, guess: str, source) -> tuple[float, dict, int, str]:
    """:func:`best_registration` with ANTs' seed set for the attempts and restored after them."""
    user_seed = os.environ.get("ANTS_RANDOM_SEED")
    try:
        other = WHOLE_HEAD if guess == STRIPPED else STRIPPED
        return best_registration(template.register, int(user_seed or DEFAULT_ANTS_SEED), source, (guess, other))
    finally:
        if user_seed is None:
            os.environ.pop("ANTS_RANDOM_SEED", None)
        else:
            os.environ["ANTS_RANDOM_SEED"] = user_seed


def atlas_masks(t1: np.ndarray, affine: np.ndarray, source) -> AutoMasks:
    """Atlas registration with ANTs (the module docstring)."""
    subject = to_ants(t1, affine)
    guess = STRIPPED if looks_skull_stripped(t1, affine) else WHOLE_HEAD
    template = _Template(subject)
    log.info("%s: registering the %s template (%s input)", source, ATLAS, guess)
    fit, registration, attempts, kind = _best_of_both_kinds(template, guess, source)
    refined = False
    if kind == WHOLE_HEAD and fit < MIN_REGISTRATION_FIT:
        fit, registration, refined = template.refine_on_brain(registration, fit)
    brain = template.warp(template.brain_1mm, registration, subject, "linear") > 0.5
    seg = template.warp(_read_labels(template.ants), registration, subject, "genericLabel")
    if kind == STRIPPED:
        brain &= t1 > 0
    seg = np.where(brain, np.rint(seg), 0).astype(np.int32)
    if not brain.any():
        raise InputError("the registered brain mask is empty: is this a T1w of a head?", source)
    corrected = template.ants.n4_bias_field_correction(subject, mask=to_ants(brain.astype(np.float32), affine))
    seg = refine_cerebrum(corrected.numpy(), seg, brain, np.linalg.norm(affine[:3, :3], axis=0))
    notes = contrast_warnings(t1, seg, brain, source)
    if fit < MIN_REGISTRATION_FIT:
        notes.append(
            f"{source}: the template fits this T1w poorly (correlation {fit:.2f} after {attempts} "
            "registrations): check the masks in the QC figure before using them"
        )
        log.warning(notes[-1])
    record = {
        "input": kind,
        "registration_fit": round(fit, 3),
        "registration_attempts": attempts,
        "refined_on_brain": refined,
    }
    return AutoMasks(brain, seg, provenance() | record, notes)


def registration_fit(warped: np.ndarray, fixed: np.ndarray, brain: np.ndarray) -> float:
    """Pearson correlation of the warped template and the T1w inside the warped brain mask (-1..1; 0 if empty)."""
    if brain.sum() < 2:
        return 0.0
    a, b = (np.asarray(v, np.float64)[brain] for v in (warped, fixed))
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def best_registration(
    register,
    seed: int,
    source,
    kinds=(WHOLE_HEAD,),
    attempts: int = REGISTRATION_ATTEMPTS,
    good_enough: float = MIN_REGISTRATION_FIT,
) -> tuple[float, dict, int, str]:
    """Call ``register(seed, kind)`` -> (fit, registration) until a fit reaches ``good_enough`` or ``attempts`` are
    spent, each time with the next seed: the first with ``kinds[0]`` (the input kind guessed), the second with
    ``kinds[1]`` where given (the other guess), later ones with the kind that fitted best.  Returns the best
    (fit, registration), how many were run and the kind of the best."""
    best = None
    for attempt in range(attempts):
        kind = kinds[attempt] if attempt < len(kinds) else best[2]
        fit, registration = register(seed + attempt, kind)
        if best is None or fit > best[0]:
            best = (fit, registration, kind)
        if fit >= good_enough:
            break
        if attempt + 1 < attempts:
            log.info(
                "%s: registration fit %.2f < %.2f, trying again with another sampling seed%s",
                source,
                fit,
                good_enough,
                f" ({kinds[attempt + 1]} input)" if attempt + 1 < len(kinds) else "",
            )
    return best[0], best[1], attempt + 1, best[2]


#: The classes that :func:`refine_cerebrum` re-decides from intensities, with the code each gets by default.
REFINED = ("csf", "grey_matter", "white_matter")
PRIOR_SIGMA_MM = 2.0  # smoothing of the warped labels into prior probabilities
PRIOR_FLOOR = 0.1  # weight of a flat prior: the intensities can overrule the atlas everywhere
EM_ITERATIONS = 8


def refine_cerebrum(t1: np.ndarray, seg: np.ndarray, brain: np.ndarray, zooms) -> np.ndarray:
    """CSF, grey and white matter of the cerebrum re-decided voxel by voxel from the T1w intensity.

    An average subject's labels, warped at 2 mm, cannot follow one subject's gyri.  Inside the
    brain, wherever the warped label is CSF, grey matter, white matter or unlabelled (the sulcal
    and extra-cerebral CSF of the brain mask), a three-class Gaussian mixture of the T1w
    intensity (EM, the smoothed warped labels as spatial priors, as in atlas-based tissue
    segmentation) chooses the class.  A voxel that changes class takes the code of the nearest
    voxel of its new class (a cortical or white-matter parcel), or 24 (CSF) where there is none.
    Subcortical structures, cerebellum and vessels keep their warped labels.
    """
    from scipy import ndimage

    bits, _ = labels.tissue_bits(seg, brain)
    warped = np.stack([labels.has_class(bits, name) for name in REFINED])
    warped[0] |= brain & (seg == 0)  # unlabelled inside the brain mask: CSF around the brain
    region = brain & warped.any(axis=0)
    if region.sum() < 100:
        return seg
    sigma = [PRIOR_SIGMA_MM / z for z in zooms]
    prior = np.stack([ndimage.gaussian_filter(w.astype(np.float32), sigma)[region] for w in warped])
    prior = (1 - PRIOR_FLOOR) * prior / np.maximum(prior.sum(axis=0), 1e-6) + PRIOR_FLOOR / len(REFINED)
    values = t1[region].astype(np.float64)
    posterior = np.stack([w[region] for w in warped]).astype(np.float64)  # start from the atlas
    for _ in range(EM_ITERATIONS):
        weight = posterior.sum(axis=1) + 1e-9
        mean = posterior @ values / weight
        var = np.maximum((posterior * (values - mean[:, None]) ** 2).sum(axis=1) / weight, 1e-6 * values.var())
        likelihood = np.exp(-0.5 * (values - mean[:, None]) ** 2 / var[:, None]) / np.sqrt(var[:, None])
        posterior = prior * likelihood
        posterior /= np.maximum(posterior.sum(axis=0), 1e-300)
    choice = np.zeros(t1.shape, np.int8) - 1
    choice[region] = np.argmax(posterior, axis=0)
    out = seg.copy()
    for index, name in enumerate(REFINED):
        changed = (choice == index) & ~(warped[index] & (seg != 0))
        if not changed.any():
            continue
        source = warped[index] & (seg != 0)
        if name == "csf" or not source.any():
            out[changed] = 24
            continue
        _, nearest = ndimage.distance_transform_edt(~source, sampling=zooms, return_indices=True)
        out[changed] = seg[tuple(axis[changed] for axis in nearest)]
    return out


def _read_labels(ants):
    """Avgwmparc as published (float32 with a trailing singleton axis) as a 3D ANTs image."""
    import nibabel as nib

    image = nib.load(str(atlas_file("Avgwmparc.nii.gz")))
    codes = np.rint(np.asarray(image.dataobj).reshape(image.shape[:3]))
    return to_ants(codes, image.affine)
