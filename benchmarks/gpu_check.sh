#!/usr/bin/env bash
# The GPU path, measured in one go (under 8 minutes on one H100): the test suite with CUDA
# visible (tests marked `cuda` run on the GPU), the reward-throughput sweep against the
# reference-style baseline and the bare image tower (fp32, fp16, amp; compile on and off),
# MuJoCo rendering with EGL on the GPU, and training steps/s with a ViT-L-14 reward against
# ground-truth training. Every result goes to OUT_DIR (default gpu_check/).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [SECTION ...]
#
# SECTION is any of tests, throughput, compile, render, train (default: all, in that order),
# so the check can be split over calls. PEAK16/PEAK32 (environment) are the card's dense
# fp16 tensor-core and fp32 TFLOP/s (default: H100 SXM, 989 and 67). Each section has its
# own time limit, so one that hangs costs its limit and not the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
shift || true
SECTIONS="${*:-tests throughput compile render train}"
PEAK16="${PEAK16:-989}"
PEAK32="${PEAK32:-67}"
mkdir -p "$OUT"
export MUJOCO_GL=egl PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
say() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
section() {  # section NAME SECONDS command...
    local name=$1 limit=$2
    shift 2
    say "$name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    say "$name: exit $rc after $((SECONDS - start))s"
    tail -n 25 "$OUT/$name.txt" >>"$OUT/summary.txt"
}
wants() { [[ " $SECTIONS " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >>"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt" >>"$OUT/summary.txt"

# 1. the suite, CUDA visible; xdist when it is installed
workers=()
"$PY" -c "import xdist" 2>/dev/null && workers=(-n 8)
wants tests && section tests 180 "$PY" -m pytest -q -p no:cacheprovider "${workers[@]}"

# 2. reward throughput: uint8 frames in, rewards out, against the baseline and the bare tower
wants throughput && section throughput_fp32 100 "$PY" benchmarks/reward_throughput.py --model ViT-B-32,ViT-L-14 \
    --frame-size 224x224,480x480 --batch-size 1,16,256,1024 --precision fp32 --peak-tflops "$PEAK32"
wants throughput && section throughput_fp16 100 "$PY" benchmarks/reward_throughput.py --model ViT-B-32,ViT-L-14 \
    --frame-size 224x224,480x480 --batch-size 1,16,256,1024 --precision fp16,amp --peak-tflops "$PEAK16"
wants compile && section throughput_compile 130 "$PY" benchmarks/reward_throughput.py --model ViT-B-32,ViT-L-14 \
    --frame-size 480x480 --batch-size 16,256,1024 --precision fp16 --compile false,true --peak-tflops "$PEAK16"

# 3. MuJoCo rendering on the GPU through EGL
wants render && section render 45 "$PY" benchmarks/render_fps.py --env vlmrm/Humanoid-v0,Humanoid-v5 --size 224 --steps 1000

# 4. training steps/s: ViT-L-14 reward (random weights), episode-batched relabelling, vs ground truth
wants train && section train 130 "$PY" benchmarks/train_fps.py --env Humanoid --model ViT-L-14 --steps 3000 --n-envs 8 \
    --modes ground_truth render episode --learning-starts 1000
say done
