#!/usr/bin/env bash
# The bounded chaos soak (tests/chaos.rs): five test hosts in network
# namespaces, a loop of fan-outs, and random partitions, freezes, power
# cuts and restarts meanwhile. Needs root, iproute2 and nftables.
#
#   scripts/chaos-soak.sh            5 minutes
#   VIGIE_CHAOS_SECS=600 scripts/chaos-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export VIGIE_CHAOS_SECS="${VIGIE_CHAOS_SECS:-300}"
exec cargo test --release --all-features --locked --test chaos -- --ignored --nocapture chaos_soak
