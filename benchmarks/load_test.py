"""Load test of ``dermoseg serve``: N requests from C concurrent clients against a server on 127.0.0.1.

Starts ``dermoseg serve`` in a child process on a free loopback port (never another address), sends a fixed,
seeded mix of requests — real PH2, ISIC 2018 and HAM10000 images to ``/v1/segment``, ``/v1/analyze`` and
``/v1/diagnose``, a few full-size 6748×4499 JPEGs (made from a real ISIC image) to ``/v1/diagnose``, and bad
uploads: larger than the upload limit, not an image, truncated, zero bytes — then stops the server. It samples
the server's resident memory every second, and reports: responses by kind and status, unexpected statuses
(any 5xx other than a 503 "busy" counts as unexpected; so does a 4xx for a good image), crashes (connection
errors, or the server process gone), median and p95 latency, throughput, and memory over time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/load_test.py --requests 1000 --clients 8 \\
        --out benchmarks/results/load_test

writes ``load_test.json`` (every figure and the memory samples) and ``load_test.md`` (the summary). Bounded:
at most ``--requests`` requests and ``--max-seconds`` of sending; each request times out after 300 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

from dermoseg.serve import LocalServer
from dermoseg.serve.settings import load_settings

DATA_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# kind -> (share of requests, endpoint, expected status)
MIX = {
    "segment": (0.30, "/v1/segment", 200),
    "analyze": (0.20, "/v1/analyze", 200),
    "diagnose": (0.30, "/v1/diagnose", 200),
    "full_size": (0.01, "/v1/diagnose", 200),
    "oversize": (0.05, "/v1/segment", 413),
    "not_image": (0.06, "/v1/segment", 415),
    "truncated": (0.05, "/v1/analyze", 422),
    "empty": (0.03, "/v1/diagnose", 422),
}


@dataclass
class Result:
    kind: str
    status: int | None      # None: no HTTP answer (connection error, timeout)
    seconds: float
    started: float
    error: str = ""


def real_images(per_set: int, seed: int) -> list[tuple[str, bytes]]:
    """``per_set`` files each from PH2, ISIC 2018 and HAM10000, picked with ``seed``: (name, bytes)."""
    rng = random.Random(seed)
    sets = [sorted((DATA_ROOT / "ph2" / "PH2Dataset" / "PH2 Dataset images").glob("*/*_Dermoscopic_Image/*.jpg")),
            sorted((DATA_ROOT / "isic2018_task1" / "ISIC2018_Task1-2_Training_Input").glob("*.jpg")),
            sorted((DATA_ROOT / "ham10000" / "images").glob("*.jpg"))]
    picked = [p for files in sets for p in rng.sample(files, per_set)]
    return [(p.name, p.read_bytes()) for p in picked]


def payloads(images: list[tuple[str, bytes]], max_upload_bytes: int) -> dict[str, list[tuple[str, bytes]]]:
    """The uploads of each kind of request (see :data:`MIX`)."""
    isic = next(data for name, data in images if name.startswith("ISIC_") and len(data) > 20_000)
    big = cv2.resize(cv2.imdecode(np.frombuffer(isic, np.uint8), cv2.IMREAD_COLOR), (6748, 4499),
                     interpolation=cv2.INTER_CUBIC)
    ok, big_jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    # Larger than the limit by 1 MiB: a real JPEG followed by padding (refused from the Content-Length alone).
    oversize = isic + bytes(max_upload_bytes + 1_048_576 - len(isic))
    return {
        "segment": images, "analyze": images, "diagnose": images,
        "full_size": [("full_size_6748x4499.jpg", big_jpeg.tobytes())],
        "oversize": [("oversize.jpg", oversize)],
        "not_image": [("notes.jpg", b"lesion notes, not a picture\n" * 400), ("report.png", b"%PDF-1.4\n" + bytes(5000))],
        "truncated": [(name, data[: len(data) // 3]) for name, data in images[:6]],
        "empty": [("empty.jpg", b"")],
    }


def plan(n: int, seed: int) -> list[str]:
    """The kinds of ``n`` requests in a seeded random order, in the proportions of :data:`MIX`."""
    rng = random.Random(seed)
    kinds = [k for k, (share, _, _) in MIX.items() for _ in range(round(share * n))]
    kinds = (kinds + ["diagnose"] * n)[:n]
    rng.shuffle(kinds)
    return kinds


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB (from /proc)."""
    total, pids = 0, [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.is_file():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run(args) -> dict:
    settings = load_settings()
    load_before = os.getloadavg()
    images = real_images(args.per_set, args.seed)
    uploads = payloads(images, settings.max_upload_bytes)
    kinds = plan(args.requests, args.seed)
    rng = random.Random(args.seed + 1)
    jobs = [(k, rng.choice(uploads[k])) for k in kinds]

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "serve.yaml"
        config.write_text(f"inference_threads: {args.inference_threads}\ncompute_threads: {args.compute_threads}\n")
        log = open(Path(tmp) / "server.log", "w+")
        env = {"OMP_NUM_THREADS": str(args.inference_threads)}
        with LocalServer(["--config", str(config)], env=env, log=log) as server:
            memory: list[tuple[float, float]] = []
            stop = threading.Event()
            t0 = time.perf_counter()

            def sample():
                while not stop.is_set():
                    memory.append((round(time.perf_counter() - t0, 2), round(rss_mb(server.process.pid), 1)))
                    stop.wait(1.0)

            results: list[Result] = []
            lock = threading.Lock()
            next_job = iter(range(len(jobs)))

            def client():
                with httpx.Client(base_url=server.url, timeout=300) as http:
                    while time.perf_counter() - t0 < args.max_seconds:
                        with lock:
                            i = next(next_job, None)
                        if i is None:
                            return
                        kind, (name, data) = jobs[i]
                        start = time.perf_counter()
                        try:
                            r = http.post(MIX[kind][1], files={"image": (name, data, "application/octet-stream")})
                            res = Result(kind, r.status_code, time.perf_counter() - start, start - t0,
                                         "" if r.status_code == MIX[kind][2] else r.text[:300])
                        except httpx.HTTPError as exc:
                            res = Result(kind, None, time.perf_counter() - start, start - t0,
                                         f"{type(exc).__name__}: {exc}")
                        with lock:
                            results.append(res)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
            alive = server.process.poll() is None
        log.seek(0)
        server_log = log.read()
        log.close()

    by_kind = {}
    for kind in MIX:
        rs = [r for r in results if r.kind == kind]
        statuses: dict[str, int] = {}
        for r in rs:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        ok = [r.seconds for r in rs if r.status == MIX[kind][2]]
        by_kind[kind] = {"endpoint": MIX[kind][1], "expected_status": MIX[kind][2], "requests": len(rs),
                         "statuses": statuses, "median_s": percentile(ok, 50), "p95_s": percentile(ok, 95),
                         "max_s": max(ok) if ok else None}
    unexpected = [r for r in results if r.status is not None and r.status != MIX[r.kind][2] and r.status != 503]
    unexpected_5xx = [r for r in unexpected if r.status >= 500]
    crashes = [r for r in results if r.status is None]
    images_ok = [r for r in results if r.kind in ("segment", "analyze", "diagnose", "full_size") and r.status == 200]
    errors_ok = [r for r in results if MIX[r.kind][2] >= 400 and r.status == MIX[r.kind][2]]
    mem = [m for _, m in memory]
    quarter = max(1, len(mem) // 4)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1min_before": round(load_before[0], 2),
                    "load_average_1min_after": round(os.getloadavg()[0], 2),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")},
        "server": {"host": "127.0.0.1", "inference_threads": args.inference_threads, "compute_threads": args.compute_threads,
                   "max_waiting": settings.max_waiting, "max_upload_bytes": settings.max_upload_bytes,
                   "max_pixels": settings.max_pixels, "alive_at_end": alive},
        "clients": args.clients, "requests_planned": len(jobs), "requests_sent": len(results),
        "wall_seconds": round(wall, 1), "throughput_requests_per_s": round(len(results) / wall, 3),
        "throughput_images_per_s": round(len(images_ok) / wall, 3),
        "busy_503": sum(r.status == 503 for r in results),
        "unexpected": len(unexpected), "unexpected_5xx": len(unexpected_5xx),
        "crashes": len(crashes) + (0 if alive else 1),
        "image_latency_median_s": percentile([r.seconds for r in images_ok], 50),
        "image_latency_p95_s": percentile([r.seconds for r in images_ok], 95),
        "error_latency_median_s": percentile([r.seconds for r in errors_ok], 50),
        "error_latency_p95_s": percentile([r.seconds for r in errors_ok], 95),
        "error_latency_max_s": max((r.seconds for r in errors_ok), default=None),
        "memory_mb": {"first": mem[0] if mem else None, "first_quarter_median": statistics.median(mem[:quarter]) if mem else None,
                      "last_quarter_median": statistics.median(mem[-quarter:]) if mem else None,
                      "max": max(mem) if mem else None, "last": mem[-1] if mem else None},
        "by_kind": by_kind,
        "unexpected_examples": [r.__dict__ for r in (unexpected + crashes)[:10]],
        "server_log_tail": server_log[-2000:] if (unexpected or crashes or not alive) else "",
        "memory_samples": memory,
    }
    return summary


def markdown(s: dict) -> str:
    """The summary as a Markdown section."""
    f = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    m = s["memory_mb"]
    lines = [
        "# `dermoseg serve` load test", "",
        f"Command: `{s['command']}`  ",
        f"Machine: {s['machine']['cpus']} CPUs, {s['machine']['platform']}, Python {s['machine']['python']}, "
        f"1-min load average {s['machine']['load_average_1min_before']} before and "
        f"{s['machine']['load_average_1min_after']} after (other work shared the CPUs); server on "
        f"127.0.0.1 with {s['server']['inference_threads']} inference thread(s), {s['server']['compute_threads']} compute "
        f"thread(s), queue {s['server']['max_waiting']}; {s['clients']} concurrent clients.", "",
        f"- requests sent: {s['requests_sent']} of {s['requests_planned']} in {s['wall_seconds']} s: "
        f"{s['throughput_requests_per_s']} requests/s, {s['throughput_images_per_s']} analysed images/s",
        f"- unexpected responses: {s['unexpected']} (of which 5xx: {s['unexpected_5xx']}); 503 busy: {s['busy_503']}; "
        f"crashes (no answer, or server gone): {s['crashes']}; server alive at the end: {s['server']['alive_at_end']}",
        f"- image requests answered 200: median {f(s['image_latency_median_s'])} s, p95 {f(s['image_latency_p95_s'])} s "
        "(waiting in the queue included)",
        f"- refused uploads (413/415/422): median {f(s['error_latency_median_s'])} s, p95 {f(s['error_latency_p95_s'])} s, "
        f"max {f(s['error_latency_max_s'])} s",
        f"- server memory (RSS, MiB): first {f(m['first'], 0)}, median of the first quarter {f(m['first_quarter_median'], 0)}, "
        f"of the last quarter {f(m['last_quarter_median'], 0)}, max {f(m['max'], 0)}, last {f(m['last'], 0)}",
        "- server memory over time (median RSS of each eighth of the run, MiB): " + ", ".join(
            f"{round(float(np.median([v for _, v in part])))} from {round(part[0][0])} s"
            for part in np.array_split(np.array(s["memory_samples"], dtype=float), 8) if len(part)), "",
        "| kind | endpoint | requests | statuses | median s | p95 s | max s |", "|---|---|---|---|---|---|---|"]
    for kind, k in s["by_kind"].items():
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(k["statuses"].items()))
        lines.append(f"| {kind} | `{k['endpoint']}` (expect {k['expected_status']}) | {k['requests']} | {statuses} | "
                     f"{f(k['median_s'])} | {f(k['p95_s'])} | {f(k['max_s'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-set", type=int, default=10, help="real images from each of PH2, ISIC, HAM10000")
    parser.add_argument("--inference-threads", type=int, default=1)
    parser.add_argument("--compute-threads", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop sending after this long")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                        help="send nothing: print (and with --out, write as OUT.md) the summary of an earlier run")
    args = parser.parse_args()
    if args.from_json:
        text = markdown(json.loads(args.from_json.read_text()))
        print(text)
        if args.out:
            from dermoseg.io import write_text
            write_text(args.out.with_suffix(".md"), text)
        return 0
    summary = run(args)
    text = markdown(summary)
    print(text)
    if args.out:
        from dermoseg.io import write_text
        write_text(args.out.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
        write_text(args.out.with_suffix(".md"), text)
    ok = summary["unexpected"] == 0 and summary["crashes"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
