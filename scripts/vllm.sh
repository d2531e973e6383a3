#!/usr/bin/env bash
# Start a vLLM server for aiapp's `vllm` route (configs/vllm.example.yaml) and wait until it is healthy.
#
#   VLLM_API_KEY=secret scripts/vllm.sh [MODEL] [extra `vllm serve` args...]
#
# MODEL defaults to Qwen/Qwen2.5-0.5B-Instruct (a hub id or a local path). Environment:
#   VLLM_PORT (8001), VLLM_HOST (127.0.0.1), VLLM_MAX_MODEL_LEN (4096),
#   VLLM_GPU_MEMORY_UTILIZATION (0.85), VLLM_WAIT_S (900: how long to wait for /health).
# Needs an NVIDIA GPU and `pip install vllm` (PyPI ships CUDA builds only). The server keeps
# running in the foreground of its own process; this script prints its PID and log path and exits
# once GET /health answers 200. Stop it with: kill <PID>.
set -euo pipefail

MODEL="${1:-Qwen/Qwen2.5-0.5B-Instruct}"
shift || true
PORT="${VLLM_PORT:-8001}"
HOST="${VLLM_HOST:-127.0.0.1}"
LOG="${VLLM_LOG:-${TMPDIR:-/tmp}/vllm-${PORT}.log}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "vllm.sh: no NVIDIA GPU found (nvidia-smi lists none); vLLM needs one" >&2
  exit 2
fi
if ! command -v vllm >/dev/null 2>&1; then
  echo "vllm.sh: vllm is not installed; run: pip install vllm  (in its own venv: it pins torch)" >&2
  exit 2
fi
if [ -z "${VLLM_API_KEY:-}" ]; then
  echo "vllm.sh: set VLLM_API_KEY (the key clients must send; aiapp reads it via api_key_env)" >&2
  exit 2
fi

nohup vllm serve "$MODEL" \
  --host "$HOST" --port "$PORT" \
  --api-key "$VLLM_API_KEY" \
  --max-model-len "${VLLM_MAX_MODEL_LEN:-4096}" \
  --gpu-memory-utilization "${VLLM_GPU_MEMORY_UTILIZATION:-0.85}" \
  "$@" >"$LOG" 2>&1 &
PID=$!
echo "vllm.sh: started vllm serve $MODEL (pid $PID, log $LOG)" >&2

deadline=$(( $(date +%s) + ${VLLM_WAIT_S:-900} ))
until curl -fsS "http://$HOST:$PORT/health" >/dev/null 2>&1; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "vllm.sh: vllm serve exited; last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "vllm.sh: not healthy after ${VLLM_WAIT_S:-900}s; see $LOG (pid $PID still running)" >&2
    exit 1
  fi
  sleep 2
done
echo "vllm.sh: healthy at http://$HOST:$PORT/v1 (pid $PID)"
echo "next: VLLM_API_BASE=http://$HOST:$PORT/v1 aiapp models --check --config configs/vllm.example.yaml"
