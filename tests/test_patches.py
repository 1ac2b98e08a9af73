"""Patch grid, the patch Dataset (channels, -1/+1 coding, normalization) and the splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrsynth import labels
from mrsynth.data import (
    PatchDataset,
    PatchGrid,
    PreparedSubject,
    Split,
    across_subject_split,
    list_prepared,
    prepare_all,
    within_subject_split,
)
from mrsynth.io import discover
from mrsynth.networks import InputSpec, Normalization


def _meta_only_subject(stored_shape, subject_id="hcp"):
    stats = {c: {"mean": 1.0, "voxels": 1, "brain_median": 1.0} for c in ("t1", "t2")}
    return PreparedSubject(Path("/nonexistent"), {"id": subject_id, "stored_shape": list(stored_shape), "stats": stats})


def test_paper_patch_counts_for_an_hcp_subject():
    grid = PatchGrid()  # 128 / 24
    assert grid.per_slice((260, 311)) == 48
    assert grid.count((260, 260, 311)) == 12_480
    dataset = PatchDataset([_meta_only_subject((260, 260, 311))], InputSpec(tissue_masks=True))
    assert len(dataset) == 12_480
    # centred grid: 6 starts along 260 from 6, 8 starts along 311 from 7
    assert grid.starts(260).tolist() == [6, 30, 54, 78, 102, 126]
    assert grid.starts(311).tolist() == [7, 31, 55, 79, 103, 127, 151, 175]
    assert dataset.locate(12_479) == (0, 259, 126, 175)


def test_slices_smaller_than_a_patch_get_one_centred_padded_patch():
    assert PatchGrid(64, 8).starts(40).tolist() == [-12]


@pytest.fixture
def prepared(hcp_root, tmp_path):
    prepare_all(discover(hcp_root), tmp_path / "cache", progress=False)
    return list_prepared(tmp_path / "cache")


def test_items_have_the_paper_channels_and_mask_coding(prepared):
    norm = Normalization.fit("paper", [s.stats for s in prepared])
    grid = PatchGrid(16, 8)
    dataset = PatchDataset(prepared, InputSpec(tissue_masks=True, normalization=norm), grid)
    item = len(dataset) // 2
    inputs, target = dataset[item]
    assert inputs.shape == (9, 16, 16) and target.shape == (1, 16, 16)
    assert inputs.dtype == target.dtype == torch.float32
    position, slice_index, row, col = dataset.locate(item)
    subject = prepared[position]
    bits = np.asarray(subject.array("tissue"))[slice_index, row : row + 16, col : col + 16]
    np.testing.assert_array_equal(inputs[1:].numpy(), labels.expand_bits(bits))
    assert set(torch.unique(inputs[1:]).tolist()) <= {-1.0, 1.0}
    raw_t1 = np.asarray(subject.array("t1"))[slice_index, row : row + 16, col : col + 16]
    np.testing.assert_allclose(inputs[0].numpy(), raw_t1 - norm.t1_offset, rtol=1e-6, atol=1e-3)
    single = PatchDataset(prepared, InputSpec(normalization=norm), grid)
    torch.testing.assert_close(single[item][0], inputs[:1])


def test_padding_reads_as_background(prepared):
    dataset = PatchDataset(prepared[:1], InputSpec(tissue_masks=True), PatchGrid(64, 8))
    inputs, target = dataset[0]
    # 40 x 48 slices in a 64 px patch: the corner lies outside the slice
    assert inputs[0, 0, 0] == 0 and target[0, 0, 0] == 0
    assert inputs[1 + labels.BIT["brain"], 0, 0] == -1
    assert inputs[1 + labels.BIT["unknown"], 0, 0] == 1


def test_normalization_is_stored_and_reapplied_identically(prepared, tmp_path):
    train = prepared[:2]
    for method in ("paper", "robust", "percentile", "histogram"):
        norm = Normalization.fit(method, [s.stats for s in train])
        norm.save(tmp_path / f"{method}.json")
        loaded = Normalization.load(tmp_path / f"{method}.json")
        assert loaded == norm
        a = PatchDataset(prepared, InputSpec(tissue_masks=True, normalization=norm), PatchGrid(16, 8))[100]
        b = PatchDataset(prepared, InputSpec(tissue_masks=True, normalization=loaded), PatchGrid(16, 8))[100]
        torch.testing.assert_close(a, b)
    paper = Normalization.fit("paper", [s.stats for s in train])
    expected = sum(s.stats["t1"]["mean"] * s.stats["t1"]["voxels"] for s in train) / sum(
        s.stats["t1"]["voxels"] for s in train
    )
    assert paper.t1_offset == pytest.approx(expected)
    # robust: brain tissue near 1 whatever the subject's gain
    robust = Normalization.fit("robust", [s.stats for s in train])
    for subject in prepared:
        brain_t2 = np.asarray(subject.array("t2"))[np.asarray(subject.array("tissue")) & 1 == 1]
        assert np.median(robust.transform("t2", subject.stats)(brain_t2)) == pytest.approx(1.0, rel=1e-4)
    assert robust.to_intensity()[0] == pytest.approx(np.mean([s.stats["t2"]["brain_median"] for s in train]))
    # percentile: each volume's brain 99th percentile at 1
    percentile = Normalization.fit("percentile", [s.stats for s in train])
    for subject in prepared:
        brain_t1 = np.asarray(subject.array("t1"))[np.asarray(subject.array("tissue")) & 1 == 1]
        assert np.percentile(percentile.transform("t1", subject.stats)(brain_t1), 99) == pytest.approx(1.0, rel=1e-4)


def test_within_subject_split_is_the_papers_80_1_19(tmp_path):
    split = within_subject_split("s", 12_480, seed=3)
    sizes = [len(split.patches[p]) for p in ("train", "val", "test")]
    assert sizes == [9_984, 125, 2_371]
    every = np.concatenate([split.part_indices(p) for p in ("train", "val", "test")])
    assert sorted(every.tolist()) == list(range(12_480))
    assert split.patches == within_subject_split("s", 12_480, seed=3).patches
    assert split.patches != within_subject_split("s", 12_480, seed=4).patches
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_split_feeds_the_dataset(prepared):
    split = within_subject_split(prepared[0].id, PatchGrid(16, 8).count(prepared[0].stored_shape), seed=0)
    dataset = PatchDataset(
        prepared[:1], InputSpec(tissue_masks=True), PatchGrid(16, 8), indices=split.part_indices("test")
    )
    assert len(dataset) == len(split.patches["test"])
    with pytest.raises(IndexError):
        PatchDataset(prepared[:1], InputSpec(tissue_masks=True), PatchGrid(16, 8), indices=[10**9])


def test_across_subject_split(tmp_path):
    split = across_subject_split(["a", "b"], ["c", "d"], val=["e"])
    assert split.part_indices("train") is None
    split.save(tmp_path / "s.json")
    assert Split.load(tmp_path / "s.json") == split
    with pytest.raises(ValueError, match="both train and test"):
        across_subject_split(["a"], ["a"])


def test_subject_without_t2_cannot_be_a_training_subject(tmp_path):
    from mrsynth.io.fixtures import make_subject, write_subject

    write_subject(tmp_path / "d", "p", make_subject(), "hcp", with_t2=False)
    prepare_all(discover(tmp_path / "d"), tmp_path / "c", progress=False)
    (subject,) = list_prepared(tmp_path / "c")
    with pytest.raises(ValueError, match="no T2w"):
        PatchDataset([subject], InputSpec(tissue_masks=True), PatchGrid(16, 8))
    inputs = PatchDataset([subject], InputSpec(tissue_masks=True), PatchGrid(16, 8), with_target=False)[0]
    assert inputs.shape == (9, 16, 16)


def _covered(dataset: PatchDataset, part: int = 0) -> np.ndarray:
    subject = dataset.parts[part].subject
    hits = np.zeros(subject.stored_shape, int)
    size = dataset.grid.size
    for item in range(len(dataset)):
        position, s, r, c = dataset.locate(item)
        if position != part:
            continue
        r0, c0 = max(r, 0), max(c, 0)
        hits[s, r0 : r + size, c0 : c + size] += 1
    return hits


def test_tiles_and_patches_both_cover_every_brain_slice(cache):
    subject = list_prepared(cache)[0]
    brain = labels.in_brain(np.asarray(subject.array("tissue")))
    for grid in (PatchGrid(16, 8), PatchGrid.tiles(16)):
        hits = _covered(PatchDataset([subject], InputSpec(tissue_masks=True), grid))
        slices_with_brain = brain.any(axis=(1, 2))
        assert (hits[slices_with_brain] > 0).any(axis=(1, 2)).all()
        if grid.cover:
            assert (hits > 0).all()  # tiles cover every pixel of every slice
            assert hits.mean() < 1.3  # ... about once
    # tile training uses far fewer, larger, non-overlapping items than the paper's grid
    assert PatchGrid.tiles(16).count(subject.stored_shape) < PatchGrid(16, 8).count(subject.stored_shape)


def test_brain_fractions_match_the_windows_and_min_brain_keeps_only_brain_tiles(cache):
    from mrsynth.training import build_data, load_config

    subjects = list_prepared(cache)
    for grid in (PatchGrid.tiles(16), PatchGrid(16, 8), PatchGrid.tiles(64)):  # 64: larger than a slice side
        dataset = PatchDataset(subjects, InputSpec(), grid)
        fractions = dataset.brain_fractions()
        np.testing.assert_allclose(fractions, dataset.brain_windows(range(len(dataset))).mean(axis=(1, 2)))
    everything = [
        "data.sampling=tiles",
        "data.tile_size=16",
        f"data.cache={cache}",
        "data.train=001,002",
        "data.test=003",
    ]
    full = build_data(load_config(None, everything)).train
    kept = build_data(load_config(None, everything + ["data.min_brain=0.25"])).train
    fractions = full.brain_fractions()
    assert 0 < (fractions >= 0.25).sum() == len(kept) < len(full)
    assert kept.brain_windows(range(len(kept))).mean(axis=(1, 2)).min() >= 0.25
    assert torch.equal(kept[0][0], full[int(np.flatnonzero(fractions >= 0.25)[0])][0])
