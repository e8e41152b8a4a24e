#!/usr/bin/env bash
# Does CL-MAE beat MAE? The zoo's Fashion-MNIST comparison (python -m tools.zoo.fmnist) in one call on one GPU.
#
# Stage the data first, on a machine with Debian's dataset-fashion-mnist (about a minute; prints what will travel
# and refuses above 60 MiB):
#     python -m tools.stage_fmnist                        # -> .fmnist/ (ignored by git), 25.2 MiB
# Then run, from the repository root, carrying .fmnist to the GPU machine:
#     OUT=$OUT bash benchmarks/run_gpu_fmnist.sh          # device call: carry [".fmnist"], timeout_s 600
# Expected time: about 9 minutes of the 10-minute limit (preflight 10 s, calibration <= 90 s, training until 370 s,
# evaluation until 480 s, CUDA tests <= 40 s).
#
# Order, most valuable first, each stage handed back into $OUT as soon as it ends (a call cut at any moment keeps
# every finished stage): preflight (CUDA device, staged data, versions, disk; stops in seconds with one line naming
# what is missing); calibration (seeds per method: the most that reach 50 epochs, at least 3, 5 when time allows;
# batch 256 doubled up to 1024; if it overruns, the rates measured so far decide, else a fallback schedule); training
# of both methods' seeds and the two labelled fixed-lambda diagnostics (runs still going at TRAIN_DEADLINE are exported
# from their newest checkpoint); kNN and linear probe of every seed; the mask statistics, curriculum figure and the
# diagnostics' probes; the references (random init, raw pixels); fine-tuning of seed 0 of each method; then the
# CUDA-only tests.
#
# What comes back in $OUT (5 files, none over 15 MB, no folders): log.txt (everything printed, as it happens);
# summary.json (rewritten after each stage: the schedule, every stage's status, per-method mean and std, CL-MAE - MAE
# in sigma); results.tar.gz (replaced atomically after each stage: summary.md, masks.json/md, curriculum.png, eval
# JSON, logs, metrics, configs, mask records, pictures, cuda_tests.txt; no weights); weights_s0.tar.part-NN, the float16
# pretraining weights of seed 0 of each method (`cat weights_s0.tar.part-* > weights_s0.tar`; its sha256 is in
# summary.json, weights_returned).
# `python -m tools.zoo.publish ZOO_DIR` turns the unpacked results plus those weights into the bundled weights.
#
# The calibration times both update paths, eager and graphed (cuda_graph=true: the update captured as a CUDA graph),
# checks that the graphed one gives eager's first losses (bf16 tolerance) and trains with it only if it is also faster;
# the plan (path, batch, epochs, seeds, expected seconds) is printed and in summary.json before training starts.
# SMOKE=1 runs every stage on the CPU with a tiny model, calibration included, on the bundled sample (a few minutes);
# its graphed calibration records are made up (FAKE_GRAPH: faster (default), slower, differs or fails).
# Knobs: SEEDS (fixed seeds, e.g. "0 1 2"; default: chosen by the calibration), TRAIN_SECONDS (training time the
# epochs are sized for, 250), CALIBRATE_SECONDS (90), TRAIN_DEADLINE (seconds after start at which training stops,
# 370), DEADLINE (the whole pipeline, 480), FT_EPOCHS (fine-tuning epochs, 5; 0 for none), DIAGNOSTICS (1 or 0),
# FMNIST (the staged folder, .fmnist), PYTHON (python3).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1  # the repository root: PYTHONPATH, tests/ and the default paths are relative to it
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export CLMAE_CACHE=${CLMAE_CACHE:-/tmp/clmae_cache}
OUT=${OUT:-runs/gpu_out}
ZOO=${ZOO:-/tmp/zoo}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: >"$LOG"
start=$(date +%s)

if [ "${SMOKE:-0}" = 1 ]; then
  $PY -m tools.preflight --disk "$(dirname "$ZOO")":1 >>"$LOG" 2>&1 || { tail -1 "$LOG"; exit 3; }
else
  FMNIST=${FMNIST:-.fmnist}
  $PY -m tools.preflight --cuda --data "$FMNIST" --disk "$(dirname "$ZOO")":10 >>"$LOG" 2>&1 \
    || { tail -1 "$LOG"; exit 3; }
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$LOG" 2>&1
nproc >>"$LOG"
cat "$LOG"
rm -rf "$ZOO"

diag=()
[ "${DIAGNOSTICS:-1}" = 1 ] || diag=(--no-diagnostics)
seeds=()
[ -n "${SEEDS:-}" ] && seeds=(--seeds $SEEDS)
if [ "${SMOKE:-0}" = 1 ]; then
  # many processes at once on a few CPU cores: one intra-op thread each (more only wait for each other)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  tiny=()
  for kv in depth=1 embed_dim=32 num_heads=2 decoder_embed_dim=32 decoder_depth=1 decoder_num_heads=2 masker_depth=1; do
    tiny+=(--override "model_kwargs.$kv")
  done
  # calibration as on the GPU, sized for the CPU: 1 to 2 seeds per method, batch 50, 2 epochs
  args=(--data fmnist-sample --device cpu --epochs auto --min-seeds 1 --max-seeds 2 --batch-size 50
    --max-batch-size 50 --calibrate-steps 1 --calibrate-warmup 1 --min-epochs 2 --max-epochs 2 --fallback-epochs 2
    --train-seconds "${TRAIN_SECONDS:-20}" --calibrate-seconds "${CALIBRATE_SECONDS:-180}" --linear-epochs 1
    --finetune-epochs "${FT_EPOCHS:-1}" --limit 200 --mask-probe 100 --parallel-eval 2 --workers 0
    --reference-seeds 1 --override epoch_size=200 --fake-graph "${FAKE_GRAPH:-faster}" "${tiny[@]}")
else
  args=(--data "fmnist:$FMNIST" --device cuda --epochs auto --min-epochs 50 --min-seeds 3 --max-seeds 5
    --train-seconds "${TRAIN_SECONDS:-250}" --calibrate-seconds "${CALIBRATE_SECONDS:-90}"
    --train-deadline "${TRAIN_DEADLINE:-370}" --workers 2 --finetune-epochs "${FT_EPOCHS:-5}")
fi

$PY -m tools.zoo.fmnist --out "$ZOO" --deliver "$OUT" --deadline "${DEADLINE:-480}" "${diag[@]}" "${seeds[@]}" \
  "${args[@]}" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}

# The CUDA-only tests, after the main work, in the time left.
left=$((${DEADLINE:-480} + 40 - $(date +%s) + start))
if [ "${SMOKE:-0}" != 1 ] && [ "$left" -gt 20 ] && [ -d "$ZOO" ]; then
  CLMAE_TEST_DEVICE=cuda timeout -k 5 "$left" $PY -m pytest -q -p no:cacheprovider tests/test_no_host_sync.py \
    tests/test_step_equivalence.py tests/test_augment.py tests/test_preprocess.py >"$ZOO/cuda_tests.txt" 2>&1
  tail -5 "$ZOO/cuda_tests.txt" | tee -a "$LOG"
  $PY -m tools.deliver "$ZOO" "$OUT/results.tar.gz" --stage cuda-tests --preset zoo 2>&1 | tee -a "$LOG"
fi
ls -la "$OUT" | tee -a "$LOG"
echo "total $(($(date +%s) - start)) s, pipeline exit $status" | tee -a "$LOG"
exit "$status"
