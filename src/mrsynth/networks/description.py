"""A model's description (``model.json``): the one record that training writes and inference reads.

Like nnU-Net's plans, it is the model: the network's ``kind`` with that kind's own ``params``
(:mod:`.registry`), its :class:`~.inputs.InputSpec` (what the network reads and how it is made from a T1w),
what it outputs (a T2w, or the classes of a segmentation), where its training masks came from, and a summary of
its training.  Descriptions written by any earlier mrsynth are read and converted: format 1 (one flat record with
every kind's fields), format 2 (the input settings as loose fields) and the segmenter's own files of mrsynth
before every model shared one format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import __version__, labels
from .inputs import InputSpec, slice_offsets
from .normalization import Normalization

FORMAT = 3
#: The output of a synthesis model: one channel of T2w intensity.
T2W = ("T2w",)


@dataclass
class ModelInfo:
    """Everything needed to use a trained or fitted model, saved as ``model.json``."""

    kind: str  # a registered network kind (mrsynth.networks.registry)
    spec: InputSpec  # the input contract
    params: dict = field(default_factory=dict)  # the kind's own parameters
    lookup: bool = False  # the network corrects a lookup table stored with its weights (networks.LookupResidual)
    outputs: tuple[str, ...] = T2W  # one name per output channel: T2w, or the classes of a segmentation
    masks: str = "files"  # where the training masks came from: "files", a mrsynth.masks method ("auto": atlas), or
    # "any" (a model trained to be indifferent to the mask's source, or one that needs no masks)
    patch_size: int = 0  # the training patches or crops (a record; prediction takes whole slices)
    stride: int = 0
    label_table: int = labels.TABLE_VERSION
    weights_sha256: str = ""  # of the weights file, checked at load (empty: written before mrsynth checked it)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    format: int = FORMAT

    def __post_init__(self):
        if isinstance(self.spec, dict):
            self.spec = InputSpec.from_record(self.spec)
        self.outputs = tuple(self.outputs)

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def out_channels(self) -> int:
        return len(self.outputs)

    @property
    def uses_masks(self) -> bool:
        return self.spec.tissue_masks

    @property
    def segments(self) -> bool:
        """A segmentation model: its outputs are class scores (made probabilities by a softmax)."""
        return self.outputs != T2W

    def norm(self) -> Normalization:
        return self.spec.normalization

    def name(self) -> str:
        """What made a prediction, in a few words: the pretrained model and its recipe, or the kind and its
        training subjects."""
        pretraining = self.training.get("pretraining")
        if pretraining:
            recipe = pretraining.get("recipe", "synthesis")
            label = "pretrained" if recipe == "synthesis" else recipe
            return f"{label} (recipe {pretraining.get('recipe_version')})"
        subjects = self.training.get("subjects") or []
        if isinstance(subjects, dict):  # a network's run: its split; a lookup table's: the list it was fitted on
            subjects = subjects.get("train") or []
        trained = f"{self.kind} trained on {', '.join(subjects)}" if subjects else self.kind
        parent = self.training.get("init")
        return f"{trained}, fine-tuned from {parent}" if parent else trained

    def stamp(self) -> str:
        """The line a prediction's NIfTI header carries (``descrip``, 79 characters at most)."""
        return f"mrsynth {__version__}: {self.name()} {self.weights_sha256[:8]}"[:79]

    def record(self) -> dict:
        """The description as written to ``model.json``."""
        out = asdict(self)
        out["spec"], out["outputs"] = self.spec.record(), list(self.outputs)
        return out

    @classmethod
    def from_json(cls, record: dict) -> ModelInfo:
        """A description as written by any mrsynth (earlier formats converted)."""
        version = record.get("format", 1)
        if version == 1:
            record = _from_format_1(record)
            version = 2
        if version == 2:
            record = _from_format_2(record)
        elif version != FORMAT:
            raise ValueError(f"model format {version} is not supported (this mrsynth reads 1 to {FORMAT})")
        return cls(**record)


def _from_format_1(record: dict) -> dict:
    """Format 1 kept every kind's fields side by side (``n_layers``, ``width``, ``features``, ``feature_norm``;
    zeros for the lookup tables): keep those of the record's own kind, under its parameter names."""
    record = dict(record)
    kind = record.get("kind", "fcn")
    own = {
        "fcn": {"layers": record.get("n_layers"), "width": record.get("width")},
        "unet": {"features": record.get("features"), "norm": record.get("feature_norm", "batch")},
    }
    for old in ("n_layers", "width", "features", "feature_norm"):
        record.pop(old, None)
    record["kind"], record["params"] = kind, own.get(kind, {})
    training = record.get("training")
    if isinstance(training, dict) and isinstance(training.get("train_loss"), str):  # format 1 kept its CSV text
        record["training"] = {**training, "train_loss": float(training["train_loss"])}
    return record


def _from_format_2(record: dict) -> dict:
    """Format 2 kept the input settings as loose fields (``in_channels``, ``context``, ``axis``, ``strip``,
    ``grid_mm``, ``brain_only``, ``normalization``): they make the spec, and ``in_channels`` must follow from it."""
    record = dict(record)
    context, in_channels = int(record.pop("context", 0)), int(record.pop("in_channels"))
    spec = InputSpec(
        offsets=slice_offsets(context),
        tissue_masks=in_channels > 1 + 2 * context,
        axis=record.pop("axis"),
        grid_mm=float(record.pop("grid_mm", 0.0)),
        normalization=Normalization(**record.pop("normalization")),
        strip=bool(record.pop("strip", False)),
        brain_only=bool(record.pop("brain_only", False)),
    )
    if spec.in_channels != in_channels:
        raise ValueError(f"{in_channels} input channels do not follow from context {context} with or without masks")
    return {**record, "spec": spec, "format": FORMAT}
