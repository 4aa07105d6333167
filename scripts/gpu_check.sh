#!/usr/bin/env bash
# Prepared GPU check for issue 5 (WRN-28-10 / CIFAR, Table 2), under 8 minutes on one H100/H200:
#   1. the augmentation tests on the GPU,
#   2. training throughput of the L0 WRN-28-10 vs the dropout WRN-28-10 (bf16, channels_last),
#   3. a short real training run: 2 epochs of experiment=table2/wrn_c10_l0_001,
#   4. the benchmark again with torch.compile, if time is left.
# Everything lands in $OUT (default ./gpu_out): gpu_check.log, nvidia_smi.txt, bench_*.json,
# train_metrics.csv, train_summary.json.
#
# Environment: PYTHON (default .venv/bin/python if present, else python3), L0REPRO_DATA (a data
# dir holding cifar-10-batches-bin/; when it has none, full-size *synthetic* CIFAR-10 files are
# written and the training run measures speed and the pipeline only, not accuracy),
# TRAIN_STEPS (default 782 = 2 epochs at batch 128). Wheels in .whl/ (hydra-core, omegaconf,
# antlr4-python3-runtime for the GPU image, which lacks them) are installed to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
LOG=$OUT/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
START=$SECONDS
elapsed() { echo $((SECONDS - START)); }

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

echo "== GPU"
nvidia-smi --query-gpu=name --format=csv | tee "$OUT/nvidia_smi.txt"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in
  *PCIe*) PEAK=756 ;;  # H100 PCIe dense bf16 spec
  *H100*|*H200*) PEAK=989 ;;  # H100 SXM / H200 dense bf16 spec (matmuls here reach ~790)
  *) PEAK= ;;
esac
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

echo "== 1. augmentation tests on the GPU ($(elapsed) s)"
# --noconftest: the shared conftest imports hydra, which the GPU image may lack
timeout 60 "$PYTHON" -m pytest -q -p no:cacheprovider --noconftest tests/test_augment.py

echo "== 2. WRN-28-10 training throughput, eager, bf16, channels_last ($(elapsed) s)"
timeout 150 "$PYTHON" -m l0repro.bench.wrn --depth 28 --widen 10 --batch-size 128 --steps 50 \
  --warmup 10 --device cuda --bf16 --channels-last ${PEAK:+--peak-tflops $PEAK} \
  --methods l0,dropout,dense --json "$OUT/bench_eager.json"

echo "== 3. short training run, table2/wrn_c10_l0_001 ($(elapsed) s)"
DATA=${L0REPRO_DATA:-../shared/data}
if [ -f "$DATA/cifar-10-batches-bin/test_batch.bin" ]; then
  DATA_ARGS=(data.root="$DATA")
  echo "real CIFAR-10 from $DATA"
else
  DATA=/tmp/cifar_synth
  "$PYTHON" -c "from l0repro.data.cifar_synthetic import write_cifar_binary as w; \
w('$DATA', 'cifar10', 50000, 10000)"
  DATA_ARGS=(data.root="$DATA" data.options.source=binary data.options.verify=size)
  echo "no real CIFAR-10 here: SYNTHETIC full-size files in $DATA (speed and pipeline only)"
fi
RUN=/tmp/gpu_check_run
rm -rf "$RUN"
timeout 210 "$PYTHON" -m l0repro.train experiment=table2/wrn_c10_l0_001 \
  trainer.max_steps="${TRAIN_STEPS:-782}" trainer.checkpoint=false trainer.progress=false \
  logger.wandb.mode=disabled "${DATA_ARGS[@]}" hydra.run.dir="$RUN" hydra.output_subdir=null
echo "training run exit code $?"
cp "$RUN/metrics.csv" "$OUT/train_metrics.csv" 2>/dev/null
cp "$RUN/summary.json" "$OUT/train_summary.json" 2>/dev/null
[ -f "$RUN/summary.json" ] && cat "$RUN/summary.json"

LEFT=$((450 - $(elapsed)))
echo "== 4. WRN-28-10 throughput with torch.compile ($(elapsed) s, ${LEFT} s left)"
if [ "$LEFT" -gt 90 ]; then
  timeout "$LEFT" "$PYTHON" -m l0repro.bench.wrn --depth 28 --widen 10 --batch-size 128 \
    --steps 50 --warmup 10 --device cuda --bf16 --channels-last --compile \
    ${PEAK:+--peak-tflops $PEAK} --json "$OUT/bench_compile.json"
  echo "compile benchmark exit code $? (124 = ran out of time)"
else
  echo "skipped: not enough time left"
fi
echo "== done in $(elapsed) s"
