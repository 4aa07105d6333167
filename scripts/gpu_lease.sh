#!/usr/bin/env bash
# One prepared GPU lease: proves the CUDA path and measures what only a GPU can give, inside a
# budget this script measures itself (default 540 s). Each step has a deadline; a step that
# cannot start before it is skipped and says so, one still running at it is cut off and says so.
# The deadlines below are for the 540 s budget; --budget scales them (a dry run on a slow CPU).
#   1 (by 120 s) CUDA correctness: the gate, layer, gate-bank, FLOP, augmentation and device tests
#     (pytest --device cuda: tests/device_option.py), then 2-epoch MNIST MLP runs on cuda (eager,
#     and trainer.cuda_graph=true) and on the CPU; their test errors must agree within noise.
#   2 (by 300 s) MNIST speed: s/epoch of the L0 MLP and LeNet-5 (bench mnist), eager and with the
#     step in a CUDA graph; then 200-epoch Table 1 runs with the graph: table1/mlp_l0 seed 0 alone
#     (timed), then the other 11 runs, $PARALLEL at a time, until the deadline.
#   3 (by 430 s) WRN-28-10 training throughput (bench wrn; l0, l0_pe, dropout, dense; bf16,
#     channels_last), eager, then torch.compile for l0 and dropout.
#     Last, the library: a gated torchvision resnet18 compacted on the device, outputs equal
#     within 1e-5 of their scale, images/s gated against compact (bench library).
#   4 (by budget - 35 s) CIFAR-10, side by side: the L0 WRN-16-8 with table2/wrn_c10_l0_001's
#     settings on the 200-epoch schedule, and the same WRN with lambda 0 and
#     trainer.target_flops=0.70 (training to a budget), until the deadline, on a LABELLED
#     SUBSET: 10,000 training images (the first 2,000 of each official batch) and the full
#     10,000-image test set. The whole set does not fit into one call (64 MiB with the tree), so
#     these are short-budget rows, never the paper's: the penalty's N is 10,000 and the runs stop
#     at the deadline.
# $OUT (default ./gpu_out) gets at most 5 files: lease.log, env.txt, figures.json (every figure,
# with the GPU's name; `python -m l0repro.gpu_report DIR` turns it into results/gpu.md),
# records.tar.gz (run records, bench JSONs, pytest's junit XML), weights.tar.gz (the Table 1
# runs' evaluation weights).
#
# Usage:
#   bash scripts/gpu_lease.sh --stage          here, before a lease: data and wheels into
#                                              .device/data and .whl (both git-ignored, carried)
#   bash scripts/gpu_lease.sh                  on the GPU machine (README: "On a GPU")
#   bash scripts/gpu_lease.sh --device cpu --tiny   dry run on a CPU with tiny sizes
# Options: --from N (start at step N: rerun a lease that failed part-way), --budget S,
# PARALLEL (Table 1 runs at a time after the first, default 4), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DEVICE=cuda TINY=0 FROM=1 BUDGET=540 STAGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --from) FROM=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --stage) STAGE=1; shift ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PY=$PYTHON
STAGED=.device/data
MNIST_XZ=$STAGED/mnist.tar.xz
C10_XZ=$STAGED/cifar10_subset.tar.xz
C10_PER_BATCH=2000  # training records taken from each of the 5 official batch files

