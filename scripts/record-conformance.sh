#!/usr/bin/env bash
# Re-record the conformance fixtures (test/conformance/expected/*.txt) by running every scenario
# in test/conformance/scenarios/ against the reference kernel (real Linux 6.1 + mtty/mdpy/mbochs
# under qemu), one qemu at a time.
#
# Usage: scripts/record-conformance.sh [--check] REFERENCE_KERNEL_DIR [SCENARIO_NAME...]
#   REFERENCE_KERNEL_DIR  directory holding run-scenario.sh: a harness that boots Linux 6.1 with
#                         the sample drivers under qemu and prints what a scenario printed (it is
#                         not part of this repository; test/conformance/README.md says what it does)
#   SCENARIO_NAME         e.g. create-errors (default: all scenarios)
#   --check               run every scenario twice and fail if the two outputs differ
#                         (non-determinism check); the first run is what gets recorded
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
if [ $# -eq 0 ] || [ ! -d "$1" ]; then
  echo "usage: scripts/record-conformance.sh [--check] REFERENCE_KERNEL_DIR [SCENARIO_NAME...]" >&2; exit 2
fi
REF=$1; shift
RUN=$REF/run-scenario.sh
[ -x "$RUN" ] || { echo "record-conformance: $RUN not found or not executable" >&2; exit 2; }

SCN=$ROOT/test/conformance/scenarios
EXP=$ROOT/test/conformance/expected
mkdir -p "$EXP"
if [ $# -gt 0 ]; then names=("$@"); else
  names=(); for f in "$SCN"/*.sh; do n=${f##*/}; names+=("${n%.sh}"); done
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
for n in "${names[@]}"; do
  s=$SCN/$n.sh
  [ -f "$s" ] || { echo "record-conformance: no scenario $s" >&2; fail=1; continue; }
  rc=0; "$RUN" --shell bash "$s" > "$tmp/$n.1" || rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 125 ]; then
    echo "FAIL $n: oracle error (rc=$rc)" >&2; fail=1; continue
  fi
  if [ $CHECK = 1 ]; then
    rc2=0; "$RUN" --shell bash "$s" > "$tmp/$n.2" || rc2=$?
    if [ $rc2 -ne $rc ] || ! cmp -s "$tmp/$n.1" "$tmp/$n.2"; then
      echo "FAIL $n: two runs differ (rc $rc vs $rc2)" >&2
      diff "$tmp/$n.1" "$tmp/$n.2" | head -20 >&2 || true
      fail=1; continue
    fi
  fi
  cp "$tmp/$n.1" "$EXP/$n.txt"
  echo "recorded $n ($(wc -l < "$EXP/$n.txt") lines, scenario rc=$rc)"
done
exit $fail
