"""Networks (mrsynth.networks): the paper's FCN architecture and initialisation, BatchNorm recalibration and folding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mrsynth.networks import FCN, WindowedStack, fold_batchnorm, inference_model, is_plain_stack, recalibrate_batchnorm


def expected_parameters(n_layers: int, in_channels: int, width: int = 32) -> int:
    """Trainable parameters from the paper's description (section 4.1)."""
    first = in_channels * 3 * 3 * width + width
    middle = (n_layers - 2) * (width * 3 * 3 * width + width)
    last = width * 3 * 3 * 1 + 1
    batchnorm = (n_layers - 1) * 2 * width  # gamma and beta
    return first + middle + last + batchnorm


@pytest.mark.parametrize("n_layers, in_channels", [(9, 9), (9, 1), (3, 9), (3, 1), (2, 9)])
def test_layer_and_parameter_counts(n_layers, in_channels):
    model = FCN(n_layers, in_channels)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == n_layers and len(norms) == n_layers - 1
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [32] * (n_layers - 1) + [1]
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(n_layers, in_channels)
    assert model(torch.zeros(2, in_channels, 20, 24)).shape == (2, 1, 20, 24)


def test_keras_batchnorm_settings_and_initialisation():
    model = FCN(9, 9)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert norm.momentum == pytest.approx(0.01) and norm.eps == pytest.approx(1e-3)
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
        bound = math.sqrt(6 / (fan_in + fan_out))  # Glorot uniform
        assert conv.weight.abs().max() <= bound
        if conv.weight.numel() > 1000:
            assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(conv.bias) == 0


def test_fewer_than_two_layers_is_refused():
    with pytest.raises(ValueError):
        FCN(1, 9)


def test_recalibration_gives_the_batch_statistics():
    torch.manual_seed(1)
    model = FCN(3, 1)
    batches = [torch.randn(8, 1, 12, 12) * 3 + 5 for _ in range(4)]
    used = recalibrate_batchnorm(model, batches)
    assert used == 4
    first_norm = model.layers[1]
    with torch.no_grad():
        activations = torch.cat([model.layers[0](b) for b in batches])
    torch.testing.assert_close(first_norm.running_mean, activations.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert first_norm.momentum == pytest.approx(0.01)  # restored


def test_folded_batchnorm_inference_equals_the_eval_model():
    torch.manual_seed(3)
    model = FCN(9, 9)
    recalibrate_batchnorm(model, [torch.randn(4, 9, 24, 24) * 2 + 1 for _ in range(3)])
    with torch.no_grad():  # non-trivial BN parameters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(3, 9, 31, 26)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
        fast = inference_model(model)
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-5
        )


def test_unet_without_normalization_has_no_batchnorm_and_any_tile_size_gives_the_same_pixels():
    from mrsynth.networks import UNet

    torch.manual_seed(0)
    model = UNet(1, (4, 4, 8, 8, 8, 4), norm="none").eval()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # no batch statistics: a sample's output does not depend on the rest of its batch
        torch.testing.assert_close(model(torch.cat([x, torch.rand(3, 1, 64, 64) * 5]))[:1], model(x))
    with pytest.raises(ValueError, match="norm"):
        UNet(1, norm="group")


def test_lookup_residual_starts_from_the_table_and_reads_it_as_an_input():
    from mrsynth.networks import IntensityMap, LookupResidual, build_network

    table = IntensityMap(torch.tensor([0.0, 0.5, 1.0, 2.0]), torch.tensor([0.0, 3.0, 1.0, 0.5]))
    model = build_network("fcn", 9, {"layers": 3, "width": 4}, lookup=table)
    assert isinstance(model, LookupResidual) and model.kind == "fcn" and model.receptive_radius == 3
    assert model.net.layers[0].in_channels == 10  # the input channels and the table's prediction
    x = torch.rand(2, 9, 12, 12) * 2
    with torch.no_grad():
        model.net.layers[-1].weight.zero_()
        model.net.layers[-1].bias.zero_()
        torch.testing.assert_close(model.eval()(x), table(x[:, :1]))  # a residual of zero: the table itself
        model.net.layers[-1].bias.fill_(0.25)
        torch.testing.assert_close(model(x), table(x[:, :1]) + 0.25)