if [ "$STAGE" = 1 ]; then  # ------------------------------------------------ here, no GPU
  SRC=${L0REPRO_DATA:-data}
  mkdir -p "$STAGED" .whl
  if [ ! -f "$MNIST_XZ" ]; then
    (cd "$SRC" && XZ_OPT="-6 -T2" tar -cJf "$REPO/$MNIST_XZ.part" MNIST/raw) || exit 1
    mv "$MNIST_XZ.part" "$MNIST_XZ"
  fi
  if [ ! -f "$C10_XZ" ]; then
    tmp=$(mktemp -d) && mkdir -p "$tmp/cifar-10-batches-bin"
    for i in 1 2 3 4 5; do
      head -c $((C10_PER_BATCH * 3073)) "$SRC/cifar-10-batches-bin/data_batch_$i.bin" \
        > "$tmp/cifar-10-batches-bin/data_batch_$i.bin"
    done
    cp "$SRC/cifar-10-batches-bin/test_batch.bin" "$tmp/cifar-10-batches-bin/"
    echo "SUBSET of CIFAR-10: the first $C10_PER_BATCH records of each training batch file \
($((5 * C10_PER_BATCH)) images), the whole test batch; load with data.options.verify=size" \
      > "$tmp/SUBSET.txt"
    (cd "$tmp" && XZ_OPT="-6 -T2" tar -cJf "$REPO/$C10_XZ.part" SUBSET.txt cifar-10-batches-bin) || exit 1
    mv "$C10_XZ.part" "$C10_XZ"
    rm -rf "$tmp"
  fi
  # the GPU image has torch but not hydra: its wheels (pure Python; antlr4 4.9.3 is sdist-only)
  ls .whl/hydra_core-*.whl .whl/omegaconf-*.whl .whl/antlr4_python3_runtime-*.whl > /dev/null 2>&1 || {
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
      hydra-core==1.3.8 omegaconf==2.3.1 && "$PY" -m pip wheel -q --no-deps -w .whl \
      antlr4-python3-runtime==4.9.3; } || exit 1
  ls -l "$STAGED" .whl
  echo "what travels: $(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1) \
bytes of tree + $(du -cb "$STAGED" .whl | tail -1 | cut -f1) bytes carried (limit 67108864)"
  exit 0
fi

# ------------------------------------------------------------------------ the lease
START=$SECONDS
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=${LEASE_WORK:-/tmp/l0lease}
rm -rf "$WORK" && mkdir -p "$WORK/records/runs"
REC=$WORK/records
RUNS=$REC/runs
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
exec > >(tee -a "$OUT/lease.log") 2>&1
elapsed() { echo $((SECONDS - START)); }
GRACE=10  # seconds between a step's TERM (a run writes its record) and its KILL
note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$REC/steps.tsv"; echo "-- step $1: $2 ($3 s) $4"; }

# run_until DEADLINE MIN_SECONDS LABEL CMD...: CMD under `timeout` to DEADLINE (s since start),
# skipped when fewer than MIN_SECONDS are left; records what happened in steps.tsv
run_until() {
  local deadline=$1 need=$2 label=$3; shift 3
  local left=$((deadline - $(elapsed))) t0=$SECONDS rc
  if [ "$left" -lt "$need" ]; then
    note "$label" skipped 0 "only ${left} s left before its deadline at ${deadline} s, needs ${need}"
    return 99
  fi
  echo "== $label ($(elapsed) s; deadline ${deadline} s, ${left} s left): $*"
  # TERM at deadline - GRACE, KILL at the deadline: a step never runs past its deadline
  timeout --kill-after=$GRACE $((left - GRACE)) "$@"
  rc=$?
  case $rc in
    0) note "$label" ok $((SECONDS - t0)) "" ;;
    124|137|143) note "$label" cut_off $((SECONDS - t0)) "ran into its deadline at ${deadline} s (rc ${rc})" ;;
    *) note "$label" failed $((SECONDS - t0)) "exit code ${rc}" ;;
  esac
  return $rc
}
from() { [ "$1" -ge "$FROM" ] || { note "$2" skipped 0 "--from $FROM"; return 1; }; }

if compgen -G ".whl/*.whl" > /dev/null && ! "$PY" -c "import hydra" 2> /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

echo "== environment ($(elapsed) s): device=$DEVICE tiny=$TINY from=$FROM budget=${BUDGET} s"
{
  if [ "$DEVICE" = cuda ]; then nvidia-smi || echo "nvidia-smi failed"; fi
  "$PY" -c "import sys, torch, hydra, omegaconf; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'hydra', hydra.__version__, 'omegaconf', \
omegaconf.__version__, 'gpu:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
} 2>&1 | tee "$OUT/env.txt"
if [ "$DEVICE" = cuda ] && ! grep -q "gpu: [^n]" "$OUT/env.txt"; then
  echo "torch sees no CUDA device: the steps will fail (rerun with --device cpu for a dry run)"
  note setup failed "$(elapsed)" "torch sees no CUDA device"
