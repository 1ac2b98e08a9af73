"""Inference: a model file applied to whole volumes, written as NIfTI or BIDS derivatives.

:mod:`.model` holds a loaded model (predict, save, load); :mod:`.predict` predicts arrays, prepared subjects,
files and data folders, through the whole-volume runner of :mod:`mrsynth.networks`; :mod:`.derivatives` says where
predictions go (flat, or BIDS derivatives with sidecars); :mod:`.uncertainty` maps where to trust a prediction
least, and :mod:`.synthesis` takes one T1w file through it all with the checks a report shows.
Inference needs no training code: training hands back its models through :class:`Model`.
"""

from .derivatives import ModelProvenance, Output, bids_prefix, output_is_bids, relative_path, sidecar_path
from .model import Model
from .predict import (
    check_inputs,
    check_output,
    needs_masks,
    predict_arrays,
    predict_files,
    predict_many,
    predict_prepared,
    predict_prepared_file,
    t1_transform,
    write_like,
)
from .synthesis import Synthesis, synthesize
from .uncertainty import predict_with_uncertainty, uncertainty_map

__all__ = [
    "Model",
    "ModelProvenance",
    "Output",
    "Synthesis",
    "bids_prefix",
    "check_inputs",
    "check_output",
    "needs_masks",
    "output_is_bids",
    "predict_arrays",
    "predict_files",
    "predict_many",
    "predict_prepared",
    "predict_prepared_file",
    "predict_with_uncertainty",
    "relative_path",
    "sidecar_path",
    "synthesize",
    "t1_transform",
    "uncertainty_map",
    "write_like",
]
