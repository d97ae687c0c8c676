#!/usr/bin/env bash
# The second of the two device calls that run bench/gpu.py on a lent H200 (../shared/gpu-vllm's recipe):
# the first call left /tmp/vparts/site.part00 and /tmp/whl-a/*.whl; this one brings part01 and the
# other wheels, unpacks vLLM 0.26.0, and runs `python -m bench.gpu MODEL N REPS` with results in $OUT.
# usage (on the device): bash bench/gpu-device.sh MODEL N REPS [PATTERNS]
#                    or: BENCH=gpu_scale bash bench/gpu-device.sh MODEL JOBS_PER_GPU   (2 GPUs)
#                    or: BENCH=gpu_pair bash bench/gpu-device.sh MODEL JOBS_PER_GPU    (2 GPUs, no Sluice)
set -euo pipefail
[ -f /tmp/vparts/site.part00 ] || { echo LOST_PART00; exit 9; }
if [ ! -d /tmp/site/vllm ]; then
  cp .vchunk/b/site.part01 /tmp/vparts/
  mkdir -p /tmp/site && cat /tmp/vparts/site.part0* | xz -dc -T0 | tar -x -C /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    /tmp/whl-a/*.whl .whl/b/*.whl
fi
export PY_SPY=/tmp/site/bin/py-spy PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# Which cores and NUMA node each GPU sits next to, and the host's CPUs: for reading 2-GPU results.
{ nvidia-smi topo -m; echo; lscpu; } > "$OUT/host.txt" 2>&1 || true
# Two engines' teardown can hang (seen on the H200: minutes past the last result): once the run
# says it is done, it is stopped.
out="$OUT/gpu-$1.jsonl"
if [ "${BENCH:-gpu}" = gpu_scale ]; then  # BENCH=gpu_scale bash bench/gpu-device.sh MODEL JOBS_PER_GPU
  out="$OUT/gpu-scale-$1.jsonl"
  python3 -m bench.gpu_scale "$1" "$2" "$out" > /tmp/gpu-bench.log 2>&1 &
elif [ "${BENCH:-gpu}" = gpu_pair ]; then  # BENCH=gpu_pair bash bench/gpu-device.sh MODEL JOBS_PER_GPU
  out="$OUT/gpu-pair-$1.jsonl"
  python3 -m bench.gpu_pair "$1" "$2" "$out" > /tmp/gpu-bench.log 2>&1 &
else
  python3 -m bench.gpu "$1" "$2" "$3" "$out" ${4:-} > /tmp/gpu-bench.log 2>&1 &
fi
pid=$!
while kill -0 $pid 2>/dev/null; do
  if grep -q '"pattern": "done"' "$out" 2>/dev/null; then sleep 2; kill -9 $pid 2>/dev/null || true; break; fi
  sleep 2
done
grep -v -E "^\s*$|it/s\]" /tmp/gpu-bench.log | tail -n 60
for f in /tmp/worker*.log; do [ -f "$f" ] && tail -c 30000 "$f" > "$OUT/$(basename "$f")"; done
true
