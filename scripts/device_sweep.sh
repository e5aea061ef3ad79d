#!/usr/bin/env bash
# Compute whole parameter files on a lent GPU machine and send the new stored runs back.
#
# The machine has no network and its own python3 with torch, numpy, pyyaml, tqdm, pandas and
# matplotlib; flcore runs from the checkout (PYTHONPATH). The datasets travel in the ignored
# folder .devdata/ (make devdata puts Fashion-MNIST's IDX files there, and with CIFAR=1 the
# CIFAR-10 JPEG copy; name .devdata in the device call's carry).
#
#   FLCORE_GIT_COMMIT=<commit> scripts/device_sweep.sh params/original_tables.paper.yaml [more files]
#
# A file of experiment attack_effect (e.g. params/attack_effect.paper.yaml) is computed by
# python -m flcore.experiments.attack_effect: its measurements and its Hessian comparison.
#
# (a copy without .git records the commit it is given; commit here first, so that it names the code).
#
# Environment: DEVICE (default cuda), PACK (default auto), LIMIT_S (seconds for all the sweeps,
# default 500: the runs stored by then are sent back; a pack that is cut off stores nothing),
# OUT (where the runs go: $OUT/runs.tar.gz, with the sweep log $OUT/sweep.log), FLCORE_RESULTS
# (the store, default results/), PYTHON (default python3).
# Back here: tar xzf <files_at>/runs.tar.gz, then commit results/.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder the runs are written to}"
DEVICE=${DEVICE:-cuda}
PACK=${PACK:-auto}
LIMIT_S=${LIMIT_S:-500}
PY=${PYTHON:-python3}
STORE=${FLCORE_RESULTS:-results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 FLCORE_OFFLINE=1
[ -d .devdata/fashion-mnist ] && export FLCORE_DATA="$PWD/.devdata/fashion-mnist"
[ -e .devdata/cifar10-jpeg.tar.gz ] && export FLCORE_CIFAR_JPEG="$PWD/.devdata/cifar10-jpeg.tar.gz"
[ $# -gt 0 ] || { echo "usage: scripts/device_sweep.sh PARAMFILE..." >&2; exit 2; }
if ! git rev-parse HEAD >/dev/null 2>&1 && [ -z "${FLCORE_GIT_COMMIT:-}" ]; then
    echo "error: no git here: set FLCORE_GIT_COMMIT to the commit this copy was made from" >&2; exit 2
fi
mkdir -p "$OUT"
before=$(mktemp)
mkdir -p "$STORE"
find "$STORE" -name '*.json' | sort > "$before"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/sweep.log"
start=$(date +%s)
for f in "$@"; do
    left=$(( LIMIT_S - ($(date +%s) - start) ))
    [ "$left" -gt 10 ] || { echo "time limit reached before $f" | tee -a "$OUT/sweep.log"; break; }
    echo "== $f ($left s left)" | tee -a "$OUT/sweep.log"
    kind=$("$PY" -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get('experiment', ''))" "$f")
    if [ "$kind" = attack_effect ]; then  # measurements (a real run and its shadow) and the Hessian comparison
        timeout "$left" "$PY" -m flcore.experiments.attack_effect "$f" --device "$DEVICE" 2>&1 | tee -a "$OUT/sweep.log"
    else
        timeout "$left" "$PY" -m flcore sweep "$f" --device "$DEVICE" --pack "$PACK" --workers 1 \
            2>&1 | tee -a "$OUT/sweep.log"
    fi
done
find "$STORE" -name '*.json' | sort | comm -13 "$before" - > "$OUT/new_runs.txt"
tar czf "$OUT/runs.tar.gz" -T "$OUT/new_runs.txt"
echo "$(wc -l < "$OUT/new_runs.txt") new stored runs in $OUT/runs.tar.gz" | tee -a "$OUT/sweep.log"
