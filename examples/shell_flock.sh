#!/usr/bin/env bash
# Shell steps and atomicjson share one lock protocol: flock(2) on the `.lock` sidecar
# (`state.json` -> `state.lock`, as Path.with_suffix('.lock')). So a shell step that guards its
# own work with flock(1) on that sidecar and the `atomicjson` CLI exclude each other.
#
#   bash examples/shell_flock.sh [DIR]
#
# Uses $ATOMICJSON as the CLI (default: "$PYTHON -m atomicjson", PYTHON defaulting to python3).
set -euo pipefail

PYTHON=${PYTHON:-python3}
read -r -a AJ <<< "${ATOMICJSON:-$PYTHON -m atomicjson}"
aj() { "${AJ[@]}" "$@"; }

if [[ $# -ge 1 ]]; then
    dir=$1; mkdir -p "$dir"
else
    dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
fi
state=$dir/state.json
lock=$dir/state.lock          # the sidecar atomicjson uses for state.json
ready=$dir/guard.ready
rm -f "$ready"

echo '{"steps": {}}' | aj write "$state"
echo "1. wrote $state with the CLI"

# 2. A shell step guarding a multi-command section with flock(1) on the SAME sidecar. It opens
#    the lock file for appending (`9>>`), never truncating it, exactly like atomicjson.
(
    flock -x 9
    touch "$ready"
    # Work that must not interleave with writers of state.json: here a plain, unlocked
    # rewrite of the file by a legacy tool, safe only because we hold the lock.
    "$PYTHON" - "$state" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["steps"]["guard"] = "done"
json.dump(doc, open(sys.argv[1], "w"))
PY
    sleep 1
) 9>>"$lock" &
guard=$!
while [[ ! -e $ready ]]; do sleep 0.02; done
echo "2. shell step holds $lock with flock(1) for about a second"

# 3. While it holds the lock, the CLI cannot write: a short timeout fails cleanly, naming the
#    holder, and leaves the file alone.
if aj update "$state" --set steps.early='"too soon"' --timeout 0.2 2>"$dir/err"; then
    echo "FAIL: the CLI wrote while the flock(1) step held the lock" >&2; exit 1
fi
echo "3. CLI with --timeout 0.2 refused, as it should: $(cat "$dir/err")"

# 4. With a longer timeout the CLI waits for the shell step, then applies its change on top of
#    the step's own: nothing is lost.
start=$(date +%s.%N)
aj update "$state" --set steps.cli='"done"' --timeout 10
waited=$("$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" \
    "$start" "$(date +%s.%N)")
wait "$guard"
echo "4. CLI waited ${waited}s for the lock, then updated"

# 5. The other direction: while atomicjson holds the lock (atomicjson.lock in Python), flock(1)
#    cannot take it.
"$PYTHON" - "$state" <<'PY' &
import sys, time, atomicjson
with atomicjson.lock(sys.argv[1]):
    open(sys.argv[1] + ".held", "w").close()
    time.sleep(1)
PY
holder=$!
while [[ ! -e $state.held ]]; do sleep 0.02; done
if flock -n "$lock" true; then
    echo "FAIL: flock(1) got the lock atomicjson holds" >&2; exit 1
fi
echo "5. flock -n refused while atomicjson.lock() held $lock"
flock -w 10 "$lock" true      # and gets it once atomicjson lets go
wait "$holder"
rm -f "$state.held"

# 6. Both changes are there and every JSON file under the directory parses.
aj cat --compact "$state"
aj check --quiet "$dir"
"$PYTHON" - "$state" <<'PY'
import json, sys
steps = json.load(open(sys.argv[1]))["steps"]
assert steps == {"guard": "done", "cli": "done"}, steps
PY
echo "6. verified: the guarded step and the CLI both updated $state, nothing lost"

# A trap to avoid: do NOT wrap the CLI itself in `flock "$lock" atomicjson ...`. flock(1)
# would hold the lock while the CLI, a separate process, waits for that very lock.