@pytest.mark.parametrize(
    "box", [(slice(20, 30), slice(30, 50)), (slice(0, 6), slice(55, 70))], ids=["inside", "at two image edges"]
)
def test_a_windowed_stack_gives_the_whole_slices_output(box):
    """Content in ``box``, the window grown by the stack's radius: exact, image edges and corners included."""
    torch.manual_seed(0)
    model = FCN(layers=5, in_channels=3, width=8)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.bias.data.uniform_(-0.3, 0.3)
        elif isinstance(module, torch.nn.Conv2d):
            module.bias.data.uniform_(-0.2, 0.2)
    stack = inference_model(model.eval())
    assert is_plain_stack(stack) and not is_plain_stack(model)
    assert not is_plain_stack(torch.nn.Sequential(*stack[:-1]))  # ends in a ReLU
    background = torch.zeros(1, 3, 40, 70)
    background[:, 0], background[:, 2] = -0.5, 1.0  # the background is not zero: its response is not flat
    inputs = background.repeat(2, 1, 1, 1)
    inputs[:, :, box[0], box[1]] = torch.randn(2, 3, box[0].stop - box[0].start, box[1].stop - box[1].start)
    windowed = WindowedStack(stack, background.contiguous(memory_format=torch.channels_last))
    rows, cols = (slice(max(b.start - 5, 0), min(b.stop + 5, n)) for b, n in zip(box, (40, 70)))
    with torch.inference_mode():
        whole = stack(inputs.contiguous(memory_format=torch.channels_last))
        output = windowed.background.repeat(2, 1, 1, 1)
        output[:, :, rows, cols] = windowed(
            inputs[:, :, rows, cols].contiguous(memory_format=torch.channels_last), rows, cols
        )
    assert windowed.radius == 5
    assert windowed.background.max() - windowed.background.min() > 0.1  # image edges change the background's output
    torch.testing.assert_close(output, whole, rtol=0, atol=1e-5 * whole.abs().max().item())
    with torch.inference_mode():  # a window one voxel short of the radius is not exact
        short = windowed.background.repeat(2, 1, 1, 1)
        inner = (
            slice(rows.start + (rows.start > 0), rows.stop - (rows.stop < 40)),
            slice(cols.start + (cols.start > 0), cols.stop - (cols.stop < 70)),
        )
        short[:, :, inner[0], inner[1]] = windowed(
            inputs[:, :, inner[0], inner[1]].contiguous(memory_format=torch.channels_last), *inner
        )
    assert (short - whole).abs().max() > 1e-3


class ToyNetwork(torch.nn.Module):
    """A network from outside the package: one file and one registration line make it trainable by name."""

    kind = "toy"
    parameter_docs = {"width": "hidden channels"}

    def __init__(self, in_channels: int, width: int = 4):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(width, 1, 3, padding=1)
        )

    def forward(self, x):
        return self.layers(x)


@pytest.fixture
def toy_network():
    from mrsynth.networks import register, unregister

    register(ToyNetwork)
    yield ToyNetwork
    unregister(ToyNetwork.kind)


def test_a_network_registered_from_outside_trains_exports_and_predicts(toy_network, cache, tmp_path, run_cli):
    from conftest import tiny_config

    from mrsynth.data import list_prepared
    from mrsynth.inference import Model
    from mrsynth.training import reference_markdown, train

    assert "| `model.width` | int | `4` | any | toy: hidden channels |" in reference_markdown()
    config = tiny_config(cache, "model.kind=toy", "model.width=3", "optim.epochs=1")
    assert config.model.params == {"width": 3}
    summary = train(config, tmp_path / "run", progress=False)
    model = Model.load(tmp_path / "run" / "model")
    assert isinstance(model.network, ToyNetwork) and model.info.params == {"width": 3}
    assert np.isfinite(summary["test_loss"])
    subject = {s.id: s for s in list_prepared(cache)}["003"]
    volume = model.predict(subject)
    assert volume.shape == tuple(subject.meta["shape"]) and np.isfinite(volume).all()
    code, _, err = run_cli(
        "predict", "--model", tmp_path / "run" / "model", "--subject", subject.folder, "--out", tmp_path / "p.nii.gz"
    )
    assert code == 0 and (tmp_path / "p.nii.gz").exists(), err
