"""The ``dermoseg`` command: subcommands only (parse, call, report). All logic lives in the library modules.

Exit status: 0 on success, 1 when some inputs of a batch failed (the others were processed), 2 on a usage or
input error that stopped the command (the message names the file and the problem, without a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from dermoseg.config import DATA_ROOT as DATA_ROOT_DEFAULT
from dermoseg.engine import ENGINES
from dermoseg.errors import DermosegError

EPILOG = "Research tool, not a medical device."
DATA_VARIABLE = "DERMOSEG_DATA"  # the data folder when --data-root is not given (scripts/quickstart.sh reads it too)
DATA_ROOT_DEFAULT_TEXT = f"${DATA_VARIABLE} when set, else {DATA_ROOT_DEFAULT}"
CLASSIFIER_HELP = "classifier file, or \"classifier\" for the shipped one (the default)"  # diagnose, serve


class CommandError(DermosegError):
    """A user-facing error: printed as 'error: <message>', exit status 2."""


def _env_data_root() -> Path | None:
    """The data folder ``$DERMOSEG_DATA`` names, or None when it is unset or blank."""
    value = os.environ.get(DATA_VARIABLE, "")
    return Path(value) if value.strip() else None


def _default_data_root() -> Path:
    """A command's data folder when ``--data-root`` is not given: ``$DERMOSEG_DATA``, else ``../shared/data``."""
    return _env_data_root() or Path(DATA_ROOT_DEFAULT)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def _named(text: str) -> str:
    """A file, folder, pattern or model name argument: refused when empty (``--out "$OUT"`` with OUT unset would
    otherwise mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path (an unset shell variable?)")
    return text


def _path(text: str) -> Path:
    """:func:`_named`, as a Path."""
    return Path(_named(text))


def _add_engine_arguments(p) -> None:
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="onnx: ONNX Runtime on the model's ONNX export (X.onnx beside X.pt; the default when it is "
                   "there, as for the shipped models); torch: eager PyTorch (the default for a model without export)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="compute threads (default: the CPUs available to this process, from its CPU affinity and "
                   "cgroup quota, at most OMP_NUM_THREADS when set)")


def _add_resume(p) -> None:
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out: keep its "
                   "table rows and skip the images whose outputs are complete")


_CREATED: list[Path] = []  # output folders this command created, deepest first (see _remove_empty_outputs)


def _check_out(folder: Path) -> None:
    """Fail before any work (model loading, input search) if the output folder cannot be written."""
    from dermoseg.provenance import ensure_writable
    new = [p for p in (Path(folder), *Path(folder).parents) if not os.path.lexists(p)]
    try:
        ensure_writable(folder)
    finally:  # also the parents made before a failure (a name too long for the file system)
        _CREATED.extend(p for p in new if os.path.lexists(p))


def _remove_empty_outputs() -> None:
    """After a failed or interrupted command, remove the output folders it created if they are still empty (a
    run refused before any work leaves nothing behind); a folder holding anything is kept."""
    while _CREATED:
        try:
            _CREATED.pop(0).rmdir()  # only ever an empty folder
        except OSError:
            _CREATED.clear()


# --------------------------------------------------------------------------------------------- segment
def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="segment lesions in images (the main job)",
                       description="Segment the lesion in each dermoscopic image. Writes DIR/<stem>_segmentation.png "
                       "(0/255, ISIC 2018 naming, the input's size), DIR/<stem>_overlay.jpg and DIR/results.csv. "
                       "Bad files are reported (stderr and DIR/failures.csv) and skipped; exit status 1 if any "
                       "failed. Same-named inputs get stems x, x__2, x__3...", epilog=EPILOG)
    p.add_argument("inputs", nargs="+", type=_named,
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--out", required=True, type=_path, help="output folder (created)")
    p.add_argument("--model", type=_named, default=None,
                   help="model file, or a shipped model: default (the two-network ensemble) or fast (the small preset)")
    _add_engine_arguments(p)
    from dermoseg.segmentation.segmenter import THRESHOLD  # here, not at import: Ctrl-C during torch's import
    p.add_argument("--threshold", type=float, default=THRESHOLD, help=f"lesion probability threshold (default {THRESHOLD})")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None,
                     help="flip test-time augmentation (3x slower; default: what the model file says, on for the shipped model)")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="a single forward pass per image")
    pre = p.add_mutually_exclusive_group()
    pre.add_argument("--preprocess", dest="preprocess", action="store_true", default=None,
                     help="remove black frame and hair before segmenting")
    pre.add_argument("--no-preprocess", dest="preprocess", action="store_false",
                     help="segment the raw image (default: what the model file says)")
    p.add_argument("--diagnose", action="store_true",
                   help="add the top class and the seven calibrated class probabilities to results.csv "
                   "(research tool, not a medical device)")
    p.add_argument("--classifier", type=_path, default=None, help="classifier file for --diagnose "
                   "(default: the shipped classifier)")
    p.add_argument("--mm-per-pixel", type=float, default=None, metavar="MM",
                   help="pixel size of the input images in mm (finite, > 0), for the lesion diameter, perimeter (mm) "
                   "and area (mm²)")
    p.add_argument("--no-measure", dest="measure", action="store_false",
                   help="skip the lesion measurements (asymmetry, border, colours, diameter)")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="segment only shard I of N (1 <= I <= N) of the images found: run N machines with the same "
                   "INPUT arguments and --shard 1/N ... N/N, each with its own --out; the shards are disjoint, "
                   "deterministic and together cover every image, with the same output names as one run")
    _add_resume(p)
    p.set_defaults(func=_run_segment)


def _run_segment(args) -> int:
    from dermoseg.batch import parse_shard
    from dermoseg.segmentation.job import segment_columns, segment_files
    from dermoseg.segmentation.segmenter import Segmenter, check_threshold
    try:
        check_threshold(args.threshold)
    except ValueError:
        raise CommandError(f"--threshold must be in (0, 1), got {args.threshold}") from None
    if args.mm_per_pixel is not None and not args.measure:
        raise CommandError("--mm-per-pixel sizes the measurements, which --no-measure leaves out; drop one of them")
    if args.classifier is not None and not args.diagnose:
        raise CommandError("--classifier is the model of --diagnose; add --diagnose or drop --classifier")
    shard = parse_shard(args.shard) if args.shard else None
    columns = segment_columns(None, args.mm_per_pixel, args.measure)  # checks --mm-per-pixel before any model is loaded
    _check_out(args.out)
    models = None
    if args.diagnose:
        from dermoseg.classification import DISCLAIMER
        from dermoseg.classification.classifier import Classifier
        from dermoseg.provenance import model_record
        classifier = Classifier.load(args.classifier, args.engine, args.threads)
        columns = segment_columns(classifier, args.mm_per_pixel, args.measure)
        models = [model_record("classifier", classifier.path, classifier.runner)]
        print(DISCLAIMER)
    model = Segmenter.load(args.model, args.engine, args.threads)
    if model.quality is None:
        from dermoseg.segmentation.quality import sidecar_path
        print(f"note: {model.path.name} has no quality sidecar ({sidecar_path(model.path).name}): the quality and "
              f"review columns stay empty ('dermoseg fit-quality --model {model.path}' fits one)", file=sys.stderr)
    report = segment_files(args.inputs, args.out, model, args.threshold, args.tta, args.preprocess,
                           extra_columns=columns, shard=shard, resume=args.resume,
                           settings={"mm_per_pixel": args.mm_per_pixel, "measure": args.measure,
                                     "diagnose": args.diagnose}, models=models)
    print(report.summary_line("segmented", "results", report.out_dir.resolve()))
    return report.exit_code


# -------------------------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score masks against ground truth (ISIC 2018 metrics)",
                       description="Either compare two folders of masks (--pred and --truth), or run a model on a "
                       "dataset (--dataset isic2018 --split val, or --dataset ph2). Reports pixel accuracy, Dice, "
                       "Jaccard, ISIC 2018 thresholded Jaccard, sensitivity and specificity (masks binarised at "
                       "> 128, metrics per image, then averaged); writes per_image.csv and summary.json.")
    p.add_argument("--pred", type=_path, help="folder of predicted masks (e.g. the output of 'dermoseg segment')")
    p.add_argument("--truth", type=_path, help="folder of ground-truth masks (searched recursively)")
    p.add_argument("--model", type=_named,
                   help="model file for --dataset, or a shipped model: default, fast (default: default)")
    _add_engine_arguments(p)
    p.add_argument("--dataset", choices=["isic2018", "ph2"], help="evaluate a model on this dataset")
    p.add_argument("--split", choices=["train", "val", "all"],
                   help="part of the committed ISIC split (default val; PH2 is always all 200)")
    p.add_argument("--data-root", type=_path, help=f"data folder (default {DATA_ROOT_DEFAULT_TEXT})")
    p.add_argument("--out", type=_path, help="folder for per_image.csv and summary.json")
    p.add_argument("--tta", dest="tta", action="store_true", default=None, help="flip test-time augmentation")
    p.add_argument("--no-tta", dest="tta", action="store_false", help="no test-time augmentation (default: the model file's setting)")
    p.add_argument("--preprocess", dest="preprocess", action="store_true", default=None, help="clean images first")
    p.add_argument("--no-preprocess", dest="preprocess", action="store_false", help="do not clean images")
    p.add_argument("--save-masks", action="store_true", help="also write the predicted masks under OUT/masks/")
    p.add_argument("--subset", type=_path, metavar="FILE", help="score only the image ids listed in FILE (one per "
                   "line, or the first column of a CSV)")
    p.add_argument("--skip-bad", action="store_true", help="score the pairs that can be scored; list missing, "
                   "unreadable and non-binary masks in summary.json ('skipped') instead of stopping")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from dermoseg.provenance import model_record, remove_earlier_outputs, start_run
    from dermoseg.segmentation import evaluate as evaluation
    if args.dataset and (args.pred or args.truth):
        raise CommandError("use either --dataset or --pred/--truth, not both")
    if not args.dataset and not (args.pred and args.truth):
        raise CommandError("give --pred and --truth, or --dataset")
    if not args.dataset:
        unused = [flag for flag, value in (("--model", args.model), ("--engine", args.engine),
                                           ("--threads", args.threads), ("--tta/--no-tta", args.tta),
                                           ("--preprocess/--no-preprocess", args.preprocess),
                                           ("--save-masks", args.save_masks or None), ("--split", args.split),
                                           ("--data-root", args.data_root)) if value is not None]
        if unused:
            raise CommandError(f"{', '.join(unused)}: only for --dataset (a model run); --pred/--truth scores "
                               "masks already made")
    if args.dataset == "ph2" and args.split is not None:
        raise CommandError("--split: only for --dataset isic2018 (PH2 is always scored whole, all 200 images)")
    args.split, args.data_root = args.split or "val", args.data_root or _default_data_root()
    if args.save_masks and not args.out:
        raise CommandError("--save-masks writes the masks under OUT/masks/; add --out")
    if args.out:
        _check_out(args.out)
    subset = evaluation.read_subset(args.subset) if args.subset else None
    settings = {"dataset": args.dataset, "split": args.split if args.dataset == "isic2018" else None,
                "pred": str(args.pred) if args.pred else None, "truth": str(args.truth) if args.truth else None,
                "subset": str(args.subset) if args.subset else None, "skip_bad": args.skip_bad}
    planned = [args.out / "per_image.csv", args.out / "summary.json"] if args.out else []
    if args.dataset:
        from dermoseg.data.evalsets import dataset_samples
        from dermoseg.segmentation.segmenter import THRESHOLD, Segmenter
        samples = dataset_samples(args.dataset, args.data_root, args.split, subset)
        model = Segmenter.load(args.model, args.engine, args.threads)
        settings.update(threshold=THRESHOLD, tta=bool(model.tta if args.tta is None else args.tta),
                        preprocess=bool(model.preprocess.get("enabled") if args.preprocess is None else args.preprocess))
        if args.save_masks and args.out:
            planned += [args.out / "masks" / f"{s.image_id}_segmentation.png" for s in samples]
        record = start_run(args.out, "evaluate", planned, settings, [model_record("segmentation", model.path, model.runner)]) \
            if args.out else None
        if args.out:  # an earlier evaluation's saved masks go with its per_image.csv, which this run replaces
            remove_earlier_outputs(args.out, "masks", planned)
        rows, summary = evaluation.evaluate_model(model, samples, args.out, tta=args.tta, preprocess=args.preprocess,
                                                  save_masks=args.save_masks)
    else:  # scored first: a refused pair (missing, unreadable, mis-sized) leaves no run.json behind
        rows, summary = evaluation.evaluate_dirs(args.pred, args.truth, subset, args.skip_bad)
        record = start_run(args.out, "evaluate", planned, settings, []) if args.out else None
        if args.out:
            evaluation.write_report(args.out, rows, summary)
    if record is not None:
        record.finish("complete", images=len(rows), skipped=len(summary.get("skipped", [])))
    print(json.dumps(summary, indent=2))
    if args.out:
        print(f"per-image figures in {(args.out / 'per_image.csv').resolve()}", file=sys.stderr)  # stdout: the JSON alone
    return 0


# ------------------------------------------------------------------------------- fit-quality, evaluate-quality
def _add_quality_arguments(p) -> None:
    p.add_argument("--model", type=_path, default=None, help="segmentation model file (default: the shipped model)")
    p.add_argument("--data-root", type=_path,
                   default=_default_data_root(), help=f"data folder (default {DATA_ROOT_DEFAULT_TEXT})")
    p.add_argument("--cache", type=_path, default=Path("docs/results/quality"),
                   help="folder of the per-image signals (computed once per model file, reused while its sha256 "
                   "matches) and of the figures (default docs/results/quality, which the report reads)")
    p.add_argument("--config", type=_path, default=None,
                   help="fitting settings YAML (default: the shipped dermoseg/configs/quality.yaml)")


def _add_fit_quality(sub) -> None:
    p = sub.add_parser("fit-quality", help="fit the per-image quality estimator of a segmentation model",
                       description="Compute cheap signals of the flip-TTA passes (pass agreement, boundary entropy, "
                       "mask shape) on the ISIC 2018 validation split, fit a fractional logistic regression of the "
                       "real Jaccard on them, choose the review threshold for a 10% review rate, and write the "
                       "sidecar MODEL.quality.json beside the model file (it records the model's sha256). PH2 is never "
                       "used. Then 'segment' writes quality and review for every image.")
    _add_quality_arguments(p)
    p.set_defaults(func=_run_fit_quality)


def _run_fit_quality(args) -> int:
    from dermoseg.segmentation.quality import fit_for_model, fit_settings
    fitted, path = fit_for_model(args.model, args.data_root, args.cache, fit_settings(args.config))
    cv = fitted.info["cross_fitted"]
    print(json.dumps({"review_threshold": fitted.review_threshold, "cross_fitted": cv}, indent=2))
    print(f"quality sidecar written to {path.resolve()}")
    return 0


def _add_evaluate_quality(sub) -> None:
    p = sub.add_parser("evaluate-quality", help="measure the per-image quality estimator (validation split and PH2)",
                       description="Share of failures (Jaccard < 0.65) caught when 10% of images are flagged, "
                       "Spearman correlation of quality and real Jaccard, AUROC for a failure, each beside the "
                       "flip-TTA agreement baseline: cross-fitted on the ISIC validation split, as stored on PH2. "
                       "Writes CACHE/summary.json and CACHE/<set>_quality.csv ('dermoseg report' draws them).")
    _add_quality_arguments(p)
    p.set_defaults(func=_run_evaluate_quality)


def _run_evaluate_quality(args) -> int:
    from dermoseg.segmentation.quality import evaluate_for_model, fit_settings
    summary = evaluate_for_model(args.model, args.data_root, args.cache, fit_settings(args.config))
    print(json.dumps(summary, indent=2))
    print(f"figures in {(args.cache / 'summary.json').resolve()}")
    return 0


# ----------------------------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train with Lightning from configs/NAME.yaml: a checkpoint every epoch "
                       "(OUT/checkpoints/last.ckpt and best.ckpt), per-epoch metrics in OUT/metrics.csv, and the "
                       "best epoch exported as OUT/model.pt (usable with --model).")
    p.add_argument("--config", required=True, type=_path, help="YAML config (see configs/)")
    p.add_argument("--out", type=_path, help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--data-root", type=_path, help=f"override the config's data root (default ${DATA_VARIABLE} when "
                   "set, else the config's)")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from dermoseg.config import load_config
    args.data_root = args.data_root or _env_data_root()
    overrides = {"data": {"root": str(args.data_root)}} if args.data_root else None
    cfg = load_config(args.config, overrides)
    _check_settings(cfg, args.config)
    out = args.out or Path("runs") / cfg["name"]
    _check_out(out)  # a file in the way, or a folder that cannot be written: one line, before any data is read
    if cfg["task"] == "classification":
        from dermoseg.classification.task import train_classifier
        path = train_classifier(cfg, out, resume=args.resume)
    else:
        from dermoseg.segmentation.task import train
        path = train(cfg, out, resume=args.resume)
    print(f"trained model written to {Path(path).resolve()}")
    from dermoseg.engine import onnx_path_for, stale_export
    export = onnx_path_for(path)  # exported from the model.pt this run replaced? the engine would refuse it
    if stale_export(path, "") is not None:
        print(f"warning: {export} is not an export of the new {Path(path).name}; remove it and run 'dermoseg "
              f"export --model {path} --out {export}' again", file=sys.stderr)
    return 0


def _task_class(cfg: dict):
    """The Lightning task class of a merged configuration's ``task``."""
    if cfg["task"] == "classification":
        from dermoseg.classification.task import ClassificationTask
        return ClassificationTask
    from dermoseg.segmentation.task import SegmentationTask
    return SegmentationTask


