"""Sweeps (grid expansion, resumable runs), training-log parsing and the report, on small synthetic inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dermoseg.experiments import sweep as sw
from dermoseg.experiments.collect import WORST_FILE, read_worst_masks, write_worst_masks
from dermoseg.experiments.logs import best_epoch, read_epoch_log
from dermoseg.report import ReportError, load_report_config, model_key, write_report

REPO = Path(__file__).resolve().parents[1]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------- grid and sweeps
def test_expand_grid_order_names_and_count():
    cells = sw.expand_grid({"trainer.epochs": [10, 20, 40], "trainer.batch_size": [4, 8], "optimizer.lr": [0.01, 0.05]},
                           {"trainer.epochs": "e", "trainer.batch_size": "b", "optimizer.lr": "lr"})
    assert len(cells) == 12
    assert [n for n, _ in cells[:4]] == ["e10_b4_lr0.01", "e10_b4_lr0.05", "e10_b8_lr0.01", "e10_b8_lr0.05"]
    assert cells[-1] == ("e40_b8_lr0.05", {"trainer.epochs": 40, "trainer.batch_size": 8, "optimizer.lr": 0.05})
    assert len({n for n, _ in cells}) == 12


@pytest.mark.parametrize("grid", [{}, {"trainer.epochs": []}, {"trainer.epochs": 10}])
def test_expand_grid_rejects_empty(grid):
    with pytest.raises(sw.SweepError):
        sw.expand_grid(grid)


def test_table1_grid_config_is_the_papers_setting_at_reduced_size(tmp_path):
    sweep = sw.load_sweep(REPO / "configs" / "table1_grid.yaml")
    assert len(sweep.cells) == 12
    for c in sweep.cells:
        cfg = c.config
        assert cfg["model"]["encoder"] == "paper" and cfg["model"]["aspp_rates"] == [3, 3, 6]
        assert cfg["loss"]["name"] == "weighted_dice" and cfg["optimizer"]["name"] == "adam"
        assert cfg["optimizer"]["scheduler"] == "none"
        assert cfg["trainer"]["epochs"] == c.settings["trainer.epochs"]
        assert cfg["trainer"]["batch_size"] == c.settings["trainer.batch_size"]
        assert cfg["optimizer"]["lr"] == c.settings["optimizer.lr"]
        assert cfg["data"]["image_size"] < 256 and cfg["data"]["train_subset"]
        assert cfg["name"] == f"table1_grid/{c.name}"
    # continuing: the 40-epoch cell starts from the 20-epoch cell with the same batch size and learning rate, if
    # that cell's last checkpoint is here
    sweep.options["runs_dir"] = str(tmp_path)
    done = {c.name: {} for c in sweep.cells if c.config["trainer"]["epochs"] < 40}
    cell = next(c for c in sweep.cells if c.name == "e40_b8_lr0.05")
    assert sw._predecessor(cell, done, sweep) is None
    for name in ("e10_b8_lr0.05", "e20_b8_lr0.05"):
        (tmp_path / "table1_grid" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "table1_grid" / name / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert sw._predecessor(cell, done, sweep).name == "e20_b8_lr0.05"


def test_comparison_cells_differ_in_one_thing_only():
    sweep = sw.load_sweep(REPO / "configs" / "comparison.yaml")
    by = {c.name: _flat(c.config) for c in sweep.cells}
    base = by["codec_paper"]
    for name, flat in by.items():
        diff = {k for k in set(base) | set(flat) if base.get(k) != flat.get(k)} - {"name"}
        declared = set(next(c for c in sweep.cells if c.name == name).settings)
        assert diff <= declared, (name, diff - declared)
    # identical budget, data, augmentation and loss for codec and U-Net
    for key in ("data.image_size", "data.train_subset", "trainer.epochs", "trainer.batch_size", "optimizer.lr", "loss.name", "seed"):
        assert by["unet"][key] == base[key]
    # a cosine schedule is never "continued" from a shorter run
    assert sw._predecessor(sweep.cells[1], {c.name: {} for c in sweep.cells}, sweep) is None


def test_a_misspelt_cell_setting_names_the_sweep_file_and_cell(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(f"base_config: {REPO / 'configs' / 'smoke.yaml'}\ncells:\n  - name: a\n    trainer: {{epoch: 3}}\n")
    with pytest.raises(sw.ConfigError, match=r"s.yaml: cell a: overrides: unknown setting 'trainer.epoch'"):
        sw.load_sweep(p)


def test_load_sweep_rejects_both_grid_and_cells(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("grid: {trainer.epochs: [1]}\ncells: [{name: a}]\n")
    with pytest.raises(sw.SweepError):
        sw.load_sweep(p)


def _fake_training(monkeypatch, calls):
    """Replace training, export, loading and scoring by stand-ins that write what the real ones write."""
    import dermoseg.experiments.collect as collect
    import dermoseg.segmentation.segmenter as segmenter
    import dermoseg.segmentation.task as training

    def fake_train(cfg, out_dir, resume=False):
        out_dir = Path(out_dir)
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / "checkpoints" / "last.ckpt"
        start = int(ckpt.read_text()) if resume and ckpt.is_file() else 0
        calls.append((cfg["name"], resume, start))
        mode = "a" if start else "w"
        with (out_dir / "metrics.csv").open(mode) as fh:
            if not start:
                fh.write("epoch,step,train_loss,train_dice,train_pixel_accuracy,val_loss,val_dice,val_pixel_accuracy\n")
            for e in range(start, cfg["trainer"]["epochs"]):
                fh.write(f"{e},{e},,,,0.5,{0.5 + 0.01 * e},0.9\n{e},{e},0.4,0.6,0.91,,,\n")
        ckpt.write_text(str(cfg["trainer"]["epochs"]))
        return out_dir / "model.pt"

    exported = {}

    class FakeModel:
        network = None

        def __init__(self, path):
            self.trained_epochs = exported[Path(path)]

    monkeypatch.setattr(training, "train", fake_train)
    def fake_export(ckpt, out, extra=None):
        calls.append(("export", Path(ckpt).name, int(Path(ckpt).read_text())))
        exported[Path(out)] = int(Path(ckpt).read_text())
        return Path(out)

    monkeypatch.setattr(training, "export_model", fake_export)
    monkeypatch.setattr(segmenter.Segmenter, "load", staticmethod(lambda path=None: FakeModel(path)))
    monkeypatch.setattr(collect, "model_size", lambda net, size: {"parameters": 1, "macs": 2})
    summary = {"pixel_accuracy": 0.9, "dice": 0.8, "jaccard": 0.7, "thresholded_jaccard": 0.6, "sensitivity": 0.8,
               "specificity": 0.95, "images": 1, "failures_jaccard_below_0.65": 0}
    monkeypatch.setattr(collect, "evaluate_loaded", lambda model, data: (
        [{"image_id": "x", **{k: summary[k] for k in ("pixel_accuracy", "dice", "jaccard", "thresholded_jaccard", "sensitivity", "specificity")}}],
        summary, {"x": np.zeros((2, 2), bool)}))
    monkeypatch.setattr(collect, "load_eval_set", lambda name, root: name)


def test_run_sweep_trains_each_cell_once_continues_shorter_cells_and_writes_csv(tmp_path, monkeypatch):
    calls = []
    _fake_training(monkeypatch, calls)
    p = tmp_path / "g.yaml"
    p.write_text(f"""