fi
PEAK=
case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)" in
  *PCIe*) PEAK=756 ;;  # H100 PCIe dense bf16 spec
  *H100*|*H200*) PEAK=989 ;;  # H100 SXM / H200 dense bf16 spec (matmuls here reach ~790)
esac

# the data: unpacked from the carried archives, else read from $L0REPRO_DATA
DATA=$WORK/data
mkdir -p "$DATA"
UNTAR="import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')"
[ -f "$MNIST_XZ" ] && "$PY" -c "$UNTAR" "$MNIST_XZ" "$DATA"
MNIST=$DATA
[ -f "$DATA/MNIST/raw/train-images-idx3-ubyte" ] || MNIST=${L0REPRO_DATA:-data}
export L0REPRO_DATA=$MNIST
echo "MNIST from $MNIST"
C10=$WORK/cifar
mkdir -p "$C10"
if [ -f "$C10_XZ" ]; then  # unpacked while steps 1-3 run; step 4 waits for it
  "$PY" -c "$UNTAR" "$C10_XZ" "$C10" &
  C10_PID=$!
  C10_NOTE="real CIFAR-10, labelled subset (10,000 training images, the full test set)"
else
  "$PY" -c "from l0repro.data.cifar_synthetic import write_cifar_binary as w; w('$C10', 'cifar10', 10000, 10000)"
  C10_PID=
  C10_NOTE="SYNTHETIC random CIFAR-10 files (no staged subset): speed and pipeline only"
fi
echo "$C10_NOTE" > "$REC/cifar_data.txt"

COMMON=(trainer.progress=false logger.wandb.mode=disabled hydra.output_subdir=null)
TRAIN=("$PY" -m l0repro.train "${COMMON[@]}")  # + hydra.run.dir=$RUNS/<name>: the record's place
if [ "$TINY" = 1 ]; then
  MNIST_LEN=(trainer.max_steps=40)  # a few steps, then the end-of-run evaluation
  PYTEST_SELECT=(-k "known_values or refused_off_cuda or bank_equals_per_layer or clamp_gates")
  BENCH_MNIST=(--models mlp --epochs 1)
  LIBRARY=(--batch-size 8 --repeats 2)
  WRN=(--depth 10 --widen 1 --batch-size 8 --steps 2 --warmup 1)
  C10_LEN=(model.depth=10 model.widen_factor=1 trainer.max_steps=5)
else
  MNIST_LEN=()
  PYTEST_SELECT=()
  BENCH_MNIST=(--models mlp lenet5 --epochs 2)
  LIBRARY=(--batch-size 256 --repeats 20)
  WRN=(--depth 28 --widen 10 --batch-size 128 --steps 30 --warmup 10)
  C10_LEN=(model.depth=16 model.widen_factor=8)
fi

