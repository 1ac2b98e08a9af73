"""The main job on the embedded default data (`make demo`).

For now: write a few fixture subjects, prepare them and print the dataset summary.
"""

from __future__ import annotations

from pathlib import Path

from .cache import list_prepared, prepare_all
from .fixtures import write_dataset
from .normalization import Normalization
from .patches import PatchDataset, PatchGrid, across_subject_split
from .subjects import discover


def run_demo(out: Path, n_subjects: int = 4) -> None:
    data, cache = out / "data", out / "cache"
    write_dataset(data, n_subjects, "hcp", shape=(64, 76, 60))
    report = prepare_all(discover(data), cache, progress=False)
    subjects = list_prepared(cache)
    split = across_subject_split([s.id for s in subjects[:-1]], [subjects[-1].id])
    train = [s for s in subjects if s.id in split.train]
    norm = Normalization.fit("robust", [s.stats for s in train])
    grid = PatchGrid(size=32, stride=16)
    dataset = PatchDataset(train, norm, grid, channels=9)
    inputs, target = dataset[0]
    print(f"prepared {len(report.by_status('prepared'))} subject(s) into {cache}")
    print(f"{'subject':<8} {'shape':<12} {'brain voxels':>12} {'patches':>8}")
    for s in subjects:
        print(f"{s.id:<8} {'x'.join(map(str, s.meta['shape'])):<12} "
              f"{s.meta['class_voxels']['brain']:>12} {grid.count(s.stored_shape):>8}")
    print(f"training patches ({grid.size} px, stride {grid.stride}): {len(dataset)}; "
          f"input {tuple(inputs.shape)}, target {tuple(target.shape)}")