def _network(cfg: dict):
    """The configured network, without pretrained weights. Raises ConfigError for an unknown name (the builders'
    ValueError) or an ensemble, which is combined from trained files rather than trained."""
    from dermoseg.config import ConfigError
    from dermoseg.models import build_classifier, build_model
    if cfg["model"].get("architecture") == "ensemble":
        raise ConfigError("model.architecture 'ensemble' is not trained: combine trained model files with "
                          "dermoseg combine-segmenters or combine-classifiers")
    try:
        return (build_classifier if cfg["task"] == "classification" else build_model)(cfg["model"], pretrained=False)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_settings(cfg: dict, path: Path) -> None:
    """Build the configured network once and check the optimizer section and the segmentation loss's name, so
    that an unknown architecture, encoder, mask mode, optimizer, schedule or loss is reported with its file before
    any data is loaded."""
    from dermoseg.config import ConfigError
    from dermoseg.segmentation.losses import get_loss
    from dermoseg.training import check_optimizer
    try:
        _network(cfg)
        check_optimizer(cfg["optimizer"], _task_class(cfg).warm_up)
        if "name" in cfg["loss"]:  # the segmentation wing's (the classifier's loss is fixed: cross-entropy)
            get_loss(cfg["loss"]["name"])
    except ValueError as exc:  # ConfigError is one too
        raise ConfigError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------------------ info
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="parameter count and multiply-accumulates of a model",
                       description="Print parameters and MACs of a model (a model file, or a config's model) at a "
                       "given input size.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=_named,
                     help="segmentation or classifier model file, or a shipped model: default, fast, "
                     "classifier (default: default)")
    src.add_argument("--config", type=_path, help="YAML config whose model to build (untrained)")
    p.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=None,
                   help="input size in pixels (default: the model's training size)")
    p.set_defaults(func=_run_info)


