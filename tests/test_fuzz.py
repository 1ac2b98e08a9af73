"""Property-based fuzzing: generated NIfTI inputs through prepare, predict (a trained model, the shipped model
zero-shot, a fine-tuned one), masks and evaluate.

Anything but a clean refusal (InputError naming a file) or a correct result (finite output on the
input's grid) fails, and so does an input file changed by a prediction (its output may be asked to be an input).
A short tier runs in the quick loop; the long tier (>= 1,000 examples) is `slow` and `long`:
`make test-long`, not `make test`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import record
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mrsynth import masks
from mrsynth.data import PreparedSubject, prepare_subject
from mrsynth.errors import InputError
from mrsynth.evaluation import evaluate_volume
from mrsynth.inference import predict_files
from mrsynth.io import Subject
from mrsynth.masks import atlas, files
from mrsynth.masks.common import check_t1

SHAPES = st.sampled_from([(12, 14, 10), (12, 14, 10, 1), (12, 14), (12, 14, 10, 2), (1, 14, 10), (12, 1, 1)])
DTYPES = st.sampled_from(
    [np.float32, np.float64, np.int16, np.uint8, np.int64, np.complex64]
)  # nibabel writes no float16
AFFINES = st.sampled_from(["identity", "oblique", "singular", "nan", "huge", "flipped"])
VALUES = st.sampled_from(["normal", "nan", "inf", "constant", "zero", "negative", "huge"])
SLOPES = st.sampled_from([None, 0.0, 2.0, float("nan"), "intent", "units"])  # scl_slope, or another odd header field
OUTS = st.sampled_from(["new", "new", "new", "t1", "mask"])  # where the prediction is asked to go


def _affine(kind: str) -> np.ndarray:
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    if kind == "oblique":
        c, s = np.cos(0.4), np.sin(0.4)
        affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) * 1.2
    elif kind == "singular":
        affine[:, 2] = 0
    elif kind == "nan":
        affine[0, 3] = np.nan
    elif kind == "huge":
        affine[:3, :3] *= 1e12
    elif kind == "flipped":
        affine[0, 0] = -1.5
    return affine


def _values(kind: str, shape, rng) -> np.ndarray:
    data = rng.uniform(50, 150, shape)
    if kind == "nan":
        data.flat[0] = np.nan
    elif kind == "inf":
        data.flat[-1] = np.inf
    elif kind == "constant":
        data[:] = 7
    elif kind == "zero":
        data[:] = 0
    elif kind == "negative":
        data -= 1000
    elif kind == "huge":
        data *= 1e30
    return data


def _save(data: np.ndarray, dtype, affine_kind: str, slope, path: Path) -> Path:
    """Write ``data`` as ``dtype`` with the given affine, even one nibabel would refuse to build from."""
    with np.errstate(all="ignore"):
        cast = data.astype(dtype)
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(cast.shape)
    affine = _affine(affine_kind)
    try:
        header.set_sform(affine, code=1)
    except Exception:  # noqa: BLE001 - nibabel refuses some affines: store the default sform
        pass
    if slope == "intent":
        header.set_intent("vector", ())  # a label or statistic intent on what should be a plain image
    elif slope == "units":
        header.set_xyzt_units("micron", "msec")
    elif slope is not None:
        header["scl_slope"], header["scl_inter"] = slope, 0
    nib.save(nib.Nifti1Image(cast, None, header), str(path))
    return path


def _subject_files(folder: Path, shape, dtype, affine_kind, values, slope, seed: int) -> Subject:
    rng = np.random.default_rng(seed)
    t1 = _save(_values(values, shape, rng), dtype, affine_kind, slope, folder / "t1.nii.gz")
    clean = _values("normal", shape, rng)
    seg = _save(np.where(clean > 100, 2, 3).astype(np.int32), np.int32, affine_kind, None, folder / "seg.nii.gz")
    mask = _save((clean > 60).astype(np.uint8), np.uint8, affine_kind, None, folder / "mask.nii.gz")
    t2 = _save(clean, np.float32, affine_kind, None, folder / "t2.nii.gz")
    return Subject(id="fz", t1=t1, seg=seg, mask=mask, t2=t2)


def _prepare_is_clean(subject: Subject, cache: Path) -> None:
    result = prepare_subject(subject, cache)
    record("fuzz: prepare", "refused with a message naming the file" if result.status == "failed" else "prepared")
    if result.status == "failed":
        assert any(str(p) in result.message for p in subject.sources().values()) or "subject fz" in result.message, (
            result.message
        )
        assert not (cache / "fz").exists()
        return
    prepared = PreparedSubject.open(cache / "fz")
    assert np.isfinite(np.asarray(prepared.array("t1"))).all()


def _predict_is_clean(model_and_info, subject: Subject, out: Path, surface: str = "predict", mask=True) -> None:
    model, info = model_and_info
    inputs = {path: path.read_bytes() for path in (subject.t1, subject.seg, subject.mask)}
    existed = out.exists()
    try:
        predict_files(
            model, info, subject.t1, out, subject.seg if info.uses_masks else None, subject.mask if mask else None
        )
    except InputError as error:
        assert error.path is not None, str(error)
        assert out.exists() == existed
        record(f"fuzz: {surface}", "refused with a message naming the file")
        return
    finally:
        assert all(path.read_bytes() == data for path, data in inputs.items()), "an input was written over"
        record(f"fuzz: {surface}", "inputs unchanged")
    record(f"fuzz: {surface}", "predicted (finite, on the input's grid)")
    image = nib.load(str(out))
    source = nib.load(str(subject.t1))
    assert image.shape == source.shape[:3] and np.isfinite(image.get_fdata()).all()


def _evaluate_is_clean(seed: int, values: str) -> None:
    rng = np.random.default_rng(seed)
    ref = _values(values, (10, 11, 9), rng).astype(np.float32)
    mask = rng.random(ref.shape) > 0.5
    try:
        scores = evaluate_volume(ref * 1.1, ref, mask)
    except ValueError as error:  # the message says which volume (or mask) is unusable
        assert any(word in str(error) for word in ("reference", "prediction", "mask")), str(error)
        record("fuzz: evaluate", "refused, naming the volume")
        return
    record("fuzz: evaluate", "scored")
    assert np.isfinite(scores["mse"]) or values in ("huge", "inf", "nan")


@pytest.fixture(scope="module")
def tiny_model(trained):
    from mrsynth.networks import load_model

    run, _, _ = trained
    return load_model(run / "model")


@pytest.fixture(scope="module")
def models(tiny_model, trained, tmp_path_factory) -> dict:
    """Every kind of model a user predicts with: a trained one, the shipped one (zero-shot) and a fine-tuned one."""
    from mrsynth.networks import PRETRAINED, load_model
    from mrsynth.training import load_config, train

    _, _, cache = trained
    settings = [f"data.cache={cache}", "data.train=001", "data.test=003", "data.tile_size=32", "optim.epochs=1"]
    settings += ["data.max_patches_per_epoch=8", "optim.batch_size=4"]
    run = tmp_path_factory.mktemp("finetune") / "run"
    train(load_config(None, settings, ["finetune"]), run, progress=False)
    return {
        "predict": tiny_model,
        "predict zero-shot": load_model(PRETRAINED),
        "predict fine-tuned": load_model(run / "model"),
    }


def _threshold_masks(t1, affine, source="T1w", method=None):
    """Stands in for the registration (seconds per call): what is fuzzed is everything around it.  It keeps the
    methods' contract: an empty brain is refused, as both methods refuse it."""
    check_t1(t1, affine, source)
    brain = t1 > np.percentile(t1, 30)
    if not brain.any():
        raise InputError("the brain mask is empty: is this a T1w of a head?", source)
    return masks.AutoMasks(brain, np.where(brain, 2, 0).astype(np.int32), atlas.provenance())


