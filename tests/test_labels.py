"""The FreeSurfer code -> eight-class table and its bit-field coding."""

from __future__ import annotations

import numpy as np
import pytest

from mrsynth import labels
from mrsynth.data.cache import UnknownLabelWarning, list_prepared, prepare_all
from mrsynth.io import discover
from mrsynth.io.fixtures import make_subject, write_subject


def test_every_class_is_reachable_from_the_table():
    reachable = {labels.class_of(code) for code in labels.ASEG_CLASSES}
    reachable |= {labels.class_of(low) for low, _, _, _ in labels.RANGE_CLASSES}
    assert reachable | {"brain"} == set(labels.CLASSES)


@pytest.mark.parametrize(
    "code, expected",
    [
        (3, "grey_matter"),
        (1035, "grey_matter"),
        (2001, "grey_matter"),
        (11145, "grey_matter"),
        (2, "white_matter"),
        (3021, "white_matter"),
        (4035, "white_matter"),
        (5001, "white_matter"),
        (5002, "white_matter"),
        (251, "white_matter"),
        (85, "white_matter"),
        (77, "white_matter"),
        (4, "csf"),
        (24, "csf"),
        (31, "csf"),
        (14, "csf"),
        (10, "subcortical"),
        (17, "subcortical"),
        (16, "subcortical"),
        (28, "subcortical"),
        (30, "vessel"),
        (62, "vessel"),
        (7, "cerebellum"),
        (47, "cerebellum"),
        (0, "unknown"),
        (165, "unknown"),
        (258, "unknown"),
        (80, "unknown"),
        (511, None),
        (999, None),
    ],
)
def test_class_of(code, expected):
    assert labels.class_of(code) == expected


def test_bits_put_every_voxel_in_exactly_one_tissue_class_and_brain_on_top():
    seg = np.array([[[0, 3, 2, 24, 10, 30, 8, 999]]])
    mask = np.array([[[0, 1, 1, 1, 1, 1, 1, 1]]])
    bits, unknown = labels.tissue_bits(seg, mask)
    assert unknown == [999]
    channels = labels.expand_bits(bits)
    assert channels.shape == (8,) + seg.shape
    assert set(np.unique(channels)) == {-1.0, 1.0}
    on = channels[:, 0, 0, :] > 0
    assert on[labels.BIT["brain"]].tolist() == [False] + [True] * 7
    tissue = on[1:]
    assert (tissue.sum(axis=0) == 1).all()  # exactly one tissue class per voxel
    expected = ["unknown", "grey_matter", "white_matter", "csf", "subcortical", "vessel", "cerebellum", "unknown"]
    assert [labels.CLASSES[1 + int(np.argmax(tissue[:, i]))] for i in range(8)] == expected


def test_class_voxel_counts_match_the_label_map():
    fixture = make_subject(seed=1)
    bits, _ = labels.tissue_bits(fixture.seg, fixture.mask)
    counts = labels.class_voxel_counts(bits)
    assert counts["brain"] == int(fixture.mask.sum())
    assert counts["grey_matter"] == int(np.isin(fixture.seg, [3, 42]).sum())
    assert counts["cerebellum"] == int(np.isin(fixture.seg, [7, 8, 46, 47]).sum())
    assert counts["vessel"] == int((fixture.seg == 30).sum())
    assert all(counts[name] > 0 for name in labels.CLASSES)  # fixtures cover all eight classes
    assert sum(counts[name] for name in labels.CLASSES[1:]) == fixture.seg.size


def test_unknown_labels_are_warned_and_classed_unknown(tmp_path, run_cli):
    fixture = make_subject()
    fixture.seg[fixture.seg == 30] = 555  # replace the vessel with an undocumented code
    write_subject(tmp_path / "data", "x", fixture, "hcp")
    with pytest.warns(UnknownLabelWarning, match=r"\[555\]"):
        prepare_all(discover(tmp_path / "data"), tmp_path / "cache", progress=False)
    (prepared,) = list_prepared(tmp_path / "cache")
    assert prepared.meta["unknown_codes"] == [555]
    assert prepared.meta["class_voxels"]["vessel"] == 0
    code, _, err = run_cli("prepare", tmp_path / "data", "--out", tmp_path / "cache2", "--quiet")
    assert code == 0 and "warning: subject x: segmentation codes not in the label table" in err


def test_docs_label_table_matches_the_code():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "labels.md"
    assert docs.read_text() == labels.markdown_table(), "regenerate: mrsynth labels --markdown > docs/labels.md"


def _ball(shape, radius):
    centre = [(n - 1) / 2 for n in shape]
    return (np.linalg.norm(np.indices(shape).reshape(3, -1).T - centre, axis=1) <= radius).reshape(shape)


def test_hcp_brain_mask_is_the_pipelines_dilate_three_erode_two_fill_holes():
    from scipy import ndimage

    labelled = _ball((40, 40, 40), 12) & ~_ball((40, 40, 40), 4)  # a brain with an unlabelled ventricle
    labelled[20:, 19:21, :] = False  # and a 2 mm sulcus
    box = np.ones((3, 3, 3), bool)
    expected = ndimage.binary_fill_holes(
        ndimage.binary_erosion(ndimage.binary_dilation(labelled, box, iterations=3), box, iterations=2, border_value=0)
    )
    mask = labels.hcp_brain_mask(labelled, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(mask, expected)
    assert mask[20, 20, 20] and mask[30, 20, 20]  # ventricle filled, sulcus bridged
    assert not mask[20, 20, 34]  # 2 mm beyond the labelled tissue: outside
    mm = 2 * np.linalg.norm(np.indices((20, 20, 20)).reshape(3, -1).T - 9.5, axis=1).reshape((20,) * 3)
    coarse = labels.hcp_brain_mask(mm <= 12, (2.0, 2.0, 2.0))  # on 2 mm voxels: 1 mm of growth, to a voxel
    assert coarse[mm <= 13].all() and not coarse[mm > 16].any()  # (box-shaped: further along diagonals)


def test_dice_per_class_scores_a_segmentation_against_itself_and_a_shifted_copy():
    seg = np.zeros((8, 8, 8), np.int32)
    seg[2:6, 2:6, 2:6] = 2  # white matter
    seg[2:6, 2:6, 6] = 3  # grey matter
    brain = seg > 0
    same = labels.class_dice(seg, brain, seg, brain)
    assert same["white_matter"] == same["grey_matter"] == 1.0 and same["vessel"] == 0.0  # absent from both
    shifted = np.roll(seg, 2, axis=0)
    assert labels.class_dice(seg, brain, shifted, shifted > 0)["white_matter"] == 0.5  # half of each overlaps