def _load_any_model(model: str | None):
    """(network, input size, file name) of a segmentation model or a classifier (a file, or a shipped name:
    default, fast, classifier; :func:`dermoseg.modelfile.kind_of`)."""
    from dermoseg.modelfile import kind_of
    if kind_of(model) == "classifier":
        from dermoseg.classification.classifier import Classifier
        m = Classifier.load(None if model == "classifier" else model, engine="torch")
    else:
        from dermoseg.segmentation.segmenter import Segmenter
        m = Segmenter.load(model, engine="torch")
    return m.network, m.image_size, str(m.path)


def _run_info(args) -> int:
    from dermoseg.models.complexity import count_macs, count_parameters
    if args.config:
        from dermoseg.config import load_config
        cfg = load_config(args.config)
        try:
            network = _network(cfg)
        except ValueError as exc:  # ConfigError: name the file
            raise CommandError(f"{args.config}: {exc}") from None
        size, name = cfg["data"]["image_size"], str(args.config)
    else:
        network, size, name = _load_any_model(args.model)
    h, w = args.size or (size, size)
    if h < 1 or w < 1:
        raise CommandError(f"--size must be positive, got {h} {w}")
    try:
        macs = count_macs(network, h, w)
    except (ValueError, RuntimeError) as exc:  # a size it cannot take: a fixed input size, or out of memory
        raise CommandError(f"{name}: cannot count at --size {h} {w} ({exc})") from None
    print(f"model: {name}")
    print(f"parameters: {count_parameters(network):,}")
    print(f"multiply-accumulates at {h}x{w}: {macs:,} ({macs / 1e9:.3f} GMAC)")
    return 0


