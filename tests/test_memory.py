"""Memory stays flat as the number of prepared subjects grows (the dataset reads patches, not volumes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrsynth.data import list_prepared, prepare_all
from mrsynth.io import discover
from mrsynth.io.fixtures import write_dataset

SHAPE = (96, 112, 96)  # ~1 M voxels: 9.3 MB of arrays per subject

# Peak RSS of the child's own address space (VmHWM): ru_maxrss would start from the parent's RSS at
# fork time (Linux keeps it across exec), which measures pytest rather than the loader.
ITERATE = textwrap.dedent("""
    import json, re, sys
    from mrsynth.data import list_prepared
    from mrsynth.networks import Normalization, InputSpec
    from mrsynth.data import PatchDataset, PatchGrid
    subjects = list_prepared(sys.argv[1])
    norm = Normalization.fit("robust", [s.stats for s in subjects])
    dataset = PatchDataset(subjects, InputSpec(tissue_masks=True, normalization=norm), PatchGrid(32, 16))
    for item in range(0, len(dataset), 7):  # every subject, every slice region
        dataset[item]
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
    print(json.dumps({"patches": len(dataset), "peak_kib": peak}))
""")


def _peak(cache):
    out = subprocess.run([sys.executable, "-c", ITERATE, str(cache)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak RSS")
def test_peak_rss_with_20_subjects_is_within_10_percent_of_2(tmp_path):
    root = write_dataset(tmp_path / "data", 1, "hcp", shape=SHAPE)
    prepare_all(discover(root), tmp_path / "one", progress=False)
    source = tmp_path / "one" / "001"
    for n in (2, 20):
        for i in range(n):
            shutil.copytree(source, tmp_path / f"cache{n}" / f"s{i:02d}")
            meta_path = tmp_path / f"cache{n}" / f"s{i:02d}" / "subject.json"
            meta = json.loads(meta_path.read_text())
            meta["id"] = f"s{i:02d}"
            meta_path.write_text(json.dumps(meta))
    small, large = _peak(tmp_path / "cache2"), _peak(tmp_path / "cache20")
    print(f"peak RSS: 2 subjects {small['peak_kib']} KiB, 20 subjects {large['peak_kib']} KiB")
    assert large["patches"] == 10 * small["patches"]
    data_kib = 18 * sum(p.stat().st_size for p in source.glob("*.npy")) / 1024
    margin = 0.10 * small["peak_kib"]
    assert data_kib > 2 * margin, "test too weak: loading the extra subjects would not show"
    assert large["peak_kib"] <= small["peak_kib"] + margin, (small, large, data_kib)
    assert len(list_prepared(tmp_path / "cache20")) == 20
