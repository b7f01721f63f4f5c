"""Screenshot of the ``dermoseg serve`` page in headless Chromium after analysing a real PH2 image.

    .venv/bin/python scripts/serve_screenshot.py docs/serve.png [--width 1366] [--height 800] [--image FILE]

Starts the server on a free 127.0.0.1 port, uploads the image through the page, waits for the outline and writes a
full-page PNG (reduced to 256 colours with dithering, to keep the repository small). Uses Debian's
/usr/bin/chromium (as the browser test does).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

from dermoseg.io import write_bytes
from dermoseg.serve import LocalServer

PH2_IMAGE = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ph2" / "PH2Dataset" /
             "PH2 Dataset images" / "IMD003" / "IMD003_Dermoscopic_Image" / "IMD003.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--image", type=Path, default=PH2_IMAGE)
    parser.add_argument("--width", type=int, default=1366)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    with LocalServer(env={"OMP_NUM_THREADS": "1"}) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(server.url + "/")
        page.set_input_files("#file", str(args.image))
        expect(page.locator("#result")).to_be_visible(timeout=120_000)
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        browser.close()
    buf = io.BytesIO()
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        buf, "PNG", optimize=True)
    write_bytes(args.out, buf.getvalue())
    print(f"screenshot written to {args.out.resolve()}")


if __name__ == "__main__":
    main()
