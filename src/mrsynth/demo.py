"""The main job on the embedded default data (`make demo`).

For now: simulate a few subjects from the package-shipped MNI152 anatomy, prepare them
and print the dataset summary.  Later issues grow it into train -> predict -> report.
"""

from __future__ import annotations

from pathlib import Path

from .cache import list_prepared, prepare_all
from .normalization import Normalization
from .patches import PatchDataset, PatchGrid, across_subject_split
from .simulate import simulate_dataset, write_figure
from .subjects import discover


def run_demo(out: Path, n_subjects: int = 4) -> None:
    data, cache = out / "data", out / "cache"
    folders = simulate_dataset(data, n_subjects, seed=0)
    figure = write_figure(folders, out / "simulated_subjects.png")
    report = prepare_all(discover(data), cache)
    subjects = list_prepared(cache)
    split = across_subject_split([s.id for s in subjects[:-1]], [subjects[-1].id])
    train = [s for s in subjects if s.id in split.train]
    norm = Normalization.fit("robust", [s.stats for s in train])
    grid = PatchGrid()
    dataset = PatchDataset(train, norm, grid, channels=9)
    inputs, target = dataset[len(dataset) // 2]
    print(f"\nsimulated {len(folders)} subject(s) into {data}; figure: {figure}")
    print(f"prepared {len(report.by_status('prepared'))} subject(s) into {cache}")
    print(f"{'subject':<8} {'shape':<12} {'brain cm3':>9} {'patches':>8}")
    for s in subjects:
        voxel_cm3 = s.meta["voxel_size"][0] * s.meta["voxel_size"][1] * s.meta["voxel_size"][2] / 1000
        print(f"{s.id:<8} {'x'.join(map(str, s.meta['shape'])):<12} "
              f"{s.meta['class_voxels']['brain'] * voxel_cm3:>9.0f} {grid.count(s.stored_shape):>8}")
    print(f"training set ({', '.join(split.train)}; test {', '.join(split.test)}): {len(dataset)} patches "
          f"of {grid.size} px, stride {grid.stride}; input {tuple(inputs.shape)}, target {tuple(target.shape)}")
