#!/usr/bin/env bash
# Does CL-MAE beat MAE? The zoo's Fashion-MNIST comparison in one call on one GPU (python -m clmae.zoo.fmnist): it
# times the training iteration of every planned run at once and picks the batch (256, doubled up to 1024 if needed)
# and the epochs (aim: 50 or more) that fit TRAIN_SECONDS; trains CL-MAE and MAE x 3 seeds with the clmae_fmnist /
# mae_fmnist recipes (augmentation on the device) plus the two labelled fixed-lambda diagnostics; evaluates every
# encoder and the references (kNN, linear probe), fine-tunes seed 0 of each method; writes the summary, the mask
# statistics and the curriculum figure. Runs still training at TRAIN_DEADLINE are exported from their newest
# checkpoint; DEADLINE stops everything, so partial results always come back. Then the CUDA-only tests, if time is
# left.
#
# Usage, from the repository root: `bash benchmarks/run_gpu_fmnist.sh` (GPU), `SMOKE=1 bash benchmarks/run_gpu_fmnist.sh`
# (the same steps on a CPU with a tiny model, 2 epochs and a few hundred images: a few minutes). Expects the four
# Fashion-MNIST IDX .gz files in $FMNIST (default .fmnist; SMOKE uses the bundled sample). Writes to $OUT (default
# runs/gpu_out): log.txt, results.tar.gz (summary.json/md, masks.json/md, curriculum.png, eval JSON, logs, metrics,
# mask records, pictures, gpu.txt, cuda_tests.txt; no weights) and the float16 pretraining weights of seed 0 of each
# method split into 15 MB parts (`cat NAME.part-* > pretraining.safetensors` joins them). `python -m clmae.zoo.publish
# ZOO_DIR` turns the pipeline's folder into the bundled weights and their records.
# Knobs: SEEDS (default "0 1 2"), TRAIN_SECONDS (training time the epochs are sized for, default 270),
# TRAIN_DEADLINE (seconds after start at which training stops, default 370), DEADLINE (the whole pipeline, default
# 470; the CUDA tests and packing add at most 45 s: under 9 minutes in all), FT_EPOCHS (fine-tuning epochs, default
# 5; 0 for none), DIAGNOSTICS (1 or 0).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1  # the repository root: PYTHONPATH, tests/ and the default paths are relative to it
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CLMAE_CACHE=${CLMAE_CACHE:-/tmp/clmae_cache}
OUT=${OUT:-runs/gpu_out}
ZOO=${ZOO:-/tmp/zoo}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
rm -rf "$ZOO"
start=$(date +%s)
diag=()
[ "${DIAGNOSTICS:-1}" = 1 ] || diag=(--no-diagnostics)

if [ "${SMOKE:-0}" = 1 ]; then
  tiny=()
  for kv in depth=1 embed_dim=32 num_heads=2 decoder_embed_dim=32 decoder_depth=1 decoder_num_heads=2 masker_depth=1; do
    tiny+=(--override "model_kwargs.$kv")
  done
  args=(--data fmnist-sample --device cpu --seeds ${SEEDS:-0 1} --epochs 2 --batch-size 50 --linear-epochs 1
    --finetune-epochs "${FT_EPOCHS:-1}" --limit 200 --mask-probe 100 --parallel-eval 2 --workers 0
    --override epoch_size=200 "${tiny[@]}")
else
  FMNIST=${FMNIST:-.fmnist}
  args=(--data "fmnist:$FMNIST" --device cuda --seeds ${SEEDS:-0 1 2} --epochs auto --min-epochs 50
    --train-seconds "${TRAIN_SECONDS:-270}" --train-deadline "${TRAIN_DEADLINE:-370}" --workers 2
    --finetune-epochs "${FT_EPOCHS:-5}")
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no GPU (nvidia-smi failed)"
  $PY -c "import torch, timm, huggingface_hub as h; print('torch', torch.__version__, 'timm', timm.__version__, 'hub', h.__version__)"
  nproc
} >"$ZOO.gpu.txt" 2>&1
cat "$ZOO.gpu.txt"

$PY -m clmae.zoo.fmnist --out "$ZOO" --deadline "${DEADLINE:-470}" "${diag[@]}" "${args[@]}" 2>&1 | tee "$OUT/log.txt"
status=${PIPESTATUS[0]}

left=$((${DEADLINE:-470} + 40 - $(date +%s) + start))
if [ "${SMOKE:-0}" != 1 ] && [ "$left" -gt 20 ]; then
  CLMAE_TEST_DEVICE=cuda timeout "$left" $PY -m pytest -q -p no:cacheprovider tests/test_no_host_sync.py \
    tests/test_step_equivalence.py tests/test_augment.py >"$ZOO.cuda_tests.txt" 2>&1
  tail -5 "$ZOO.cuda_tests.txt"
fi

mkdir -p "$ZOO"
cp "$ZOO.gpu.txt" "$ZOO/gpu.txt"
[ -f "$ZOO.cuda_tests.txt" ] && cp "$ZOO.cuda_tests.txt" "$ZOO/cuda_tests.txt"
# weights stay out (the exports, the float16 copies, checkpoints, feature caches); the mask records come along
tar czf "$OUT/results.tar.gz" -C "$ZOO" --exclude='*.pt' --exclude=features --exclude=tensorboard \
  --exclude=published --exclude=export .
for m in clmae mae; do
  f=$ZOO/runs/${m}_s0/published/pretraining.safetensors
  [ -f "$f" ] && split -b 15000000 "$f" "$OUT/${m}_s0.pretraining.part-"
done
ls -la "$OUT"
echo "total $(($(date +%s) - start)) s, pipeline exit $status"
exit "$status"
