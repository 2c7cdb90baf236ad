#!/usr/bin/env bash
# Remap latency: the time from running `registry remap` to the device being
# connected on its new gateway, as a user would see it (it includes starting
# the CLI process). One device on an idle platform, RUNS remaps alternating
# between gw-1 and gw-2; prints each sample and the median.
#
#   bench/remap-latency.sh [RUNS]     (default 11; release build)
#
# The platform runs in its default mode, secure over TLS: every client
# trusts the platform's CA (DATA_DIR/ca.pem), the CLIs log in with the
# bootstrap admin token, and the device is enrolled, onboards through an
# AP (ap-sim, auto-confirming) and checks the platform's key. PLAINTEXT=1 runs secure mode without TLS ([tls] enabled
# = false, clients with --plaintext); WALKTHROUGH=1 runs walkthrough mode.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-11}
cargo build --release -q --bins -p broker -p registry -p verifier -p device-sim -p ap-sim
BIN=target/release
WORK=$(mktemp -d)
BASE=$((20000 + RANDOM % 20000))
cat > "$WORK/bench.toml" <<TOML
[platform]
listen = "127.0.0.1:$BASE"
[[gateways]]
id = "gw-1"
listen = "127.0.0.1:$((BASE + 1))"
[[gateways]]
id = "gw-2"
listen = "127.0.0.1:$((BASE + 2))"
TOML
if [ -n "${WALKTHROUGH:-}" ]; then
  MODE=walkthrough
  printf '[security]\nmode = "walkthrough"\n' >> "$WORK/bench.toml"
  ADMIN=(--walkthrough)
  DEVICE=(--walkthrough)
  AP=(--walkthrough)
else
  if [ -n "${PLAINTEXT:-}" ]; then
    MODE="secure, plaintext"
    printf '[tls]\nenabled = false\n' >> "$WORK/bench.toml"
    TRANSPORT=(--plaintext)
  else
    MODE="secure+TLS"
    TRANSPORT=(--cafile "$WORK/data/ca.pem")
  fi
  ADMIN=(--password-file "$WORK/data/credentials/admin.token" "${TRANSPORT[@]}")
  DEVICE=(--platform-key-file "$WORK/data/platform.key.pub" "${TRANSPORT[@]}")
  AP=(--password-file "$WORK/ap-1.token" "${DEVICE[@]}")
fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

RUST_LOG=warn "$BIN/broker" --config "$WORK/bench.toml" --data-dir "$WORK/data" >/dev/null 2>&1 &
PIDS+=($!)
REG=(--broker "127.0.0.1:$BASE" "${ADMIN[@]}")
# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, at most 30 s.
wait_for() {
  local what=$1 deadline=$((SECONDS + 30))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "$what: not within 30 s"; tail -n 5 "$WORK"/*.log; exit 1; }
    sleep 0.05
  done
}
both_alive() { "$BIN/registry" "${REG[@]}" --json gateways 2>/dev/null | grep -c '"alive": true' | grep -q 2; }
wait_for "the platform with gw-1 and gw-2 alive" both_alive

# An AP for the device to onboard through: in secure mode a device has no
# login of its own until it has onboarded.
SSID=bench-wifi
if [ -z "${WALKTHROUGH:-}" ]; then
  "$BIN/verifier" "${REG[@]}" ap add --id ap-1 --ssid "$SSID" --out "$WORK/ap-1.token" >/dev/null
fi
RUST_LOG=warn "$BIN/ap-sim" --broker "127.0.0.1:$BASE" --ssid "$SSID" --password "bench password" \
  --auto-confirm "${AP[@]}" > "$WORK/ap.log" 2>&1 &
PIDS+=($!)
wait_for "the AP" grep -q "serving" "$WORK/ap.log"

DEV=6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b
PASS_TMP=bench-remap-pass
"$BIN/verifier" "${REG[@]}" enroll --uuid "$DEV" --pass-tmp "$PASS_TMP" >/dev/null
# Stamp every device-sim line with the wall clock, in nanoseconds.
"$BIN/device-sim" --broker "127.0.0.1:$BASE" --uuid "$DEV" --pass-tmp "$PASS_TMP" \
  --ssid "$SSID" --auto-confirm "${DEVICE[@]}" \
  > >(while IFS= read -r line; do echo "$(date +%s%N) $line"; done > "$WORK/device.log") &
PIDS=("$!" "${PIDS[@]}")
wait_for "the device onboarded and connected to its gateway" grep -q "connected to gw-" "$WORK/device.log"

samples=()
for i in $(seq 1 "$RUNS"); do
  current=$("$BIN/registry" "${REG[@]}" --json show --device "$DEV" | sed -n 's/.*"gateway_id": "\(gw-[12]\)".*/\1/p' | head -1)
  target=gw-1; [ "$current" = gw-1 ] && target=gw-2
  moved_before=$(grep -c "moved" "$WORK/device.log" || true)
  t0=$(date +%s%N)
  "$BIN/registry" "${REG[@]}" remap --device "$DEV" --gateway "$target" >/dev/null
  deadline=$((SECONDS + 10))
  until [ "$(grep -c "moved" "$WORK/device.log" || true)" -gt "$moved_before" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "the device did not move within 10 s"; cat "$WORK/device.log"; exit 1; }
    sleep 0.005
  done
  t1=$(grep "moved" "$WORK/device.log" | tail -1 | cut -d' ' -f1)
  ms=$(( (t1 - t0) / 1000000 ))
  samples+=("$ms")
  echo "remap $i: $current -> $target in $ms ms"
  sleep 0.2
done
sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")
echo "median remap ($MODE mode; CLI command -> connected on new gateway): $median ms over $RUNS runs; min $(echo "$sorted" | head -1) ms, max $(echo "$sorted" | tail -1) ms"
