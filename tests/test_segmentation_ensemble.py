"""``dermoseg combine-segmenters``: one segmentation model file holding the members' mean lesion probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermoseg import modelfile
from dermoseg.cli import main
from dermoseg.errors import ModelFileError
from dermoseg.io import read_image
from dermoseg.models.ensemble import ClassifierEnsemble, SegmentationEnsemble
from dermoseg.segmentation.ensemble import extract_member
from dermoseg.segmentation.segmenter import Segmenter


class _Constant(torch.nn.Module):
    """A stand-in network whose lesion logit is ``value`` everywhere."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.value)


def test_the_ensemble_logit_is_that_of_the_mean_probability_hand_case():
    """sigmoid(0) = 0.5 and sigmoid(ln 3) = 0.75 average to 0.625, whose logit is ln(5/3); an ensemble of one is
    refused."""
    out = SegmentationEnsemble([_Constant(0.0), _Constant(float(np.log(3.0)))])(torch.zeros(2, 3, 4, 4))
    assert out.shape == (2, 1, 4, 4)
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(5 / 3))))
    with pytest.raises(ValueError, match="at least two members"):
        SegmentationEnsemble([_Constant(0.0)])


@pytest.fixture(scope="module")
def member(tmp_path_factory):
    """Member 0 of the shipped ensemble (the MobileNetV2 codec) as a single-network file of its own."""
    return str(extract_member("default", 0, tmp_path_factory.mktemp("member") / "mobilenet_v2.pt"))


def test_a_member_comes_out_with_its_weights_and_provenance(member, tmp_path):
    """extract_member (experiments/ensemble_member.py): member 0 of the shipped file holds exactly the ensemble's
    members.0 weights, the shared input size and TTA, and says where it came from; a bad index or a single-network
    file is refused, an existing output never overwritten."""
    _, whole = modelfile.read("default", "segmentation")
    _, alone = modelfile.read(member, "segmentation")
    expected = {k[len("members.0."):]: v for k, v in whole["state_dict"].items() if k.startswith("members.0.")}
    assert alone["state_dict"].keys() == expected.keys()
    assert all(torch.equal(alone["state_dict"][k], v) for k, v in expected.items())
    assert alone["config"]["model"] == whole["config"]["model"]["members"][0]["model"]
    assert alone["config"]["image_size"] == whole["config"]["image_size"] and alone["config"]["tta"]
    assert alone["info"]["member_of"]["index"] == 0 and alone["info"]["member_of"]["file"] == "segmentation.pt"
    with pytest.raises(ModelFileError, match="has members 0 to 1, not 2"):
        extract_member("default", 2, tmp_path / "two.pt")
    with pytest.raises(ModelFileError, match="not an ensemble segmentation file"):
        extract_member(member, 0, tmp_path / "again.pt")
    with pytest.raises(FileExistsError):
        extract_member("default", 0, member)


