"""The HCP ingestion path on real HCP-produced data (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json

from mrsynth import labels

FILES = {
    "T1w_acpc_dc.nii.gz": "MNI152_T1_1mm_brain.nii.gz",
    "T2w_acpc_dc.nii.gz": "MNI152_T2_1mm_brain.nii.gz",
    "wmparc.nii.gz": "Avgwmparc.nii.gz",  # float32 with a trailing singleton 4th axis
    "brainmask_fs.nii.gz": "MNI152_T1_1mm_brain_mask.nii.gz",
}


def test_hcp_mni152_templates_prepare_as_one_hcp_subject(tmp_path, run_cli):
    from conftest import require_shared

    source = require_shared("hcp-mni152")
    folder = tmp_path / "hcp" / "mni152" / "T1w"
    folder.mkdir(parents=True)
    for name, original in FILES.items():
        (folder / name).symlink_to(source / original)
    code, out, err = run_cli("prepare", tmp_path / "hcp", "--out", tmp_path / "cache", "--quiet")
    assert code == 0, err
    assert "prepared: 1" in out and "warning" not in err  # every Avgwmparc code is in the table
    code, out, _ = run_cli("inspect", tmp_path / "cache", "--json")
    (subject,) = json.loads(out)["subjects"]
    assert subject["shape"] == [182, 218, 182] and subject["slices"] == 182
    assert subject["patches"] == 182 * 3 * 4  # 182 x 218 slices: 3 x 4 patches of 128 at stride 24
    counts = subject["voxels_per_class"]
    assert all(counts[name] > 0 for name in labels.CLASSES)
    assert counts["grey_matter"] > counts["white_matter"] > counts["subcortical"] > counts["csf"]


def _prepared_hcp_template(tmp_path):
    from conftest import require_shared

    from mrsynth.data import list_prepared, prepare_all
    from mrsynth.io import discover

    source = require_shared("hcp-mni152")
    folder = tmp_path / "hcp" / "mni152" / "T1w"
    folder.mkdir(parents=True)
    for name, original in FILES.items():
        (folder / name).symlink_to(source / original)
    prepare_all(discover(tmp_path / "hcp"), tmp_path / "cache", progress=False)
    return list_prepared(tmp_path / "cache")[0]


def test_intensity_map_is_the_binned_brain_mean_that_a_few_lines_of_numpy_give(tmp_path):
    """On the real HCP T1w/T2w pair, the baseline equals a plain lookup table written in numpy."""
    import numpy as np
    import torch

    from mrsynth.evaluation import psnr_p99
    from mrsynth.networks import Normalization
    from mrsynth.training.baselines import fit_intensity_map_volumes

    subject = _prepared_hcp_template(tmp_path)
    norm = Normalization.fit("robust", [subject.stats])
    fitted = fit_intensity_map_volumes([subject], norm)  # what `baselines` and `crossval` fit across subjects

    volumes = subject.native()
    brain = volumes.brain
    t1 = volumes.t1 / subject.stats["t1"]["brain_median"]
    t2 = volumes.t2 / subject.stats["t2"]["brain_median"]
    # the reference: mean T2w in 64 quantile bins of the brain's T1w, linear between bin centres
    x, y = t1[brain].astype(np.float64), t2[brain].astype(np.float64)
    edges = np.quantile(x, np.linspace(0, 1, 65))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 63)
    centres = np.bincount(which, x, 64) / np.bincount(which, minlength=64)
    means = np.bincount(which, y, 64) / np.bincount(which, minlength=64)
    reference = np.interp(x, centres, means)
    with torch.no_grad():
        ours = fitted(torch.from_numpy(t1[brain].astype(np.float32)).reshape(1, 1, 1, -1)).numpy().ravel()
    assert np.max(np.abs(ours - reference)) < 1e-4  # normalized units: brain median 1
    prediction_ours, prediction_numpy = np.zeros_like(t2), np.zeros_like(t2)
    prediction_ours[brain], prediction_numpy[brain] = ours, reference
    assert abs(psnr_p99(prediction_ours, t2, brain) - psnr_p99(prediction_numpy, t2, brain)) < 0.01
    # the same table fitted on the volumes in memory, as the benchmarks fit theirs, predicting a whole volume
    from mrsynth.training import fit_table

    table = fit_table([(volumes.t1, volumes.t2, brain)])
    whole = table.predict_volume(volumes.t1, subject.affine, mask=brain) / table.info.norm().t2_reference_scale
    assert np.max(np.abs(whole[brain] - reference)) < 1e-4 and not whole[~brain].any()
