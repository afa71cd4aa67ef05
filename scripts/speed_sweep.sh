#!/usr/bin/env bash
# The speed sweep (suites/speed.yaml) on a GPU machine, in pieces that each end within a time limit.
#
#   scripts/speed_sweep.sh RESULTS OUT_DIR [SECONDS] [--only GLOB ...] [--expect-from EARLIER]
#   SUITE=suites/speed-heads-bf16.yaml scripts/speed_sweep.sh RESULTS OUT_DIR ...    (another suite)
#
# Starts from the rows already in RESULTS (the committed results directory of this GPU, e.g.
# results/speed-h200; taken into OUT_DIR by `run --start-from`), measures the cells still missing (those matching
# --only, if given) and starts no new cell after SECONDS (default 420). With --expect-from an
# earlier results directory of the same suite, it also skips each cell that, timed as there,
# would end after SECONDS, so SECONDS can be the whole budget of the piece. Bring
# OUT_DIR/cells.jsonl and env.json back into RESULTS and run again until nothing is left; every
# run resumes where the last stopped. Wheels carried in .whl (packages the GPU machine lacks,
# e.g. evo) are installed first. Python's bytecode is kept (in PYTHONPYCACHEPREFIX, default
# /tmp/avggt-bench-bytecode) even where the environment says not to write it: without it every
# process compiles torch's source again (14 s a process on the GPU machines used here), and a
# piece with --workers starts several. Other options go to `avggt-bench run`.
set -euo pipefail
results=$1 out=$2; shift 2
limit=420
if [[ $# -gt 0 && $1 != --* ]]; then limit=$1; shift; fi
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/avggt-bench-bytecode}
unset PYTHONDONTWRITEBYTECODE
start=()
if [[ -f $results/cells.jsonl && "$(realpath -m "$out")" != "$(realpath -m "$results")" ]]; then start=(--start-from "$results"); fi
python3 -m bench.cli run "${SUITE:-suites/speed.yaml}" --out "$out" --time-limit "$limit" "${start[@]}" "$@"
