#!/usr/bin/env bash
# Regenerate docs/results on this 2-core CPU, after the shipped model (runs/codec_mobilenet_v2/model.pt) exists.
#
#   experiments/reproduce.sh [DEADLINE_HH:MM]
#
# Two lanes of one thread each run side by side:
#   A: the codec-vs-U-Net comparison and the ablations   (configs/comparison.yaml)
#   B: evaluation of the shipped codec (its default flip TTA) on ISIC val and PH2, then the Table 1 grid (configs/table1_grid.yaml)
# then the throughput benchmark, the import of the shipped run and the report. No sweep cell is started that
# its sweep predicts would end after DEADLINE (default 11:43); an unfinished sweep resumes on the next call.
# With FULL=1 it then also trains the Table 1 grid's best cell at full size (configs/table1_best_full.yaml:
# 256 px, whole training split; about 4 min per epoch here with two threads, stopped by the config's
# max_time_minutes, counted over all sessions of the run, and resumed by the next call), scores it and adds it to the report.
# Every command's start, wall time and exit status is appended to docs/results/manual_runs.csv (the sweeps
# also keep their own, per cell, in docs/results/<sweep>.meta.json and <sweep>.csv).
set -u
cd "$(dirname "$0")/.."
DEADLINE=${1:-11:43}
BIN=.venv/bin
LOG=docs/results/manual_runs.csv
mkdir -p runs/eval docs/results
[ -f "$LOG" ] || echo "command,started,wall_s,exit_status" > "$LOG"

timed() {  # run a command, then append "command,started,wall seconds,exit status" to the log
  local t0 started rc
  t0=$(date +%s); started=$(date '+%Y-%m-%d %H:%M:%S')
  "$@"; rc=$?
  echo "\"$*\",$started,$(( $(date +%s) - t0 )),$rc" >> "$LOG"
  return $rc
}

lane_a() {
  timed env OMP_NUM_THREADS=1 nice -n 5 $BIN/dermoseg sweep --config configs/comparison.yaml --deadline "$DEADLINE"
}

lane_b() {
  # the shipped model file (src/dermoseg/weights/segmentation.pt, trained in runs/codec_mobilenet_v2) with its
  # default settings (flip TTA)
  timed env OMP_NUM_THREADS=1 nice -n 5 $BIN/dermoseg evaluate \
    --dataset isic2018 --split val --out runs/eval/codec_mobilenet_v2/isic2018_val --save-masks
  timed env OMP_NUM_THREADS=1 nice -n 5 $BIN/dermoseg evaluate \
    --dataset ph2 --out runs/eval/codec_mobilenet_v2/ph2 --save-masks
  timed env OMP_NUM_THREADS=1 nice -n 5 $BIN/dermoseg sweep --config configs/table1_grid.yaml --deadline "$DEADLINE"
}

lane_a > runs/lane_a.log 2>&1 &
lane_b > runs/lane_b.log 2>&1 &
wait
timed nice -n 5 $BIN/python benchmarks/throughput.py --sizes 64 128 256 --batch 4 --steps 2 --images 5 \
  --out docs/results/throughput.json
timed $BIN/dermoseg report --import codec_mobilenet_v2=runs/codec_mobilenet_v2

if [ "${FULL:-0}" = 1 ]; then
  resume=(); [ -f runs/table1_best_full/checkpoints/last.ckpt ] && resume=(--resume)
  timed $BIN/dermoseg train --config configs/table1_best_full.yaml --out runs/table1_best_full "${resume[@]}"
  for set in "isic2018 --split val:isic2018_val" "ph2:ph2"; do
    timed $BIN/dermoseg evaluate --model runs/table1_best_full/model.pt --dataset ${set%%:*} \
      --out runs/eval/table1_best_full/${set##*:} --save-masks
  done
  timed $BIN/dermoseg report --import table1_best_full=runs/table1_best_full
fi
