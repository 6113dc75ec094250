#!/usr/bin/env bash
# The whole test suite: setup, dependency lint, type-check of the tests, then every unit and
# integration test. Integration tests need root (network namespaces, iptables, NFQUEUE,
# cgroups); without root they are reported as skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/lint-deps.mjs
npx tsc -p tsconfig.test.json
report="$(mktemp -t tessera-vitest-XXXXXX.json)"
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line that any CI reads: "N passed, N failed, N skipped".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + (r.numTodoTests || 0);
  console.log(`\n${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit "$status"
