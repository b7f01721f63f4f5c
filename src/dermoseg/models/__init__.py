"""Every network: the paper's codec (encoder → ASPP → DeepLabV3+ decoder → head) on two encoders, the U-Net
baseline, and the lesion classifier (MobileNetV2 or EfficientNet-Lite0 encoder → pooling → linear head), built
from the shared blocks of :mod:`dermoseg.models.blocks` (EfficientNet-Lite0 has its own, with TensorFlow padding:
:mod:`dermoseg.models.efficientnet_lite`).

:func:`build_model` is the one place that turns a segmentation model configuration into a network, used by
training, inference and the ``info`` command alike; :func:`build_classifier` does the same for the classifier.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from dermoseg.config import SEGMENTATION_MODEL_DEFAULTS, SEGMENTATION_MODEL_OPTIONS
from dermoseg.models.blocks import DepthwiseSeparableConv, conv_bn_act
from dermoseg.models.classifier import LesionClassifier, build_classifier
from dermoseg.models.deeplab import ASPP, Codec
from dermoseg.models.efficientnet_lite import ImageNetInputLite0
from dermoseg.models.encoders import MobileNetV2Encoder, PaperEncoder, PretrainedWeightsError
from dermoseg.models.unet import UNet

ARCHITECTURES = ("codec", "unet")  # trainable; "ensemble" files come from dermoseg combine-segmenters
ENCODERS = ("paper", "mobilenet_v2", "efficientnet_lite0")


def build_model(config: Mapping[str, Any], pretrained: bool | None = None) -> nn.Module:
    """Build a segmentation network from its configuration.

    Parameters
    ----------
    config : a model configuration; a key it lacks takes its value from
        :data:`dermoseg.config.SEGMENTATION_MODEL_DEFAULTS` or ``SEGMENTATION_MODEL_OPTIONS``. Keys:
        ``architecture`` ("codec" | "unet" | "ensemble": ``members``, a list of ``{"model": member config}``,
        :class:`dermoseg.models.ensemble.SegmentationEnsemble`); for the codec ``encoder`` ("paper" | "mobilenet_v2" |
        "efficientnet_lite0", the latter always at output stride 16, :class:`ImageNetInputLite0`),
        ``aspp_rates`` (default [3, 3, 6], paper §3.2.2), ``output_stride`` (16), ``pretrained`` (true for the
        ImageNet encoders), ``encoder_layers`` (MobileNetV2 blocks kept, default all 18; 14 stops at the 96-channel
        stage, the fast preset), ``aspp_channels`` and ``decoder_channels`` (256); for U-Net ``width`` (32).
    pretrained : overrides ``config["pretrained"]``; inference passes False because the trained weights
        replace ImageNet's anyway.

    Returns
    -------
    A module mapping ``(N, 3, H, W)`` float32 to ``(N, 1, H, W)`` lesion logits.

    Raises
    ------
    ValueError
        For an unknown architecture or encoder.
    """
    config = {**SEGMENTATION_MODEL_DEFAULTS, **SEGMENTATION_MODEL_OPTIONS, **config}
    arch = config["architecture"]
    if arch == "ensemble":  # a model file written by dermoseg combine-segmenters
        from dermoseg.models.ensemble import SegmentationEnsemble
        return SegmentationEnsemble.from_config(config)
    if arch == "unet":
        return UNet(width=int(config["width"]))
    if arch != "codec":
        raise ValueError(f"unknown architecture '{arch}' (choose from {', '.join(ARCHITECTURES)})")
    name = config["encoder"]
    if pretrained is None:
        pretrained = name != "paper" if config["pretrained"] is None else bool(config["pretrained"])
    if name == "paper":
        encoder = PaperEncoder(width=int(config["encoder_width"]))
    elif name == "mobilenet_v2":
        layers = config["encoder_layers"]
        encoder = MobileNetV2Encoder(pretrained=pretrained, output_stride=int(config["output_stride"]),
                                     layers=None if layers is None else int(layers))
    elif name == "efficientnet_lite0":
        if int(config["output_stride"]) != 16:
            raise ValueError("the efficientnet_lite0 segmentation encoder runs at output stride 16 only")
        encoder = ImageNetInputLite0(pretrained=pretrained)
    else:
        raise ValueError(f"unknown encoder '{name}' (choose from {', '.join(ENCODERS)})")
    return Codec(encoder, aspp_rates=tuple(config["aspp_rates"]), aspp_channels=int(config["aspp_channels"]),
                 decoder_channels=int(config["decoder_channels"]))


__all__ = ["ASPP", "Codec", "DepthwiseSeparableConv", "LesionClassifier", "MobileNetV2Encoder", "PaperEncoder",
           "PretrainedWeightsError", "UNet", "build_classifier", "build_model", "conv_bn_act"]
