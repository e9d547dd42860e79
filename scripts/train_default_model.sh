#!/usr/bin/env bash
# Reproduces the bundled default depth model with one command:
#   depth_perception/data/student_tabletop.safetensors  (weights, < 5 MB)
#   depth_perception/data/student_tabletop.json         (model card with the measured numbers)
#
# It renders the tabletop generator's training scenes (cached under ~/.cache/depth_perception),
# trains the compact student on 2 CPU threads (~30-40 min on a 2-core machine; no GPU, no network),
# evaluates on held-out generator scenes and installs the result into the package.
#
#   scripts/train_default_model.sh                  # the bundled model's exact recipe
#   scripts/train_default_model.sh --threads 4      # extra options go to the recipe
#   PYTHON=python3 OUT=/tmp/run scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-build/student_tabletop}
exec "$PYTHON" -m depth_perception.training.default_model --out "$OUT" "$@"
