"""``dermoseg serve``'s REST API on real PH2, ISIC and HAM10000 images (FastAPI's test client): the same masks,
measurements and probabilities as the CLI, limits and errors, the work queue, the token, the page's files."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import threading
import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dermoseg.cli import main
from dermoseg.errors import ConfigError
from dermoseg.io import file_sha256, read_image
from dermoseg.modelfile import resolve
from dermoseg.serve import is_loopback
from dermoseg.serve.app import STATIC_DIR, create_app
from dermoseg.serve.pipeline import Pipeline, card_headlines, upload_stem
from dermoseg.serve.settings import load_settings


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


@pytest.fixture(scope="module")
def client(pipeline):
    with TestClient(create_app(load_settings(), pipeline, token="")) as c:
        yield c


@pytest.fixture(scope="module")
def images(ph2_samples, isic_samples, data_root):
    """One PH2 image, one ISIC image, one HAM10000 image (real files)."""
    ham = sorted((data_root / "ham10000" / "images").glob("*.jpg"))[0]
    return [ph2_samples[0].image_path, isic_samples[0].image_path, ham]


def _post(client, route, path, name=None, data=None, **form):
    body = path.read_bytes() if data is None else data
    return client.post(route, files={"image": (name or path.name, body, "application/octet-stream")}, data=form)


def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def _png(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_segment_returns_exactly_what_the_cli_writes(client, pipeline, images, tmp_path):
    # PH2, ISIC, and the ISIC image as RGBA PNG whose left third is fully transparent (never lesion, in both)
    rgba = np.dstack([read_image(images[1]), np.full((512, 512), 255, np.uint8)])
    rgba[:, :170, 3] = 0
    transparent = tmp_path / "in" / "transparent.png"
    transparent.parent.mkdir()
    Image.fromarray(rgba, "RGBA").save(transparent)
    inputs = [*images[:2], transparent]
    out_dir = tmp_path / "out"
    assert main(["segment", *map(str, inputs), "--out", str(out_dir), "--mm-per-pixel", "0.02"]) == 0
    cli_rows = {r["image_id"]: r for r in _csv_rows((out_dir / "results.csv").read_text())}
    for path in inputs:
        response = _post(client, "/v1/segment", path, mm_per_pixel="0.02")
        assert response.status_code == 200, response.text
        out = response.json()
        cli_mask = np.asarray(Image.open(out_dir / f"{path.stem}_segmentation.png"))
        api_mask = _png(out["mask_png"])
        assert api_mask.dtype == np.uint8 and api_mask.shape == read_image(path).shape[:2]
        assert np.array_equal(api_mask, cli_mask)
        assert base64.b64decode(out["mask_png"]) == (out_dir / f"{path.stem}_segmentation.png").read_bytes()
        # The results.csv row of the API equals the CLI's, except the file path and the timing.
        (api_row,) = _csv_rows(out["csv"])
        cli_row = cli_rows[path.stem]
        assert list(api_row) == list(cli_row)
        differ = {k for k in cli_row if api_row[k] != cli_row[k]}
        assert differ <= {"file", "seconds"}, {k: (api_row[k], cli_row[k]) for k in differ}
        m = out["measurements"]
        assert m["lesion_area_px"] == int(cli_row["lesion_area_px"]) == int((cli_mask > 128).sum()) > 0
        assert not (cli_mask[:, :170] if path == transparent else np.zeros(1)).any()
        assert m["diameter_mm"] == pytest.approx(m["diameter_px"] * 0.02)
        assert m["area_mm2"] == pytest.approx(m["lesion_area_px"] * 0.02 ** 2)
        assert out["image"] == {"file": path.name, "image_id": path.stem, "width": cli_mask.shape[1],
                                "height": cli_mask.shape[0]}
        # The contour outlines the mask: filling it gives the mask back up to the boundary pixels.
        filled = np.zeros(cli_mask.shape, np.uint8)
        cv2.fillPoly(filled, [np.array(out["contour"], np.int32)], 1)
        assert abs(int(filled.sum()) - m["lesion_area_px"]) < 0.02 * m["lesion_area_px"]
        assert out["model"]["sha256"] == file_sha256(pipeline.segmenter.path)
        assert out["options"] == {"threshold": 0.5, "tta": True, "preprocess": False}  # the shipped model's defaults


def test_diagnose_warns_as_the_cli_does(client, images, tmp_path):
    """/v1/diagnose gave only the image check's warning, never the out-of-distribution flag of `dermoseg diagnose`
    (prediction entropy above the validation split's 95th percentile)."""
    image = read_image(images[0])
    odd = [tmp_path / "small.png", tmp_path / "flat.png"]  # a 20 x 20 copy and the image's mean colour
    Image.fromarray(cv2.resize(image, (20, 20), interpolation=cv2.INTER_AREA)).save(odd[0])
    Image.fromarray(np.broadcast_to(image.mean(axis=(0, 1)).astype(np.uint8), image.shape).copy()).save(odd[1])
    paths = [*images[:2], *odd]
    assert main(["diagnose", *map(str, paths), "--out", str(tmp_path / "d")]) == 0
    cli = {r["image"]: r["warning"] for r in _csv_rows((tmp_path / "d" / "image_sources.csv").read_text())}
    assert any("unlike the training images" in w for w in cli.values())  # the case this test is about occurs
    for path in paths:
        assert (_post(client, "/v1/diagnose", path).json()["warning"] or "") == cli[path.stem], path.name
    # segment --diagnose (and /v1/analyze, its row) also carry the flag in the warning column
    assert main(["segment", *map(str, paths), "--diagnose", "--no-measure", "--out", str(tmp_path / "s")]) == 0
    rows = {r["image_id"]: r["warning"] for r in _csv_rows((tmp_path / "s" / "results.csv").read_text())}
    for path in paths:
        flagged = "unlike the training images" in cli[path.stem]
        assert ("unlike the training images" in rows[path.stem]) == flagged, path.name
        assert ("unlike the training images" in (_post(client, "/v1/analyze", path).json()["warning"] or "")) \
            == flagged, path.name


def test_diagnose_and_analyze_match_the_cli(client, images, tmp_path):
    assert main(["diagnose", *map(str, images), "--out", str(tmp_path / "d")]) == 0
    cli = {r["image"]: r for r in _csv_rows((tmp_path / "d" / "predictions.csv").read_text())}
    for path in images:
        out = _post(client, "/v1/diagnose", path).json()
        probs = out["probabilities"]
        assert list(probs) == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
        assert sum(probs.values()) == pytest.approx(1.0)
        for cls, p in probs.items():
            assert p == pytest.approx(float(cli[path.stem][cls]), abs=1e-7)
        assert out["top_class"] == max(probs, key=probs.get)
        assert "not a medical device" in out["disclaimer"]
    # analyze = segment --diagnose: its CSV row carries the diagnosis columns of the CLI's results.csv.
    path = images[0]
    assert main(["segment", str(path), "--diagnose", "--out", str(tmp_path / "s")]) == 0
    (cli_row,) = _csv_rows((tmp_path / "s" / "results.csv").read_text())
    out = _post(client, "/v1/analyze", path).json()
    (api_row,) = _csv_rows(out["csv"])
    assert list(api_row) == list(cli_row) and "p_MEL" in api_row and "top_class" in api_row
    assert {k for k in cli_row if api_row[k] != cli_row[k]} <= {"file", "seconds"}
    assert out["diagnosis"]["top_class"] == cli_row["top_class"]
    assert np.array_equal(_png(out["mask_png"]), np.asarray(Image.open(tmp_path / "s" / f"{path.stem}_segmentation.png")))


def test_models_lists_both_models_with_sha256_and_card_figures(client, pipeline):
    models = {m["task"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["segmentation"]["sha256"] == file_sha256(pipeline.segmenter.path)
    assert models["classification"]["sha256"] == file_sha256(pipeline.classifier.path)
    card = pipeline.segmenter.path.with_suffix(".md").read_text(encoding="utf-8")
    ph2_row = next(line for line in card.splitlines() if line.startswith("| PH2") and "**" in line)
    ph2_dice = ph2_row.split("**")[1]  # the first bold cell of the card's PH2 row: Dice
    assert any(f"Dice {ph2_dice}" in h and "PH2" in h for h in models["segmentation"]["headline"])
    assert any("balanced multi-class accuracy" in h for h in models["classification"]["headline"])


def test_card_headlines_reads_bold_table_cells():
    card = ("| set | Dice | Jaccard |\n|---|---|---|\n| val | **0.9** | 0.8 |\n| test | 0.7 | 0.6 |\n\n"
            "| metric | value |\n|---|---|\n| accuracy | **0.75** (0.70); see below |\n")
    # the parenthesis after a bold value (what it is compared with) stays (try-out finding: it was dropped)
    assert card_headlines(card) == ["val: Dice 0.9", "accuracy: 0.75 (0.70)"]


@pytest.mark.parametrize("name,expected", [("IMD002.jpg", "IMD002"), ("../../etc/passwd", "passwd"),
                                           ("C:\\x\\a b.png", "a_b"), ("", "upload"), ("../", "upload")])
def test_upload_stem_never_keeps_a_folder(name, expected):
    assert upload_stem(name) == expected


def test_bad_uploads_get_json_errors_with_the_right_status(client, images):
    data = images[1].read_bytes()
    cases = [("zero.jpg", b"", 422, "empty"), ("notes.jpg", b"this is not an image\n" * 50, 415, "not a readable image"),
             ("truncated.jpg", data[: len(data) // 3], 422, "truncated"),
             ("report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 20, 415, "not a readable image")]
    for name, body, status, words in cases:
        response = client.post("/v1/segment", files={"image": (name, body, "image/jpeg")})
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/json"
        assert words in response.json()["detail"] and "Traceback" not in response.text
    for form, words in [({"threshold": "1.5"}, "threshold"), ({"threshold": "abc"}, "threshold"),
                        ({"mm_per_pixel": "-1"}, "mm_per_pixel"), ({"mm_per_pixel": "inf"}, "mm_per_pixel"),
                        ({"mm_per_pixel": "1e400"}, "mm_per_pixel")]:
        response = _post(client, "/v1/segment", images[1], **form)
        assert response.status_code == 422 and words in response.json()["detail"]
    response = client.post("/v1/segment", data={"threshold": "0.5"})
    assert response.status_code == 422 and "image" in response.json()["detail"]
    two = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in images[:2]]
    for route in ("/v1/segment", "/v1/diagnose", "/v1/analyze"):  # the parser kept the last part silently
        response = client.post(route, files=two)
        assert response.status_code == 422 and "2 'image' parts" in response.json()["detail"], response.text
    assert client.get("/v1/nothing").status_code == 404


def test_size_limits_from_the_settings(pipeline, images):
    data = images[0].read_bytes()  # a PH2 JPEG, 765 x 572 pixels
    small = load_settings(overrides={"max_upload_bytes": len(data) - 1, "max_pixels": 10_000_000})
    with TestClient(create_app(small, pipeline, token="")) as c:
        response = _post(c, "/v1/segment", images[0])
        assert response.status_code == 413 and "too large" in response.json()["detail"]
        # A body whose length is not declared (chunked) is counted as it arrives.
        body = (b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n' + data
                + bytes(200_000) + b"\r\n--b--\r\n")
        response = c.post("/v1/segment", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                          headers={"content-type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413
    few_pixels = load_settings(overrides={"max_pixels": 765 * 572 - 1})
    with TestClient(create_app(few_pixels, pipeline, token="")) as c:
        response = _post(c, "/v1/diagnose", images[0])
        assert response.status_code == 413 and "pixels" in response.json()["detail"]
        assert _post(c, "/v1/diagnose", images[1]).status_code == 200  # 512 x 512 passes


def test_default_limits_let_a_full_size_isic_image_through(client, images):
    """A 6748 x 4499 JPEG (the largest official ISIC 2018 image size), made from a real ISIC image."""
    image = cv2.resize(read_image(images[1]), (6748, 4499), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    response = client.post("/v1/diagnose", files={"image": ("big.jpg", jpeg.tobytes(), "image/jpeg")})
    assert response.status_code == 200, response.text


def test_uploads_are_not_written_under_the_client_name(client, images, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where spooled uploads (> 1 MB) would go
    monkeypatch.chdir(tmp_path)
    big = io.BytesIO()
    Image.open(images[0]).resize((1400, 1000)).save(big, "PNG")  # > 1 MB, so it is spooled
    assert big.tell() > 1_048_576
    response = client.post("/v1/segment", files={"image": ("../evil-name.png", big.getvalue(), "image/png")})
    assert response.status_code == 200
    assert response.json()["image"]["image_id"] == "evil-name"
    assert not [p for p in tmp_path.parent.rglob("*evil-name*")]


def test_a_full_queue_answers_503_and_the_waiting_request_completes(pipeline, images):
    release = threading.Event()
    entered = threading.Event()

    class Slow:
        """The real pipeline, held on a lock so that a second request finds the queue full."""
        def __getattr__(self, name):
            return getattr(pipeline, name)

        def diagnose(self, image):
            entered.set()
            release.wait(30)
            return pipeline.diagnose(image)

    settings = load_settings(overrides={"compute_threads": 1, "max_waiting": 1})
    with TestClient(create_app(settings, Slow(), token="")) as c:
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("first", _post(c, "/v1/diagnose", images[2])))
        second = threading.Thread(target=lambda: results.setdefault("second", _post(c, "/v1/diagnose", images[2])))
        first.start()
        assert entered.wait(30)
        second.start()
        deadline = time.monotonic() + 30
        while c.get("/health").json()["busy"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        third = _post(c, "/v1/diagnose", images[2])
        assert third.status_code == 503 and third.headers["retry-after"]
        assert "busy" in third.json()["detail"]
        release.set()
        first.join(60)
        second.join(60)
        assert results["first"].status_code == results["second"].status_code == 200
        assert c.get("/health").json()["busy"] == 0


def test_bearer_token(pipeline, images):
    with TestClient(create_app(load_settings(), pipeline, token="s3cret")) as c:
        assert c.get("/health").status_code == 200 and c.get("/health").json()["auth"] is True
        assert c.get("/").status_code == 200  # the page itself is public; it asks for the token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = c.get("/v1/models", headers=headers)
            assert response.status_code == 401 and "token" in response.json()["detail"]
        assert _post(c, "/v1/diagnose", images[2]).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_token_from_the_environment(pipeline, monkeypatch):
    monkeypatch.setenv("DERMOSEG_TOKEN", "from-env")
    with TestClient(create_app(load_settings(), pipeline)) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_page_and_docs_are_served_without_any_outside_file(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("index.html", "app.js", "style.css"):
        text = STATIC_DIR.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), name  # no CDN, no external link
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text), name
    assert client.get("/static/app.js").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    for url in re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", docs.text) + re.findall(r"url: ['\"]([^'\"]+)['\"]", docs.text):
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    assert "/v1/segment" in client.get("/openapi.json").json()["paths"]


def test_settings_and_host_checks(tmp_path, capsys):
    bad = tmp_path / "serve.yaml"
    bad.write_text("max_pixels: -5\n")
    with pytest.raises(ConfigError, match="max_pixels"):
        load_settings(bad)
    bad.write_text("max_pixel: 5\n")
    with pytest.raises(ConfigError, match="unknown"):
        load_settings(bad)
    assert load_settings().max_pixels >= 6748 * 4499
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert main(["serve", "--host", "0.0.0.0", "--port", "8000"]) == 2
    out, err = capsys.readouterr()
    assert "--token" in err and "web page at" not in out  # no "serving at" banner for a server that never starts
    assert main(["serve", "--config", str(bad)]) == 2
    assert "max_pixel" in capsys.readouterr().err


def test_a_port_in_use_is_refused_in_one_line(capsys):
    """A busy port printed the "web page at" banner, loaded the models, logged uvicorn's bind ERROR and exited 3."""
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert f"127.0.0.1:{port}" in err and "in use" in err and "web page at" not in out



def test_serve_runs_the_models_it_is_given(tmp_path, capsys, monkeypatch):
    """``--model`` / ``--classifier``: a missing or wrong file stops the command in one line before it listens;
    the app of each worker process loads the files the command named (here the shipped fast preset)."""
    from dermoseg.serve.settings import CLASSIFIER_ENV, MODEL_ENV
    monkeypatch.setenv(MODEL_ENV, "")  # whatever serve sets here is undone after the test
    monkeypatch.setenv(CLASSIFIER_ENV, "")
    assert main(["serve", "--model", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    fast = str(resolve("fast", "segmentation"))
    assert main(["serve", "--classifier", fast]) == 2  # a segmentation model given as the classifier
    assert "not a dermoseg classifier" in capsys.readouterr().err
    shutil.copy(fast, tmp_path / "stale.pt")  # with another model's ONNX export beside it: refused before the banner
    shutil.copy(resolve("default", "segmentation").with_suffix(".onnx"), tmp_path / "stale.onnx")
    assert main(["serve", "--model", str(tmp_path / "stale.pt"), "--port", "1"]) == 2
    captured = capsys.readouterr()
    assert "stale.onnx: exported from a model file with sha256" in captured.err and "move that file away" in captured.err
    assert "web page at" not in captured.out and "--engine" not in captured.err
    monkeypatch.setenv(MODEL_ENV, fast)
    with TestClient(create_app(load_settings(), token="")) as c:
        names = {m["task"]: m["name"] for m in c.get("/v1/models").json()["models"]}
    assert names == {"segmentation": "segmentation_fast.pt", "classification": "classifier.pt"}


def test_requests_in_progress_are_capped_before_their_body_is_read():
    """Uploads in progress are capped (503) and a body over the limit gets 413. Try-out findings: 40 stalled
    uploads held every place for as long as their sockets stayed open, /health included, and uploads without the
    token took places from those with it; now a stalled body gets 408 and frees its place, GET requests are not
    counted, and a /v1 request without the token is refused before it takes a place."""
    import asyncio

    import httpx

    from dermoseg.serve.app import RequestGuard

    release = asyncio.Event()

    async def app(scope, receive, send):  # reads the whole body, then waits for `release` (except /health)
        more = True
        while more:
            msg = await receive()
            more = msg.get("more_body", False)
        if scope["path"] != "/health":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def stalled_body():
        yield b"x" * 10
        await asyncio.sleep(30)  # a client that stops sending
        yield b"x"

    async def scenario():
        guard = RequestGuard(app, limit=1000, max_requests=2, body_timeout=0.2, token="tok")
        bearer = {"Authorization": "Bearer tok"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://test") as c:
            stalled = await asyncio.wait_for(c.post("/v1/segment", content=stalled_body(), headers=bearer), 10)
            first = asyncio.create_task(c.post("/v1/segment", content=b"a", headers=bearer))
            second = asyncio.create_task(c.post("/v1/segment", content=b"b", headers=bearer))
            for _ in range(1000):  # 10 s at most: a regression fails here instead of hanging the suite
                if guard.active >= 2:
                    break
                await asyncio.sleep(0.01)
            assert guard.active == 2
            third = await c.post("/v1/segment", content=b"x" * 10, headers=bearer)
            health = await c.get("/health")
            no_token = await c.post("/v1/segment", content=b"x", headers={"Authorization": "Bearer nope"})
            release.set()
            done = [await first, await second]
            too_big = await c.post("/v1/segment", content=b"x" * 1001, headers=bearer)
            return stalled, third, health, no_token, done, too_big, guard.active

    stalled, third, health, no_token, done, too_big, active = asyncio.run(scenario())
    assert stalled.status_code == 408 and "stalled" in stalled.json()["detail"]
    assert third.status_code == 503 and "busy" in third.json()["detail"] and third.headers["retry-after"]
    assert health.status_code == 200
    assert no_token.status_code == 401 and "token" in no_token.json()["detail"]
    assert [r.status_code for r in done] == [200, 200] and active == 0
    assert too_big.status_code == 413 and "too large" in too_big.json()["detail"]


def test_local_server_that_fails_to_start_says_why_and_closes_its_log(tmp_path):
    from dermoseg.serve import LocalServer
    server = LocalServer(["--config", str(tmp_path / "missing.yaml")], start_timeout=60)
    with pytest.raises(RuntimeError, match="did not start") as failed:
        server.__enter__()
    assert "missing.yaml" in str(failed.value)
    assert server.process.poll() is not None and server._own_log is None and server.log is None


def test_worker_processes_share_the_cpus_instead_of_each_taking_all(monkeypatch):
    import dermoseg.engine.threads as threads
    from dermoseg.serve.pipeline import Pipeline
    from dermoseg.serve.settings import WORKERS_ENV, load_settings, worker_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    default = load_settings()
    assert default.inference_threads == 0
    assert worker_threads(default, workers=1) == 8
    assert worker_threads(default, workers=3) == 2  # 3 processes x 2 threads on 8 CPUs, not 3 x 8
    assert worker_threads(default, workers=16) == 1
    monkeypatch.setenv(WORKERS_ENV, "4")  # what 'dermoseg serve --workers 4' gives its worker processes
    assert worker_threads(default) == 2
    assert worker_threads(load_settings(overrides={"inference_threads": 3}), workers=4) == 3
    pipeline = Pipeline(threads=1)
    assert pipeline.segmenter.runner.threads == 1 and pipeline.classifier.runner.threads == 1