# ------------------------------------------------------------------- 1. CUDA correctness
D1=$((120 * BUDGET / 540))
if from 1 step1; then
  run_until $D1 30 1a_pytest "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" \
    --junitxml="$REC/pytest.xml" "${PYTEST_SELECT[@]}" tests/test_gates.py tests/test_layers.py \
    tests/test_gate_bank.py tests/test_flops.py tests/test_augment.py tests/test_device.py \
    tests/test_graph_step.py
  TWO=(experiment=table1/mlp_l0 trainer.epochs=2 trainer.checkpoint=false data.root="$MNIST" "${MNIST_LEN[@]}")
  run_until $D1 15 1b_mnist_2ep_device_eager "${TRAIN[@]}" hydra.run.dir="$RUNS/check/mlp_2ep_eager" "${TWO[@]}" trainer.device="$DEVICE"
  if [ "$DEVICE" = cuda ]; then
    run_until $D1 15 1c_mnist_2ep_device_graph "${TRAIN[@]}" hydra.run.dir="$RUNS/check/mlp_2ep_graph" "${TWO[@]}" trainer.device=cuda \
      trainer.cuda_graph=true
  else  # the option must refuse: a ConfigError naming it, exit code 2 (ok here), no training
    run_until $D1 15 1c_cuda_graph_refused_on_cpu bash -c '"$@" 2>&1 | tail -2; [ "${PIPESTATUS[0]}" = 2 ]' \
      _ "${TRAIN[@]}" hydra.run.dir="$RUNS/check/mlp_2ep_graph" "${TWO[@]}" trainer.device=cpu \
      trainer.cuda_graph=true
  fi
  run_until $D1 15 1d_mnist_2ep_cpu "${TRAIN[@]}" hydra.run.dir="$RUNS/check/mlp_2ep_cpu" "${TWO[@]}" trainer.device=cpu
  # the library on a user's model: a gated torchvision resnet18 compacted on the device (exit 1
  # unless its outputs equal the gated model's within 1e-5 of their scale), and its images/s
  run_until $D1 10 1e_library_resnet18 "$PY" -m l0repro.bench library --device "$DEVICE" \
    "${LIBRARY[@]}" --json "$REC/bench_library.json"
fi

