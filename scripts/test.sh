#!/usr/bin/env bash
# Runs every test of the project: the tools the tests need are installed
# on first use (see test-tools.sh), then `cargo test` with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-tools.sh
exec cargo test --all-features --locked "$@"
