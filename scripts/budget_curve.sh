#!/usr/bin/env bash
# Test NE against training budget (docs/recipes.md): each recipe trained at each multiple of the
# base budget and each seed, predicted on the test split (flip + scales 1, 1.2; a two-stage recipe
# finds the boxes with its own first pass), scored, one JSON line per run, and the plot.
# Usage: scripts/budget_curve.sh DATA_ROOT OUT
# Environment: EPOCHS (the base budget in epochs, default 15: 840 s of cpu_fast in fp32 at
# ≈ 9.5 img/s on 540 images), MULTIPLES (default "1 2 4"), SEEDS (default "0 1"),
# RECIPES (default "one_stage two_stage"), THREADS (OpenMP threads per run, default: all),
# OVERRIDES (key=value overrides of every run, space separated).
# The budget is counted in epochs, not seconds, so runs sharing a machine get the same training.
# Re-running skips the runs already scored.
set -euo pipefail
root=${1:?usage: scripts/budget_curve.sh DATA_ROOT OUT}
out=${2:?usage: scripts/budget_curve.sh DATA_ROOT OUT}
here=$(cd "$(dirname "$0")/.." && pwd)
fg=${FASHION_GLUON:-$( [ -x "$here/.venv/bin/fashion-gluon" ] && echo "$here/.venv/bin/fashion-gluon" || echo fashion-gluon )}
py=${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python )}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
mkdir -p "$out"
results="$out/results.jsonl"
touch "$results"

recipe_overrides() {  # the recipe's overrides of cpu_fast
  case $1 in
    one_stage) echo "data.box_crop_p=0" ;;
    two_stage) echo "data.box_crop_p=0.5 data.box_jitter=0.1" ;;
    *) echo "unknown recipe $1 (one_stage, two_stage)" >&2; exit 2 ;;
  esac
}

for recipe in ${RECIPES:-one_stage two_stage}; do
  for multiple in ${MULTIPLES:-1 2 4}; do
    for seed in ${SEEDS:-0 1}; do
      name="$recipe-x$multiple-s$seed"
      run="$out/$name"
      grep -q "\"name\": \"$name\"" "$results" && { echo "== $name: scored already"; continue; }
      epochs=$(( ${EPOCHS:-15} * multiple ))
      echo "== $name: $epochs epochs"
      if [ -f "$run/last.json" ]; then  # an interrupted (or finished) training: continue it
        "$fg" train --data-root "$root" --resume "$run" >> "$out/$name.log" 2>&1
      else
        # shellcheck disable=SC2046
        "$fg" train --data-root "$root" --category all --config cpu_fast --out "$run" train.epochs=$epochs \
          train.val_every=1000 train.seed=$seed $(recipe_overrides "$recipe") ${OVERRIDES:-} > "$out/$name.log" 2>&1
      fi
      stage1=()
      [ "$recipe" = two_stage ] && stage1=(--stage1 "$run")
      "$fg" predict --checkpoint "$run" "${stage1[@]}" --data-root "$root" --split test --flip --scales 1,1.2 \
        --out "$run/test.csv" --json > /dev/null
      test_ne=$("$fg" evaluate --truth "$root/test/annotations.csv" --pred "$run/test.csv" --json \
        | "$py" -c "import json, sys; print(json.load(sys.stdin)['ne'])")
      val_ne=$("$fg" evaluate --checkpoint "$run" --split val --json | "$py" -c "import json, sys; print(json.load(sys.stdin)['ne'])")
      echo "{\"name\": \"$name\", \"recipe\": \"$recipe\", \"budget\": $multiple, \"epochs\": $epochs, \"seed\": $seed, \"val_ne\": $val_ne, \"test_ne\": $test_ne}" >> "$results"
      echo "   val NE $val_ne %, test NE $test_ne %"
    done
  done
done
"$py" -c "
import json, sys
from fashion_gluon.visualize import plot_budget_curve
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
plot_budget_curve(records, sys.argv[2])
print(f'{len(records)} runs -> {sys.argv[2]}')
" "$results" "$out/budget_curve.png"
