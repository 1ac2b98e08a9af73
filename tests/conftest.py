"""Shared test helpers: tiny generated subjects, the CLI runner, the real-data folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrsynth import cli
from mrsynth.io.fixtures import make_subject, save_nifti, write_dataset, write_subject

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(*args):
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def hcp_root(tmp_path):
    """Three tiny subjects in the HCP release layout."""
    return write_dataset(tmp_path / "hcp", 3, "hcp")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Three tiny fixture subjects, prepared (one per test module)."""
    from mrsynth.data import prepare_all
    from mrsynth.io import discover

    root = tmp_path_factory.mktemp("data")
    write_dataset(root, 3, "hcp", shape=(40, 48, 36))
    prepare_all(discover(root), root.parent / "cache", progress=False)
    return root.parent / "cache"


#: A tiny training configuration for fixture subjects: seconds on a CPU.
TINY = [
    "data.patch_size=16",
    "data.stride=8",
    "data.channels=9",
    "model.layers=5",
    "optim.batch_size=16",
    "optim.lr=0.003",
    "optim.lr_step_epochs=4",
    "val_recalibration_batches=4",
    "bn_recalibration_batches=20",
    "data.max_patches_per_epoch=256",
    "data.max_eval_patches=128",
]


def tiny_config(cache, *extra):
    """TINY on a fixture cache: train 001, validate 002, test 003."""
    from mrsynth.training import load_config

    return load_config(
        None, [f"data.cache={cache}", "data.train=001", "data.val=002", "data.test=003"] + TINY + list(extra)
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A 6-epoch TINY run on its own prepared fixture cache: (run folder, summary, cache)."""
    from mrsynth.data import prepare_all
    from mrsynth.io import discover
    from mrsynth.training import train

    root = tmp_path_factory.mktemp("trained")
    write_dataset(root / "data", 3, "hcp", shape=(40, 48, 36))
    prepare_all(discover(root / "data"), root / "cache", progress=False)
    summary = train(tiny_config(root / "cache", "optim.epochs=6"), root / "run", progress=False)
    return root / "run", summary, root / "cache"


def write_label_map(folder: Path, shape=(48, 56, 44)) -> Path:
    """``folder`` with one label map: the fixture head's FreeSurfer labels at 1 mm (what pretraining and the
    simulator read)."""
    subject = make_subject(shape=shape, voxel_size=1.0)
    save_nifti(subject.seg.astype(np.float32), subject.affine, Path(folder) / "map01.nii.gz")
    return Path(folder)


@pytest.fixture(scope="module")
def label_maps(tmp_path_factory) -> Path:
    """A folder of one fixture label map (one per test module)."""
    return write_label_map(tmp_path_factory.mktemp("maps"))


def require_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference data not available: {path} is absent (see shared/data/README.md)")
    return path


__all__ = [
    "TINY",
    "make_subject",
    "write_subject",
    "write_dataset",
    "write_label_map",
    "require_shared",
    "tiny_config",
    "nib",
    "np",
]


# --------------------------------------------------------------------------- reliability report
#: Outcomes counted by the fuzz and fault suites: (suite, what) -> count.
OUTCOMES: dict[tuple[str, str], int] = {}


def record(suite: str, what: str) -> None:
    OUTCOMES[(suite, what)] = OUTCOMES.get((suite, what), 0) + 1


def pytest_sessionfinish(session, exitstatus):
    """With MRSYNTH_RELIABILITY_REPORT=PATH (make test-long), write docs/reliability.md from the counts."""
    import os

    target = os.environ.get("MRSYNTH_RELIABILITY_REPORT")
    if target and OUTCOMES:
        from reliability_report import render

        Path(target).write_text(render(OUTCOMES, session.testsfailed, session.testscollected))