# ----------------------------------------------------------------------------------------------- sweep
def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train and evaluate every cell of a grid or list of runs (Table 1, ablations)",
                       description="Train and evaluate every cell of a sweep file (a training config with a 'grid:' "
                       "of dotted keys to value lists, or a 'cells:' list; see configs/table1_grid.yaml). Writes "
                       "one CSV row per cell to RESULTS/<name>.csv and the logs and evaluations to "
                       "RESULTS/runs/<name>/<cell>/. Resumable: finished cells are skipped, interrupted ones resume.")
    p.add_argument("--config", required=True, type=_path, help="sweep YAML file")
    p.add_argument("--only", nargs="+", metavar="CELL", help="run only these cells")
    p.add_argument("--dry-run", action="store_true", help="list the cells that would run, train nothing")
    p.add_argument("--data-root", type=_path, help=f"override every cell's data root (default ${DATA_VARIABLE} when "
                   "set, else each cell's)")
    p.add_argument("--deadline", metavar="HH:MM", help="start no cell predicted to end after this local time today")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args) -> int:
    from dermoseg.experiments.sweep import load_sweep, parse_deadline, run_sweep
    deadline = parse_deadline(args.deadline) if args.deadline else None
    args.data_root = args.data_root or _env_data_root()
    sweep = load_sweep(args.config, args.data_root)
    records = run_sweep(sweep, only=args.only, dry_run=args.dry_run, data_root=args.data_root, deadline=deadline)
    results = Path(sweep.options["results_dir"]) / f"{sweep.name}.csv"
    print(f"{len(records)} of {len(sweep.cells)} cells finished; results in {results.resolve()}")
    return 0


