"""A brain mask and FreeSurfer-style tissue labels from a bare T1w, by a learned segmenter or atlas registration.

``mrsynth masks`` and ``--masks auto|learned|ants-atlas`` (prepare, predict, crossval) use it, so a
model with tissue masks runs on a T1w that has no FreeSurfer segmentation and no brain mask.

Method ``learned``: the 2D U-Net of :mod:`mrsynth.segmenter`, shipped with its weights, labels every
voxel with the paper's classes directly (one representative FreeSurfer code per class), its brain mask
made from them as HCP makes ``brainmask_fs``; no extra dependency, seconds per volume.

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

Everything is local: no download at run time.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from . import labels
from .errors import InputError
from .subjects import Subject, check_affine, load_subject

log = logging.getLogger("mrsynth")

METHOD = "ants-atlas"  # the atlas method's name in records
LEARNED = "learned"
#: Methods of ``compute_masks``: atlas registration (ANTs, the ``masks`` extra) or the learned segmenter.
METHODS = (METHOD, LEARNED)
DEFAULT_METHOD = LEARNED  # measured better for T2w prediction everywhere (benchmarks/RESULTS.md, masks)
VERSION = 4  # 2: badly fitting registrations tried again; 3: also as the other input kind; 4: refined brain to brain
ATLAS = "hcp-mni152"
REGISTRATION_MM = 2.0
#: Less signal than this (ml) can be a skull-stripped T1w (a head is 3-5 litres, a brain 1-1.8; a tightly cropped
#: head can have 2.4).
STRIPPED_MAX_ML = 2500.0
#: ... if at least this fraction of the voxels without signal lie exactly at the background value (stripping sets them).
STRIPPED_MIN_FLAT_BACKGROUND = 0.5
#: A registration whose warped template correlates less than this with the T1w inside the warped brain is
#: tried again with another sampling seed (fits seen: 0.77 for good registrations of simulated heads, 0.39-0.59 for
#: the ones that misplaced the brain; benchmarks/RESULTS.md, masks), at most REGISTRATION_ATTEMPTS times in all.
MIN_REGISTRATION_FIT = 0.65
REGISTRATION_ATTEMPTS = 3
#: A whole-head registration that fits badly is refined brain to brain, within this distance of the warped brain.
BRAIN_BAND_MM = 8.0
DEFAULT_ANTS_SEED = 20261125
#: The two kinds of input, registered to the template's head or to its brain.
WHOLE_HEAD, STRIPPED = "whole-head", "skull-stripped"
EXTRA_HINT = "automatic masks need the `masks` extra (antspyx): pip install 'mrsynth[masks]'"


@dataclass
class AutoMasks:
    """Masks computed from a T1w, on its grid."""

    brain: np.ndarray  # bool
    seg: np.ndarray  # int32 FreeSurfer codes (0 outside the brain)
    provenance: dict
    warnings: list[str] = field(default_factory=list)


#: Where masks come from: the subject's files, or computed from its T1w (this module) by the default method
#: (``auto``) or a named one.
SOURCES = ("files", "auto") + METHODS


def refuse_auto_on_cache(cache: str | Path) -> None:
    """Automatic masks asked for a prepared cache: its masks were fixed when it was prepared."""
    raise InputError("automatic --masks apply to data folders; a prepared cache has its masks already "
                     "(prepare it with --masks auto)", cache)


def check_source(masks: str) -> str:
    """A valid masks source with ``auto`` resolved: ``files`` or one of ``METHODS``."""
    if masks not in SOURCES:
        raise InputError(f"--masks must be one of {', '.join(SOURCES)}, got {masks!r}")
    return DEFAULT_METHOD if masks == "auto" else masks


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"the masks method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def describe(record: dict | None) -> str:
    """One word for a masks record: ``files`` or the automatic method and version."""
    if not record or record.get("method") in (None, "files"):
        return "files"
    return f"{record['method']} v{record['version']}"


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


def check_t1(t1: np.ndarray, affine: np.ndarray, source: str | Path) -> None:
    """Refuse what no registration can use: not 3D, non-finite, empty or constant, a singular affine."""
    if t1.ndim != 3 or min(t1.shape) < 8:
        raise InputError(f"expected a 3D T1w of at least 8 voxels per axis, got shape {tuple(t1.shape)}", source)
    if not np.isfinite(t1).all():
        raise InputError("contains NaN or Inf values", source)
    check_affine(affine, source)
    if float(t1.max()) == float(t1.min()):
        raise InputError(f"is constant ({float(t1.min())}): nothing to register", source)


def to_ants(volume: np.ndarray, affine: np.ndarray):
    """A NIfTI-style array and affine (RAS) as an ANTs image (ITK's LPS physical space).

    ITK needs orthonormal direction cosines: a sheared affine gets the nearest rotation.
    """
    ants = _ants()
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    u, _, vt = np.linalg.svd(lps[:, :3] / spacing)
    direction = u @ vt
    return ants.from_numpy(np.asarray(volume, np.float32), origin=tuple(lps[:, 3]), spacing=tuple(spacing),
                           direction=direction)


def looks_skull_stripped(t1: np.ndarray, affine: np.ndarray) -> bool:
    """Little signal (< ``STRIPPED_MAX_ML`` above 5 % of the nonzero voxels' 99th percentile), and the voxels
    without it mostly exactly at the background value."""
    nonzero = t1[t1 > 0]
    signal = t1 > 0.05 * np.percentile(nonzero, 99) if nonzero.size else np.zeros(t1.shape, bool)
    if signal.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000 >= STRIPPED_MAX_ML:
        return False
    quiet = ~signal
    return bool(quiet.any() and (t1[quiet] == t1.min()).mean() >= STRIPPED_MIN_FLAT_BACKGROUND)


def compute_masks(t1: np.ndarray, affine: np.ndarray, source: str | Path = "T1w",
                  method: str | None = None) -> AutoMasks:
    """Brain mask and FreeSurfer-style labels of one T1w (array + affine), on its grid, by ``method`` (one of
    ``METHODS``; ``None``: ``DEFAULT_METHOD``)."""
    method = check_method(method or DEFAULT_METHOD)
    check_t1(t1, affine, source)
    if method == LEARNED:
        return _learned_masks(t1, affine, source)
    return _atlas_masks(t1, affine, source)


def _learned_masks(t1: np.ndarray, affine: np.ndarray, source) -> AutoMasks:
    """The learned segmenter (:mod:`mrsynth.segmenter`): no registration, no extra dependency."""
    from . import segmenter

    stripped = looks_skull_stripped(t1, affine)
    log.info("%s: segmenting with the learned segmenter (%s input)", source, STRIPPED if stripped else WHOLE_HEAD)
    model, description = segmenter.load_model()
    result = segmenter.segment(t1, affine, model)
    brain = result.brain & (t1 > 0) if stripped else result.brain
    if not brain.any():
        raise InputError("the segmented brain mask is empty: is this a T1w of a head?", source)
    seg = np.where(brain, segmenter.class_codes(result.classes), 0).astype(np.int32)
    record = {"method": LEARNED, "version": description["version"], "weights_sha256": description["weights_sha256"],
              "input": STRIPPED if stripped else WHOLE_HEAD, "confidence": round(result.confidence, 3),
              "inverted_confidence": round(result.inverted_confidence, 3)}
    notes = []
    if result.looks_inverted:
        notes.append(_warn(f"{source}: the segmenter is surer of this image with its intensities inverted "
                           f"(confidence {result.inverted_confidence:.2f} against {result.confidence:.2f}): is this "
                           "a T2w rather than a T1w? The masks assume a T1w"))
    return AutoMasks(brain, seg, record, notes or _contrast_warnings(t1, seg, brain, source))


def _atlas_masks(t1: np.ndarray, affine: np.ndarray, source) -> AutoMasks:
    """Atlas registration with ANTs (the module docstring)."""
    ants = _ants()
    subject = to_ants(t1, affine)
    guess = STRIPPED if looks_skull_stripped(t1, affine) else WHOLE_HEAD
    head = ants.image_read(str(atlas_file("MNI152_T1_2mm.nii.gz")))
    brain_1mm = ants.image_read(str(atlas_file("MNI152_T1_1mm_brain_mask.nii.gz")))
    codes_1mm = _read_labels(ants)
    templates = {WHOLE_HEAD: head,
                 STRIPPED: head * ants.resample_image_to_target(brain_1mm, head, interp_type="linear")}
    fixed = ants.resample_image(subject, (REGISTRATION_MM,) * 3, use_voxels=False, interp_type=0)
    log.info("%s: registering the %s template (%s input)", source, ATLAS, guess)

    def fit_of(registration: dict) -> tuple[float, np.ndarray]:
        warped_brain = ants.apply_transforms(fixed=fixed, moving=brain_1mm, transformlist=registration["fwdtransforms"],
                                             interpolator="linear").numpy() > 0.5
        return registration_fit(registration["warpedmovout"].numpy(), fixed.numpy(), warped_brain), warped_brain

    def register(seed: int, kind: str) -> tuple[float, dict]:
        os.environ["ANTS_RANDOM_SEED"] = str(seed)  # fixes ANTs' sampling; ITK's threaded metric still varies
        registration = ants.registration(fixed=fixed, moving=templates[kind], type_of_transform="SyNRA",
                                         aff_iterations=(200, 100, 50), aff_shrink_factors=(4, 2, 1),
                                         aff_smoothing_sigmas=(2, 1, 0), reg_iterations=(40, 20, 0), verbose=False)
        return fit_of(registration)[0], registration

    def refine_on_brain(registration: dict, fit: float) -> tuple[float, dict, bool]:
        """A whole-head registration again, brain to brain (the fit inside a band around the warped brain): the
        scalp and skull no longer pull the brain out of place.  Kept only where it fits better."""
        from scipy import ndimage

        _, warped_brain = fit_of(registration)
        band = ndimage.binary_dilation(warped_brain, iterations=max(1, round(BRAIN_BAND_MM / REGISTRATION_MM)))
        mask = fixed.new_image_like(band.astype(np.float32))
        refined = ants.registration(fixed=fixed, moving=templates[STRIPPED], type_of_transform="SyN",
                                    initial_transform=[registration["fwdtransforms"][-1]], mask=mask,
                                    mask_all_stages=True, aff_iterations=(100, 50), aff_shrink_factors=(2, 1),
                                    aff_smoothing_sigmas=(1, 0), reg_iterations=(40, 20, 0), verbose=False)
        refined_fit = fit_of(refined)[0]
        return (refined_fit, refined, True) if refined_fit > fit else (fit, registration, False)

    user_seed = os.environ.get("ANTS_RANDOM_SEED")
    try:
        other = WHOLE_HEAD if guess == STRIPPED else STRIPPED
        fit, registration, attempts, kind = best_registration(register, int(user_seed or DEFAULT_ANTS_SEED), source,
                                                              (guess, other))
    finally:
        if user_seed is None:
            os.environ.pop("ANTS_RANDOM_SEED", None)
        else:
            os.environ["ANTS_RANDOM_SEED"] = user_seed
    refined = False
    if kind == WHOLE_HEAD and fit < MIN_REGISTRATION_FIT:
        fit, registration, refined = refine_on_brain(registration, fit)
    transforms = registration["fwdtransforms"]
    brain = ants.apply_transforms(fixed=subject, moving=brain_1mm, transformlist=transforms,
                                  interpolator="linear").numpy() > 0.5
    seg = ants.apply_transforms(fixed=subject, moving=codes_1mm, transformlist=transforms,
                                interpolator="genericLabel").numpy()
    if kind == STRIPPED:
        brain &= t1 > 0
    seg = np.where(brain, np.rint(seg), 0).astype(np.int32)
    if not brain.any():
        raise InputError("the registered brain mask is empty: is this a T1w of a head?", source)
    corrected = ants.n4_bias_field_correction(subject, mask=to_ants(brain.astype(np.float32), affine)).numpy()
    seg = refine_cerebrum(corrected, seg, brain, np.linalg.norm(affine[:3, :3], axis=0))
    notes = _contrast_warnings(t1, seg, brain, source)
    if fit < MIN_REGISTRATION_FIT:
        notes.append(f"{source}: the template fits this T1w poorly (correlation {fit:.2f} after {attempts} "
                     "registrations): check the masks in the QC figure before using them")
        log.warning(notes[-1])
    record = {"input": kind, "registration_fit": round(fit, 3),
              "registration_attempts": attempts, "refined_on_brain": refined}
    return AutoMasks(brain, seg, provenance() | record, notes)


def registration_fit(warped: np.ndarray, fixed: np.ndarray, brain: np.ndarray) -> float:
    """Pearson correlation of the warped template and the T1w inside the warped brain mask (-1..1; 0 if empty)."""
    if brain.sum() < 2:
        return 0.0
    a, b = (np.asarray(v, np.float64)[brain] for v in (warped, fixed))
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def best_registration(register, seed: int, source, kinds=(WHOLE_HEAD,), attempts: int = REGISTRATION_ATTEMPTS,
                      good_enough: float = MIN_REGISTRATION_FIT) -> tuple[float, dict, int, str]:
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
            log.info("%s: registration fit %.2f < %.2f, trying again with another sampling seed%s", source, fit,
                     good_enough, f" ({kinds[attempt + 1]} input)" if attempt + 1 < len(kinds) else "")
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


def _contrast_warnings(t1: np.ndarray, seg: np.ndarray, brain: np.ndarray, source) -> list[str]:
    """A warning when the input does not look like a T1w (white matter darker than grey matter)."""
    bits, _ = labels.tissue_bits(seg, brain)
    white = t1[labels.has_class(bits, "white_matter") & brain]
    grey = t1[labels.has_class(bits, "grey_matter") & brain]
    if white.size and grey.size and np.median(white) < np.median(grey):
        return [_warn(f"{source}: white matter is darker than grey matter (medians {np.median(white):.4g} < "
                      f"{np.median(grey):.4g}): is this a T2w rather than a T1w? The masks assume a T1w")]
    return []


def _warn(message: str) -> str:
    warnings.warn(message, stacklevel=3)
    log.warning(message)
    return message


#: Files written by :func:`write_masks`.
OUTPUTS = {"brain": "brainmask.nii.gz", "seg": "wmparc.nii.gz", "classes": "tissue_classes.nii.gz",
           "record": "masks.json", "figure": "masks_qc.png"}


def class_volume(seg: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The seven exclusive classes as one label volume: ``labels.CLASSES[i]`` is value ``i`` (0 outside the brain)."""
    return np.where(brain, labels.exclusive_class(labels.tissue_bits(seg, brain)[0]), 0).astype(np.uint8)


def write_masks(t1_path: str | Path, out_dir: str | Path, figure: bool = True,
                method: str | None = None) -> dict[str, Path]:
    """``mrsynth masks``: compute a T1w's masks (by ``method``, default ``DEFAULT_METHOD``) and write them beside
    a record of how (on the T1w's grid).

    Writes ``brainmask.nii.gz`` (0/1), ``wmparc.nii.gz`` (FreeSurfer codes),
    ``tissue_classes.nii.gz`` (1 grey matter ... 7 unknown, as ``labels.CLASSES``; 0 outside the
    brain), ``masks.json`` and the QC figure ``masks_qc.png``.  Everything is computed before the
    first file is written, and each file is written atomically.
    """
    import json
    import time

    import nibabel as nib

    from .atomic import remove_leftovers, write_file, write_text
    from .figures import masks_figure

    t1_path, out_dir = Path(t1_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("exists and is not a folder", out_dir)
    started = time.perf_counter()
    volumes = load_subject(Subject(id="input", t1=t1_path, seg=None, mask=None), need_labels=False)
    result = compute_masks(volumes.t1, volumes.affine, source=t1_path, method=method)
    seconds = time.perf_counter() - started
    header = nib.load(str(t1_path)).header
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    paths = {key: out_dir / name for key, name in OUTPUTS.items()}

    def save(key: str, volume: np.ndarray, dtype) -> None:
        image = nib.Nifti1Image(volume.astype(dtype), volumes.affine, header=header)
        image.set_data_dtype(dtype)
        image.header.set_slope_inter(1.0, 0.0)
        write_file(paths[key], lambda temporary: nib.save(image, str(temporary)))

    save("brain", result.brain, np.uint8)
    save("seg", result.seg, np.int32)
    save("classes", class_volume(result.seg, result.brain), np.uint8)
    record = {"input": str(t1_path.resolve()), "masks": result.provenance, "seconds": round(seconds, 1),
              "warnings": result.warnings, "brain_ml": float(result.brain.sum() * np.prod(volumes.zooms) / 1000),
              "tissue_classes": {str(i): name for i, name in enumerate(labels.CLASSES) if i},
              "class_voxels": labels.class_voxel_counts(labels.tissue_bits(result.seg, result.brain)[0])}
    write_text(paths["record"], json.dumps(record, indent=1) + "\n")
    if figure:
        write_file(paths["figure"], lambda temporary: masks_figure(
            volumes.t1, result.seg, result.brain, volumes.zooms, temporary,
            f"{t1_path.name}: automatic masks ({describe(result.provenance)})"))
    else:
        del paths["figure"]
    return paths
