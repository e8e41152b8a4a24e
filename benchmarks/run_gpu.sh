#!/usr/bin/env bash
# All GPU checks and timings in one run (not yet run on a GPU). A deadline keeps the whole script under 10 minutes:
# every step gets its own timeout, cut to the time left, and a step with under 15 s left is skipped, so a slow step
# costs only the ones after it and partial results still come back. Writes everything under $OUT (default:
# benchmarks/results). Usage, from the repository root on the GPU machine:
#     OUT=/some/folder bash benchmarks/run_gpu.sh
# Every file is written to a scratch folder and packed at the end (also when a step fails or runs out of time) into
# $OUT/run_gpu.tar.gz, split into 15 MB parts if larger (`cat run_gpu.tar.gz.part-* > run_gpu.tar.gz`): a GPU
# machine hands back only a few files.
set -uo pipefail
FINAL=${OUT:-benchmarks/results}
OUT=$(mktemp -d /tmp/clmae_gpu_results.XXXXXX)
mkdir -p "$FINAL"
pack() {
    tar czf "$FINAL/run_gpu.tar.gz" -C "$OUT" .
    if [ "$(stat -c %s "$FINAL/run_gpu.tar.gz")" -gt 15000000 ]; then
        split -b 15000000 "$FINAL/run_gpu.tar.gz" "$FINAL/run_gpu.tar.gz.part-" && rm "$FINAL/run_gpu.tar.gz"
    fi
    ls -la "$FINAL"
}
trap pack EXIT
export PYTHONPATH=${PYTHONPATH:-}:$(pwd) PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python}
DEADLINE=$((SECONDS + ${BUDGET:-570}))
JPEGS=/tmp/clmae_bench_jpegs       # bench_data.py's folder: 2048 ImageNet-size JPEGs, made once
TRAIN_JPEGS=/tmp/clmae_train_jpegs # 512 of them for the training run
RUN=/tmp/clmae_gpu_run             # checkpoints of ViT-B are 1.8 GB each: kept out of $OUT

# step MAX_SECONDS COMMAND...: run with a timeout of MAX_SECONDS, or of the time left if that is shorter.
step() {
    local max=$1 left=$((DEADLINE - SECONDS))
    shift
    if [ "$left" -lt 15 ]; then
        echo "skipped (out of time): $*"
        return 124
    fi
    timeout -k 5 $((max < left ? max : left)) "$@"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__, 'torchvision', torchvision.__version__)"
    nproc
} 2>&1 | tee "$OUT/gpu_env.txt"

# 1) Numerics: the implemented step equals the straightforward one under bf16 autocast on the GPU.
if $PY -c "import pytest" 2>/dev/null; then
    CLMAE_TEST_DEVICE=cuda step 90 $PY -m pytest -q -p no:cacheprovider tests/test_step_equivalence.py \
        tests/test_no_host_sync.py tests/test_pretrainer.py 2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
else
    echo "pytest not installed on this machine: numerics check skipped" | tee "$OUT/gpu_tests.txt"
fi

# 2) Input pipeline, 16 workers: PIL decoding in the workers, then nvJPEG + augmentation batched on the GPU.
step 90 $PY -c "from pathlib import Path; from benchmarks.bench_data import make_jpeg_folder as m; \
[m(Path(p), n) for p, n in (('$TRAIN_JPEGS', 512), ('$JPEGS', 2048)) if not Path(p).exists()]" 2>&1 | tee "$OUT/jpegs.txt"
step 60 $PY benchmarks/bench_data.py --root $JPEGS --workers 16 --decode pil --out "$OUT" 2>&1 | tee "$OUT/bench_data_pil.txt"
step 60 $PY benchmarks/bench_data.py --root $JPEGS --workers 16 --decode device --device cuda --out "$OUT" 2>&1 \
    | tee "$OUT/bench_data_device.txt"

# 3) Training on JPEG files with decode=auto under torchrun: 3 epochs of 512 images (8 updates each), stopped once
#    the epoch-2 checkpoint exists, then resumed with --resume auto to finish epoch 3.
rm -rf "$RUN"
TRAIN=(torchrun --standalone --nproc_per_node=1 -m clmae train model=${TRAIN_MODEL:-vit_base_patch16_224}
    --data "$TRAIN_JPEGS" --out "$RUN" epochs=3 warmup_epochs=1 batch_size=64 num_workers=8 save_every_steps=4
    vis_every=0 export=false progress=false log_every=4 ${TRAIN_EXTRA:-decode=auto})
{
    left=$((DEADLINE - SECONDS))
    timeout -k 5 $((left < 150 ? left : 150)) "${TRAIN[@]}" &  # timeout passes the TERM below on to torchrun
    pid=$!
    while kill -0 $pid 2>/dev/null && [ ! -f "$RUN/checkpoint-0002.pt" ]; do sleep 1; done
    if [ -f "$RUN/checkpoint-0002.pt" ]; then sleep 1; echo "=== stopping the run after epoch 2"; kill -TERM $pid; fi
    wait $pid
    echo "=== first run exit: $?"
    ls -la "$RUN"
} 2>&1 | tee "$OUT/train_first.txt"
step 120 "${TRAIN[@]}" --resume auto 2>&1 | tee "$OUT/train_resume.txt"
{
    ls -la "$RUN"
    grep -h "resumed from" "$OUT/train_resume.txt" || echo "RESUME CHECK FAILED: no 'resumed from' line"
    [ -f "$RUN/checkpoint-0003.pt" ] && echo "resume check passed: checkpoint-0003.pt written" \
        || echo "RESUME CHECK FAILED: no checkpoint-0003.pt"
} 2>&1 | tee "$OUT/train_check.txt"
cp "$RUN/metrics.jsonl" "$OUT/train_metrics.jsonl" 2>/dev/null
cp "$RUN/config.yaml" "$OUT/train_config.yaml" 2>/dev/null

# 4) Where the time of one ViT-B/16 CL-MAE iteration (batch 256, bf16) goes: torch.profiler, top-20 CUDA kernels.
step 90 $PY benchmarks/bench_step.py --config vit_base_patch16_224:clmae:256 --steps 5 --warmup 2 --profile \
    --out "$OUT" 2>&1 | tee "$OUT/bench_profile.txt"

# 5) Speed: eager, then torch.compile, for ViT-B/16 batch 256, ViT-L/16 batch 128, FMNIST ViT-T batch 4096.
step 120 $PY benchmarks/bench_step.py --out "$OUT" 2>&1 | tee "$OUT/bench_eager.txt"
step 180 $PY benchmarks/bench_step.py --compile --out "$OUT" \
    --config vit_base_patch16_224:clmae:256 --config vit_base_patch16_224:mae:256 \
    --config vit_tiny_patch4_28:clmae:4096 2>&1 | tee "$OUT/bench_compile.txt"
# 6) The small model is launch-bound: batch 256 eager, compiled, and compiled with CUDA graphs (reduce-overhead).
step 120 $PY benchmarks/bench_step.py --out "$OUT" --config vit_tiny_patch4_28:clmae:256 \
    --config vit_tiny_patch4_28:mae:256 2>&1 | tee "$OUT/bench_tiny_eager.txt"
step 150 $PY benchmarks/bench_step.py --compile --compile-mode reduce-overhead --out "$OUT" \
    --config vit_tiny_patch4_28:clmae:256 --config vit_tiny_patch4_28:mae:256 2>&1 | tee "$OUT/bench_tiny_graphs.txt"
echo "run_gpu.sh: $SECONDS s" | tee -a "$OUT/gpu_env.txt"
