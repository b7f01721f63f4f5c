#!/usr/bin/env bash
# Issue 16, part 3: does black-frame and hair removal before segmentation help? Trains the shipped recipe with
# cleaning on (and, at the reduced budget, also with it off: the two arms differ only in `preprocess.enabled`)
# and scores each on the ISIC validation split of the committed split. PH2 takes no part in the choice.
#
#   experiments/preprocess_ab.sh reduced   # both arms side by side, one thread each: 128 px, 400 training images,
#                                          # 3 epochs (configs/codec_mobilenet_v2{,_clean}_reduced.yaml)
#   experiments/preprocess_ab.sh full      # the clean arm of the shipped recipe (configs/codec_mobilenet_v2_clean.yaml,
#                                          # ~70+ min of both cores here); the off arm is the shipped model, already
#                                          # trained by configs/codec_mobilenet_v2.yaml with the same seed and budget
#   experiments/preprocess_ab.sh compare OFF_CSV CLEAN_CSV   # only the paired comparison of two scored runs
#
# Each arm writes runs/<config>/ (model.pt, metrics.csv), runs/<config>.log and runs/<config>/eval_val/summary.json.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
mkdir -p runs

arm() {  # config name [extra evaluate options]: train, then score on the validation split (the model's own settings)
  local name=$1
  shift
  "$BIN/dermoseg" train --config "configs/$name.yaml" --out "runs/$name" > "runs/$name.log" 2>&1
  "$BIN/dermoseg" evaluate --dataset isic2018 --split val --model "runs/$name/model.pt" \
    --out "runs/$name/eval_val" "$@" >> "runs/$name.log" 2>&1
}

case "${1:-}" in
  reduced)
    OMP_NUM_THREADS=1 arm codec_mobilenet_v2_reduced & pid_off=$!
    OMP_NUM_THREADS=1 arm codec_mobilenet_v2_clean_reduced & pid_on=$!
    wait $pid_off; wait $pid_on
    off=runs/codec_mobilenet_v2_reduced clean=runs/codec_mobilenet_v2_clean_reduced ;;
  full)
    arm codec_mobilenet_v2_clean
    # the off arm: the shipped model, scored the same way
    "$BIN/dermoseg" evaluate --dataset isic2018 --split val --out runs/codec_mobilenet_v2/eval_val
    off=runs/codec_mobilenet_v2 clean=runs/codec_mobilenet_v2_clean ;;
  compare)  # compare OFF_CSV CLEAN_CSV: the per_image.csv files of two runs already scored on the validation split
    off_csv=$2 clean_csv=$3 ;;
  *)
    echo "usage: experiments/preprocess_ab.sh reduced|full|compare OFF_CSV CLEAN_CSV" >&2
    exit 2 ;;
esac
if [ -z "${off_csv:-}" ]; then
  for f in "$off" "$clean"; do echo "$f/eval_val/summary.json: $(cat "$f/eval_val/summary.json")"; done
  off_csv=$off/eval_val/per_image.csv clean_csv=$clean/eval_val/per_image.csv
fi
# clean minus off, per validation image, with a paired percentile-bootstrap 95% interval (resampling images)
"$BIN/python" - "$off_csv" "$clean_csv" <<'PY'
import csv, sys
import numpy as np
from dermoseg.metrics import paired_bootstrap
a, b = ({r["image_id"]: r for r in csv.DictReader(open(p))} for p in sys.argv[1:3])
ids = sorted(a)
for m in ("dice", "thresholded_jaccard"):
    pa, pb = (np.array([[float(t[i][m])] for i in ids]) for t in (a, b))
    res = paired_bootstrap(np.zeros(len(ids), int), pa, pb, metric=lambda _, p: p[:, 0].mean(), stratified=False)
    print(m, "clean - off:", " ".join(f"{k} {float(v):.4f}" for k, v in res.items()))
PY
