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
