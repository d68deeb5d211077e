#!/bin/sh
# Measures every fact in MODEL_CARD.md with the project's own tools (not train.py's claims) and keeps
# the outputs in resources/demo/card/. Build first (./scripts/build.sh); BUILD=dir picks another build.
#   resources/demo/measure.sh            # about 10 minutes on 2 cores
set -eu
cd "$(dirname "$0")/../.."
B=${BUILD:-build}/app/moe-inspect
D=resources/demo
OUT=$D/card
TMP=${TMPDIR:-/tmp}
mkdir -p "$OUT"
for m in moe dense; do
  $B info $D/$m > "$OUT/info_$m.txt"
  # Accuracy per task, thinking on and off, greedy, all 200 held-out problems of each task; the
  # trace of every run feeds the routing statistics below.
  $B eval $D/$m --csv "$OUT/eval_$m.csv" --trace "$TMP/demo_eval_$m.trace.safetensors" > "$OUT/eval_$m.txt"
  # Accuracy against the thinking budget (Qwen's early-stop text at the budget), 100 problems per task.
  $B budget-sweep $D/$m --limit 100 --csv "$OUT/budget_$m.csv" > "$OUT/budget_$m.txt"
done
# Expert load per layer, and which experts prefer which token classes and phases (MoE only).
$B stats "$TMP/demo_eval_moe.trace.safetensors" --csv "$OUT/stats_moe" > "$OUT/stats_moe.txt"
$B stats "$TMP/demo_eval_moe.trace.safetensors" --phase thinking --csv "$OUT/stats_moe_thinking" > "$OUT/stats_moe_thinking.txt"
echo "wrote $OUT"
