#!/usr/bin/env bash
# Builds the release binaries and runs one benchmark scenario.
#
#   bench/run.sh onboard 10000 --runs 3
#   bench/run.sh onboard 10000 --runs 3 --plaintext
#   bench/run.sh onboard 10000 --runs 3 --walkthrough
#   bench/run.sh drain 10000 --runs 3
#   bench/run.sh failover 10000 --runs 3
#   bench/run.sh hold 10000 --runs 3
#   bench/run.sh life 200 --runs 3
#   bench/run.sh rtt 2000 --runs 3
#   bench/run.sh connect 1000 --runs 3     # one connection's cost, TLS handshake included
#   bench/run.sh soak 1000 --duration 15m
#   bench/run.sh soak 1000 --duration 15m --pool 1000   # the same devices
#   bench/run.sh topics 5000        # diagnosis: rumqttd's memory per device
#   bench/run.sh wide 50000         # past one process: 4 gateway and 4 fleet processes
#
# Every scenario runs the platform in its default mode, secure over TLS:
# the platform writes its CA to DATA_DIR/ca.pem and every client the bench
# starts trusts it (--cafile), and gets the platform's key and its
# credentials. Two modes to compare it with:
#   --plaintext     secure mode without TLS ([tls] enabled = false,
#                   clients with --plaintext): what TLS costs
#   --walkthrough   walkthrough mode (plaintext, no logins, no signatures)
# Every figure is printed with the mode it was measured in.
# BENCH_NO_BUILD=1 skips the build (use the binaries in target/release).
# See docs/BENCHMARKS.md for what each measures and the figures so far.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  # Only the binaries a scenario runs.
  cargo build --release -q --bins \
    -p broker -p ap-sim -p verifier -p registry -p device-sim -p platform-bench
fi
exec target/release/platform-bench "$@"