# ------------------------------------------------------------------------ 2. MNIST speed
D2=$((300 * BUDGET / 540))
if from 2 step2; then
  run_until $D2 30 2a_bench_mnist_eager "$PY" -m l0repro.bench mnist "${BENCH_MNIST[@]}" \
    --device "$DEVICE" --data-root "$MNIST" --json "$REC/bench_mnist_eager.json"
  if [ "$DEVICE" = cuda ]; then
    run_until $D2 20 2b_bench_mnist_graph "$PY" -m l0repro.bench mnist "${BENCH_MNIST[@]}" \
      --device cuda --cuda-graph --data-root "$MNIST" --json "$REC/bench_mnist_graph.json"
    GRAPH=(trainer.cuda_graph=true)
  else
    note 2b_bench_mnist_graph skipped 0 "trainer.cuda_graph needs CUDA (refused on $DEVICE)"
    GRAPH=()
  fi
  T1=(trainer.device="$DEVICE" data.root="$MNIST" "${GRAPH[@]}" "${MNIST_LEN[@]}")
  run_until $D2 20 2c_table1_mlp_l0_seed0 "${TRAIN[@]}" hydra.run.dir="$RUNS/table1/mlp_l0/seed0" experiment=table1/mlp_l0 seed=0 "${T1[@]}"
  # the other 11 Table 1 runs, $PARALLEL at a time (the GPU is mostly idle between small kernels)
  REST=()
  for seed in 0 1 2; do
    for row in lenet5_l0 mlp_l0_sep lenet5_l0_sep mlp_l0; do
      [ "$row/$seed" = mlp_l0/0 ] || REST+=("$row $seed")
    done
  done
  [ "$TINY" = 1 ] && REST=("${REST[@]:0:2}")
  mkdir -p "$REC/logs"
  t0=$SECONDS started=0 pids=()
  echo "== 2d Table 1: ${#REST[@]} more runs, ${PARALLEL:-4} at a time, until ${D2} s ($(elapsed) s)"
  for item in "${REST[@]}"; do
    while :; do  # (not `wait -n`: it may count the log's tee, a process substitution)
      alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=$((alive + 1)); done
      [ "$alive" -lt "${PARALLEL:-4}" ] && break
      sleep 1
    done
    read -r row seed <<< "$item"
    left=$((D2 - $(elapsed)))
    if [ "$left" -lt 20 ]; then echo "not started (deadline): table1/$row seed $seed"; continue; fi
    started=$((started + 1))
    timeout --kill-after=$GRACE $((left - GRACE)) "${TRAIN[@]}" hydra.run.dir="$RUNS/table1/$row/seed$seed" experiment="table1/$row" seed="$seed" "${T1[@]}" \
      > "$REC/logs/table1_${row}_seed$seed.log" 2>&1 &
    pids+=($!)
  done
  [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
  note 2d_table1_rest done $((SECONDS - t0)) "$started of ${#REST[@]} started; a run cut off by the deadline says running in its summary.json"
fi

# -------------------------------------------------------------------- 3. WRN throughput
D3=$((430 * BUDGET / 540))
if from 3 step3; then
  W=(--device "$DEVICE" "${WRN[@]}" ${PEAK:+--peak-tflops $PEAK})
  [ "$DEVICE" = cuda ] && W+=(--bf16 --channels-last)
  run_until $D3 40 3a_wrn_eager "$PY" -m l0repro.bench wrn "${W[@]}" --methods l0,l0_pe,dropout,dense \
    --json "$REC/bench_wrn_eager.json"
  run_until $D3 60 3b_wrn_compiled_l0 "$PY" -m l0repro.bench wrn "${W[@]}" --compile --methods l0 \
    --json "$REC/bench_wrn_compiled_l0.json"
  run_until $D3 60 3c_wrn_compiled_dropout "$PY" -m l0repro.bench wrn "${W[@]}" --compile --methods dropout \
    --json "$REC/bench_wrn_compiled_dropout.json"
fi

# ------------------------------------------------------- 4. CIFAR-10 short-budget L0 WRN
D4=$((BUDGET - 40 * BUDGET / 540))  # the run gets TERM at D4 - GRACE (writes its record), then packing
if from 4 step4; then
  if [ -n "$C10_PID" ] && [ $((D4 - $(elapsed))) -ge 60 ]; then
    wait "$C10_PID" || note 4_cifar_unpack failed 0 "the CIFAR-10 subset did not unpack"
  fi
  # two runs side by side on the one device until the deadline: the paper's penalty, and the
  # same WRN asked for 70 % of its dense FLOPs with lambda 0 (budget/wrn16_c10_flops70's
  # constraint on this step's WRN and data); a WRN this size leaves the GPU room for both
  C10_RUN=("${C10_LEN[@]}" data.root="$C10" data.options.source=binary data.options.verify=size
    data.download=false trainer.device="$DEVICE" trainer.checkpoint=false)
  run_until $D4 60 4a_cifar_wrn_l0_short "${TRAIN[@]}" hydra.run.dir="$RUNS/gpu_short/wrn_c10sub_l0_001/seed0" \
    experiment=table2/wrn_c10_l0_001 name=gpu_short/wrn_c10sub_l0_001 "${C10_RUN[@]}" &
  P4A=$!
  run_until $D4 60 4b_cifar_wrn_flops70_short "${TRAIN[@]}" hydra.run.dir="$RUNS/gpu_short/wrn_c10sub_flops70/seed0" \
    experiment=table2/wrn_c10_l0_001 name=gpu_short/wrn_c10sub_flops70 model.lambdas=0.0 \
    trainer.target_flops=0.70 "${C10_RUN[@]}" &
  wait "$P4A" $!
fi

# ------------------------------------------------------------------------------- pack
[ -n "$C10_PID" ] && kill "$C10_PID" 2> /dev/null  # still unpacking: step 4 did not run
echo "== packing ($(elapsed) s)"
cp "$OUT/env.txt" "$REC/"
"$PY" -m l0repro.gpu_report --collect "$REC" "$OUT/figures.json" --budget "$BUDGET" \
  --elapsed "$(elapsed)" --tiny "$TINY" || echo "figures.json could not be written"
tar -czf "$OUT/records.tar.gz" -C "$REC" --exclude='checkpoint*.pt' --exclude='weights.pt' .
weights=$(cd "$REC" && find runs/table1 -name weights.pt 2> /dev/null)
[ -n "$weights" ] && tar -czf "$OUT/weights.tar.gz" -C "$REC" $weights
ls -l "$OUT"
echo "== done in $(elapsed) s of a ${BUDGET} s budget; $(ls "$OUT" | wc -l) files in \$OUT"