# ---------------------------------------------------------------------------------------------- report
def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write the reproduction report (Markdown + PNG) from committed results",
                       description="Write RESULTS/README.md and RESULTS/figures/*.png from the committed logs and "
                       "evaluations under RESULTS (no training; inputs that are missing are named in the report). "
                       "--import first copies a finished training run (its metrics.csv, model size and the "
                       "evaluations written by 'dermoseg evaluate --out EVAL_ROOT/NAME/<set> --save-masks', "
                       "<set> being isic2018_val or ph2).")
    p.add_argument("--config", type=_path, default=Path("configs/report.yaml"), help="report layout and paper figures "
                   "(default configs/report.yaml)")
    p.add_argument("--results", type=_path, help="results folder (default: the config's results_dir)")
    p.add_argument("--data-root", type=_path, default=_default_data_root(),
                   help=f"data folder, for the overlay sheets of the worst cases (default {DATA_ROOT_DEFAULT_TEXT})")
    p.add_argument("--import", dest="imports", nargs="+", default=[], metavar="NAME=RUN_DIR",
                   help="copy finished runs into RESULTS/runs/NAME before writing the report")
    p.add_argument("--eval-root", type=_path, default=Path("runs/eval"),
                   help="where the imported runs' evaluations are, as EVAL_ROOT/NAME/<set> (default runs/eval)")
    p.set_defaults(func=_run_report)


def _run_report(args) -> int:
    from dermoseg.experiments.collect import import_run
    from dermoseg.report import check_results_folder, load_report_config, write_report
    spec = load_report_config(args.config)
    results = args.results or Path(spec["results_dir"])
    if not results.is_dir():  # a mistyped --results gave a report of nothing but missing inputs, exit 0
        raise CommandError(f"{results}: results folder not found (the folder of committed results, "
                           f"{spec['results_dir']} by default; create it first for a new one)")
    check_results_folder(results)  # before any import copies into it
    for item in args.imports:
        name, sep, run_dir = item.partition("=")
        if not sep or not name or not run_dir:
            raise CommandError(f"--import expects NAME=RUN_DIR, got '{item}'")
        print(f"imported {import_run(name, run_dir, results, eval_root=args.eval_root)}")
    out = write_report(spec, results, args.data_root)
    print(f"report written to {out.resolve()}")
    return 0


# ---------------------------------------------------------------------------------------------- diagnose
def _add_classifier_arguments(p) -> None:
    p.add_argument("--model", type=_path, default=None,
                   help=CLASSIFIER_HELP)
    p.add_argument("--segmentation-model", type=_named, default=None,
                   help="segmentation model for classifiers that use the lesion mask (default: the shipped one)")
    _add_engine_arguments(p)


def _load_classifier(args):
    """The classifier of ``--model`` and, when it uses the lesion mask, the segmenter of ``--segmentation-model``;
    the mask options are refused for a classifier that does not use the mask (they would be ignored)."""
    from dermoseg.classification.classifier import Classifier
    model = Classifier.load(args.model, args.engine, args.threads)
    unused = [flag for flag, value in (("--segmentation-model", args.segmentation_model),
                                       ("--mask-dir", getattr(args, "mask_dir", None))) if value is not None]
    if unused and not model.uses_mask:
        raise CommandError(f"{', '.join(unused)}: this classifier does not use the lesion mask (mask_mode none), "
                           "so it would be ignored")
    segmenter = None
    if model.uses_mask:
        from dermoseg.segmentation.segmenter import Segmenter
        segmenter = Segmenter.load(args.segmentation_model, args.engine, args.threads)
    return model, segmenter


