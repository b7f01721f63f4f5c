#!/usr/bin/env bash
# Install everything, then run the main job on real images: segment 8 PH2 images and 8 ISIC 2018 images of the
# validation split with the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
DATA=${DERMOSEG_DATA:-../shared/data}
OUT=${1:-out/quickstart}
PH2="$DATA/ph2/PH2Dataset/PH2 Dataset images"
ISIC="$DATA/isic2018_task1/ISIC2018_Task1-2_Training_Input"
inputs=()
for id in IMD002 IMD003 IMD009 IMD016 IMD022 IMD024 IMD025 IMD035; do inputs+=("$PH2/$id/${id}_Dermoscopic_Image/$id.jpg"); done
for id in $(awk -F, '$NF == "val" { print $1; if (++n == 8) exit }' src/dermoseg/splits/isic2018_task1.csv); do inputs+=("$ISIC/$id.jpg"); done
.venv/bin/dermoseg segment "${inputs[@]}" --out "$OUT"
echo
echo "Results: $(cd "$OUT" && pwd)/results.csv, masks *_segmentation.png and overlays *_overlay.jpg beside it."
