#!/usr/bin/env bash
# Train all five categories with scripts/train.sh. With PRETRAIN_ALL=1 an all-category
# model (24 keypoints) is trained first and every category is fine-tuned from it.
# Usage: [PRETRAIN_ALL=1] scripts/train_all.sh [DATA_ROOT] [CONFIG]
set -euo pipefail
root=${1:-data/fashionai}
config=${2:-configs/cpn_resnet50.yaml}
here=$(cd "$(dirname "$0")" && pwd)
if [ "${PRETRAIN_ALL:-0}" = 1 ]; then
  "$here/train.sh" all "$root" "$config"
  export INIT_FROM="${RUNS:-runs}/all/swa"
fi
for category in blouse outwear dress skirt trousers; do
  "$here/train.sh" "$category" "$root" "$config"
done
