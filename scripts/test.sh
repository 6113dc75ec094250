#!/usr/bin/env bash
# The whole test suite (`npm test`): setup, dependency lint, type-check of the tests, then every
# unit and integration test.
#
# As root it runs EVERY test, Docker included: when no Docker engine answers it starts our own
# (scripts/docker-setup.sh: dockerd in its own network namespace), builds the local image
# (scripts/docker-image.sh), and stops that dockerd at the end, whatever happened (only the one
# it started). As root, or with CI=true, a test that did not run fails the run: the closing
# lines name every skipped test. Without root the integration tests are reported as skipped
# with their reason, and the run passes if the rest does.
#
# Arguments go to vitest (`npm test -- test/unit`). TESSERA_DOCKER=0 leaves Docker alone
# (as root the Docker tests are then reported as skipped, and the run fails).
set -euo pipefail
cd "$(dirname "$0")/.."

root=0
[ "$(id -u)" -eq 0 ] && root=1
strict=0
{ [ "$root" = 1 ] || [ "${CI:-}" = true ]; } && strict=1
# setup.sh installs docker.io's companions (curl for the runtime shim) when asked to.
[ "$root" = 1 ] && export TESSERA_DOCKER="${TESSERA_DOCKER:-1}"

bash scripts/setup.sh
node scripts/lint-deps.mjs
npx tsc -p tsconfig.test.json

report="$(mktemp -t tessera-vitest-XXXXXX.json)"
started_docker=0
finish() {
  rm -f "$report"
  if [ "$started_docker" = 1 ]; then
    echo "tessera test: stopping the dockerd this run started"
    bash scripts/docker-setup.sh stop || true
  fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$root" = 1 ] && [ "${TESSERA_DOCKER:-1}" = 1 ]; then
  if ! bash scripts/docker-setup.sh status >/dev/null 2>&1; then
    # Marked before the start: a start that fails half-way is stopped too.
    started_docker=1
    bash scripts/docker-setup.sh
  fi
  bash scripts/docker-image.sh
fi

# A test-name filter skips the tests it does not match: those skips are asked for.
filtered=0
for a in "$@"; do
  case "$a" in -t | -t* | --testNamePattern | --testNamePattern=*) filtered=1 ;; esac
done

status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?

# One plain closing line that any CI reads: "N passed, N failed, N skipped", then, when skips
# are not allowed here, the skipped tests by name and a failing exit status.
check=0
node -e '
  const [file, strict] = process.argv.slice(1);
  const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
  const skipped = [];
  for (const f of r.testResults ?? []) {
    for (const t of f.assertionResults ?? []) {
      if (t.status !== "passed" && t.status !== "failed") skipped.push(`${require("path").relative(process.cwd(), f.name)}: ${t.fullName} (${t.status})`);
    }
  }
  console.log(`\n${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped.length} skipped`);
  if (strict === "1" && skipped.length > 0) {
    console.log(`\nThese tests were expected to run here (root or CI) but did not:`);
    for (const s of skipped) console.log(`  ${s}`);
    process.exit(3);
  }
' "$report" "$([ "$strict" = 1 ] && [ "$filtered" = 0 ] && echo 1 || echo 0)" || check=$?

if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$check" -ne 0 ]; then exit 1; fi
exit 0
