"""The benchmark registry (`python -m benchmarks`): every benchmark registered and documented, one whose real data
is absent skipped with its reason and without touching any saved result, reports computed from the saved numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import BENCHMARKS, module  # noqa: E402


def test_every_benchmark_module_is_registered_and_says_what_it_measures():
    on_disk = {p.stem for kind in ("perf", "studies") for p in (ROOT / "benchmarks" / kind).glob("*.py")}
    assert on_disk - {"__init__"} == set(BENCHMARKS)
    for name in BENCHMARKS:
        bench = module(name)
        assert callable(bench.run) and callable(bench.markdown), name
        assert (bench.__doc__ or "").strip(), f"{name} has no docstring"


def test_real_scans_without_the_shared_data_is_skipped_and_keeps_the_saved_result(tmp_path):
    saved = [ROOT / "benchmarks" / "results" / name for name in ("real_scans.json", "real_scans.md")]
    saved.append(ROOT / "benchmarks" / "RESULTS.md")
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in saved if path.exists()}
    env = {**os.environ, "MRSYNTH_SHARED_DATA": str(tmp_path / "absent")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "real_scans"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"skipped real_scans: {tmp_path / 'absent'} lacks open-ms-clinical" in done.stdout
    assert "Traceback" not in done.stderr
    after = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in saved if path.exists()}
    assert after == before


def test_real_scans_report_is_computed_from_the_saved_scores():
    path = ROOT / "benchmarks" / "results" / "real_scans.json"
    if not path.exists():
        pytest.skip("benchmarks/results/real_scans.json not saved yet: run `python -m benchmarks real_scans`")
    result = json.loads(path.read_text())
    bench = module("real_scans")
    text = bench.markdown(result)
    for case, entry in result["cases"].items():
        optimal = {label: s["psnr_optimal"] for label, s in entry["scores"].items()}
        best_template = max(v for k, v in optimal.items() if k.endswith("template"))
        gain = optimal[bench.ZERO_SHOT] - best_template
        assert f"{case}: zero-shot - the better template table {gain:+.2f} dB" in text
    assert (ROOT / "benchmarks" / "results" / "real_scans.md").read_text().strip() == text.strip()


def test_the_shipped_card_is_rendered_from_the_saved_reports(tmp_path):
    import shutil

    from mrsynth.training.model_card import CARD, write_card

    reports = [ROOT / "benchmarks" / "results" / f"{name}.md" for name in ("pretrained", "real_scans")]
    if not all(report.exists() for report in reports):
        pytest.skip("the benchmark reports are not saved: run `python -m benchmarks pretrained real_scans`")
    shipped = ROOT / "src" / "mrsynth" / "assets" / "pretrained"
    folder = tmp_path / "pretrained"
    shutil.copytree(shipped, folder)
    card = write_card(folder, reports).read_text()
    assert card == (shipped / CARD).read_text(), (
        "the shipped card is out of date: `mrsynth card src/mrsynth/assets/pretrained --figures "
        "benchmarks/results/pretrained.md benchmarks/results/real_scans.md`"
    )
    assert "### pretrained" in card and "### real_scans" in card and "average of the prediction over" in card