def test_combined_file_segments_like_its_members_and_bad_members_are_refused(member, tmp_path, isic_samples, capsys):
    """Two copies of one network give that network's probability map (through the file, the builder and flip
    TTA); members that would see different inputs, a single member and an existing output are refused."""
    out = tmp_path / "twice.pt"
    assert main(["combine-segmenters", member, member, "--out", str(out)]) == 0
    assert "2 members" in capsys.readouterr().out
    image = read_image(isic_samples[0].image_path)
    alone = Segmenter.load(member, engine="torch", quality=False).probability(image, tta=True)
    both = Segmenter.load(out, engine="torch", quality=False).probability(image, tta=True)
    np.testing.assert_allclose(both, alone.clip(1e-6, 1 - 1e-6), atol=2e-5)
    # a new file has no quality sidecar yet: segment says so instead of leaving the columns silently empty
    assert main(["segment", str(isic_samples[0].image_path), "--out", str(tmp_path / "seg"), "--model", str(out),
                 "--engine", "torch", "--no-tta"]) == 0
    assert "twice.pt has no quality sidecar (twice.quality.json)" in capsys.readouterr().err
    # two different members: the file's map is the mean of their probabilities (member order kept)
    _, payload = modelfile.read(member, "segmentation")
    payload["state_dict"] = {k: v.float() for k, v in payload["state_dict"].items()}
    generator = torch.Generator().manual_seed(0)
    payload["state_dict"] = {k: (v * (1 + 0.3 * torch.randn(v.shape, generator=generator)) if v.dim() == 4 else v)
                             for k, v in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "other.pt")
    assert main(["combine-segmenters", member, str(tmp_path / "other.pt"), "--out", str(tmp_path / "pair.pt")]) == 0
    p_a = Segmenter.load(member, engine="torch", quality=False).probability(image, tta=False)
    p_b = Segmenter.load(tmp_path / "other.pt", engine="torch", quality=False).probability(image, tta=False)
    pair = Segmenter.load(tmp_path / "pair.pt", engine="torch", quality=False).probability(image, tta=False)
    assert np.abs(p_a - p_b).max() > 0.2  # the perturbation matters
    np.testing.assert_allclose(pair, ((p_a + p_b) / 2).clip(1e-6, 1 - 1e-6), atol=2e-5)
    assert main(["combine-segmenters", member, "fast", "--out", str(tmp_path / "mixed.pt")]) == 2
    assert "differs from the first member's" in capsys.readouterr().err and not (tmp_path / "mixed.pt").exists()
    with pytest.raises(ModelFileError, match="at least two"):
        from dermoseg.segmentation.ensemble import combine_segmenters
        combine_segmenters([member], tmp_path / "one.pt")
    assert main(["combine-segmenters", member, str(out), "--out", str(tmp_path / "nested.pt")]) == 2
    assert "is an ensemble already" in capsys.readouterr().err
    assert main(["combine-segmenters", member, member, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")  # an output folder that is a file: refused before any work
    assert main(["combine-segmenters", member, member, "--out", str(tmp_path / "notes.txt" / "x.pt")]) == 2
    assert "notes.txt: is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_folding_batch_norm_keeps_the_output_and_makes_it_an_identity_plus_bias():
    """Hand case: a 1x1 convolution (weight 2) and a batch norm (mean 1, variance 3 with eps 1, weight 4, bias 5)
    map x to 4 (2x - 1) / 2 + 5 = 4x + 3; folded, the convolution weight is 4 and the batch norm only adds 3. The
    shipped network folds every pair and keeps its output."""
    from dermoseg.models.folding import batch_norm_folded, fold_batch_norm
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.BatchNorm2d(1, eps=1.0)).eval()
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[1].running_mean.fill_(1.0), net[1].running_var.fill_(3.0)
        net[1].weight.fill_(4.0), net[1].bias.fill_(5.0)
    x = torch.tensor([0.0, 1.0, -2.5]).view(3, 1, 1, 1)
    assert not batch_norm_folded(net) and not batch_norm_folded(torch.nn.Conv2d(1, 1, 1))
    assert fold_batch_norm(net) == 1
    assert batch_norm_folded(net)
    assert net[0].weight.item() == 4.0 and net[1].bias.item() == 3.0 and net[1].weight.item() == 1.0
    assert torch.equal(net(x), 4 * x + 3)
    shipped = Segmenter.load("fast", engine="torch", quality=False).network.eval()  # float32, not folded
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        before = shipped(image)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in shipped.modules())
    assert not batch_norm_folded(shipped)
    assert fold_batch_norm(shipped) == n_bn > 30  # every batch norm of the codec follows a convolution
    assert batch_norm_folded(shipped)
    with torch.inference_mode():
        torch.testing.assert_close(shipped(image), before, atol=2e-4, rtol=1e-4)


def test_half_ensemble_onnx_export_stores_the_same_float16_weights(tmp_path, isic_samples, capsys):
    """The ONNX export of a --half ensemble (two copies of the float32 fast preset) keeps its weights as float16
    (about half the float32 export's size),
    agrees with PyTorch, and an ordinary float32 model's export converts nothing."""
    import onnx

    from dermoseg.engine.onnx_export import store_float16_initializers
    half, out = tmp_path / "half.pt", tmp_path / "twice.pt"
    assert main(["combine-segmenters", "fast", "fast", "--out", str(out)]) == 0
    assert "member 1 is the same weights as member 0" in capsys.readouterr().err  # allowed, with a warning
    assert main(["combine-segmenters", "fast", "fast", "--half", "--out", str(half)]) == 0
    # float16 storage: about half the file, widened on loading; only the weights' rounding changes the map
    assert half.stat().st_size < 0.55 * out.stat().st_size
    assert Segmenter.load(half, engine="torch", quality=False).info["weights"] == "float16, batch norm folded"
    assert Segmenter.load(out, engine="torch", quality=False).info["weights"] == "float32"
    # members taken out of the --half file are folded float16 networks: an ensemble of them says so without --half
    member = extract_member(half, 0, tmp_path / "member.pt")
    assert main(["combine-segmenters", str(member), str(member), "--out", str(tmp_path / "again.pt")]) == 0
    assert modelfile.read(tmp_path / "again.pt", "segmentation")[1]["info"]["weights"] == "float16, batch norm folded"
    stored = modelfile.read(half, "segmentation")[1]["state_dict"]
    # integer buffers stay integers; the folded batch norms' running variances (1 - eps) stay float32
    assert {k.rsplit(".", 1)[1] for k, v in stored.items() if v.dtype == torch.float32} == {"running_var"}
    assert {v.dtype for v in stored.values()} == {torch.float16, torch.float32, torch.int64}
    image = read_image(isic_samples[0].image_path)
    both = Segmenter.load(out, engine="torch", quality=False).probability(image, tta=True)
    halved = Segmenter.load(half, engine="torch", quality=False).probability(image, tta=True)
    assert halved.dtype == np.float32 and np.abs(halved - both).max() < 0.05 and not np.array_equal(halved, both)
    assert ((halved > 0.5) == (both > 0.5)).mean() > 0.995
    check = [str(s.image_path) for s in isic_samples[:2]]
    assert main(["export", "--model", str(half), "--out", str(tmp_path / "half.onnx"), "--check-images", *check]) == 0
    proto = onnx.load(str(tmp_path / "half.onnx"))
    weights = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    halves = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    assert halves > 0.99 * weights
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "twice.onnx"), "--check-images", *check]) == 0
    assert (tmp_path / "half.onnx").stat().st_size < 0.6 * (tmp_path / "twice.onnx").stat().st_size
    from dermoseg.engine.onnx_export import onnx_bytes
    shipped = Segmenter.load("fast", engine="torch", quality=False)
    plain = onnx.load_from_string(onnx_bytes(shipped.network, (3, 128, 128), {"task": "segmentation"}))
    # onnx_bytes already stored float16 numbers as float16: an ordinary float32 network has none
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in plain.graph.initializer)
    assert store_float16_initializers(proto) == 0  # nothing left to convert, and no second Cast