def _masks_is_clean(subject: Subject, out: Path) -> None:
    try:
        written = masks.write_masks(subject.t1, out)
    except InputError as error:
        assert error.path is not None, str(error)
        assert not out.exists() or not any(out.iterdir())
        record("fuzz: masks (registration stubbed)", "refused with a message naming the file")
        return
    source = nib.load(str(subject.t1))
    for key in ("brain", "seg", "classes"):
        image = nib.load(str(written[key]))
        assert image.shape == source.shape[:3] and np.allclose(image.affine, source.affine, equal_nan=True)
    record("fuzz: masks (registration stubbed)", "masks written on the input's grid")


def _run(shape, dtype, affine_kind, values, slope, seed, models, out_kind="new") -> None:
    record("fuzz", "generated inputs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subject = _subject_files(tmp, shape, dtype, affine_kind, values, slope, seed)
        _prepare_is_clean(subject, tmp / "cache")
        out = {"new": tmp / "out" / "p.nii.gz", "t1": subject.t1, "mask": subject.mask}[out_kind]
        for surface, model in models.items():
            _predict_is_clean(model, subject, out, surface, mask=seed % 4 != 0 or surface == "predict")
            if out_kind == "new":
                out.unlink(missing_ok=True)
        original = files.compute_masks
        files.compute_masks = _threshold_masks  # write_masks computes them through this name
        try:
            _masks_is_clean(subject, tmp / "masks")
        finally:
            files.compute_masks = original
    _evaluate_is_clean(seed, values)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=SHAPES, dtype=DTYPES, affine_kind=AFFINES, values=VALUES, slope=SLOPES, seed=st.integers(0, 2**16), out=OUTS
)
# found by CI: the stand-in above found no brain in an int64 T1w whose NaN became the lowest int64 and, unlike the
# methods it stands in for, returned the empty mask: write_masks then crashed drawing it after writing three files
@example(shape=(12, 14, 10), dtype=np.int64, affine_kind="identity", values="nan", slope=None, seed=0, out="new")
def test_fuzz_short(models, shape, dtype, affine_kind, values, slope, seed, out):
    _run(shape, dtype, affine_kind, values, slope, seed, models, out)


@pytest.mark.slow
@pytest.mark.long
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=SHAPES,
    dtype=DTYPES,
    affine_kind=AFFINES,
    values=VALUES,
    slope=SLOPES,
    seed=st.integers(0, 2**32 - 1),
    out=OUTS,
)
def test_fuzz_long(models, shape, dtype, affine_kind, values, slope, seed, out):
    _run(shape, dtype, affine_kind, values, slope, seed, models, out)
