#!/usr/bin/env bash
# Remap latency: the time from running `registry remap` to the device being
# connected on its new gateway, as a user would see it (it includes starting
# the CLI process). One device on an idle platform, RUNS remaps alternating
# between gw-1 and gw-2; prints each sample and the median.
#
#   bench/remap-latency.sh [RUNS]     (default 11; release build)
#
# The platform runs in its default secure mode: the CLIs log in with the
# bootstrap admin token, and the device is enrolled and checks the
# platform's key. WALKTHROUGH=1 runs it in walkthrough mode instead.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-11}
cargo build --release -q -p broker -p registry -p verifier -p device-sim
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
  printf '[security]\nmode = "walkthrough"\n' >> "$WORK/bench.toml"
  ADMIN=(--walkthrough)
  DEVICE=(--walkthrough)
else
  ADMIN=(--password-file "$WORK/data/credentials/admin.token")
  DEVICE=(--platform-key-file "$WORK/data/platform.key.pub")
fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

RUST_LOG=warn "$BIN/broker" --config "$WORK/bench.toml" --data-dir "$WORK/data" >/dev/null 2>&1 &
PIDS+=($!)
REG=(--broker "127.0.0.1:$BASE" "${ADMIN[@]}")
until "$BIN/registry" "${REG[@]}" --json gateways 2>/dev/null | grep -c '"alive": true' | grep -q 2; do sleep 0.1; done

DEV=6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b
PASS_TMP=bench-remap-pass
"$BIN/verifier" "${REG[@]}" enroll --uuid "$DEV" --pass-tmp "$PASS_TMP" >/dev/null
# Stamp every device-sim line with the wall clock, in nanoseconds.
"$BIN/device-sim" --broker "127.0.0.1:$BASE" --uuid "$DEV" --pass-tmp "$PASS_TMP" \
  --gateway-only "${DEVICE[@]}" \
  > >(while IFS= read -r line; do echo "$(date +%s%N) $line"; done > "$WORK/device.log") &
PIDS=("$!" "${PIDS[@]}")
until grep -q "connected to" "$WORK/device.log" 2>/dev/null; do sleep 0.05; done

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
echo "median remap (CLI command -> connected on new gateway): $median ms over $RUNS runs; min $(echo "$sorted" | head -1) ms, max $(echo "$sorted" | tail -1) ms"
