#!/usr/bin/env bash
# All GPU checks and timings in one run; the step timeouts keep it under 10 minutes (not yet run on a GPU). Writes everything under $OUT (default:
# benchmarks/results). Usage, from the repository root on the GPU machine:
#     OUT=/some/folder bash benchmarks/run_gpu.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$(pwd)
PY=${PYTHON:-python}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
} 2>&1 | tee "$OUT/gpu_env.txt"

# 1) Numerics: the implemented step equals the straightforward one under bf16 autocast on the GPU.
if $PY -c "import pytest" 2>/dev/null; then
    CLMAE_TEST_DEVICE=cuda timeout 120 $PY -m pytest -q tests/test_step_equivalence.py tests/test_no_host_sync.py tests/test_pretrainer.py \
        2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
else
    echo "pytest not installed on this machine: numerics check skipped" | tee "$OUT/gpu_tests.txt"
fi

# 2) Speed: eager, then torch.compile, for ViT-B/16 batch 256, ViT-L/16 batch 128, FMNIST ViT-T batch 4096.
timeout 180 $PY benchmarks/bench_step.py --out "$OUT" 2>&1 | tee "$OUT/bench_eager.txt"
timeout 180 $PY benchmarks/bench_step.py --compile --out "$OUT" \
    --config vit_base_patch16_224:clmae:256 --config vit_base_patch16_224:mae:256 \
    --config vit_tiny_patch4_28:clmae:4096 2>&1 | tee "$OUT/bench_compile.txt"

# 3) Input pipeline: the trainer's ImageFolder JPEG pipeline with 16 workers, against the model-step rate above.
timeout 90 $PY benchmarks/bench_data.py --workers 16 --images 4096 --out "$OUT" 2>&1 | tee "$OUT/bench_data.txt"
