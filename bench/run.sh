#!/usr/bin/env bash
# Builds the release binaries and runs one benchmark scenario.
#
#   bench/run.sh onboard 10000 --runs 3
#   bench/run.sh drain 10000 --runs 3
#   bench/run.sh failover 10000 --runs 3
#   bench/run.sh hold 10000 --runs 3
#   bench/run.sh life 200 --runs 3
#   bench/run.sh rtt 2000 --runs 3
#
# See docs/BENCHMARKS.md for what each measures and the figures so far.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --workspace --bins
exec target/release/platform-bench "$@"
