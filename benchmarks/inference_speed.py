"""Inference speed of the engine, measured side by side in one run on real images (issue #14).

Prints, each with its goal:

1. **engine vs eager**: one forward pass of the shipped segmenter (256 px, batch 1; and flip TTA, 3 calls) and of
   the shipped classifier (at its input size; flip TTA, 4 calls) under ONNX Runtime vs eager PyTorch, same thread
   count, the two engines called in turn (goal ≥ 2×).
2. **job vs forward**: the whole ``segment`` job per image (read, resize, network with flip TTA, mask, overlay,
   measurements, writes; the bounded pipeline of :func:`dermoseg.batch.run_batch`) vs the bare network calls
   with the same TTA on the same images (goal ≤ 1.2×); also the job without the lesion measurements, and on
   eager PyTorch.
3. **FLOP rate**: 2 × multiply-accumulates / forward time vs the fp32 matrix-multiply peak measured in this run
   (the best of ONNX Runtime's and PyTorch's MatMul over 256–1024² matrices, same threads; fastest runs of both;
   goal ≥ 50%).
4. **busy CPU**: ``segment`` and ``diagnose`` per image with one other CPU-bound 2-thread process running
   (a PyTorch matmul loop with spinning OpenMP workers: a typical neighbour) vs alone; the neighbour is stopped
   (SIGSTOP) and resumed (SIGCONT) in turn between the rounds (goal ≤ 2.5×).
5. **peak RSS** of ``dermoseg segment`` on one 6748×4499 JPEG (a real ISIC image enlarged to the largest
   official ISIC 2018 size) in a fresh process (goal ≤ 1.5 GB), beside the same command on a 512 px image.
6. **fast preset**: the ``fast`` segmenter's forward and job throughput vs the default model's (goal ≥ 5×),
   when the file is shipped.

The variants compared run in turn within each round, so that load from other work on the machine hits them
alike. Forward times (and the matmul peak) are the fastest of repeated calls after a warm-up call (the least
disturbed, as ``timeit`` reports); job times are wall time per image over the whole job, medians over rounds, and
their ratios medians of the ratios within each round. The load average is printed at the start and the end.

    .venv/bin/python benchmarks/inference_speed.py --out benchmarks/results/inference_speed.txt
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path


from dermoseg.classification.classifier import Classifier
from dermoseg.classification.job import diagnose_files
from dermoseg.data.datasets import load_ham10000, load_isic2018_task1, load_ph2
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.engine.threads import available_cpus, inference_threads
from dermoseg.errors import ModelFileError
from dermoseg.io import read_image
from dermoseg.modelfile import resolve
from dermoseg.models.complexity import count_macs
from dermoseg.segmentation.job import segment_columns, segment_files
from dermoseg.segmentation.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO / ".." / "shared" / "data"
BIG = (6748, 4499)  # width, height of the largest official ISIC 2018 Task 1 image
NEIGHBOUR = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n"
             "while True:\n    a @ a\n")


def paired_times(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each ``fns[name]()`` over ``repeats`` rounds, the functions called in turn within a round
    (so that changing load from other work hits all alike), after one untimed warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def matmul_peak(threads: int, sizes=(256, 512, 1024), repeats: int = 100) -> tuple[float, str]:
    """The machine's fp32 matrix-multiply peak on ``threads`` threads: the best GFLOP/s over square sizes
    ``sizes`` (small ones run from cache, as the peak needs) of the fastest of ``repeats`` products, with ONNX
    Runtime's MatMul (MLAS, the engine's own GEMM) and PyTorch's (MKL). Returns (GFLOP/s, how it was reached)."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    from dermoseg.engine.ort_runner import session_options
    torch.set_num_threads(threads)
    best, how = 0.0, ""
    for n in sizes:
        spec = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "abc"]
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                       providers=["CPUExecutionProvider"])
        a, b = torch.randn(n, n), torch.randn(n, n)
        feeds = {"a": a.numpy(), "b": b.numpy()}
        times = paired_times({"onnxruntime": lambda: session.run(None, feeds), "torch": lambda: a @ b}, repeats)
        for lib, t in times.items():
            rate = 2 * n ** 3 / min(t) / 1e9
            if rate > best:
                best, how = rate, f"{lib} {n}x{n}"
    return best, how


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][i] / times[den][i]``: each ratio from two runs made in the same round, so
    that slow changes in the load from other work cancel."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def job_seconds(job, inputs: list[Path]) -> float:
    """Wall seconds per image of ``job(inputs, out_dir)`` into a fresh temporary output folder."""
    with tempfile.TemporaryDirectory() as out, redirect_stderr(io.StringIO()):
        t = time.perf_counter()
        report = job([str(p) for p in inputs], out)
        elapsed = time.perf_counter() - t
    assert not report.failures, report.failures
    return elapsed / len(inputs)


