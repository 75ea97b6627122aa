#!/usr/bin/env bash
# Static checks: generated code is up to date with proto/, TypeScript typechecks, Biome lints.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf generate
if ! git diff --quiet -- gen; then
  echo "check: gen/ is out of date with proto/; run 'npm run generate' and commit" >&2
  git diff --stat -- gen >&2
  exit 1
fi
npx buf lint
npx tsc -p tsconfig.json
npx biome check .
