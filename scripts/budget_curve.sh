#!/usr/bin/env bash
# Test NE against training budget (docs/recipes.md): each recipe trained at each multiple of the
# base budget and each seed, predicted on the test split (flip + scales 1, 1.2), scored, one JSON
# line per run, and the plot. Recipes (overrides of cpu_fast):
#   one_stage  whole images;
#   two_stage  half the items cropped to the garment's jittered points box, the network its own first stage
#              (predict's default for such a model);
#   two_nets   a crop-only network (half the budget) refining the boxes of one_stage at half the budget
#              (one_stage at that multiple is trained first if missing).
# Usage: scripts/budget_curve.sh DATA_ROOT OUT
# Environment: EPOCHS (the base budget in epochs, default 15: 840 s of cpu_fast in fp32 at
# ≈ 9.5 img/s on 540 images), MULTIPLES (default "1 2 4"), SEEDS (default "0 1"),
# RECIPES (default "one_stage two_stage two_nets"), THREADS (OpenMP threads per run, default: all),
# OVERRIDES (key=value overrides of every run, space separated), XTEST (a second data root, e.g. one drawn
# with other garment sizes: its test split is predicted and scored as well, as xtest_ne).
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
    two_nets) echo "data.box_crop_p=1 data.box_jitter=0.1" ;;
    *) echo "unknown recipe $1 (one_stage, two_stage, two_nets)" >&2; exit 2 ;;
  esac
}

train_run() {  # train_run NAME EPOCHS SEED OVERRIDES...: train (or finish) the run $out/NAME
  local name=$1 epochs=$2 seed=$3 run="$out/$1" trained
  shift 3
  trained=$( [ -f "$run/last.json" ] && "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['epoch'])" \
    "$run/last.json" || echo 0)
  if [ "$trained" -ge "$epochs" ]; then
    echo "   $name trained already"
  elif [ "$trained" -gt 0 ]; then  # an interrupted training: continue it
    "$fg" train --data-root "$root" --resume "$run" >> "$out/$name.log" 2>&1
  else
    # shellcheck disable=SC2086
    "$fg" train --data-root "$root" --category all --config cpu_fast --out "$run" train.epochs="$epochs" \
      train.val_every=1000 train.seed="$seed" "$@" ${OVERRIDES:-} > "$out/$name.log" 2>&1
  fi
}

score_test() {  # score_test DATA_ROOT CSV: predict DATA_ROOT's test split with $run (and $stage1) into $run/CSV; print its NE
  "$fg" predict --checkpoint "$run" "${stage1[@]}" --data-root "$1" --split test --flip --scales 1,1.2 \
    --out "$run/$2" --json > /dev/null 2>> "$out/$name.log" || return
  "$fg" evaluate --truth "$1/test/annotations.csv" --pred "$run/$2" --json 2>> "$out/$name.log" \
    | "$py" -c "import json, sys; print(json.load(sys.stdin)['ne'])"
}

for recipe in ${RECIPES:-one_stage two_stage two_nets}; do
  for multiple in ${MULTIPLES:-1 2 4}; do
    for seed in ${SEEDS:-0 1}; do
      name="$recipe-x$multiple-s$seed"
      run="$out/$name"
      grep -q "\"name\": \"$name\"" "$results" && { echo "== $name: scored already"; continue; }
      epochs=$(( ${EPOCHS:-15} * multiple ))
      stage1=()
      if [ "$recipe" = two_nets ]; then  # half the budget each
        epochs=$(( epochs / 2 ))
        [ "$epochs" -ge 1 ] || { echo "== $name: under one epoch per network, skipped"; continue; }
        if [ $(( multiple % 2 )) -eq 0 ]; then first="one_stage-x$(( multiple / 2 ))-s$seed"  # reused
        else first="one_stage-e$epochs-s$seed"; fi
        echo "== $name: its first stage $first, $epochs epochs"
        # shellcheck disable=SC2046
        train_run "$first" "$epochs" "$seed" $(recipe_overrides one_stage)
        stage1=(--stage1 "$out/$first")
      fi
      echo "== $name: $epochs epochs"
      # shellcheck disable=SC2046
      train_run "$name" "$epochs" "$seed" $(recipe_overrides "$recipe")
      test_ne=$(score_test "$root" test.csv)
      val_ne=$("$fg" evaluate --checkpoint "$run" --split val --json 2>> "$out/$name.log" | "$py" -c "import json, sys; print(json.load(sys.stdin)['ne'])")
      xtest="" xtest_line=""
      if [ -n "${XTEST:-}" ]; then
        xtest_ne=$(score_test "$XTEST" xtest.csv)
        xtest=", \"xtest_ne\": $xtest_ne" xtest_line=", XTEST NE $xtest_ne %"
      fi
      echo "{\"name\": \"$name\", \"recipe\": \"$recipe\", \"budget\": $multiple, \"epochs\": $epochs, \"seed\": $seed, \"val_ne\": $val_ne, \"test_ne\": $test_ne$xtest}" >> "$results"
      echo "   val NE $val_ne %, test NE $test_ne %$xtest_line"
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
