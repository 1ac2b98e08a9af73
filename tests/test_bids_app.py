"""The BIDS App (`mrsynth bids BIDS_DIR OUTPUT_DIR participant|group`, mrsynth.experiments.bids_app): derivatives
that pybids reads, reports that a browser renders offline, skipping what is done, two participant jobs and a group
job at once into one folder, a killed run that leaves no partial derivative, and bad input refused.

The dataset is made by the embedded simulator (``simulate_dataset``) from a small label map (the fixture head's, a
64 x 76 x 60 mm head), so that the shipped model and the learned segmenter take seconds: T1w only, two
participants, the first with two sessions.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import write_label_map
from test_viewer import BROWSER_REQUIRED, CHROMIUM, CHROMIUM_FLAGS

from mrsynth.experiments import bids_app
from mrsynth.inference.derivatives import sidecar_path
from mrsynth.io.fixtures import make_subject

IMAGES = {("01", "1"): "sub-01_ses-1", ("01", "2"): "sub-01_ses-2", ("02", None): "sub-02"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A raw BIDS dataset of T1w only, simulated from the fixture head's label map."""
    from mrsynth.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("bids-app")
    write_label_map(root / "maps", shape=(64, 76, 60))
    folders = simulate_dataset(root / "sim", len(IMAGES), labels=root / "maps", voxel_size=1.2, seed=0, progress=False)
    bids = root / "bids"
    for folder, ((participant, session), prefix) in zip(folders, IMAGES.items()):
        anat = bids / f"sub-{participant}" / (f"ses-{session}" if session else "") / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        shutil.copy(next(Path(folder).rglob("T1w_acpc_dc.nii.gz")), anat / f"{prefix}_T1w.nii.gz")
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "simulated", "BIDSVersion": "1.9.0"}))
    (bids / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    return bids


@pytest.fixture(scope="module")
def derivatives(dataset, tmp_path_factory) -> Path:
    """The participant level for everyone, then the group level (in-process, through the command line)."""
    from mrsynth import cli

    out = tmp_path_factory.mktemp("out") / "derivatives" / "mrsynth"
    assert cli.main(["bids", str(dataset), str(out), "participant", "--quiet"]) == 0
    assert cli.main(["bids", str(dataset), str(out), "group", "--quiet"]) == 0
    return out


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "mrsynth", "bids", *map(str, args)]


def _state(out: Path) -> dict[str, str]:
    """Each T1w's state in an output folder: complete (every output, each readable), absent, or partial."""
    states = {}
    for (participant, session), prefix in IMAGES.items():
        image = bids_app.Image(prefix, participant, session, Path("unused"))
        present = [(out / path).exists() for path in image.files()]
        if all(present):
            for path in image.files():
                if path.name.endswith(".nii.gz"):
                    assert np.isfinite(np.asarray(nib.load(str(out / path)).dataobj)).all()
                elif path.suffix == ".json":
                    json.loads((out / path).read_text())
            states[prefix] = "complete"
        else:
            states[prefix] = "absent" if not any(present) else "partial"
    return states