def _add_diagnose(sub) -> None:
    p = sub.add_parser("diagnose", help="lesion class probabilities (ISIC 2018 Task 3 format); research tool",
                       description="Classify each dermoscopic image into the seven ISIC 2018 Task 3 classes. Writes "
                       "DIR/predictions.csv (header image,MEL,NV,BCC,AKIEC,BKL,DF,VASC; one row per file stem; "
                       "calibrated probabilities summing to 1; the format 'isic-challenge-scoring classification' "
                       "reads), DIR/image_sources.csv (image id, its file, warning) and DIR/README.txt. Bad files "
                       "are reported (stderr and DIR/failures.csv) and skipped; exit status 1 if any failed. "
                       "Same-named inputs get ids x, x__2, x__3...",
                       epilog=EPILOG)
    p.add_argument("inputs", nargs="+", type=_named,
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--out", required=True, type=_path, help="output folder (created)")
    _add_classifier_arguments(p)
    _add_resume(p)
    p.set_defaults(func=_run_diagnose)


def _run_diagnose(args) -> int:
    from dermoseg.classification import DISCLAIMER
    from dermoseg.classification.job import diagnose_files
    _check_out(args.out)
    model, segmenter = _load_classifier(args)
    print(DISCLAIMER)
    report = diagnose_files(args.inputs, args.out, model, segmenter, resume=args.resume)
    print(report.summary_line("classified", "predictions", (report.out_dir / "predictions.csv").resolve()))
    return report.exit_code


# ------------------------------------------------------------------------------------- evaluate-diagnosis
def _add_evaluate_diagnosis(sub) -> None:
    p = sub.add_parser("evaluate-diagnosis", help="score the classifier: HAM10000 validation split, ISIC 2018 Task 1 "
                       "and PH2", description="On the committed HAM10000 split: balanced multi-class accuracy (ISIC "
                       "2018 Task 3), per-class sensitivity/specificity/AUC, melanoma-vs-rest AUC, ECE before/after "
                       "temperature scaling (in-sample and cross-fitted). "
                       "On the external tests (ISIC 2018 Task 1 images with a known diagnosis, PH2; never trained or "
                       "chosen on): melanoma vs nevus AUC, sensitivity at 90% specificity, nevi called melanoma. On "
                       "every set, accuracy and AUC on images the out-of-distribution flag marks vs the others, and what "
                       "gray copies of the images become. "
                       "Writes OUT/<set>/ (predictions.csv, truth.csv, logits.npz, summary.json, roc.png, ...) and "
                       "OUT/summary.csv.", epilog=EPILOG)
    _add_classifier_arguments(p)
    p.add_argument("--dataset", choices=["ham10000", "isic2018_task1", "ph2", "all"], default="all",
                   help="what to score (default all three)")
    p.add_argument("--split", choices=["train", "val", "all"], default="val", help="HAM10000 split part (default val)")
    p.add_argument("--data-root", type=_path,
                   default=_default_data_root(), help=f"data folder (default {DATA_ROOT_DEFAULT_TEXT})")
    p.add_argument("--out", type=_path, default=Path("out/diagnosis"), help="output folder (default out/diagnosis)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images of each set (quick checks)")
    p.add_argument("--reuse-logits", action="store_true", help="read OUT/<set>/logits.npz of an earlier run with "
                   "the same model file and images instead of running the network again (a note on stderr says "
                   "when a file does not match and the network runs)")
    p.add_argument("--mask-dir", type=_path, default=None,
                   help="for classifiers that use the lesion mask: HAM10000 masks already written by 'dermoseg "
                   "segment' (<image_id>_segmentation.png), instead of segmenting again; the external sets are "
                   "always segmented")
    p.set_defaults(func=_run_evaluate_diagnosis)


def _run_evaluate_diagnosis(args) -> int:
    from dermoseg.classification import evaluate as evaluation
    from dermoseg.io import write_text
    from dermoseg.provenance import claim_outputs, model_record, start_run
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    if args.mask_dir is not None and not args.mask_dir.is_dir():
        raise CommandError(f"{args.mask_dir}: --mask-dir folder not found")
    _check_out(args.out)
    model, segmenter = _load_classifier(args)
    models = [model_record("classifier", model.path, model.runner)] + (
        [model_record("segmentation", segmenter.path, segmenter.runner)] if segmenter else [])
    settings = {"split": args.split, "limit": args.limit, "mask_dir": str(args.mask_dir) if args.mask_dir else None,
                "temperature": model.temperature, "tta": model.tta, "reuse_logits": args.reuse_logits}
    ham = f"ham10000_{args.split}"
    names = {"ham10000": [ham], "isic2018_task1": ["isic2018_task1"], "ph2": ["ph2"],
             "all": [ham, "isic2018_task1", "ph2"]}[args.dataset]
    from dermoseg.data.evalsets import DIAGNOSIS_SETS, diagnosis_samples
    samples = {name: diagnosis_samples(name, args.data_root) for name in names}  # a missing data folder: no run.json
    results = {}
    planned = {name: evaluation.set_outputs(args.out / name, name, model, args.reuse_logits, grayscale_copies=True)
               for name in names}
    for name in names:  # every set's files checked before the first run.json is written
        claim_outputs(args.out / name, planned[name])
    overview = start_run(args.out, "evaluate-diagnosis", [args.out / "summary.csv"], settings, models)
    for name in names:
        out = args.out / name
        record = start_run(out, "evaluate-diagnosis", planned[name], settings, models)
        results[name] = evaluation.evaluate_set(name, model, args.data_root, out, segmenter, args.limit,
                                                mask_dir=args.mask_dir if name == ham else None,
                                                reuse_logits=args.reuse_logits, grayscale_copies=True,
                                                samples=samples[name])
        record.finish("complete")
    write_text(args.out / "summary.csv", evaluation.overview_csv(results))
    overview.finish("complete")
    print(json.dumps(results, indent=2))
    print(f"reports in {args.out.resolve()}", file=sys.stderr)  # stdout: the JSON alone
    for other in sorted(set(DIAGNOSIS_SETS) - set(names)):  # an earlier run's set, maybe of another model
        if (args.out / other / "summary.json").is_file():
            print(f"note: {args.out / other} holds an earlier evaluation, not this run's (summary.csv lists "
                  f"{', '.join(names)} only)", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ preprocess
def _add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="remove black frame and hair from images",
                       description="Remove the black frame (filled, so the size is kept) and the hair of each image "
                       "(paper §3.1). Writes DIR/<stem>.png (the clean image), DIR/<stem>_hair.png and "
                       "DIR/<stem>_frame.png (masks 0/255, the input's size) and DIR/preprocess.csv (hair %, hair "
                       "count N, repair mode, frame found and its area %, seconds). Bad files are reported and "
                       "skipped; exit status 1 if any failed.", epilog=EPILOG)
    p.add_argument("inputs", nargs="+", type=_named,
                   help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--out", required=True, type=_path, help="output folder (created)")
    p.add_argument("--sheet", action="store_true", help="also write DIR/preprocess_sheet.png (before/after)")
    p.add_argument("--config", type=_path, help="YAML file with preprocessing settings (a 'preprocess:' section "
                   "or the settings themselves; default: the settings shipped in the package, "
                   "src/dermoseg/configs/preprocess.yaml)")
    _add_resume(p)
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args) -> int:
    from dermoseg.preprocess.batch import preprocess_files
    _check_out(args.out)
    cfg = None
    if args.config:
        from dermoseg.config import read_yaml_mapping
        loaded = read_yaml_mapping(args.config, "preprocessing settings file", CommandError)
        cfg = loaded.get("preprocess", loaded)
        from dermoseg.preprocess.settings import PreprocessConfigError, resolve_settings
        try:
            resolve_settings(cfg)
        except PreprocessConfigError as exc:
            raise CommandError(f"{args.config}: {exc}") from None
    report = preprocess_files(args.inputs, args.out, cfg, sheet=args.sheet, resume=args.resume)
    print(report.summary_line("cleaned", "results", report.out_dir.resolve()))
    return report.exit_code


# ------------------------------------------------------------------------------------------------- serve
def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="REST API and web page (segment, measure, diagnose) on this machine",
                       description="Serve the web page at http://HOST:PORT/ and the REST API under /v1 (segment, "
                       "diagnose, analyze, models; OpenAPI documentation at /docs) with the same models as the other "
                       "commands. Limits (upload size, pixels, work queue) come from dermoseg/configs/serve.yaml, "
                       "overridden by --config. Stop with Ctrl+C.", epilog=EPILOG)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "any other address needs --token)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own models (default 1)")
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' on /v1 routes "
                   "(default: the DERMOSEG_TOKEN environment variable; none: no token needed)")
    p.add_argument("--config", type=_path, default=None, help="YAML file with serve settings to override")
    p.add_argument("--model", type=_named,
                   default=None, help="segmentation model: a file, or a shipped name (default, fast); "
                   "default: the shipped default")
    p.add_argument("--classifier", type=_path, default=None,
                   help=CLASSIFIER_HELP)
    p.set_defaults(func=_run_serve)