name: g
optimizer: {{scheduler: none}}
grid: {{trainer.epochs: [2, 4], optimizer.lr: [0.01, 0.05]}}
grid_names: {{trainer.epochs: e}}
sweep: {{runs_dir: {tmp_path / 'runs'}, results_dir: {tmp_path / 'results'}, evaluate: [isic2018_val]}}
""")
    sweep = sw.load_sweep(p)
    records = sw.run_sweep(sweep, log=lambda s: None)
    assert [r["cell"] for r in records] == ["e2_lr0.01", "e2_lr0.05", "e4_lr0.01", "e4_lr0.05"]
    # the 4-epoch cells resumed from epoch 2 of the matching 2-epoch cell, and each cell's model is the state
    # after its own last epoch (the last.ckpt it wrote over the copied one)
    trains = [c for c in calls if c[0] != "export"]
    assert [(c[1], c[2]) for c in trains] == [(False, 0), (False, 0), (True, 2), (True, 2)]
    assert [c[2] for c in calls if c[0] == "export"] == [2, 2, 4, 4]
    assert records[2]["continued_from"] == "e2_lr0.01"
    assert [r["evaluated_epoch"] for r in records] == [2, 2, 4, 4]
    assert [r["epoch"] for r in read_epoch_log(tmp_path / "results" / "runs" / "g" / "e4_lr0.01" / "metrics.csv")] == [1, 2, 3, 4]
    with (tmp_path / "results" / "g.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and rows[0]["isic2018_val_dice"] == "0.8" and rows[3]["continued_from"] == "e2_lr0.05"
    # a second invocation skips every finished cell
    calls.clear()
    assert len(sw.run_sweep(sw.load_sweep(p), log=lambda s: None)) == 4
    assert calls == []
    meta = json.loads((tmp_path / "results" / "g.meta.json").read_text())
    assert len(meta["invocations"]) == 1  # an invocation that trained nothing is not recorded
    # a fresh clone has the committed results but not the run folders (try-out finding: it called 0 cells
    # finished and would have rewritten the committed CSV with the first cell it trained): nothing is retrained
    # and the CSV is rewritten the same
    before = (tmp_path / "results" / "g.csv").read_text()
    shutil.rmtree(tmp_path / "runs")
    messages = []
    assert len(sw.run_sweep(sw.load_sweep(p), log=messages.append)) == 4
    assert calls == [] and "4 known from the committed results" in messages[0]
    assert (tmp_path / "results" / "g.csv").read_text() == before
    # ... unless the cell's settings changed since (same cell names, another weight decay): retrained
    p.write_text(p.read_text().replace("optimizer: {scheduler: none}", "optimizer: {scheduler: none, weight_decay: 0.001}"))
    assert [r["cell"] for r in sw.run_sweep(sw.load_sweep(p), only=["e2_lr0.01"], log=lambda s: None)] == \
        ["e2_lr0.01"]
    assert [c[0] for c in calls if c[0] != "export"] == ["g/e2_lr0.01"]
    # a committed record made before a setting existed counts as made with its default (review finding: it
    # matched whatever the cell set) ...
    p.write_text(p.read_text().replace(", weight_decay: 0.001}", "}"))  # the committed settings again
    record_file = tmp_path / "results" / "runs" / "g" / "e4_lr0.05" / "run.json"
    record = json.loads(record_file.read_text())
    del record["config"]["loss"]["smooth"]
    record_file.write_text(json.dumps(record))
    calls.clear()
    sw.run_sweep(sw.load_sweep(p), only=["e4_lr0.05"], log=lambda s: None)
    assert calls == []
    # ... so a cell that sets it to another value is not that record's: retrained
    p.write_text(p.read_text().replace("optimizer: {scheduler: none}", "optimizer: {scheduler: none}\nloss: {smooth: 2.0}"))
    sw.run_sweep(sw.load_sweep(p), only=["e4_lr0.05"], log=lambda s: None)
    assert [c[0] for c in calls if c[0] != "export"] == ["g/e4_lr0.05"]


# --------------------------------------------------------------------------------------------------- logs
def test_read_epoch_log_merges_lightning_rows(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,step,train_dice,train_loss,train_pixel_accuracy,val_dice,val_loss,val_pixel_accuracy\n"
                 "0,9,,,,0.70,0.4,0.90\n0,9,0.6,0.5,0.88,,,\n1,19,,,,0.75,0.3,0.92\n1,19,0.7,0.4,0.90,,,\n")
    recs = read_epoch_log(p)
    assert [r["epoch"] for r in recs] == [1, 2]
    assert recs[0]["val_dice"] == pytest.approx(0.70) and recs[0]["train_dice"] == pytest.approx(0.6)
    assert best_epoch(recs)["epoch"] == 2


# ------------------------------------------------------------------------------------------------- report
def _write_run(root: Path, name: str, arch: str, dice: float, with_eval: bool = True):
    d = root / "runs" / name
    d.mkdir(parents=True)
    model = {"architecture": arch, "encoder": "paper"}
    cfg = {"model": model, "data": {"image_size": 64, "train_subset": 8}, "loss": {"name": "weighted_dice"},
           "optimizer": {"scheduler": "none"}}
    (d / "run.json").write_text(json.dumps({"run": name, "label": name, "config": cfg, "image_size": 64,
                                            "parameters": 1000 if arch == "codec" else 5000, "macs": 2e9, "checkpoint": "last"}))
    (d / "metrics.csv").write_text("epoch,step,train_loss,train_dice,train_pixel_accuracy,val_loss,val_dice,val_pixel_accuracy\n"
                                   f"0,1,,,,0.5,{dice - 0.1},0.9\n0,1,0.6,0.5,0.85,,,\n1,2,,,,0.4,{dice},0.92\n1,2,0.5,0.6,0.9,,,\n")
    if with_eval:
        for s in ("isic2018_val", "ph2"):
            e = d / "eval" / s
            e.mkdir(parents=True)
            (e / "summary.json").write_text(json.dumps({"pixel_accuracy": 0.9, "dice": dice, "jaccard": dice - 0.1,
                                                        "thresholded_jaccard": dice - 0.2, "sensitivity": 0.8,
                                                        "specificity": 0.9, "images": 3, "failures_jaccard_below_0.65": 1}))
            (e / "per_image.csv").write_text("image_id,dice,jaccard\nA,0.9,0.8\nB,0.5,0.4\nC,%s,%s\n" % (dice, dice - 0.1))


def test_report_from_synthetic_logs_writes_tables_figures_and_names_what_is_missing(tmp_path, capsys):
    root = tmp_path / "results"
    _write_run(root, "comparison/codec_paper", "codec", 0.85)
    _write_run(root, "comparison/unet", "unet", 0.80)
    _write_run(root, "comparison/codec_mobilenet_v2", "codec", 0.88, with_eval=False)
    (root / "table1_grid.csv").write_text("cell,epochs,batch_size,lr,isic2018_val_dice,ph2_pixel_accuracy,train_wall_cumulative_s\n"
                                          "e10_b4_lr0.01,10,4,0.01,0.7,0.9,10\ne20_b4_lr0.01,20,4,0.01,0.75,0.91,20\n")
    (root / "throughput.json").write_text(json.dumps({"results": [{"key": "unet@64", "train_img_s": 3.0, "infer_img_s": 9.0}]}))
    spec = load_report_config(REPO / "configs" / "report.yaml")
    out = write_report(spec, root, data_root=tmp_path / "no_data_here")
    text = out.read_text()
    missing = text.split("## Missing inputs")[1].count("\n- ")
    assert f"note: {missing} missing input(s), listed under 'Missing inputs'" in capsys.readouterr().err
    # the main table has both reduced-budget models with their numbers; the shipped codec is named missing
    assert "0.850" in text and "0.800" in text
    assert "`codec_mobilenet_v2`" in text.split("## Missing inputs")[1]
    assert "evaluation of `comparison/codec_mobilenet_v2`" in text
    # throughput matched by model kind and size
    assert "9.0" in text
    # codec vs U-Net claim computed from the synthetic numbers (Dice +0.050)
    assert "+0.050" in text
    # best grid cell and only-2-of-12 warning
    assert "Best cell by isic2018_val_dice: **e20_b4_lr0.01**" in text
    assert "Only 2 of the 12 cells" in text
    figs = {p.name for p in (root / "figures").glob("*.png")}
    assert {"curves_codec_vs_unet.png", "dice_distribution.png", "table1_grid.png"} <= figs
    # no data folder: no overlay sheet, and the report says why
    assert not any(f.startswith("worst_") for f in figs)
    assert "overlay sheet of `comparison/codec_paper`" in text


def test_report_on_empty_folder_degrades(tmp_path):
    spec = load_report_config(REPO / "configs" / "report.yaml")
    text = write_report(spec, tmp_path / "empty", data_root=None).read_text()
    assert "## Missing inputs" in text and "table1_grid.csv" in text and "_missing_" in text
    assert write_report(spec, tmp_path / "empty", data_root=None).read_text() == text  # its own README: replaced
    # try-out finding: a README.md of the user's own in --results was replaced
    from dermoseg.provenance import OutputFolderError
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("my notes\n")
    with pytest.raises(OutputFolderError, match="not written by dermoseg report"):
        write_report(spec, tmp_path / "mine", data_root=None)
    assert (tmp_path / "mine" / "README.md").read_text() == "my notes\n"


def test_model_key():
    assert model_key({"architecture": "unet", "width": 32}, 128) == "unet@128"
    assert model_key({"architecture": "codec", "encoder": "paper"}, 64) == "codec-paper@64"


# ------------------------------------------------------------------------------------- cached evaluation
def test_evaluate_loaded_equals_evaluate_model(isic_samples):
    import torch

    from dermoseg.engine import TorchRunner
    from dermoseg.experiments.collect import LoadedSet, evaluate_loaded
    from dermoseg.segmentation.evaluate import evaluate_model
    from dermoseg.segmentation.segmenter import Segmenter
    from dermoseg.io import read_image, read_mask
    from dermoseg.models import build_model
    torch.manual_seed(0)
    net = build_model({"architecture": "codec", "encoder": "paper", "encoder_width": 32}, pretrained=False).eval()
    with torch.no_grad():
        net.head.bias.fill_(0.3)  # so that some pixels are predicted lesion
    model = Segmenter(TorchRunner(net), 32, {}, Path("none.pt"), {})
    samples = isic_samples[:3]
    data = LoadedSet("t", [s.image_id for s in samples], [read_image(s.image_path) for s in samples],
                     [read_mask(s.mask_path, 0) for s in samples])
    rows_a, summ_a = evaluate_model(model, samples)
    rows_b, summ_b, masks = evaluate_loaded(model, data)
    assert summ_a == summ_b
    assert set(masks) == {s.image_id for s in samples}


# ------------------------------------------------------------------------------ import and overlay sheet
def test_import_run_copies_log_size_evaluations_and_worst_masks(tmp_path):
    import torch

    from dermoseg.experiments.collect import import_run
    from dermoseg.io import write_image
    from dermoseg.models import build_model
    run = tmp_path / "run"
    run.mkdir()
    model_cfg = {"architecture": "codec", "encoder": "paper", "encoder_width": 32}
    net = build_model(model_cfg, pretrained=False)
    cfg = {"model": model_cfg, "image_size": 32, "preprocess": {"enabled": False}, "train_config": {"model": model_cfg}}
    torch.save({"format": "dermoseg-segmentation-1", "config": cfg, "state_dict": net.state_dict(),
                "info": {"train_seconds_this_session": 12.5, "epochs_completed": 3}}, run / "model.pt")
    (run / "model.json").write_text(json.dumps({"config": cfg, "info": {"train_seconds_this_session": 12.5, "epochs_completed": 3}}))
    (run / "metrics.csv").write_text("epoch,step,val_dice\n0,1,0.5\n")
    ev = tmp_path / "eval" / "shipped" / "isic2018_val"
    (ev / "masks").mkdir(parents=True)
    (ev / "summary.json").write_text(json.dumps({"dice": 0.7}))
    (ev / "per_image.csv").write_text("image_id,dice,jaccard\nA,0.9,0.8\nB,0.2,0.1\nC,0.5,0.4\n")
    for i in "ABC":
        write_image(ev / "masks" / f"{i}_segmentation.png", np.ones((4, 4), bool))
    dest = import_run("shipped", run, tmp_path / "results", n_worst=2, eval_root=tmp_path / "eval")
    rec = json.loads((dest / "run.json").read_text())
    assert rec["parameters"] == sum(p.numel() for p in net.parameters()) and rec["macs"] > 0
    assert rec["train_wall_s"] == 12.5 and rec["eval"]["isic2018_val"]["dice"] == 0.7
    assert sorted(read_worst_masks(dest / "eval" / "isic2018_val" / WORST_FILE)) == ["B", "C"]
    assert (dest / "metrics.csv").read_text().startswith("epoch")
    # try-out findings: a second import over it replaced metrics.csv and run.json but kept the old eval/ (mixed);
    # a name with a folder in it wrote outside RESULTS/runs; an ONNX export beside model.pt broke the import
    from dermoseg.experiments.collect import CollectError
    before = (dest / "run.json").read_text()
    with pytest.raises(CollectError, match="holds an imported run already"):
        import_run("shipped", run, tmp_path / "results", eval_root=tmp_path / "eval")
    assert (dest / "run.json").read_text() == before
    with pytest.raises(CollectError, match="plain folder name"):
        import_run("../escape", run, tmp_path / "results", eval_root=tmp_path / "eval")
    assert not (tmp_path / "results" / "escape").exists()
    (run / "model.onnx").write_bytes(b"an export beside the model: import reads the PyTorch network, not this")
    assert import_run("exported", run, tmp_path / "results", eval_root=tmp_path / "eval").is_dir()


def test_report_sections_and_paper_figures_come_from_the_config(tmp_path, data_root):
    root = tmp_path / "results"
    _write_run(root, "comparison/codec_paper", "codec", 0.85)
    _write_run(root, "comparison/unet", "unet", 0.80)
    spec = load_report_config(REPO / "configs" / "report.yaml")
    for claim in spec["paper_claims"]:  # the paper's U-Net figure, changed in the config only
        if claim["model"].startswith("U-Net"):
            claim["test_accuracy"] = 0.5
    spec["sections"] = ["worst", "claims"]
    spec["worst_cases"] = {"set": "isic2018_val", "count": 12, "runs": ["comparison/unet"]}
    text = write_report(spec, root, data_root=data_root).read_text()
    assert "codec +0.408 pixel acc. (0.908 vs 0.500, PH2)" in text and "| 0.5000 |" in text
    assert text.index("## The worst validation cases") < text.index("## Claims checked") and "## Main table" not in text
    # real data but no committed masks: the report names the missing file (this branch raised NameError before)
    assert "no predicted masks in runs/comparison/unet/eval/isic2018_val/worst_masks.npz" in text
    (tmp_path / "bad.yaml").write_text("sections: [claims, no_such_section]\n")
    with pytest.raises(ReportError, match="no_such_section"):
        load_report_config(tmp_path / "bad.yaml")


def test_report_command_refuses_a_results_folder_that_does_not_exist(tmp_path, capsys):
    """Try-out finding: a mistyped --results made that folder and a report of nothing but missing inputs, exit 0."""
    from dermoseg.cli import main
    assert main(["report", "--config", str(REPO / "configs" / "report.yaml"), "--results", str(tmp_path / "nope")]) == 2
    assert "nope: results folder not found" in capsys.readouterr().err and not (tmp_path / "nope").exists()


def test_report_draws_overlay_sheet_from_committed_masks_and_real_images(tmp_path, data_root, capsys):
    from dermoseg.data.evalsets import dataset_samples
    from dermoseg.io import read_mask
    root = tmp_path / "results"
    _write_run(root, "comparison/unet", "unet", 0.8)
    samples = dataset_samples("isic2018", data_root, "val")[:3]
    ev = root / "runs" / "comparison" / "unet" / "eval" / "isic2018_val"
    lines = ["image_id,dice,jaccard"]
    preds = {}
    for k, s in enumerate(samples):
        truth = read_mask(s.mask_path, 0)
        preds[s.image_id] = np.roll(truth, 20 * (k + 1), axis=1)
        lines.append(f"{s.image_id},{0.5 + 0.1 * k},{0.4 + 0.1 * k}")
    write_worst_masks(ev / WORST_FILE, preds)
    (ev / "per_image.csv").write_text("\n".join(lines) + "\n")
    spec = load_report_config(REPO / "configs" / "report.yaml")
    spec["worst_cases"] = {"set": "isic2018_val", "count": 12, "runs": ["comparison/unet"]}
    text = write_report(spec, root, data_root=data_root).read_text()
    assert (root / "figures" / "worst_comparison__unet.png").stat().st_size > 10_000
    assert "](figures/worst_comparison__unet.png)" in text
    capsys.readouterr()
    # without the data folder the committed sheet is kept, and that is said on stderr, not only in the README
    text = write_report(spec, root, data_root=None).read_text()
    assert "_Sheet not regenerated (no data folder given); the committed one is shown._" in text
    assert "note: figures/worst_comparison__unet.png not regenerated (no data folder given)" in capsys.readouterr().err


def test_run_sweep_starts_no_cell_after_the_deadline(tmp_path, monkeypatch):
    import time
    calls = []
    _fake_training(monkeypatch, calls)
    p = tmp_path / "g.yaml"
    p.write_text(f"name: g\ngrid: {{trainer.epochs: [1, 2]}}\n"
                 f"sweep: {{runs_dir: {tmp_path / 'runs'}, results_dir: {tmp_path / 'results'}, evaluate: [ph2]}}\n")
    assert sw.run_sweep(sw.load_sweep(p), log=lambda s: None, deadline=time.time() - 1) == []
    assert time.localtime(sw.parse_deadline("23:59"))[3:5] == (23, 59)
    for bad in ("25:00", "noon", "1:2:3"):
        with pytest.raises(sw.SweepError, match="HH:MM"):
            sw.parse_deadline(bad)
    assert calls == []
    meta = json.loads((tmp_path / "results" / "g.meta.json").read_text())
    assert meta["invocations"][0]["cells_skipped_for_deadline"] == ["epochs1", "epochs2"]


def test_cumulative_train_seconds_reads_the_timer_state_of_last_ckpt(tmp_path):
    import torch
    from dermoseg.experiments.collect import cumulative_train_seconds
    assert cumulative_train_seconds(tmp_path) is None  # no checkpoint
    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 3, "callbacks": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert cumulative_train_seconds(tmp_path) is None  # trained without a time limit: no Timer state
    torch.save({"epoch": 3, "callbacks": {"Timer": {"time_elapsed": {"train": 1234.56, "validate": 9.0}}}},
               tmp_path / "checkpoints" / "last.ckpt")
    assert cumulative_train_seconds(tmp_path) == 1234.6


def test_compare_classifiers_averages_several_b_files_into_an_ensemble(tmp_path, data_root):
    """experiments/compare_classifiers.py with two B files scores their image-by-image mean: on 42 real HAM10000
    images (6 per class), a model that puts 0.95 on the true class and one that puts 0.6 on a wrong class average to a model
    whose top class is still the true one ((0.95 + 0.4/6) / 2 = 0.51 against (0.6 + 0.05/6) / 2 = 0.30), so its
    balanced accuracy is 1, while the wrong model alone scores 0."""
    import importlib.util

    from dermoseg.data.datasets import HAM_CLASSES, load_ham10000

    spec = importlib.util.spec_from_file_location("compare_classifiers", REPO / "experiments" / "compare_classifiers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    everything = sorted(load_ham10000(data_root / "ham10000"), key=lambda s: s.image_id)
    nevus = HAM_CLASSES.index("NV")
    samples = [s for c in range(len(HAM_CLASSES)) if c != nevus for s in [x for x in everything if x.label == c][:6]]
    samples += [x for x in everything if x.label == nevus and x.dx_type == "histo"][:3]  # excised nevi
    samples += [x for x in everything if x.label == nevus and x.dx_type != "histo"][:3]

    def write(name: str, probs) -> Path:
        path = tmp_path / f"{name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", *HAM_CLASSES])
            for s in samples:
                w.writerow([s.image_id, *probs(s.label)])
        return path

    k = len(HAM_CLASSES)
    right = write("right", lambda y: [0.95 if c == y else 0.05 / (k - 1) for c in range(k)])
    wrong = write("wrong", lambda y: [0.6 if c == (y + 1) % k else 0.4 / (k - 1) for c in range(k)])
    out = tmp_path / "diff.json"
    assert module.main([str(right), str(wrong), "--data-root", str(data_root), "--resamples", "100",
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["balanced_accuracy"]["b"] == 0.0
    # melanoma (6) vs the 3 excised nevi on P(MEL) / (P(MEL) + P(NV)): the right model ranks every melanoma first
    # (AUC 1); the wrong one puts 0.6 on the class after the truth, so a melanoma scores (0.4/6) / (0.4/6 + 0.6)
    # = 0.1 and a nevus (0.4/6) / (0.4/6 + 0.4/6) = 0.5: every nevus first, AUC 0
    excised = result["melanoma_vs_excised_nevus_auc"]
    assert (excised["a"], excised["b"]) == (1.0, 0.0) and result["excised_nevi"] == 3  # the 3 follow-up ones left out
    assert module.main([str(wrong), str(right), str(wrong), "--data-root", str(data_root), "--resamples", "100",
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())["balanced_accuracy"]
    assert result["a"] == 0.0 and result["b"] == 1.0


def test_melanoma_score_choice_by_hand_and_on_validation_images_only(tmp_path, data_root, capsys):
    """experiments/melanoma_score_choice.py on 7 real validation images with hand-made probabilities: melanomas
    spread over BKL (P(MEL) 0.3, P(NV) 0.1, P(BKL) 0.6: two-class score 0.75), excised nevi at P(MEL) 0.4 / P(NV)
    0.6 (score 0.4), follow-up nevi at P(MEL) 0.05 / P(NV) 0.95. On the plain P(MEL) every melanoma is below both
    excised nevi and above both follow-up ones (AUC 0.5 against all nevi, 0 against the excised); on the two-class
    score above all (1 and 1). Predictions with a training image are refused."""
    import importlib.util

    from dermoseg.data.datasets import HAM_CLASSES, load_ham10000
    from dermoseg.data.splits import HAM_SPLIT, read_split, select

    spec = importlib.util.spec_from_file_location("melanoma_score_choice", REPO / "experiments" / "melanoma_score_choice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ham = load_ham10000(data_root / "ham10000")
    val = select(ham, read_split(HAM_SPLIT), "val")
    mel, nv, bkl = (HAM_CLASSES.index(c) for c in ("MEL", "NV", "BKL"))
    rows = [(s, {mel: 0.3, nv: 0.1, bkl: 0.6}) for s in [x for x in val if x.label == mel][:3]]
    rows += [(s, {mel: 0.4, nv: 0.6}) for s in [x for x in val if x.label == nv and x.dx_type == "histo"][:2]]
    rows += [(s, {mel: 0.05, nv: 0.95}) for s in [x for x in val if x.label == nv and x.dx_type == "follow_up"][:2]]

    def write(path, items):
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", *HAM_CLASSES])
            for s, p in items:
                w.writerow([s.image_id, *(p.get(c, 0.0) for c in range(len(HAM_CLASSES)))])
    write(tmp_path / "val.csv", rows)
    assert module.main([str(tmp_path / "val.csv"), "--data-root", str(data_root), "--resamples", "100",
                        "--out", str(tmp_path / "choice.json")]) == 0
    result = json.loads((tmp_path / "choice.json").read_text())
    assert (result["melanoma"], result["nevus"], result["excised_nevus"]) == (3, 4, 2)
    assert (result["all_nevi"]["a"], result["all_nevi"]["b"]) == (0.5, 1.0)
    assert (result["excised_nevi"]["a"], result["excised_nevi"]["b"]) == (0.0, 1.0)
    train = select(ham, read_split(HAM_SPLIT), "train")[0]
    write(tmp_path / "mixed.csv", rows + [(train, {nv: 1.0})])
    with pytest.raises(SystemExit, match="not in the HAM10000 validation split"):
        module.main([str(tmp_path / "mixed.csv"), "--data-root", str(data_root)])

def test_adabn_reestimates_batch_norm_statistics_on_unlabelled_images_only(data_root, tmp_path):
    """experiments/adabn_classifier.py: the images it adapts to never include the 609 external test images (those
    with a diagnosis), and a batch-norm layer's running mean and variance become the batch average of the prepared
    inputs' mean and unbiased variance, whatever they were before, weights untouched."""
    import importlib.util

    import numpy as np
    import torch

    from dermoseg.classification.classifier import input_array, prepare_image
    from dermoseg.io import read_image

    spec = importlib.util.spec_from_file_location("adabn_classifier", REPO / "experiments" / "adabn_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = module.unlabelled_isic_images(data_root)
    with open(data_root / "isic2018_task1" / "metadata.csv", newline="") as fh:
        diagnosed = {r["image_id"] for r in csv.DictReader(fh) if r["diagnosis"]}
    assert len(images) == 2075 - len(diagnosed) and not {p.stem for p in images} & diagnosed
    assert all(p.is_file() for p in images[:5])
    norm = (np.array([0.5, 0.4, 0.3], np.float32), np.array([0.2, 0.25, 0.3], np.float32))
    layer = torch.nn.BatchNorm2d(3)
    layer.running_mean.fill_(7.0)
    layer.weight.data.fill_(2.0)
    picked = images[:5]
    assert module.adapt_batch_norm(torch.nn.Sequential(layer), picked, 32, norm, batch_size=2) == 1
    x = np.stack([input_array(prepare_image(read_image(p), 32), norm) for p in picked])  # (5, 3, 32, 32)
    # batches of 2, 2 and 1 image: each batch's per-channel mean and unbiased variance, the three weighing the same
    pixels = [x[i:i + 2].transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) for i in (0, 2, 4)]
    np.testing.assert_allclose(layer.running_mean.numpy(), np.mean([b.mean(1) for b in pixels], 0), rtol=1e-4)
    np.testing.assert_allclose(layer.running_var.numpy(), np.mean([b.var(1, ddof=1) for b in pixels], 0), rtol=1e-4)
    assert torch.all(layer.weight == 2.0) and not layer.training
    # a classifier whose stem is frozen (kept in eval mode by its train()) has that stem adapted too
    from dermoseg.models.classifier import build_classifier
    network = build_classifier({"encoder": "mobilenet_v2", "freeze_stages": 4}, pretrained=False)
    count = module.adapt_batch_norm(network, picked[:2], 32, norm)
    tracked = [m.num_batches_tracked.item() for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert count == len(tracked) > 0 and set(tracked) == {1}
    # the script refuses an output (or a file beside it) that it did not create, before any work
    taken = tmp_path / "taken.ood.json"
    taken.write_text("not ours")
    with pytest.raises(FileExistsError, match="taken.ood.json: already exists"):
        module.main(["--mix", "mixed", "--out", str(tmp_path / "taken.pt"), "--data-root", str(data_root)])
    assert taken.read_text() == "not ours"


def _experiment(name: str):
    """An ``experiments/<name>.py`` script as a module (the scripts are not part of the package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tta_threshold_passes_are_the_eight_symmetries_and_start_with_the_shipped_flips():
    """experiments/tta_threshold.py: with a "network" whose output ignores its input (a fixed asymmetric ramp),
    each pass is the ramp put back through the inverse symmetry, so the eight passes are the eight distinct images
    of the ramp under the square's symmetries, their mean is symmetric itself, and the first three are the passes
    of the segmenter's own flip TTA (Segmenter.pass_logits)."""
    from dermoseg.segmentation.segmenter import Segmenter

    module = _experiment("tta_threshold")
    ramp = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) ** 1.5  # no symmetry at all
    segmenter = Segmenter.load("fast", engine="torch", quality=False)
    segmenter.runner = lambda batch: ramp.copy()
    x = np.zeros((1, 3, 4, 4), np.float32)
    passes = module.symmetric_logits(segmenter, x)
    assert passes.shape == (8, 1, 4, 4)
    assert len({p.tobytes() for p in passes}) == 8
    mean = passes.mean(0)[0]
    for view in (mean[::-1], mean[:, ::-1], mean.T, np.rot90(mean)):
        np.testing.assert_allclose(view, mean, rtol=1e-6)
    np.testing.assert_array_equal(passes[:3], segmenter.pass_logits(x, tta=True))
    assert list(module.PASS_SETS.values()) == [1, 3, 4, 8]


def test_dihedral_classifier_tta_averages_the_eight_symmetries():
    """experiments/dihedral_tta_classifier.py: the transpose-averaging runner under the classifier's four-flip TTA
    (flip_logits) gives the mean of a linear "network" over all eight symmetries of the input, computed here
    directly with numpy rotations."""
    from dermoseg.classification.classifier import flip_logits

    module = _experiment("dihedral_tta_classifier")
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(2, 5, 5)).astype(np.float32)

    def runner(batch):  # (N, 1, 5, 5) → (N, 2): two fixed linear read-outs, no symmetry
        return np.einsum("nchw,khw->nk", batch, weights).astype(np.float32)

    batch = rng.normal(size=(3, 1, 5, 5)).astype(np.float32)
    views = [np.rot90(b, k, axes=(-2, -1)) for b in (batch, batch[..., ::-1]) for k in range(4)]
    expected = np.mean([runner(np.ascontiguousarray(v)) for v in views], axis=0)
    np.testing.assert_allclose(flip_logits(module.with_transpose(runner), batch), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_raises(AssertionError, np.testing.assert_allclose, flip_logits(runner, batch), expected,
                             rtol=1e-5, atol=1e-5)  # the four flips alone are not the eight
