"""The viewer page (mrsynth.evaluation.viewer, `mrsynth view`): its volumes and table, and the page in a real
browser."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from mrsynth.evaluation import viewer
from mrsynth.io.fixtures import make_subject, save_nifti

CHROMIUM = os.environ.get("MRSYNTH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
#: .ci/run sets this: there the browser test must run, not skip.
BROWSER_REQUIRED = os.environ.get("MRSYNTH_REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def page_files(tmp_path):
    """A fixture subject and a prediction with a known error (a gain ramp along the first axis, a bright spot)."""
    subject = make_subject((40, 48, 36), seed=3)
    pred = subject.t2 * np.linspace(0.7, 1.3, 40)[:, None, None]
    pred[18:22, 20:24, 16:20] += subject.t2.max()
    files = {
        "t1": save_nifti(subject.t1, subject.affine, tmp_path / "t1.nii.gz"),
        "ref": save_nifti(subject.t2, subject.affine, tmp_path / "t2.nii.gz"),
        "mask": save_nifti(subject.mask, subject.affine, tmp_path / "mask.nii.gz"),
        "seg": save_nifti(subject.seg, subject.affine, tmp_path / "seg.nii.gz"),
        "pred": save_nifti(pred.astype(np.float32), subject.affine, tmp_path / "pred.nii.gz"),
    }
    return files


def _decode(data: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(data)))


def test_reduction_keeps_world_coordinates_and_values():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(10, 12, 9)).astype(np.float32)
    affine = np.array([[0, 0, 1.5, -10], [-2, 0, 0, 5], [0, 1, 0, 3], [0, 0, 0, 1]], float)
    box = (slice(2, 8), slice(1, 11), slice(0, 9))
    small = viewer.reduce(volume, box, 2)
    assert small.shape == (3, 5, 5)
    assert small[1, 2, 1] == pytest.approx(volume[4:6, 5:7, 2:4].mean(), rel=1e-5)
    # the reduced voxel's centre is the centre of its block in world coordinates
    corner = nib.affines.apply_affine(viewer.reduced_affine(affine, box, 2), [1, 2, 1])
    block = nib.affines.apply_affine(affine, [[4 + a, 5 + b, 2 + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    np.testing.assert_allclose(corner, block.mean(axis=0))
    assert viewer.shrink_factor((260, 311, 260)) == 2 and viewer.shrink_factor((100, 100, 100)) == 1


def test_page_volumes_are_the_inputs_cropped_and_the_table_is_the_error(page_files):
    page = viewer.load_page(
        page_files["pred"], page_files["t1"], page_files["ref"], page_files["mask"], page_files["seg"]
    )
    specs, shape, factor = viewer._specs(page, viewer.error_map(page), viewer.MAX_VOXELS)
    assert [s["name"] for s in specs] == ["t1", "pred", "ref", "error"] and factor == 1
    box = viewer.crop_box(page)
    for spec, volume in zip(specs, (page.t1, page.pred, page.ref)):
        image = _decode(spec["data"])
        assert image.shape == shape == page.pred[box].shape
        np.testing.assert_allclose(image.get_fdata(), volume[box], atol=np.abs(volume).max() / 32767)
        np.testing.assert_allclose(image.affine, viewer.reduced_affine(page.affine, box, 1))
    assert page.mask[box].sum() == page.mask.sum()  # the crop keeps the whole brain

    brain = page.mask
    error = page.pred / np.percentile(page.pred[brain], 99) - page.ref / np.percentile(page.ref[brain], 99)
    rows = {row[0]: row for row in viewer.error_table(page, viewer.error_map(page))}
    assert rows["brain"][1] == f"{brain.sum():,}"
    assert float(rows["brain"][3]) == pytest.approx(np.abs(error[brain]).mean(), abs=1e-3)
    assert {"grey matter", "white matter", "csf"} <= set(rows)
    assert float(rows["brain"][3]) > 0.01  # the ramp and the bright spot are errors


def test_view_refuses_bad_input_and_writes_nothing(page_files, tmp_path, run_cli):
    out = tmp_path / "view.html"
    code, _, err = run_cli("view", page_files["pred"], "--out", tmp_path / "view.png")
    assert code == 2 and "must be named .html" in err
    other = save_nifti(np.zeros((5, 5, 5), np.float32), np.eye(4), tmp_path / "other.nii.gz")
    code, _, err = run_cli("view", page_files["pred"], "--ref", other, "--out", out)
    assert code == 2 and str(other) in err and "grid" in err
    code, _, err = run_cli("view", page_files["pred"], "--seg", page_files["seg"], "--out", out)
    assert code == 2 and "needs the brain mask" in err
    assert not out.exists()


def _pixels(png: bytes) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_page_renders_in_chromium_and_follows_the_crosshair_and_window(page_files, tmp_path, run_cli):
    if CHROMIUM is None:
        if BROWSER_REQUIRED:
            pytest.fail(
                "MRSYNTH_REQUIRE_BROWSER=1 but no Chromium: install Debian's chromium (apt-get install chromium)"
            )
        pytest.skip("no Chromium here (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    out = tmp_path / "view.html"
    code, stdout, err = run_cli(
        "view",
        page_files["pred"],
        "--t1",
        page_files["t1"],
        "--ref",
        page_files["ref"],
        "--mask",
        page_files["mask"],
        "--seg",
        page_files["seg"],
        "--out",
        out,
    )
    assert code == 0, err
    assert "MB" in stdout and "niivue" in out.read_text()[:200_000].lower()

    problems = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1300})
            tab.on("console", lambda message: message.type == "error" and problems.append(message.text))
            tab.on("pageerror", lambda error: problems.append(str(error)))
            tab.on(
                "request",
                lambda request: (
                    request.url.startswith(("http:", "https:")) and problems.append(f"network request {request.url}")
                ),
            )
            tab.goto(out.as_uri())
            tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
            predicted = tab.locator("#view-1")
            before = _pixels(predicted.screenshot())
            tab.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)

            tab.locator("input[aria-label='crosshair k (z)']").fill("5")
            tab.wait_for_timeout(300)
            moved = _pixels(predicted.screenshot())

            error_view = tab.locator("#view-3")
            error_before = _pixels(error_view.screenshot())
            tab.locator("input[aria-label^='error'][class='high']").fill("100")
            tab.wait_for_timeout(300)
            error_after = _pixels(error_view.screenshot())
            status = tab.locator("#status").text_content()
        finally:
            browser.close()

    assert problems == [] and status == ""
    assert before[..., :3].std() > 0.05  # a picture, not a blank canvas
    changed = np.abs(moved - before)[..., :3].max(axis=-1) > 0.05
    assert changed.mean() > 0.01, "moving the crosshair slider did not change the views"
    changed = np.abs(error_after - error_before)[..., :3].max(axis=-1) > 0.05
    assert changed.mean() > 0.01, "narrowing the error map's window did not change its colours"
    assert (tmp_path / "viewer.png").stat().st_size > 10_000
