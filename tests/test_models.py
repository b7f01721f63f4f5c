"""Model shapes on odd sizes, ASPP/encoder structure, the offline ImageNet weights and complexity counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dermoseg.models import ASPP, build_model
from dermoseg.models.complexity import count_macs, count_parameters
from dermoseg.models import efficientnet_lite
from dermoseg.models.efficientnet_lite import (
    Conv2dSame,
    EfficientNetLite0Encoder,
    efficientnet_lite0_imagenet_state,
    efficientnet_lite0_weights_path,
)
from dermoseg.models.encoders import DepthwiseSeparableConv, MobileNetV2Encoder, PaperEncoder, mobilenet_v2_weights_path
from dermoseg.errors import PretrainedWeightsError


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


# ------------------------------------------------------------------------------------------- EfficientNet-Lite0
def test_tensorflow_same_padding_by_hand():
    """All-ones input and filter: each output is the number of real (unpadded) pixels under the window. TF 'SAME'
    pads (0 before, 1 after) for 3x3 stride 2 on an even side, (1, 2) for 5x5, and (1, 1) for 3x3 on an odd side."""
    def window_counts(kernel, n):
        conv = Conv2dSame(1, 1, kernel, 2)
        nn.init.ones_(conv.weight)
        with torch.no_grad():
            return conv(torch.ones(1, 1, n, n))[0, 0]
    assert window_counts(3, 4).tolist() == [[9, 6], [6, 4]]  # rows/cols 0-2 and 2-3 (+ one padded)
    assert window_counts(5, 6).tolist() == [[16, 20, 12], [20, 25, 15], [12, 15, 9]]  # windows -1..3, 1..5, 3..7
    assert window_counts(3, 5).tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]  # symmetric on an odd side


def test_efficientnet_lite0_loads_every_imagenet_weight_with_checked_hash():
    raw = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    encoder_state, fc = efficientnet_lite0_imagenet_state()
    enc = EfficientNetLite0Encoder(pretrained=True).eval()
    # every tensor of the file lands in the network, one to one; only the ImageNet classifier _fc is set apart
    assert len(raw) == 296 and set(fc) == {"weight", "bias"} and fc["weight"].shape == (1000, 1280)
    assert set(encoder_state) == set(enc.state_dict()) and len(encoder_state) + 2 == len(raw)
    enc.load_state_dict(encoder_state, strict=True)
    assert torch.equal(enc.features[4].depthwise[0].weight, raw["_blocks.3._depthwise_conv.weight"])
    assert torch.equal(enc.features[17][1].running_var, raw["_bn1.running_var"])
    assert enc.features[4].depthwise[0].kernel_size == (5, 5) and isinstance(enc.features[1].expand, nn.Identity)
    with torch.no_grad():
        low, high = enc(torch.zeros(2, 3, 192, 192))
    assert low.shape == (2, 24, 48, 48) and high.shape == (2, 1280, 6, 6)


def test_a_tampered_efficientnet_lite0_file_is_refused(tmp_path, monkeypatch):
    """A copy of the weights with one byte flipped, in a package that looks like the real one: refused by sha256."""
    package = tmp_path / "tampered_effnet"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = bytearray(efficientnet_lite0_weights_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    (package / efficientnet_lite.EFFICIENTNET_LITE0_FILE).write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(efficientnet_lite, "EFFICIENTNET_LITE0_PACKAGE", "tampered_effnet")
    with pytest.raises(PretrainedWeightsError, match="efficientnet-lite0-57934424.pth: sha256"):
        EfficientNetLite0Encoder(pretrained=True)
    monkeypatch.setattr(efficientnet_lite, "EFFICIENTNET_LITE0_PACKAGE", "no_such_weights_package")
    with pytest.raises(PretrainedWeightsError, match="not installed"):
        EfficientNetLite0Encoder(pretrained=True)


def test_efficientnet_lite0_imagenet_predictions_agree_with_mobilenet_v2(data_root):
    """Two independently trained ImageNet networks name similar things on the same 48 HAM10000 images: for most
    of them MobileNetV2's top class is in EfficientNet-Lite0's top 5 (chance: 0.5%), and only with the input
    scaling the Lite weights were trained with (a wrong load or normalisation loses the agreement)."""
    from dermoseg.data.datasets import load_ham10000
    from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalise, resize_image
    from dermoseg.io import read_image
    torch.set_num_threads(1)
    samples = load_ham10000(data_root / "ham10000")
    images = [resize_image(read_image(s.image_path), 192) for s in samples[::120][:48]]
    mobilenet = MobileNetV2Encoder(pretrained=True, output_stride=32, with_head=True).eval()
    mobilenet_state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    lite = EfficientNetLite0Encoder(pretrained=True).eval()
    _, fc = efficientnet_lite0_imagenet_state()

    def logits(encoder, weight, bias, mean, std):
        x = torch.from_numpy(np.stack([normalise(im, mean, std) for im in images]))
        with torch.no_grad():
            return encoder(x)[1].mean((2, 3)) @ weight.T + bias

    reference = logits(mobilenet, mobilenet_state["classifier.1.weight"], mobilenet_state["classifier.1.bias"],
                       IMAGENET_MEAN, IMAGENET_STD).argmax(1)

    def agreement(mean, std):
        top5 = logits(lite, fc["weight"], fc["bias"], mean, std).topk(5, dim=1).indices
        return float((top5 == reference[:, None]).any(1).float().mean())

    right = agreement(EfficientNetLite0Encoder.INPUT_MEAN, EfficientNetLite0Encoder.INPUT_STD)
    assert right >= 0.5
    assert right > agreement(IMAGENET_MEAN, IMAGENET_STD) + 0.1


def test_efficientnet_lite0_segmentation_encoder_is_the_classifier_one_at_output_stride_16():
    """The codec's EfficientNet-Lite0 (issue 12): fed ImageNet-normalised input, it computes exactly what the
    ImageNet network computes on its own Lite scaling up to the last unchanged stage; only the last stride-2 stage
    runs at stride 1, dilated 2, with the same weights, and there is no head (320 channels at stride 16)."""
    from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from dermoseg.models.efficientnet_lite import EfficientNetLite0Encoder, ImageNetInputLite0
    seg, ref = ImageNetInputLite0().eval(), EfficientNetLite0Encoder().eval()
    rgb = torch.rand(1, 3, 96, 128)
    imagenet = (rgb - torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1)
    lite = (rgb * 255 - 127) / 128
    with torch.no_grad():
        low, high = seg(imagenet)
        assert low.shape == (1, 24, 24, 32) and high.shape == (1, 320, 6, 8)
        torch.testing.assert_close(low, ref.features[:4](lite), atol=1e-4, rtol=1e-4)
        # blocks before the 192-channel stage (features[12:16]) are unchanged; that stage's first block is not strided
        torch.testing.assert_close(seg.encoder.features[:12](lite), ref.features[:12](lite), atol=1e-4, rtol=1e-4)
    first = seg.encoder.features[12].depthwise[0]
    assert first.stride == (1, 1) and first.dilation == (2, 2) and first.padding == (4, 4)
    head_free = {k: v for k, v in ref.state_dict().items() if not k.startswith("features.17.")}
    assert seg.encoder.state_dict().keys() == head_free.keys()
    assert all(torch.equal(v, head_free[k]) for k, v in seg.encoder.state_dict().items())
    codec = build_model({"architecture": "codec", "encoder": "efficientnet_lite0"}, pretrained=False)
    assert codec(torch.zeros(1, 3, 100, 120)).shape == (1, 1, 100, 120)
    with pytest.raises(ValueError, match="output stride 16 only"):
        build_model({"architecture": "codec", "encoder": "efficientnet_lite0", "output_stride": 32})
