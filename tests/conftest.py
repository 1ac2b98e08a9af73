"""Shared test helpers: tiny generated subjects, the CLI runner, the real-data folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrsynth import cli
from mrsynth.fixtures import make_subject, write_dataset, write_subject

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
    from mrsynth.cache import prepare_all
    from mrsynth.subjects import discover

    root = tmp_path_factory.mktemp("data")
    write_dataset(root, 3, "hcp", shape=(40, 48, 36))
    prepare_all(discover(root), root.parent / "cache", progress=False)
    return root.parent / "cache"


def require_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference data not available: {path} is absent (see shared/data/README.md)")
    return path


__all__ = ["make_subject", "write_subject", "write_dataset", "require_shared", "nib", "np"]
