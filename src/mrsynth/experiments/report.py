"""The BIDS App's pages: one self-contained HTML report per participant (pictures inline, no script, no request
leaves the page) and the group's index.

A participant's report has, for every finished T1w (from its sidecar and the files it names): the warnings first,
a mosaic of axial slices (T1w with the brain mask's outline, synthetic T2w, uncertainty map), the checks, the
provenance (inputs with their SHA-256, model, command, versions) and a link to the interactive viewer page; then
the T1ws this run could not synthesize, with the reason.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..figures import synthesis_mosaic
from ..inference.uncertainty import MEANING as UNCERTAINTY_MEANING

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; background: #fff; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; margin: 0.3em 0; }
.failed { background: #f8d7da; border-left: 4px solid #c82333; padding: 0.4em 0.8em; margin: 0.3em 0; }
.ok { color: #1e7e34; } .meta { color: #666; font-size: 0.9em; }
img { max-width: 100%; }
"""


def page(title: str, body: str) -> str:
    """A whole page: the style inline, nothing fetched."""
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body data-ready='true'>\n{body}\n</body></html>\n"
    )


def subject_report(out_dir: Path, label: str, records: list[dict], failures: dict[str, str]) -> str:
    """The report of participant ``label``: its finished T1ws (their sidecars, ``records``) and this run's
    failures."""
    parts = [
        f"<h1>mrsynth report: sub-{html.escape(label)}</h1>",
        f"<p class='meta'>mrsynth {__version__}. {len(records)} T1w synthesized"
        f"{f', {len(failures)} failed' if failures else ''}.</p>",
        f"<p class='meta'>The uncertainty map: {html.escape(UNCERTAINTY_MEANING)}</p>",
    ]
    for prefix, reason in failures.items():
        parts.append(f"<h2>{html.escape(prefix)}</h2><div class='failed'>Not synthesized: {html.escape(reason)}</div>")
    parts += [_section(Path(out_dir), record) for record in records]
    return page(f"mrsynth: sub-{label}", "\n".join(parts))


def _section(out_dir: Path, record: dict) -> str:
    own = record["mrsynth"]
    warnings = own["input_notes"]
    said = (
        "".join(f"<div class='warning'>{html.escape(w)}</div>" for w in warnings)
        if warnings
        else "<p class='ok'>No warnings.</p>"
    )
    checks = own.get("checks", {})
    rows = [
        ("contrast check (learned segmenter)", _contrast(checks)),
        ("brain mask", f"{checks.get('brain_ml', 0):,.0f} ml ({own['masks']})"),
        ("brain voxels outside the training range", f"{100 * checks.get('outside_training_range', 0):.2f} %"),
        ("mean uncertainty in the brain", f"{checks.get('mean_uncertainty', 0):.1f}"),
        ("seconds", f"{own['seconds']:.1f}"),
    ]
    model = own["model"]
    provenance = [
        ("T1w", f"{own['inputs']['t1']['path']} (SHA-256 {own['inputs']['t1']['sha256'][:16]}...)"),
        ("model", f"{model['name']} (weights SHA-256 {model['weights_sha256'][:16]}...)"),
        ("uncertainty", own["uncertainty"]),
        ("command", own.get("command") or "the Python API"),
        ("mrsynth", own["version"]),
    ]
    view = own["outputs"]["view"]
    return (
        f"<h2 id='{html.escape(own['prefix'])}'>{html.escape(own['prefix'])}</h2>{said}"
        f"{_mosaic(out_dir, own)}{_table(rows)}"
        f"<p><a href='{html.escape(view)}'>Open the interactive viewer</a> (T1w, synthetic T2w, uncertainty; "
        "three planes)</p>"
        f"<details><summary>Provenance</summary>{_table(provenance)}</details>"
    )


def _contrast(checks: dict) -> str:
    if checks.get("segmenter_confidence") is None:
        return html.escape(str(checks.get("contrast", "not checked")))
    return html.escape(
        f"{checks['contrast']} (confidence {checks['segmenter_confidence']:.2f} as given, "
        f"{checks['segmenter_confidence_inverted']:.2f} inverted)"
    )


def _table(rows) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _mosaic(out_dir: Path, own: dict) -> str:
    """The T1w's mosaic as an inline PNG, its volumes turned to RAS; a note where the T1w is no longer there."""
    t1_path = Path(own["inputs"]["t1"]["path"])
    if not t1_path.exists():
        return f"<p class='meta'>No picture: the T1w {html.escape(str(t1_path))} is no longer there.</p>"
    load = lambda path: nib.as_closest_canonical(nib.load(str(path)))  # noqa: E731
    t1 = load(t1_path)
    volumes = [
        np.asarray(load(out_dir / own["outputs"][k]).dataobj, np.float32) for k in ("T2w", "mask", "uncertainty")
    ]
    t1_data = np.asarray(t1.dataobj, np.float32).reshape(t1.shape[:3])
    png = synthesis_mosaic(t1_data, volumes[0], volumes[1] > 0, volumes[2], t1.header.get_zooms()[:3], io.BytesIO())
    data = base64.b64encode(png.getvalue()).decode()
    return f"<img alt='T1w, synthetic T2w and uncertainty, axial slices' src='data:image/png;base64,{data}'>"


def group_index(rows: list[dict], when: str) -> str:
    """The group's index page: one row per T1w, linking its participant's report."""
    columns = ("image", "session", "seconds", "warnings", "mean_uncertainty", "contrast", "brain_ml")
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [f"<a href='{html.escape(row['report'])}#{html.escape(row['image'])}'>{html.escape(row['image'])}</a>"]
        cells += [html.escape(str(row[c])) for c in columns[1:]]
        style = " class='warning'" if row["warnings"] else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    warned = sum(1 for row in rows if row["warnings"])
    return page(
        "mrsynth: group",
        f"<h1>mrsynth: {len(rows)} T1w synthesized</h1><p class='meta'>mrsynth {__version__}, {when}. "
        f"{warned} with warnings (highlighted): read their reports first. The table is also "
        f"<a href='group_mrsynth.tsv'>group_mrsynth.tsv</a>.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    )
