#!/usr/bin/env bash
# Runs the whole test suite with node's test runner (TAP summary lines "# pass N" / "# fail N").
# Unit tests sit beside the code as *.spec.ts; integration tests live in test/**/*.test.ts.
# Globs are expanded here: node 20's --test does not expand them itself.
# --test-force-exit: a test file whose tests have all finished is ended even if a handle (e.g. a
# NATS client reconnect timer) is still open, so a leak cannot hang CI; leaks show up as warnings.
set -euo pipefail
shopt -s globstar nullglob
cd "$(dirname "$0")/.."
files=()
for f in core/**/*.spec.ts models/**/*.spec.ts coordinator/**/*.spec.ts stage-runners/**/*.spec.ts \
  client/**/*.spec.ts media/**/*.spec.ts transport/**/*.spec.ts world/**/*.spec.ts test/**/*.test.ts; do
  files+=("$f")
done
if [ "$#" -gt 0 ]; then files=("$@"); fi
if [ "${#files[@]}" -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
exec node --import tsx --test --test-force-exit --test-concurrency="${TEST_CONCURRENCY:-2}" "${files[@]}"
