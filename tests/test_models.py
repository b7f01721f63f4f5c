"""Model shapes on odd sizes, ASPP/encoder structure, the offline ImageNet weights and complexity counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermoseg.models import ASPP, build_model
from dermoseg.models.complexity import count_macs, count_parameters
from dermoseg.models.encoders import DepthwiseSeparableConv, MobileNetV2Encoder, PaperEncoder, mobilenet_v2_weights_path


@pytest.mark.parametrize("config", [{"encoder": "paper"}, {"encoder": "mobilenet_v2", "pretrained": False},
                                    {"architecture": "unet", "width": 8}])
@pytest.mark.parametrize("hw", [(767, 576), (450, 600), (31, 17)])
def test_output_has_the_input_size(config, hw):
    model = build_model(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *hw))
    assert out.shape == (1, 1, *hw) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_paper_encoder_is_two_convs_and_three_separable_blocks():
    enc = PaperEncoder()
    plain = [m for m in enc.stem.modules() if isinstance(m, nn.Conv2d)]
    assert len(plain) == 2 and all(m.kernel_size == (3, 3) and m.groups == 1 for m in plain)
    assert sum(isinstance(m, DepthwiseSeparableConv) for m in enc.blocks) == 3
    low, high = enc(torch.zeros(1, 3, 64, 96))
    assert low.shape[2:] == (16, 24) and high.shape[2:] == (4, 6)  # stride 4 and output stride 16


def test_aspp_rates_are_a_parameter_and_dilate_the_branches():
    aspp = ASPP(32, 16, rates=(6, 12, 18))
    dilations = [m.dilation[0] for m in aspp.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dilations == [6, 12, 18]
    assert ASPP(32, 16).rates == (3, 3, 6)  # the paper's default
    assert aspp(torch.randn(2, 32, 9, 7)).shape == (2, 16, 9, 7)
    with pytest.raises(ValueError):
        ASPP(32, 16, rates=(0,))


def test_depthwise_separable_parameter_count_matches_the_formula():
    block = DepthwiseSeparableConv(32, 64)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert sum(m.weight.numel() for m in convs) == 3 * 3 * 32 + 32 * 64


def test_mobilenet_v2_loads_imagenet_weights_with_checked_hash():
    path = mobilenet_v2_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    enc = MobileNetV2Encoder(pretrained=True, output_stride=16)
    assert torch.equal(enc.features[5].conv[1][0].weight, state["features.5.conv.1.0.weight"])
    low, high = enc(torch.zeros(1, 3, 64, 64))
    assert low.shape == (1, 24, 16, 16) and high.shape == (1, 320, 4, 4)


def test_complexity_counts_a_single_convolution_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_parameters(conv) == 8 * 3 * 3 * 3
    assert count_macs(conv, 10, 12) == 10 * 12 * 8 * 3 * 3 * 3


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_model({"encoder": "resnet"})


def test_truncated_mobilenet_v2_keeps_imagenet_blocks_and_reports_its_stride():
    state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    enc = MobileNetV2Encoder(pretrained=True, layers=14)
    assert len(enc.features) == 14 and enc.high_channels == 96 and enc.output_stride == 16
    assert torch.equal(enc.features[13].conv[2].weight, state["features.13.conv.2.weight"])
    low, high = enc(torch.zeros(1, 3, 64, 96))
    assert low.shape == (1, 24, 16, 24) and high.shape == (1, 96, 4, 6)
    with pytest.raises(ValueError, match="layers"):
        MobileNetV2Encoder(pretrained=False, layers=3)


def test_fast_preset_config_is_under_a_tenth_of_a_gmac():
    import yaml
    from pathlib import Path
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "codec_fast.yaml").read_text())
    model = build_model(cfg["model"], pretrained=False)
    size = cfg["data"]["image_size"]
    assert count_macs(model, size, size) <= 0.1e9
    assert count_macs(model, size, size) * 10 < count_macs(build_model({}, pretrained=False), 256, 256)
