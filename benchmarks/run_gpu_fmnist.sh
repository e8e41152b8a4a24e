#!/usr/bin/env bash
# Train, evaluate and package the Fashion-MNIST weights on one GPU (python -m clmae.zoo.fmnist), then run the
# CUDA-only tests. Usage, from the repository root: `bash benchmarks/run_gpu_fmnist.sh`. Expects the four
# Fashion-MNIST IDX .gz files in $FMNIST (default .fmnist). Writes to $OUT (default runs/gpu_out): log.txt,
# results.tar.gz (summaries, eval JSON, metrics, pictures; no weights), gpu.txt, cuda_tests.txt and the float16
# pretraining weights of the first seed of each method, split into 15 MB parts (`cat NAME.part-* >
# pretraining.safetensors` joins them). `python -m clmae.zoo.publish ZOO_DIR` turns the pipeline's folder into the
# bundled weights (clmae/hub/bundled/), their records (weights/<name>/, weights/fmnist_results/) and the manifest
# entries (clmae/hub/manifest.json); the run's throughput and device records belong in benchmarks/results/.
# Knobs: SEEDS (default "0 1 2"), TRAIN_SECONDS (time for the training step), DEADLINE (seconds for the whole
# pipeline), FT_EPOCHS (fine-tuning epochs, 0 for none).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1  # the repository root: PYTHONPATH, tests/ and the default paths are relative to it
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CLMAE_CACHE=/tmp/clmae_cache
OUT=${OUT:-runs/gpu_out}
FMNIST=${FMNIST:-.fmnist}
ZOO=/tmp/zoo
mkdir -p "$OUT"
start=$(date +%s)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, timm, huggingface_hub as h; print('torch', torch.__version__, 'timm', timm.__version__, 'hub', h.__version__)"
  nproc
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

python3 -m clmae.zoo.fmnist --data "fmnist:$FMNIST" --out "$ZOO" --seeds ${SEEDS:-0 1 2} --epochs auto \
  --train-seconds "${TRAIN_SECONDS:-270}" --deadline "${DEADLINE:-500}" --device cuda --workers 2 \
  --finetune-epochs "${FT_EPOCHS:-5}" 2>&1 | tee "$OUT/log.txt"

tar czf "$OUT/results.tar.gz" -C "$ZOO" --exclude='*.safetensors' --exclude='*.pt' --exclude=features \
  --exclude=tensorboard .
for m in clmae mae; do
  f=$ZOO/runs/${m}_s0/published/pretraining.safetensors
  [ -f "$f" ] && split -b 15000000 "$f" "$OUT/${m}_s0.pretraining.part-"
done

left=$((${DEADLINE:-500} + 40 - $(date +%s) + start))
if [ "$left" -gt 20 ]; then
  CLMAE_TEST_DEVICE=cuda timeout "$left" python3 -m pytest -q -p no:cacheprovider tests/test_no_host_sync.py tests/test_step_equivalence.py \
    >"$OUT/cuda_tests.txt" 2>&1
  tail -5 "$OUT/cuda_tests.txt"
fi
ls -la "$OUT"
echo "total $(($(date +%s) - start)) s"
