#!/usr/bin/env bash
# How fast does clmae pretrain? Every GPU timing and check in one call on one GPU, most valuable first.
#
# Nothing to stage: the script makes its own JPEG folders. From the repository root on the GPU machine:
#     OUT=$OUT bash benchmarks/run_gpu.sh                 # device call: timeout_s 600, nothing to carry
# Expected time: BUDGET (default 540 s) plus at most about 15 s: under 9.5 minutes, 45 s or more inside the limit.
#
# Order, each step handed back into $OUT as soon as it ends (a call cut at any moment keeps every finished step):
#  0. preflight: CUDA device (name, memory, compute mode), python/torch/torchvision/timm, free disk; stops in
#     seconds with one line naming what is missing;
#  1. the headline: images/s, MFU and peak memory of one CL-MAE and one MAE iteration (bf16) for ViT-B/16 at batch
#     256 and ViT-T/4 28 px at batch 256 (and 4096 beside it), eager; then the small model's training update on
#     device-held data, eager and graphed (cuda_graph=true: captured once, replayed; batch 256 and 1024, with
#     whether the first losses agree); then torch.compile; then CUDA graphs (compile mode reduce-overhead) for the
#     small model;
#  2. the data path: PIL decoding in 16 DataLoader workers, then batched nvJPEG decoding + augmentation on the GPU;
#  3. torchrun (NCCL, one process): ViT-B/16 training on JPEGs stopped after epoch 2, then resumed with --resume auto
#     (only when the first run wrote its checkpoint);
#  4. torch.profiler: the top kernels of one ViT-B/16 CL-MAE iteration (table, and a Chrome trace if it fits);
#  5. the CUDA-only tests (bf16 step equivalence, no host synchronisation), after the main work.
# Every step's timeout is cut to the time left, and a step with under 15 s left is skipped; each step's own limit
# scales with BUDGET (a rehearsal given a budget no machine reaches runs every step to its end).
#
# What comes back in $OUT: log.txt (everything printed, as it happens) and run_gpu.tar.gz (replaced atomically
# after each step: the benchmark JSON files, each step's output, the training metrics, the profile; at most 14 MB,
# the largest traces left out first and listed in LEFT_OUT.txt). Commit the numbers to benchmarks/results/.
#
# SMOKE=1 runs every step on the CPU with tiny models (torch.compile with the eager backend, no CUDA graphs, no CUDA
# tests): a CI rehearsal. Knobs: BUDGET (seconds, 540), PYTHON (python3), TRAIN_MODEL (vit_base_patch16_224).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
FINAL=${OUT:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
SMOKE=${SMOKE:-0}
DEADLINE=$((SECONDS + ${BUDGET:-540}))
WORK=$(mktemp -d /tmp/clmae_gpu.XXXXXX)
RES=$WORK/results                 # what is handed back
JPEGS=$WORK/jpegs                 # bench_data.py's folder
TRAIN_JPEGS=$WORK/train_jpegs     # the training run's
RUN=$WORK/run                     # checkpoints of ViT-B are 1.8 GB each: kept out of the results
mkdir -p "$FINAL" "$RES"
LOG=$FINAL/log.txt
: >"$LOG"

# step NAME MAX_SECONDS COMMAND...: run with a timeout of MAX_SECONDS, or of the time left if shorter; its output
# goes to the log and to RES/NAME.txt; then everything is handed back.
step() {
    # each step's limit is its share of the default 540 s budget, scaled with BUDGET
    local name=$1 max=$(($2 * ${BUDGET:-540} / 540)) left=$((DEADLINE - SECONDS)) rc
    shift 2
    if [ "$left" -lt 15 ]; then
        echo "skipped (out of time): $name" | tee -a "$LOG" "$RES/skipped.txt"
        return 124
    fi
    echo "=== $name (at most $((max < left ? max : left)) s)" | tee -a "$LOG"
    timeout -k 5 $((max < left ? max : left)) "$@" 2>&1 | tee -a "$LOG" >"$RES/$name.txt"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc" | tee -a "$LOG"
    $PY -m tools.deliver "$RES" "$FINAL/run_gpu.tar.gz" --stage "$name" --preset gpu 2>&1 | tee -a "$LOG"
    return "$rc"
}

if [ "$SMOKE" = 1 ]; then
    $PY -m tools.preflight --disk /tmp:1 >>"$LOG" 2>&1 || { tail -1 "$LOG"; exit 3; }
    BENCH=(--cpu-smoke --steps 1 --warmup 1)
    COMPILE=(--compile --compile-backend eager)  # graph capture without code generation: seconds on a CPU
    HEAD=(--config vit_tiny_patch4_28:clmae:16 --config vit_tiny_patch4_28:mae:16)
    SMALL=(--config vit_tiny_patch4_28:clmae:16 --config vit_tiny_patch4_28:mae:16)
    GRAPHS=()
    DATA=(--images 48 --batch-size 16 --workers 0 --batches 2 --warmup 1)
    DEV=cpu
    TRAIN_MODEL=vit_tiny_patch4_28
    TRAIN_ARGS=(model_kwargs.depth=1 model_kwargs.embed_dim=32 model_kwargs.num_heads=2 model_kwargs.decoder_depth=1
        model_kwargs.decoder_embed_dim=32 model_kwargs.decoder_num_heads=2 model_kwargs.masker_depth=1 batch_size=8
        num_workers=0 save_every_steps=2 device=cpu decode=pil)
    PROFILE=(--cpu-smoke --config vit_tiny_patch4_28:clmae:8)
    NPROC_JPEGS=(48 24)
else
    $PY -m tools.preflight --cuda --min-gib 40 --disk /tmp:20 >>"$LOG" 2>&1 || { tail -1 "$LOG"; exit 3; }
    BENCH=()
    COMPILE=(--compile)
    HEAD=(--config vit_base_patch16_224:clmae:256 --config vit_base_patch16_224:mae:256
        --config vit_tiny_patch4_28:clmae:256 --config vit_tiny_patch4_28:mae:256)
    SMALL=(--config vit_tiny_patch4_28:clmae:256 --config vit_tiny_patch4_28:mae:256)
    GRAPHS=(--compile-mode reduce-overhead)
    DATA=(--workers 16)
    DEV=cuda
    TRAIN_MODEL=${TRAIN_MODEL:-vit_base_patch16_224}
    TRAIN_ARGS=(batch_size=64 num_workers=8 save_every_steps=4 decode=auto)
    PROFILE=(--config vit_base_patch16_224:clmae:256)
    NPROC_JPEGS=(2048 512)
fi
{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    nproc
} >>"$LOG" 2>&1
cp "$LOG" "$RES/env.txt"
cat "$LOG"

# 1. the headline: eager, the graphed training update (cuda_graph=true), compiled, CUDA graphs of torch.compile
step step_eager 120 $PY benchmarks/bench_step.py "${BENCH[@]}" "${HEAD[@]}" \
    $([ "$SMOKE" = 1 ] || echo --config vit_tiny_patch4_28:clmae:4096 --config vit_tiny_patch4_28:mae:4096) --out "$RES"
step step_graphed 120 $PY benchmarks/bench_step.py "${BENCH[@]}" --graph "${SMALL[@]}" \
    $([ "$SMOKE" = 1 ] || echo --config vit_tiny_patch4_28:clmae:1024 --config vit_tiny_patch4_28:mae:1024) --out "$RES"
step step_compiled 180 $PY benchmarks/bench_step.py "${BENCH[@]}" "${COMPILE[@]}" "${HEAD[@]}" --out "$RES"
step step_graphs 120 $PY benchmarks/bench_step.py "${BENCH[@]}" "${COMPILE[@]}" "${GRAPHS[@]}" "${SMALL[@]}" \
    --out "$RES"

# 2. the data path
step jpegs 90 $PY -c "from pathlib import Path; from benchmarks.bench_data import make_jpeg_folder as m; \
m(Path('$JPEGS'), ${NPROC_JPEGS[0]}); m(Path('$TRAIN_JPEGS'), ${NPROC_JPEGS[1]})"
step data_pil 60 $PY benchmarks/bench_data.py --root "$JPEGS" "${DATA[@]}" --decode pil --out "$RES"
step data_device 60 $PY benchmarks/bench_data.py --root "$JPEGS" "${DATA[@]}" --decode device --device $DEV --out "$RES"

# 3. torchrun: 3 epochs, stopped once the epoch-2 checkpoint exists, then resumed to finish epoch 3
TRAIN=($PY -m torch.distributed.run --standalone --nproc_per_node=1 -m clmae train model=$TRAIN_MODEL --data "$TRAIN_JPEGS" --out "$RUN"
    epochs=3 warmup_epochs=1 vis_every=0 export=false progress=false log_every=4 "${TRAIN_ARGS[@]}")
first_run() {
    "${TRAIN[@]}" &
    local pid=$!
    while kill -0 $pid 2>/dev/null && [ ! -f "$RUN/checkpoint-0002.pt" ]; do sleep 1; done
    if [ -f "$RUN/checkpoint-0002.pt" ]; then sleep 1; echo "stopping the run after epoch 2"; kill -TERM $pid; fi
    wait $pid
    echo "first run exit: $?"
    ls -la "$RUN"
}
step train_first 150 bash -c "$(declare -f first_run); TRAIN=($(printf '%q ' "${TRAIN[@]}")); RUN=$RUN; first_run"
if [ -f "$RUN/checkpoint-0002.pt" ]; then
    step train_resume 120 "${TRAIN[@]}" --resume auto
    {
        grep -h "resumed from" "$RES/train_resume.txt" || echo "RESUME CHECK FAILED: no 'resumed from' line"
        [ -f "$RUN/checkpoint-0003.pt" ] && echo "resume check passed: checkpoint-0003.pt written" \
            || echo "RESUME CHECK FAILED: no checkpoint-0003.pt"
        cp "$RUN/metrics.jsonl" "$RES/train_metrics.jsonl"
    } 2>&1 | tee -a "$LOG" >"$RES/train_check.txt"
else
    echo "skipped: train_resume (the first run wrote no epoch-2 checkpoint)" | tee -a "$LOG" "$RES/skipped.txt"
fi

# 4. where the time of one iteration goes
step profile 90 $PY benchmarks/bench_step.py "${PROFILE[@]}" --steps 5 --warmup 2 --profile --out "$RES"

# 5. the CUDA-only tests
if [ "$SMOKE" != 1 ] && $PY -c "import pytest" 2>/dev/null; then
    CLMAE_TEST_DEVICE=cuda step cuda_tests 90 $PY -m pytest -q -p no:cacheprovider tests/test_step_equivalence.py \
        tests/test_no_host_sync.py tests/test_pretrainer.py tests/test_graph_step.py
fi
echo "run_gpu.sh: $SECONDS s" | tee -a "$LOG"
$PY -m tools.deliver "$RES" "$FINAL/run_gpu.tar.gz" --stage done --preset gpu >>"$LOG" 2>&1
rm -rf "$WORK"