def _run_serve(args) -> int:
    from dermoseg.serve import run
    run(args.host, args.port, args.workers, args.token, args.config,
        banner=f"dermoseg serve: web page at http://{args.host}:{args.port}/ , API documentation at /docs. {EPILOG}",
        model=args.model, classifier=args.classifier)
    return 0


# ---------------------------------------------------------------------------------------------- export
def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (checked against PyTorch on real images)",
                       description="Export a segmentation or classification model file to ONNX (dynamic batch size; "
                       "metadata: input size, normalisation, threshold, TTA default, class names, temperature, the "
                       "source file's sha256, its model card). ONNX Runtime is first run on real images and compared "
                       "with PyTorch; a file whose probabilities differ by more than 1e-3 is not written. Saved as "
                       "X.onnx beside a model file X.pt, it becomes that model's default engine.")
    p.add_argument("--model", type=_named,
                   default="default", help="model file, or a shipped name: default, fast, classifier "
                   "(default: default)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (only onnx)")
    p.add_argument("--out", required=True, type=_path, help="X.onnx file to write (never overwritten)")
    p.add_argument("--check-images", nargs="+", type=_named,
                   metavar="IMAGE", help="real images for the check (files, folders, "
                   "globs; default: 8 spread over the ISIC 2018, PH2 and HAM10000 copies in --data-root)")
    p.add_argument("--data-root", type=_path, default=_default_data_root(), help=f"data folder for the default "
                   f"check images (default {DATA_ROOT_DEFAULT_TEXT})")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from dermoseg.engine.onnx_export import check_images, export_model
    from dermoseg.inputs import scan_inputs
    if args.check_images:
        scan = scan_inputs(args.check_images)
        if scan.problems:
            raise CommandError(f"{scan.problems[0][0]}: {scan.problems[0][1]}")
        images = scan.files
    else:
        images = check_images(args.data_root)
    if len(images) < 2:
        raise CommandError(f"the export check needs at least 2 real images and found {len(images)}"
                           + ("" if args.check_images else f" under --data-root {Path(args.data_root).resolve()}")
                           + ": give --check-images IMAGE IMAGE... or --data-root")
    if Path(args.out).suffix != ".onnx":
        raise CommandError(f"{args.out}: an ONNX export must end in .onnx (X.onnx beside X.pt becomes X.pt's default "
                           "engine)")
    _check_out(Path(args.out).parent)
    try:
        report = export_model(args.model, args.out, images)
    except ValueError as exc:  # a mask-using classifier
        raise CommandError(str(exc)) from None
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB); ONNX Runtime vs PyTorch on {report.images} real "
          f"images: largest probability difference {report.max_prob_diff:.1e}")
    return 0


# --------------------------------------------------------------------------------- combine-classifiers
def _add_combine_classifiers(sub) -> None:
    p = sub.add_parser("combine-classifiers", help="average trained classifiers into one ensemble classifier file",
                       description="Write one classifier file whose network is the mean of the members' calibrated "
                       "probabilities (members may differ in encoder, input size and normalisation; each sees the "
                       "image area-resized to its own size). The ensemble's temperature and out-of-distribution "
                       "threshold are fitted on the HAM10000 validation split, like a trained classifier's. The file "
                       "works with diagnose, evaluate-diagnosis, export (ONNX) and serve --classifier.", epilog=EPILOG)
    p.add_argument("members", nargs="+", type=_named, help="two or more single-network classifier files (.pt), e.g. "
                   "runs/NAME/model.pt from 'dermoseg train' (the shipped classifier is an ensemble already)")
    p.add_argument("--out", required=True, type=_path, help="ensemble file to write, X.pt (X.json and X.ood.json go "
                   "beside it; none is overwritten)")
    p.add_argument("--data-root", type=_path, default=_default_data_root(),
                   help=f"data folder with ham10000/ (default {DATA_ROOT_DEFAULT_TEXT})")
    p.set_defaults(func=_run_combine_classifiers)


def _run_combine_classifiers(args) -> int:
    from dermoseg.classification.ensemble import combine_classifiers
    members = [Path(m) for m in args.members]
    _check_out(Path(args.out).parent)
    try:
        path = combine_classifiers(members, args.out, args.data_root)
    except ValueError as exc:  # an --out that is not .pt
        raise CommandError(str(exc)) from None
    info = json.loads(path.with_suffix(".json").read_text())
    print(f"wrote {path}: {len(members)} members, temperature {info['temperature']:.4f}, validation balanced "
          f"accuracy {info['info']['val_balanced_accuracy_tta']:.4f} ({info['info']['val_images']} images)")
    return 0


