"""A seconds-long training run on real images: checkpoints every epoch, metrics CSV, resume, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dermoseg.config import load_config
from dermoseg.segmentation.segmenter import Segmenter
from dermoseg.io import read_image
from dermoseg.segmentation.task import export_model, train

REPO = Path(__file__).resolve().parents[1]


def test_smoke_training_checkpoints_resumes_and_exports(tmp_path, isic_samples, data_root):
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root)}, "trainer": {"epochs": 1}})
    out = tmp_path / "run"
    model_path = train(cfg, out)
    assert (out / "checkpoints" / "last.ckpt").is_file() and model_path.is_file()
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    cfg["trainer"]["epochs"] = 2
    train(cfg, out, resume=True)
    second = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 2 * first["global_step"]  # one more epoch of the same length, not two
    assert Segmenter.load(export_model(out / "checkpoints" / "last.ckpt", tmp_path / "last.pt")).trained_epochs == 2
    with open(out / "metrics.csv", newline="") as fh:
        epochs = {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("val_dice")}
    assert epochs == {0, 1}  # the resumed run logged only its new epoch, after the first
    model = Segmenter.load(model_path)
    prob = model.probability(read_image(isic_samples[0].image_path))
    assert prob.shape == (512, 512) and 0 <= prob.min() <= prob.max() <= 1


def test_base_config_chain_is_merged_for_every_command(tmp_path):
    """``base_config`` works in any config (not only sweeps): bases first, later files win, cycles refused."""
    from dermoseg.config import ConfigError
    (tmp_path / "a.yaml").write_text("name: a\nmodel: {encoder: paper}\noptimizer: {lr: 0.01}\n")
    (tmp_path / "b.yaml").write_text("base_config: a.yaml\nname: b\noptimizer: {scheduler: none}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("base_config: ../b.yaml\nname: c\ntrainer: {epochs: 3}\n")
    cfg = load_config(tmp_path / "sub" / "c.yaml")
    assert cfg["name"] == "c" and cfg["model"]["encoder"] == "paper" and cfg["optimizer"]["lr"] == 0.01
    assert cfg["optimizer"]["scheduler"] == "none" and cfg["trainer"]["epochs"] == 3 and "base_config" not in cfg
    assert cfg["loss"]["name"] == "dice_bce"  # untouched defaults survive
    (tmp_path / "a.yaml").write_text("base_config: sub/c.yaml\n")
    with pytest.raises(ConfigError, match="leads back"):
        load_config(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("base_config: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "d.yaml")


def test_a_misspelt_or_foreign_setting_is_an_error_naming_file_and_key(tmp_path):
    """Each task has its own defaults; a setting outside them (a typo, or the other wing's key) is refused with
    the file and the dotted key instead of being silently ignored, and the sweep's overrides are checked too."""
    from dermoseg.config import ConfigError
    cases = {"seg_typo.yaml": ("trainer: {epoch: 5}\n", "'trainer.epoch'"),
             "seg_section.yaml": ("optimiser: {lr: 0.01}\n", "'optimiser'"),
             "foreign.yaml": ("task: classification\nloss: {name: dice_bce}\n", "'loss.name'"),
             "seg_class_key.yaml": ("model: {mask_mode: crop}\n", "'model.mask_mode'"),
             # the segmentation schedule is a per-epoch cosine without warm-up: the classifier's key is refused
             # the cleaning settings are checked by their own reader, at load rather than at export
             "seg_preprocess.yaml": ("preprocess: {enabled: true, hair: {closing_pz: 11}}\n",
                                     "'preprocess.hair.closing_pz'"),
             "task.yaml": ("task: detection\n", "unknown task 'detection'"),
             # a value of the wrong kind is refused at load, before minutes of data loading
             "seg_value.yaml": ("optimizer: {lr: fast}\n", "'optimizer.lr' must be a number, got 'fast'"),
             "seg_flag.yaml": ("augment: {flip: 'no'}\n", "'augment.flip' must be true or false"),
             "seg_list.yaml": ("model: {aspp_rates: 3}\n", "'model.aspp_rates' must be a list")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=f"{name}: .*{message}"):
            load_config(tmp_path / name)
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04\xff\xfe binary")  # try-out: an unexpected UnicodeDecodeError
    with pytest.raises(ConfigError, match="model.pt: not a YAML text file"):
        load_config(tmp_path / "model.pt")
    # a misspelt line in a base file is reported against that base, not the file that names it
    (tmp_path / "base.yaml").write_text("optimizer: {lr: 0.01, sheduler: none}\n")
    (tmp_path / "child.yaml").write_text("base_config: base.yaml\nname: child\n")
    with pytest.raises(ConfigError, match=r"base.yaml: unknown setting 'optimizer.sheduler'"):
        load_config(tmp_path / "child.yaml")
    with pytest.raises(ConfigError, match="overrides: unknown setting 'augment.color_jitter.gamma'"):
        load_config(REPO / "configs" / "smoke.yaml", {"augment": {"color_jitter": {"gamma": 0.1}}})
    # the settings each wing does read are accepted, its own defaults filled in, none of the other wing's
    (tmp_path / "ok.yaml").write_text("task: classification\nmodel: {mask_mode: crop}\naugment: {blur_p: 0.2}\n"
                                      "data: {cache_size: 256}\n")
    cfg = load_config(tmp_path / "ok.yaml")
    assert cfg["model"]["mask_mode"] == "crop" and cfg["loss"] == {"class_weight_power": 1.0, "label_smoothing": 0.0}
    assert "architecture" not in cfg["model"] and "inference" not in cfg and "pseudo_labels" not in cfg["data"]
    # cleaning settings are checked once merged: a child may move a bound its base set (not the package default)
    (tmp_path / "clean_base.yaml").write_text("preprocess: {hair: {threshold_low: 10, threshold_high: 40}}\n")
    (tmp_path / "clean_child.yaml").write_text("base_config: clean_base.yaml\npreprocess: {hair: {threshold_low: 30}}\n")
    assert load_config(tmp_path / "clean_child.yaml")["preprocess"]["hair"]["threshold_low"] == 30
    # Lightning's devices and precision take several kinds; lists and tuples are one kind
    cfg = load_config(None, {"trainer": {"devices": "auto", "precision": 16}, "model": {"aspp_rates": (3, 6, 9)}})
    assert cfg["trainer"]["devices"] == "auto" and cfg["model"]["aspp_rates"] == (3, 6, 9)
    (tmp_path / "text_number.yaml").write_text("optimizer: {lr: 1e-3}\n")  # YAML 1.1 reads this as text
    assert float(load_config(tmp_path / "text_number.yaml")["optimizer"]["lr"]) == 1e-3
    seg = load_config(REPO / "configs" / "codec_fast.yaml")  # architecture-specific builder keys
    assert seg["model"]["encoder_layers"] == 14


def test_an_unknown_optimizer_or_scheduler_name_is_refused_in_both_wings():
    """Both wings build their optimiser in one place; a name it does not implement is an error, not a silent
    fallback to another optimiser or to a constant learning rate."""
    from dermoseg.config import CLASSIFICATION_DEFAULTS, DEFAULTS, ConfigError
    from dermoseg.training import build_optimizer
    params = [torch.nn.Parameter(torch.zeros(2))]
    for defaults in (DEFAULTS, CLASSIFICATION_DEFAULTS):
        opt = defaults["optimizer"]
        assert type(build_optimizer(params, opt)).__name__ == {"adam": "Adam", "adamw": "AdamW"}[opt["name"]]
        with pytest.raises(ConfigError, match="optimizer.name .* got 'sgd'"):
            build_optimizer(params, {**opt, "name": "sgd"})
        with pytest.raises(ConfigError, match="optimizer.scheduler .* got 'step'"):
            build_optimizer(params, {**opt, "scheduler": "step"})
    adamw = build_optimizer(params, {"name": "adamw", "lr": 0.5, "weight_decay": 0.1, "scheduler": "none"})
    assert adamw.param_groups[0]["lr"] == 0.5 and adamw.param_groups[0]["weight_decay"] == 0.1


def test_shipped_configs_resolve_to_what_their_comments_say():
    """The full-size Table 1 cell really is the paper's recipe (a base_config that was ignored once trained a
    MobileNetV2 with Dice+BCE instead)."""
    cfg = load_config(REPO / "configs" / "table1_best_full.yaml")
    assert (cfg["model"]["encoder"], cfg["loss"]["name"], cfg["optimizer"]["lr"], cfg["optimizer"]["scheduler"],
            cfg["trainer"]["batch_size"], cfg["trainer"]["epochs"], cfg["data"]["image_size"]) == \
        ("paper", "weighted_dice", 0.01, "none", 4, 40, 256)
    channel = load_config(REPO / "configs" / "classifier_mobilenet_v2_channel.yaml")
    assert channel["task"] == "classification" and channel["model"]["mask_mode"] == "channel"
    assert channel["data"]["mask_dir"] == "runs/ham10000_masks"


class _WorseningTask(__import__("lightning").LightningModule):
    """A one-weight model whose logged validation score falls every epoch, so only epoch 0 is ever the best."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("score", -float(self.current_epoch), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _TinyData(__import__("lightning").LightningDataModule):
    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(6, 1)), batch_size=2)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)), batch_size=2)


def test_last_checkpoint_is_the_last_epoch_even_when_the_score_did_not_improve(tmp_path):
    from dermoseg.training import fit
    cfg = {"trainer": {"epochs": 3, "accelerator": "cpu", "devices": 1, "strategy": "auto",
                       "precision": "32-true", "max_time_minutes": None}}
    result = fit(_WorseningTask(), _TinyData(), cfg, tmp_path, "score")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(result.best_checkpoint, weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 9)  # 3 epochs of 3 steps, not the best epoch 0
    assert best["epoch"] == 0
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_a_resumed_run_keeps_its_best_epoch_from_earlier_sessions(tmp_path):
    """Try-out finding: last.ckpt was saved before the best-epoch tracker had seen that epoch, so a run resumed
    after epoch 0 forgot that epoch 0 was the best, chose epoch 2 instead and wrote best-v1.ckpt beside
    best.ckpt; resuming a finished run wrote a NaN score into model.json. The score falls every epoch here, so
    epoch 0 must stay the best across three sessions."""
    from dermoseg.training import fit
    cfg = {"trainer": {"epochs": 1, "accelerator": "cpu", "devices": 1, "strategy": "auto",
                       "precision": "32-true", "max_time_minutes": None}}
    fit(_WorseningTask(), _TinyData(), cfg, tmp_path, "score")
    cfg["trainer"]["epochs"] = 3
    result = fit(_WorseningTask(), _TinyData(), cfg, tmp_path, "score", resume=True)
    assert result.best_score == 0.0 and torch.load(result.best_checkpoint, weights_only=False)["epoch"] == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    again = fit(_WorseningTask(), _TinyData(), cfg, tmp_path, "score", resume=True)  # nothing left to train
    assert again.best_score == 0.0 and again.best_checkpoint == result.best_checkpoint


def test_ema_weights_are_what_the_checkpoints_hold(tmp_path):
    """``trainer.ema_decay``: w_t = 1 - 0.8^t under SGD on (w - 1)², so the averaged weight after the 9 steps is
    the exponential moving average of that sequence, computed here by hand; the checkpoint keeps both."""
    from dermoseg.training import fit
    decay = 0.5
    cfg = {"trainer": {"epochs": 3, "accelerator": "cpu", "devices": 1, "strategy": "auto",
                       "precision": "32-true", "max_time_minutes": None, "ema_decay": decay}}
    fit(_WorseningTask(), _TinyData(), cfg, tmp_path, "score")
    weights = [1 - 0.8 ** t for t in range(1, 10)]  # after each of the 9 optimiser steps
    ema = weights[0]  # the first update copies the weights
    for w in weights[1:]:
        ema = decay * ema + (1 - decay) * w
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert float(last["state_dict"]["w"]) == pytest.approx(ema, abs=1e-6)
    assert float(last["current_model_state"]["w"]) == pytest.approx(weights[-1], abs=1e-6)
    assert abs(ema - weights[-1]) > 1e-3  # the two differ, so the test tells them apart


def test_a_model_trained_on_cleaned_images_records_every_cleaning_setting(tmp_path, data_root):
    """Inference must clean as training did, even after the shipped defaults change: the file keeps them all."""
    from dermoseg.modelfile import read
    from dermoseg.preprocess import resolve_settings
    overrides = {"data": {"root": str(data_root), "train_subset": 4, "val_subset": 4},
                 "trainer": {"epochs": 1}, "preprocess": {"enabled": True, "hair": {"line_length_px": 0}}}
    model = train(load_config(REPO / "configs" / "smoke.yaml", overrides), tmp_path / "run")
    recorded = read(model, "segmentation")[1]["config"]["preprocess"]
    assert recorded == resolve_settings({"enabled": True, "hair": {"line_length_px": 0}})
    assert recorded["hair"]["line_length_px"] == 0 and "dense_count" in recorded["hair"]


def test_init_from_starts_a_run_from_an_earlier_model_file(tmp_path, data_root):
    """``trainer.init_from`` (fine-tuning, e.g. at a larger input size): the task's network gets exactly the file's
    weights, in both wings; a file of another network or of the other wing is refused with its name."""
    from dermoseg import modelfile
    from dermoseg.errors import ConfigError
    from dermoseg.classification.task import ClassificationTask
    from dermoseg.segmentation.task import SegmentationTask
    from dermoseg.training import load_initial_weights
    cfg = load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root)}})
    torch.manual_seed(1)
    source = SegmentationTask(cfg).model.state_dict()
    path = modelfile.write(tmp_path / "earlier.pt", "segmentation", {"model": cfg["model"], "image_size": 64},
                           source, {})
    torch.manual_seed(2)
    task = SegmentationTask(cfg)
    assert any(not torch.equal(v, source[k]) for k, v in task.model.state_dict().items())
    assert load_initial_weights(task, path) == modelfile.file_sha256(path)
    assert all(torch.equal(v, source[k]) for k, v in task.model.state_dict().items())
    with pytest.raises(ConfigError, match="init_from .*classifier.pt"):
        load_initial_weights(task, modelfile.shipped("classifier"))
    # the classification wing the same way: a classifier file is taken, the segmentation file is refused
    ccfg = load_config(REPO / "configs" / "classifier_mobilenet_v2.yaml", {"data": {"root": str(data_root)},
                                                                          "model": {"pretrained": False}})
    torch.manual_seed(3)
    classifier_state = ClassificationTask(ccfg).model.state_dict()
    cpath = modelfile.write(tmp_path / "classifier.pt", "classifier", {"model": ccfg["model"]}, classifier_state, {})
    torch.manual_seed(4)
    ctask = ClassificationTask(ccfg)
    assert any(not torch.equal(v, classifier_state[k]) for k, v in ctask.model.state_dict().items())
    assert load_initial_weights(ctask, cpath) == modelfile.file_sha256(cpath)
    assert all(torch.equal(v, classifier_state[k]) for k, v in ctask.model.state_dict().items())
    with pytest.raises(ConfigError, match="earlier.pt: not a dermoseg classifier"):  # the file must be the task's kind
        load_initial_weights(ctask, path)
    # through the run driver: the exported model records the file it started from
    run = train(load_config(REPO / "configs" / "smoke.yaml", {"data": {"root": str(data_root)},
                                                              "trainer": {"epochs": 1, "init_from": str(path)}}),
                tmp_path / "run")
    assert Segmenter.load(run).info["init_from"] == {"file": str(path), "sha256": modelfile.file_sha256(path)}


def test_train_names_the_file_of_a_bad_setting_before_loading_any_data(tmp_path, capsys):
    """`dermoseg train` refuses a value of the wrong kind and a network its builders do not know with the
    file's name, before reading a single image (the data root here does not even exist)."""
    from dermoseg.cli import main
    cases = {"value.yaml": ("optimizer: {lr: fast}\n", "'optimizer.lr' must be a number"),
             "encoder.yaml": ("model: {encoder: mobilenetv2}\n", "unknown encoder 'mobilenetv2'"),
             "mask.yaml": ("task: classification\nmodel: {mask_mode: box}\n", "unknown mask_mode 'box'"),
             "optimizer.yaml": ("optimizer: {name: sgd}\n", "optimizer.name must be one of adam, adamw"),
             # the segmentation schedule has no warm-up; earlier runs recorded warmup_epochs: 0, still accepted
             "warmup.yaml": ("optimizer: {warmup_epochs: 1}\n", "optimizer.warmup_epochs must be 0 here"),
             "ensemble.yaml": ("model: {architecture: ensemble}\n", "'ensemble' is not trained: combine"),
             # try-out findings: values of the right kind but out of range failed late, or not at all
             "batch.yaml": ("trainer: {batch_size: -1}\n", "'trainer.batch_size' must be a whole number >= 1"),
             "epochs.yaml": ("trainer: {epochs: 0}\n", "'trainer.epochs' must be a whole number >= 1"),
             "half.yaml": ("trainer: {epochs: 1.5}\n", "'trainer.epochs' must be a whole number >= 1"),
             "lr.yaml": ("optimizer: {lr: -1}\n", "'optimizer.lr' must be a number > 0"),
             "val.yaml": ("data: {val_subset: -3}\n", "'data.val_subset' must be a whole number >= 1"),
             "twice.yaml": ("trainer: {epochs: 1}\ntrainer: {epochs: 2}\n", "key 'trainer' appears twice"),
             "listkey.yaml": ("? [a, b]\n: 1\n", "a key must be a name"),
             "time.yaml": ("trainer: {max_time_minutes: -5}\n", "'trainer.max_time_minutes' must be a number >= 0"),
             "ema.yaml": ("trainer: {ema_decay: 1.5}\n", "'trainer.ema_decay' must be a number in (0, 1)"),
             "weight.yaml": ("loss: {lesion_weight: -1}\n", "'loss.lesion_weight' must be a number >= 0"),
             "elastic.yaml": ("augment: {elastic_p: 2}\n", "'augment.elastic_p' must be a probability in [0, 1]"),
             "rotate.yaml": ("augment: {rotate_limit: -5}\n", "'augment.rotate_limit' must be a number of degrees"),
             "scale.yaml": ("augment: {scale: 1.5}\n", "'augment.scale' must be a number in [0, 1)"),
             # a later try-out: an unknown loss was an "unexpected ValueError" without the file, after "Seed set"
             "loss.yaml": ("loss: {name: dicee}\n", "unknown loss 'dicee' (choose from weighted_dice")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        code = main(["train", "--config", str(tmp_path / name), "--out", str(tmp_path / "run"),
                     "--data-root", str(tmp_path / "no_data")])
        err = capsys.readouterr().err
        assert code == 2 and f"{tmp_path / name}: " in err and message in err and "unexpected" not in err, err
        assert not (tmp_path / "run").exists()


def test_train_refuses_to_overwrite_a_run_and_resume_refuses_other_settings(tmp_path, data_root, capsys):
    """Try-out findings: a fresh `train` into a folder holding a run (or a user's own config.yaml) replaced its
    files and mixed its epochs into metrics.csv; `--resume` with another train_subset was accepted silently. Now
    both are refused before any image is read; more epochs on --resume are fine."""
    from dermoseg.cli import main
    (tmp_path / "smoke.yaml").write_text(f"base_config: {REPO / 'configs' / 'smoke.yaml'}\ntrainer: {{epochs: 1}}\n")
    (tmp_path / "more.yaml").write_text(f"base_config: {tmp_path / 'smoke.yaml'}\ntrainer: {{epochs: 2}}\n")
    (tmp_path / "other.yaml").write_text(f"base_config: {tmp_path / 'more.yaml'}\ndata: {{train_subset: 12}}\n")
    run = ["--out", str(tmp_path / "run"), "--data-root", str(data_root)]
    assert main(["train", "--config", str(tmp_path / "smoke.yaml"), *run]) == 0
    before = (tmp_path / "run" / "model.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "smoke.yaml"), *run]) == 2
    assert "holds a training run (config.yaml); continue it with --resume" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "other.yaml"), *run, "--resume"]) == 2
    assert "--resume with data.train_subset = 12, but the run being resumed used 16" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.pt").read_bytes() == before
    onnx = tmp_path / "run" / "model.onnx"
    assert main(["export", "--model", str(tmp_path / "run" / "model.pt"), "--out", str(onnx), "--data-root",
                 str(data_root)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "more.yaml"), *run, "--resume"]) == 0
    # try-out finding: the export beside the new model.pt went stale without a word
    assert f"warning: {onnx} is not an export of the new model.pt; remove it" in capsys.readouterr().err
    info = json.loads((tmp_path / "run" / "model.json").read_text())["info"]  # provenance of the model file
    assert info["dermoseg_version"] and "more.yaml" in info["command_line"] and info["epochs_completed"] == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("a,b\n")  # a user's file of the same name
    (tmp_path / "afile").write_text("x")  # try-out finding: '[Errno 17] File exists'
    assert main(["train", "--config", str(tmp_path / "smoke.yaml"), "--out", str(tmp_path / "afile")]) == 2
    assert "afile: is a file, not a folder" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "smoke.yaml"), "--out", str(mine), "--data-root",
                 str(data_root)]) == 2
    assert (mine / "metrics.csv").read_text() == "a,b\n"


