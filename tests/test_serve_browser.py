"""The web page of ``dermoseg serve`` in real headless Chromium (Debian's ``chromium``, driven by Playwright):
upload a real PH2 image, wait for the outline, and check that the page shows the CLI's numbers."""

from __future__ import annotations

import csv

import pytest
from playwright.sync_api import expect, sync_playwright

from dermoseg.cli import main
from dermoseg.serve import LocalServer

CHROMIUM = "/usr/bin/chromium"  # Debian's package; scripts/test.sh installs it (never `playwright install`)


@pytest.fixture(scope="module")
def server():
    with LocalServer(env={"OMP_NUM_THREADS": "1"}) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 800}, {"width": 768, "height": 1024}],
                         ids=["laptop", "tablet"])
def test_upload_shows_the_outline_and_the_cli_area(server, browser, ph2_samples, tmp_path, viewport):
    sample = ph2_samples[1]
    assert main(["segment", str(sample.image_path), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))

    page = browser.new_page(viewport=viewport)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: errors.append(f"outside request {req.url}")
            if not req.url.startswith((server.url, "data:", "blob:")) else None)
    page.goto(server.url + "/")
    page.set_input_files("#file", str(sample.image_path))
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    outline = page.locator("#outline")
    assert (outline.get_attribute("d") or "").startswith("M")
    assert page.locator("#area-px").inner_text() == row["lesion_area_px"]
    assert page.locator("#area-pct").inner_text() == f"{float(row['lesion_area_pct']):.2f}"
    # The outline is drawn in image pixels over the image: it spans the lesion's bounding box of results.csv
    # (from the first to the last pixel centre, hence width - 1), and the photo fills the view box.
    shape = page.evaluate("""() => { const b = document.getElementById("outline").getBBox();
        const v = document.getElementById("view").viewBox.baseVal; return [b.x, b.y, b.width, b.height, v.width, v.height]; }""")
    assert shape == [int(row["bbox_x"]), int(row["bbox_y"]), int(row["bbox_width"]) - 1, int(row["bbox_height"]) - 1,
                     int(row["width"]), int(row["height"])]
    assert page.locator("#view").bounding_box()["width"] > 300
    # The seven bars, the disclaimer, the downloads named as the CLI names its files.
    assert page.locator("#chart .bar-row").count() == 7
    assert "not a medical device" in page.locator("#disclaimer").inner_text()
    assert page.locator("#download-mask").get_attribute("download") == f"{sample.image_id}_segmentation.png"
    with page.expect_download() as download:
        page.click("#download-csv")
    (downloaded,) = list(csv.DictReader(open(download.value.path(), newline="")))
    assert {k for k in row if downloaded[k] != row[k]} <= {"file", "seconds"}
    # The toggle shows the mask instead of the photo.
    page.click("#show-mask")
    assert page.locator("#mask-image").get_attribute("visibility") == "visible"
    assert page.locator("#outline").get_attribute("visibility") == "hidden"
    # Nothing overflows sideways at this width.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not errors, errors
    page.close()


def test_a_non_image_gets_an_error_in_plain_words(server, browser, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are notes, not a picture\n" * 20)
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(notes))
    expect(page.locator("#error")).to_be_visible(timeout=30_000)
    assert "not an image" in page.locator("#error").inner_text()
    assert page.locator("#result").is_hidden()
    page.close()


def test_serve_command_with_workers_token_and_config(tmp_path, ph2_samples):
    """``dermoseg serve --workers 2 --token T --config F`` as a user starts it: both processes get the token and
    the settings (through the environment), and stopping it with Ctrl+C (SIGINT) ends it cleanly."""
    import httpx
    config = tmp_path / "serve.yaml"
    config.write_text("max_pixels: 1000\ncompute_threads: 1\n")
    with LocalServer(["--workers", "2", "--token", "T0k", "--config", str(config)], env={"OMP_NUM_THREADS": "1"}) as s:
        health = httpx.get(s.url + "/health").json()
        assert health["auth"] is True and health["max_pixels"] == 1000
        assert httpx.get(s.url + "/v1/models").status_code == 401
        for _ in range(4):  # reaches both workers
            response = httpx.post(s.url + "/v1/diagnose", headers={"Authorization": "Bearer T0k"},
                                  files={"image": ("a.jpg", ph2_samples[0].image_path.read_bytes())})
            assert response.status_code == 413 and "pixels" in response.json()["detail"]
    assert s.process.returncode == 0