def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory (MB) of ``python ARGS`` run as a fresh process."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"python {' '.join(args)} failed ({proc.returncode})"
    return usage.ru_maxrss / 1024  # Linux reports KiB


def line(out: list[str], text: str) -> None:
    print(text, flush=True)
    out.append(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16, help="real images per job measurement (default 16)")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per forward measurement (default 20)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each job measurement (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="compute threads (default: the CPUs available)")
    ap.add_argument("--out", type=Path, help="also write the printed lines here, and the figures as JSON beside")
    args = ap.parse_args(argv)
    threads = inference_threads(args.threads)
    out: list[str] = []
    res: dict[str, float] = {}
    line(out, f"dermoseg inference benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs in the machine, "
              f"{available_cpus()} available to this process, {threads} compute threads; "
              f"load average at start {os.getloadavg()[0]:.2f}")

    isic = select(load_isic2018_task1(DATA_ROOT / "isic2018_task1"), read_split(ISIC_SPLIT), "val")
    ph2 = load_ph2(DATA_ROOT / "ph2")
    seg_inputs = [s.image_path for s in isic[: args.images // 2] + ph2[: args.images - args.images // 2]]
    ham_inputs = [s.image_path for s in load_ham10000(DATA_ROOT / "ham10000")[: args.images]]

    # 1. engine vs eager forward --------------------------------------------------------------------------
    seg = {e: Segmenter.load("default", engine=e, threads=threads) for e in ("onnx", "torch")}
    clf = {e: Classifier.load("default", engine=e, threads=threads) for e in ("onnx", "torch")}
    image = read_image(seg_inputs[0])
    x = seg["onnx"].prepare(image)
    xc = clf["onnx"].prepare(read_image(ham_inputs[0]))[None]
    line(out, f"\n1. one forward pass, ONNX Runtime vs eager PyTorch (fastest of {args.repeats} alternating calls; "
              "goal >= 2x)")
    for label, key, fns in [
        ("segmenter 256 px, batch 1", "seg_b1", {e: (lambda m=m: m.runner(x)) for e, m in seg.items()}),
        ("segmenter 256 px, flip TTA (3 calls)", "seg_tta", {e: (lambda m=m: m.logits(x, tta=True))
                                                             for e, m in seg.items()}),
        (f"classifier {clf['onnx'].image_size} px, flip TTA (4 calls)", "clf_tta", {e: (lambda m=m: m.batch_logits(xc))
                                                              for e, m in clf.items()}),
    ]:
        times = paired_times(fns, args.repeats)
        t_ort, t_pt = min(times["onnx"]), min(times["torch"])
        res[f"{key}_onnx_ms"], res[f"{key}_torch_ms"], res[f"{key}_speedup"] = 1e3 * t_ort, 1e3 * t_pt, t_pt / t_ort
        line(out, f"   {label:38s} onnx {1e3 * t_ort:7.1f} ms   torch {1e3 * t_pt:7.1f} ms   speed-up {t_pt / t_ort:5.2f}x")

    # 3. FLOP rate ----------------------------------------------------------------------------------------
    peak, how = matmul_peak(threads)
    macs = count_macs(seg["torch"].network, seg["onnx"].image_size, seg["onnx"].image_size)
    rate = 2 * macs / (res["seg_b1_onnx_ms"] / 1e3) / 1e9
    res.update(matmul_peak_gflops=peak, seg_gmac=macs / 1e9, seg_gflops=rate, flop_rate_of_peak=rate / peak)
    line(out, f"\n3. FLOP rate (goal >= 50% of the fp32 matmul peak; fastest runs of both): matmul peak "
              f"{peak:.1f} GFLOP/s ({how}, {threads} threads); segmenter {macs / 1e9:.2f} GMAC per 256 px image in "
              f"{res['seg_b1_onnx_ms']:.1f} ms = {rate:.1f} GFLOP/s = {100 * rate / peak:.0f}% of peak")

    # 2. job vs forward -----------------------------------------------------------------------------------
    def job(model, measure=True):
        columns = segment_columns() if measure else None
        return lambda inputs, d: segment_files(inputs, d, model, extra_columns=columns, progress=False)

    forwards = [seg["onnx"].prepare(read_image(p)) for p in seg_inputs]
    rounds = paired_times({
        "forward": lambda: [seg["onnx"].logits(v, tta=True) for v in forwards],
        "job": lambda: job_seconds(job(seg["onnx"]), seg_inputs),
        "job_no_measure": lambda: job_seconds(job(seg["onnx"], measure=False), seg_inputs),
        "job_torch": lambda: job_seconds(job(seg["torch"]), seg_inputs),
    }, args.rounds)
    ms = {k: 1e3 * statistics.median(v) / len(seg_inputs) for k, v in rounds.items()}
    ratios = {k: paired_ratio(rounds, k, "forward") for k in ("job", "job_no_measure")}
    ratios["torch_over_default"] = paired_ratio(rounds, "job_torch", "job")
    res.update({f"{k}_ms": v for k, v in ms.items()}, job_over_forward=ratios["job"],
               job_no_measure_over_forward=ratios["job_no_measure"], job_torch_over_job=ratios["torch_over_default"])
    line(out, f"\n2. whole segment job per image vs the bare forward with the same TTA ({len(seg_inputs)} ISIC/PH2 "
              f"images; medians of {args.rounds} rounds, ratios within a round; goal <= 1.2x):\n"
              f"   forward {ms['forward']:.1f} ms; job {ms['job']:.1f} ms: {ratios['job']:.2f}x; the job without "
              f"the lesion measurements {ms['job_no_measure']:.1f} ms: {ratios['job_no_measure']:.2f}x; the job on "
              f"eager PyTorch {ms['job_torch']:.1f} ms ({ratios['torch_over_default']:.2f}x the default's)")

    # 4. busy CPU -----------------------------------------------------------------------------------------
    def diagnose_job(inputs, d):
        return diagnose_files(inputs, d, clf["onnx"], progress=False)

    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env={**os.environ, "OMP_WAIT_POLICY": "ACTIVE"})
    times: dict[str, list[float]] = {}
    try:
        time.sleep(5)  # let it import torch and start multiplying
        for _ in range(args.rounds):  # alone (neighbour stopped) and busy (running) in turn
            for state, sig in (("alone", signal.SIGSTOP), ("busy", signal.SIGCONT)):
                neighbour.send_signal(sig)
                time.sleep(0.5)
                times.setdefault(f"segment_{state}", []).append(job_seconds(job(seg["onnx"]), seg_inputs))
                times.setdefault(f"diagnose_{state}", []).append(job_seconds(diagnose_job, ham_inputs))
    finally:
        neighbour.kill()
        neighbour.wait()
    line(out, f"\n4. per image with one other CPU-bound 2-thread process running vs alone (medians of {args.rounds} "
              "rounds, alone and busy in turn, ratios within a round; goal <= 2.5x):")
    for k in ("segment", "diagnose"):
        a, b = statistics.median(times[f"{k}_alone"]), statistics.median(times[f"{k}_busy"])
        r = paired_ratio(times, f"{k}_busy", f"{k}_alone")
        res[f"{k}_alone_ms"], res[f"{k}_busy_ms"], res[f"{k}_busy_over_alone"] = 1e3 * a, 1e3 * b, r
        line(out, f"   {k:9s} alone {1e3 * a:7.1f} ms   busy {1e3 * b:7.1f} ms   {r:.2f}x")

    # 5. peak RSS -----------------------------------------------------------------------------------------
    import cv2
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jpg"
        cv2.imwrite(str(big), cv2.resize(cv2.imread(str(seg_inputs[0])), BIG, interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        rss_small = peak_rss_mb(["-m", "dermoseg.cli", "segment", str(seg_inputs[0]), "--out", f"{tmp}/small"])
        rss_big = peak_rss_mb(["-m", "dermoseg.cli", "segment", str(big), "--out", f"{tmp}/big"])
        rss_bare = peak_rss_mb(["-m", "dermoseg.cli", "segment", str(big), "--out", f"{tmp}/bare", "--no-measure"])
    res.update(rss_512_mb=rss_small, rss_big_mb=rss_big, rss_big_no_measure_mb=rss_bare)
    line(out, f"\n5. peak RSS of 'dermoseg segment' (fresh process; goal <= 1.5 GB): {BIG[0]}x{BIG[1]} JPEG "
              f"{rss_big / 1024:.2f} GB; a {read_image(seg_inputs[0]).shape[1]} px image {rss_small / 1024:.2f} GB; "
              f"the {BIG[0]}x{BIG[1]} JPEG with --no-measure "
              f"{rss_bare / 1024:.2f} GB")

    # 6. fast preset --------------------------------------------------------------------------------------
    try:
        fast_path = resolve("fast", "segmentation")
    except ModelFileError as exc:
        line(out, f"\n6. fast preset: not measured ({exc})")
    else:
        fast = Segmenter.load(fast_path, threads=threads)
        xf = fast.prepare(image)
        fwd = paired_times({"fast": lambda: fast.logits(xf, tta=True), "default": lambda: seg["onnx"].logits(x, tta=True)},
                           args.repeats)
        jobs = paired_times({"fast": lambda: job_seconds(job(fast), seg_inputs),
                             "default": lambda: job_seconds(job(seg["onnx"]), seg_inputs)}, args.rounds)
        f_fwd, d_fwd = (min(fwd[k]) for k in ("fast", "default"))
        f_job, d_job = (statistics.median(jobs[k]) / len(seg_inputs) for k in ("fast", "default"))
        fmacs = count_macs(Segmenter.load(fast_path, engine="torch").network, fast.image_size, fast.image_size)
        job_speedup = paired_ratio(jobs, "default", "fast")
        res.update(fast_gmac=fmacs / 1e9, fast_forward_ms=1e3 * f_fwd, fast_forward_speedup=d_fwd / f_fwd,
                   fast_job_ms=1e3 * f_job, fast_default_job_ms=1e3 * d_job, fast_job_speedup=job_speedup)
        line(out, f"\n6. fast preset ({fmacs / 1e9:.3f} GMAC per {fast.image_size} px image, engine "
                  f"{fast.runner.engine}; goal >= 5x the default's throughput): forward with TTA {1e3 * f_fwd:.1f} ms "
                  f"vs {1e3 * d_fwd:.1f} ms = {d_fwd / f_fwd:.1f}x; whole segment job {1e3 * f_job:.1f} ms vs "
                  f"{1e3 * d_job:.1f} ms per image: {job_speedup:.1f}x")

    line(out, f"\nload average at end {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(out) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