# --------------------------------------------------------------------------------- combine-segmenters
def _add_combine_segmenters(sub) -> None:
    p = sub.add_parser("combine-segmenters", help="average trained segmentation models into one ensemble file",
                       description="Write one segmentation model file whose network outputs the members' mean "
                       "lesion probability (members must share input size, cleaning and TTA default). The file "
                       "works with segment, evaluate, export (ONNX), fit-quality and serve --model; fit its quality "
                       "sidecar with 'dermoseg fit-quality --model OUT'.", epilog=EPILOG)
    p.add_argument("members", nargs="+", type=_named,
                   help="two or more segmentation model files (.pt) or shipped names "
                   "(default, fast)")
    p.add_argument("--out", required=True, type=_path, help="ensemble file to write, X.pt (X.json goes beside it; "
                   "neither is overwritten)")
    p.add_argument("--half", action="store_true", help="fold batch norm into the convolutions, then store the weights "
                   "as float16 (half the size, and so is its ONNX export; widened to float32 when loaded, so only "
                   "their rounding changes the masks: measure it)")
    p.set_defaults(func=_run_combine_segmenters)


def _run_combine_segmenters(args) -> int:
    from dermoseg.segmentation.ensemble import combine_segmenters
    _check_out(Path(args.out).parent)
    try:
        path = combine_segmenters(args.members, args.out, half=args.half)
    except ValueError as exc:  # an --out that is not .pt
        raise CommandError(str(exc)) from None
    print(f"wrote {path}: {len(args.members)} members; fit its quality sidecar with "
          f"'dermoseg fit-quality --model {path}'")
    return 0


# ------------------------------------------------------------------------------------------------ main
COMMANDS = [_add_segment, _add_evaluate, _add_fit_quality, _add_evaluate_quality, _add_train, _add_info, _add_sweep, _add_report, _add_diagnose, _add_evaluate_diagnosis, _add_preprocess, _add_serve,
            _add_export, _add_combine_classifiers, _add_combine_segmenters]


def build_parser() -> argparse.ArgumentParser:
    """The ``dermoseg`` argument parser with every subcommand (each with its own ``--help``)."""
    from dermoseg import __version__
    parser = argparse.ArgumentParser(
        prog="dermoseg", description="Dermoscopic image cleaning, lesion segmentation, measurement and diagnosis "
        "(Lalitha & Vijayalakshmi 2024, reproduced and extended).", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dermoseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dermoseg`` console script; returns the exit status (130 after Ctrl-C, 143 after SIGTERM,
    at any point, with one line and no traceback; a second signal while the first is being handled, or one while
    the process exits, is ignored: it aborted the process before). However the command ends, no run it started
    is left "running" in its run.json and its output folders' locks are released; an output folder the command
    created and left empty, on any error or interrupt, is removed again."""
    _CREATED.clear()  # this call's folders only (tests call main() many times in one process)
    from dermoseg import provenance
    locks_before, runs_before = provenance.held_folders(), provenance.open_runs()  # an API caller's stay theirs
    main_thread = threading.current_thread() is threading.main_thread()
    # Ctrl-C (SIGINT) and SIGTERM (kill, timeout, SLURM, docker stop) end a command the same way, where this
    # process would otherwise die at once: not where they are ignored (a background job) or handled by the caller
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    default = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    ours = [sig for sig in previous if main_thread and previous[sig] is default[sig]]
    for sig in ours:
        signal.signal(sig, _first_interrupt)
    code = 2  # until _main says otherwise (an exception escaping it is not a success)
    try:
        code = _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        code = 143 if terminated else 130
    finally:
        for sig in previous:  # ours: the console script's process ends now, a late signal must not abort the exit;
            if main_thread:  # the others (ignored by a first signal's handler meanwhile) as the caller had them
                restore = signal.SIG_IGN if sig in ours and argv is None else previous[sig]
                if restore is not None:  # None: a handler set outside Python, which this never replaced
                    signal.signal(sig, restore)
        # however the command ended: no run.json left saying "running", no output folder left locked
        if code:
            provenance.finish_open_runs("interrupted" if code in (130, 143) else "failed", keep=runs_before)
        provenance.release_folders(provenance.held_folders() - locks_before)
    if code:
        _remove_empty_outputs()
    _CREATED.clear()
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that every clean-up of an interrupted run (rows
    kept, partial outputs removed, run.json finished) applies to it too; the command exits with 143."""


def _first_interrupt(signum, frame) -> None:
    """SIGINT/SIGTERM handler: raise KeyboardInterrupt (Terminated for SIGTERM) once, and ignore both signals
    while the clean-up runs; inside a :func:`dermoseg.interrupts.deferred` section (an image's rows being appended
    to its tables) it is raised when the section ends."""
    from dermoseg import interrupts
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exc = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if not interrupts.hold(exc):
        raise exc


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dermoseg.provenance import set_command_line
    set_command_line(argv)
    known = (DermosegError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)
    try:
        return int(args.func(args) or 0)
    except known as exc:
        print(f"error: {exc}{_data_root_hint(args, exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unexpected failure: one line for the user, the traceback on request
        if os.environ.get("DERMOSEG_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set DERMOSEG_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def _data_root_hint(args, exc: BaseException) -> str:
    """For a missing data folder under a command's ``--data-root`` (a relative default, so run from elsewhere it
    points nowhere): the hint to give the data folder; else ""."""
    from dermoseg.data.datasets import DatasetError
    if not isinstance(exc, DatasetError) or not hasattr(args, "data_root") or "not found" not in str(exc):
        return ""
    root = args.data_root
    where = "data.root of the config" if root is None else f"{root} = {Path(root).resolve()}"
    return f" (the data folder is --data-root, else ${DATA_VARIABLE}, here {where}; point it at the folder " \
        "holding isic2018_task1/, ph2/ and ham10000/)"


if __name__ == "__main__":
    sys.exit(main())
