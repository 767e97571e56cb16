#!/usr/bin/env bash
# The seed's per-category pipeline: train -> SWA -> evaluate, in runs/<category>.
# Usage: scripts/train.sh CATEGORY [DATA_ROOT] [CONFIG]
# Environment: RUNS (default runs), CTX (default cpu), INIT_FROM (a run to start from,
# e.g. runs/all), OVERRIDES (extra key=value config overrides, space separated).
# Re-running continues an interrupted training from its last good checkpoint.
set -euo pipefail
category=${1:?usage: scripts/train.sh CATEGORY [DATA_ROOT] [CONFIG]}
root=${2:-data/fashionai}
config=${3:-configs/cpn_resnet50.yaml}
runs=${RUNS:-runs}
ctx=${CTX:-cpu}
here=$(cd "$(dirname "$0")/.." && pwd)
fg=${FASHION_GLUON:-$( [ -x "$here/.venv/bin/fashion-gluon" ] && echo "$here/.venv/bin/fashion-gluon" || echo fashion-gluon )}
run="$runs/$category"

if [ -f "$run/last.json" ]; then
  echo "== resuming $run"
  "$fg" train --data-root "$root" --resume "$run" --ctx "$ctx"
else
  echo "== training $category with $config -> $run"
  init=()
  [ -n "${INIT_FROM:-}" ] && init=(--init-from "$INIT_FROM")
  # shellcheck disable=SC2086
  "$fg" train --data-root "$root" --category "$category" --config "$config" --out "$run" --ctx "$ctx" "${init[@]}" ${OVERRIDES:-}
fi
echo "== SWA"
"$fg" swa --checkpoint "$run" --data-root "$root" --out "$run/swa" --ctx "$ctx"
echo "== evaluating on the validation split"
"$fg" evaluate --checkpoint "$run/swa" --data-root "$root" --split val --flip --ctx "$ctx" --json | tee "$run/swa/val_ne.json"