def test_float16_initializers_hand_graph():
    """Y = X + A + B with A all 0.5 (a float16 number) and B all 0.1 (not one): only A is stored as float16, the
    graph stays valid and ONNX Runtime gives the same Y; an initializer that is also a graph input is left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from dermoseg.engine.onnx_export import store_float16_initializers

    def model(as_input: bool):
        a = numpy_helper.from_array(np.full(300, 0.5, np.float32), "A")
        b = numpy_helper.from_array(np.full(300, 0.1, np.float32), "B")
        inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [300])]
        if as_input:
            inputs.append(helper.make_tensor_value_info("A", TensorProto.FLOAT, [300]))
        nodes = [helper.make_node("Add", ["X", "A"], ["S"]), helper.make_node("Add", ["S", "B"], ["Y"])]
        output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [300])
        graph = helper.make_graph(nodes, "g", inputs, [output], [a, b])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    x = np.linspace(-1, 1, 300, dtype=np.float32)
    plain = model(False)
    def run(proto) -> np.ndarray:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"X": x})[0]

    expected = run(plain)
    assert store_float16_initializers(plain) == 1
    onnx.checker.check_model(plain)
    kinds = {t.name: t.data_type for t in plain.graph.initializer}
    assert kinds == {"A__float16": TensorProto.FLOAT16, "B": TensorProto.FLOAT}
    assert np.array_equal(run(plain), expected)
    assert store_float16_initializers(model(True)) == 0


def test_folding_covers_bias_groups_and_refuses_what_it_cannot_fold():
    """A grouped convolution with a bias folds to the same output; a batch norm without running statistics or
    without a bias, and a module used in two places, are refused."""
    from dermoseg.models.folding import fold_batch_norm
    generator = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=True), torch.nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        for t in (net[0].bias, net[1].running_mean, net[1].weight, net[1].bias):
            t.copy_(torch.randn(4, generator=generator))
        net[1].running_var.copy_(torch.rand(4, generator=generator) + 0.5)
    x = torch.randn(2, 4, 5, 5, generator=generator)
    with torch.no_grad():
        before = net(x)
        assert fold_batch_norm(net) == 1
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(net[0].bias) == 0 and torch.equal(net[1].running_mean, torch.zeros(4))
    with pytest.raises(ValueError, match="without running statistics"):
        fold_batch_norm(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1, track_running_stats=False)))
    with pytest.raises(ValueError, match="affine=False"):
        fold_batch_norm(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1, affine=False)))
    conv, bn = torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1)
    with pytest.raises(ValueError, match="used in two places"):
        fold_batch_norm(torch.nn.Sequential(torch.nn.Sequential(conv, bn), torch.nn.Sequential(conv, bn)))


@pytest.mark.parametrize("cls, kind", [(SegmentationEnsemble, "segmentation"), (ClassifierEnsemble, "classifier")])
@pytest.mark.parametrize("members, message", [([], "non-empty 'members' list"), ([{}], "malformed"),
                                              ([{"model": 3}], "malformed")])
def test_both_wings_refuse_a_missing_or_malformed_members_list_by_name(cls, kind, members, message):
    """A model file's ensemble config without members, or with an entry lacking ``model`` or holding a wrong type,
    is a ValueError naming the wing, never a KeyError or TypeError."""
    with pytest.raises(ValueError, match=message) as info:
        cls.from_config({"architecture": "ensemble", "members": members})
    assert f"{kind} ensemble" in str(info.value)