def test_participant_then_group_gives_derivatives_that_pybids_reads_with_their_provenance(dataset, derivatives):
    bids = pytest.importorskip("bids", reason="pybids is in the test extras: pip install -e '.[test]'")
    layout = bids.BIDSLayout(dataset, derivatives=derivatives, validate=True)
    found = {
        key: layout.get(scope="mrsynth", desc=desc, suffix=suffix, extension=".nii.gz")
        for key, (desc, suffix) in bids_app.OUTPUTS.items()
    }
    for key, files in found.items():
        entities = sorted((f.entities["subject"], f.entities.get("session")) for f in files)
        assert entities == [("01", "1"), ("01", "2"), ("02", None)], key
    description = json.loads((derivatives / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mrsynth"

    for image in found["T2w"]:
        session = image.entities.get("session") or bids.layout.Query.NONE
        raw = layout.get(scope="raw", subject=image.entities["subject"], session=session, suffix="T1w")
        t2w, source = nib.load(image.path), nib.load(raw[0].path)
        assert t2w.shape == source.shape and np.allclose(t2w.affine, source.affine)
        metadata = layout.get_metadata(image.path)
        record = metadata["mrsynth"]
        assert metadata["Sources"] == [f"bids:raw:{Path(raw[0].path).relative_to(dataset).as_posix()}"]
        assert record["model"]["name"].startswith("pretrained") and len(record["model"]["weights_sha256"]) == 64
        assert record["inputs"]["t1"]["sha256"] == bids_app.file_sha256(Path(raw[0].path))
        assert record["command"] == f"mrsynth bids {dataset} {derivatives} participant --quiet"
        assert set(record["checks"]) >= {"contrast", "brain_ml", "mean_uncertainty", "outside_training_range"}
        brain = np.asarray(nib.load(image.path.replace("desc-mrsynth_T2w", "desc-brain_mask")).dataobj) > 0
        uncertainty = np.asarray(nib.load(image.path.replace("_T2w", "_uncertainty")).dataobj)
        assert brain.any() and not uncertainty[~brain].any() and uncertainty[brain].max() > 0

    rows = (derivatives / bids_app.SUMMARY).read_text().splitlines()
    assert rows[0].split("\t") == list(bids_app.SUMMARY_COLUMNS) and len(rows) == 4
    index = (derivatives / bids_app.INDEX).read_text()
    assert "sub-01.html#sub-01_ses-2" in index and "sub-02.html#sub-02" in index
    assert not list(derivatives.rglob(f"{bids_app.STAGING}*")) and not list(derivatives.rglob(".*.tmp*"))


def test_the_index_and_a_report_render_offline_in_chromium(derivatives, tmp_path):
    if CHROMIUM is None:
        if BROWSER_REQUIRED:
            pytest.fail("MRSYNTH_REQUIRE_BROWSER=1 but no Chromium: install Debian's chromium")
        pytest.skip("no Chromium here (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    problems, shots = [], {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.on("pageerror", lambda error: problems.append(str(error)))
            tab.on("request", lambda r: r.url.startswith(("http:", "https:")) and problems.append(r.url))
            for name in (bids_app.INDEX, "sub-01.html"):
                tab.goto((derivatives / name).as_uri())
                tab.wait_for_selector("body[data-ready=true]")
                shots[name] = tab.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                if name == "sub-01.html":
                    widths = tab.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
                    links = tab.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
        finally:
            browser.close()
    assert problems == []
    assert len(widths) == 2 and min(widths) > 300  # each session's mosaic decoded
    assert all((derivatives / link).exists() for link in links)  # the viewer pages
    for name, shot in shots.items():
        from test_viewer import _pixels

        assert _pixels(shot)[..., :3].std() > 0.05, f"{name} rendered blank"


def test_a_rerun_skips_every_finished_t1w_without_computing(dataset, derivatives, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in derivatives.rglob("*") if p.is_file()}

    def refuse(*args, **kwargs):
        raise AssertionError("a finished T1w was computed again")

    monkeypatch.setattr(bids_app, "synthesize", refuse)
    outcome = bids_app.participant(dataset, derivatives)
    assert sorted(outcome.skipped) == sorted(IMAGES.values()) and not outcome.written and not outcome.failed
    assert {p: p.stat().st_mtime_ns for p in derivatives.rglob("*") if p.is_file()} == before


def test_two_participant_jobs_and_a_group_job_at_once_into_one_folder(dataset, tmp_path):
    out = tmp_path / "out"
    jobs = [
        subprocess.Popen(
            _cli(dataset, out, "participant", "--participant-label", label, "--quiet"),
            stderr=subprocess.PIPE,
            text=True,
        )
        for label in ("01", "sub-02")
    ]
    marker = out / sidecar_path(bids_app.Image("sub-02", "02", None, Path()).path("T2w"))
    while not marker.exists() and all(job.poll() is None for job in jobs):
        time.sleep(0.2)
    group = subprocess.run(_cli(dataset, out, "group", "--quiet"), capture_output=True, text=True)
    errors = [job.communicate()[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], errors
    assert group.returncode == 0, group.stderr  # sub-02 was finished when it looked: what it listed is complete
    listed = [row.split("\t")[0] for row in (out / bids_app.SUMMARY).read_text().splitlines()[1:]]
    assert "sub-02" in listed and all(_state(out)[prefix] == "complete" for prefix in listed)
    assert set(_state(out).values()) == {"complete"}
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "mrsynth"
    assert not list(out.rglob(f"{bids_app.STAGING}*")) and not list(out.rglob(".*tmp*"))


def _killed_after(dataset: Path, out: Path, prefix: str, how: int) -> str:
    """Start a participant run, send ``how`` half a second after ``prefix`` is finished (inside the next T1w's
    work); its standard error."""
    participant, session = next(key for key, name in IMAGES.items() if name == prefix)
    marker = out / sidecar_path(bids_app.Image(prefix, participant, session, Path()).path("T2w"))
    job = subprocess.Popen(_cli(dataset, out, "participant", "--quiet"), stderr=subprocess.PIPE, text=True)
    while not marker.exists() and job.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    job.send_signal(how)
    _, err = job.communicate()
    if how == signal.SIGTERM:
        assert job.returncode == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in err, err
    return err


def test_killed_runs_leave_no_partial_derivative_and_the_next_run_finishes(dataset, tmp_path):
    out = tmp_path / "out"
    _killed_after(dataset, out, "sub-01_ses-1", signal.SIGTERM)  # a cluster's time limit: cleans up itself
    assert not list(out.rglob(f"{bids_app.STAGING}*"))
    states = _state(out)
    assert "partial" not in states.values() and states["sub-01_ses-1"] == "complete", states
    _killed_after(dataset, out, "sub-01_ses-2", signal.SIGKILL)  # no clean-up: only a hidden staging folder stays
    states = _state(out)
    assert "partial" not in states.values() and states["sub-01_ses-2"] == "complete", states
    done = subprocess.run(_cli(dataset, out, "participant", "--quiet"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(_state(out).values()) == {"complete"} and not list(out.rglob(f"{bids_app.STAGING}*"))


def test_bad_input_is_refused_naming_it_and_a_bad_t1w_does_not_stop_the_others(dataset, tmp_path, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli("bids", tmp_path / "nowhere", out, "participant")
    assert code == 2 and "not a BIDS dataset" in err and not out.exists()
    code, _, err = run_cli("bids", dataset, out, "participant", "--participant-label", "07")
    assert code == 2 and "participant label(s) 07" in err and not out.exists()
    code, _, err = run_cli("bids", dataset, dataset, "participant")
    assert code == 2 and "must not be the dataset" in err
    code, _, err = run_cli("bids", dataset, dataset / "sub-01" / "out", "participant")
    assert code == 2 and "must not be the dataset or inside it" in err and not (dataset / "sub-01" / "out").exists()
    code, _, err = run_cli("bids", dataset, out, "group")
    assert code == 2 and "run the participant level first" in err

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    t1 = broken / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz"
    image = nib.load(str(t1))
    nib.save(nib.Nifti1Image(np.full(image.shape, 7, np.float32), image.affine), str(t1))
    before = t1.read_bytes()
    code, stdout, err = run_cli("bids", broken, out, "participant", "--participant-label", "01", "--quiet")
    assert code == 2 and "1 T1w could not be synthesized: sub-01_ses-2" in err and str(t1) in err
    states = _state(out)
    assert states["sub-01_ses-1"] == "complete" and states["sub-01_ses-2"] == "absent"
    assert "Not synthesized" in (out / "sub-01.html").read_text() and t1.read_bytes() == before


def test_the_uncertainty_map_is_the_local_spread_and_leaves_the_prediction_as_it_is():
    from mrsynth.inference.predict import predict_arrays
    from mrsynth.inference.uncertainty import local_spread, predict_with_uncertainty, uncertainty_map
    from mrsynth.networks import PRETRAINED, load_model

    step = np.zeros((40, 12, 12), np.float32)
    step[20:] = 100  # an edge: the spread peaks there and falls off over a few sigma (3 mm)
    spread = local_spread(step, (1, 1, 1))
    assert spread[:5].max() < 0.5 and spread[19:21].min() > 30 and spread[20].max() > spread[26].max() > 1
    assert np.allclose(local_spread(np.full((8, 8, 8), 5.0), (1, 2, 3)), 0, atol=1e-4)
    brain = np.zeros(step.shape, bool)
    brain[10:30] = True
    assert not uncertainty_map(step, brain, (1, 1, 1))[~brain].any()

    subject = make_subject((36, 40, 32), voxel_size=1.5)
    model, info = load_model(PRETRAINED)
    t2w, uncertainty = predict_with_uncertainty(model, info, subject.t1, subject.affine, subject.mask > 0)
    assert np.array_equal(t2w, predict_arrays(model, info, subject.t1, subject.affine, None, subject.mask > 0))
    assert uncertainty.shape == t2w.shape and uncertainty[subject.mask > 0].max() > 0


def test_the_quality_checks_warn_on_a_small_mask_and_an_out_of_range_t1w():
    from mrsynth.inference.synthesis import quality_checks
    from mrsynth.networks import Transform

    brain = np.zeros((40, 40, 40), bool)
    brain[10:30, 10:30, 10:30] = True
    t1 = np.where(brain, 1.0, 0.0).astype(np.float32)
    record = {"confidence": 0.8, "inverted_confidence": 0.6}
    checks, warnings = quality_checks(t1, brain, (1, 1, 1), Transform(), np.ones(t1.shape), record, "t1.nii")
    assert checks["contrast"] == "T1w-like" and checks["brain_ml"] == 8.0 and len(warnings) == 1
    assert "8 ml, outside the 700-2,200 ml" in warnings[0]
    t1[15:25, 15:25, 15:25] = 9.0  # 12.5 % of the brain at 9 brain medians
    checks, warnings = quality_checks(t1, brain, (5, 5, 5), Transform(), np.ones(t1.shape), record, "t1.nii")
    assert checks["outside_training_range"] == 0.125 and len(warnings) == 1 and "12.5% of the brain" in warnings[0]