def test_run_folder_check_allows_what_a_resume_may_change_and_skips_ddp_workers(tmp_path, monkeypatch):
    """Review findings: a resume under another run name (the _long config continuing its 8-epoch run), or with
    another precision, was refused; a run stopped in its first epoch (config.yaml, no checkpoint) could not be
    restarted by a sweep; a DDP worker started under SLURM would refuse the folder its first process had just
    written. The settings that change what is learnt are still refused."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from dermoseg.provenance import OutputFolderError
    from dermoseg.training import check_run_folder
    cfg = load_config(REPO / "configs" / "smoke.yaml")
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(cfg))
    (tmp_path / "logs").mkdir()  # stopped in its first epoch: no checkpoint yet
    with pytest.raises(OutputFolderError, match="holds a training run"):
        check_run_folder(tmp_path, cfg, resume=False)
    longer = load_config(REPO / "configs" / "smoke.yaml", {"name": "smoke_long", "trainer": {
        "epochs": 9, "precision": "bf16-mixed", "max_time_minutes": 5}})
    check_run_folder(tmp_path, longer, resume=True)
    other = load_config(REPO / "configs" / "smoke.yaml", {"optimizer": {"lr": 0.5}})
    with pytest.raises(OutputFolderError, match="optimizer.lr = 0.5, but the run being resumed used 0.001"):
        check_run_folder(tmp_path, other, resume=True)
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)  # a DDP worker: its launcher checked
    check_run_folder(tmp_path, other, resume=False)


def test_a_resume_without_a_checkpoint_replaces_nothing(tmp_path, capsys):
    """Try-out finding: `train --resume` into a finished run whose checkpoints were deleted, or into a folder of the
    user's own metrics.csv / model.pt, retrained from epoch 0 and replaced those files. Now refused; a folder
    with no run at all starts one, with a note."""
    import yaml

    from dermoseg.provenance import OutputFolderError
    from dermoseg.training import check_run_folder
    cfg = load_config(REPO / "configs" / "smoke.yaml")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "config.yaml").write_text(yaml.safe_dump(cfg))
    (finished / "model.pt").write_bytes(b"trained")
    with pytest.raises(OutputFolderError, match="holds model.pt and no checkpoints/last.ckpt"):
        check_run_folder(finished, cfg, resume=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("a,b\n")
    with pytest.raises(OutputFolderError, match="holds metrics.csv"):
        check_run_folder(mine, cfg, resume=True)
    check_run_folder(tmp_path / "new", cfg, resume=True)
    assert "no training run to resume there; starting one" in capsys.readouterr().err


def test_train_locks_its_folder_and_a_run_that_never_started_leaves_nothing(tmp_path, data_root, capsys):
    """Try-out findings: a second `train --resume` into a folder another train was writing ran to the end beside
    it; a run whose data folder was missing left config.yaml, which then refused the retry; --resume with fewer
    epochs than done failed late in Lightning's words."""
    import subprocess
    import sys

    from dermoseg.cli import main
    (tmp_path / "one.yaml").write_text(f"base_config: {REPO / 'configs' / 'smoke.yaml'}\ntrainer: {{epochs: 2}}\n")
    (tmp_path / "fewer.yaml").write_text(f"base_config: {tmp_path / 'one.yaml'}\ntrainer: {{epochs: 1}}\n")
    assert main(["train", "--config", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "run"),
                 "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "--data-root" in err and not (tmp_path / "run" / "config.yaml").exists()
    run = ["--out", str(tmp_path / "run"), "--data-root", str(data_root)]
    assert main(["train", "--config", str(tmp_path / "one.yaml"), *run]) == 0  # the retry is not refused
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "fewer.yaml"), *run, "--resume"]) == 2
    assert "trainer.epochs = 1, but the run has already trained 2 epochs" in capsys.readouterr().err
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dermoseg.provenance import "
                               "acquire_folder\nacquire_folder(sys.argv[1])\nprint('ready', flush=True)\n"
                               "time.sleep(60)", str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert main(["train", "--config", str(tmp_path / "one.yaml"), *run, "--resume"]) == 2
        assert f"another dermoseg run (process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("workers", [0, 2])
def test_two_runs_of_one_config_train_identically(tmp_path, data_root, workers):
    """Try-out finding: five runs of configs/smoke.yaml (seed 0) gave five epoch-0 train Dice values; albumentations 2
    draws from its own generator, which the run's seed did not reach. Two runs now log the same figures, also with
    loader workers (each reseeds its copy of the augmentation)."""
    from dermoseg.cli import main
    (tmp_path / "cfg.yaml").write_text(f"base_config: {REPO / 'configs' / 'smoke.yaml'}\n"
                                       f"data: {{num_workers: {workers}}}\n")
    logs = []
    for run in ("a", "b"):
        assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / run),
                     "--data-root", str(data_root)]) == 0
        with open(tmp_path / run / "metrics.csv", newline="") as fh:
            logs.append([(r["epoch"], r["train_loss"], r["train_dice"]) for r in csv.DictReader(fh)])
    assert logs[0] == logs[1] and len(logs[0]) >= 1
