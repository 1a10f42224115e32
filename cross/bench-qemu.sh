#!/usr/bin/env bash
# Plugin call cost and idle memory of the ARM release builds under qemu-user, the
# targets side by side in one run (under emulation only the ratio between them means
# something: aarch64 runs Cranelift's machine code, armv7 wasmtime's Pulley interpreter).
#
#   cross/bench-qemu.sh [TRIPLE...]     # default: aarch64 and armv7
#
# For each target: the release build from cross/build.sh (built if missing) runs under
# qemu with event_sending_plugin_example.wasm and a file sink; after a warm-up, it gets
# 1-event and 100-event requests over one keep-alive connection, and the plugin's call
# time is read from /metrics (outpost_plugin_call_microseconds_total over
# outpost_plugin_calls_total: the time the agent measures around the call, input
# encoding and output decoding included). Idle RSS is the qemu process's (agent and
# emulator) 2 s after /v1/health first answers.
set -euo pipefail
cd "$(dirname "$0")/.."
triples=("$@")
[ ${#triples[@]} -gt 0 ] || triples=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

cargo build --quiet --profile plugin --target wasm32-unknown-unknown -p event_sending_plugin_example
wasm=target/wasm32-unknown-unknown/plugin/event_sending_plugin_example.wasm

measure() { # measure TRIPLE
    local triple=$1 qemu sysroot bin dir port pid
    case "$triple" in
    aarch64-unknown-linux-gnu) qemu=qemu-aarch64 sysroot=/usr/aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) qemu=qemu-arm sysroot=/usr/arm-linux-gnueabihf ;;
    *) echo "unsupported target $triple" >&2; exit 2 ;;
    esac
    bin=target/cross/$triple/$triple/release/outpost
    [ -x "$bin" ] || cross/build.sh "$triple" >&2
    dir=$(mktemp -d)
    mkdir -p "$dir/plugins" "$dir/data"
    cp "$wasm" "$dir/plugins/"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$dir/outpost.toml" <<EOF
[agent]
listen = "127.0.0.1:$port"
data_dir = "$dir/data"
[plugins]
dir = "$dir/plugins"
active = ["event_sending_plugin_example"]
[plugins.settings.event_sending_plugin_example]
sink = "out"
[sinks.out]
type = "file"
path = "$dir/out.ndjson"
EOF
    RUST_LOG=warn "$qemu" -L "$sysroot" "$bin" run --config "$dir/outpost.toml" 2>"$dir/agent.log" &
    pid=$!
    local began=$SECONDS
    until curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null; do
        kill -0 $pid 2>/dev/null || { cat "$dir/agent.log" >&2; exit 1; }
        [ $((SECONDS - began)) -lt 300 ] || { echo "$triple: not ready in 300 s" >&2; exit 1; }
        sleep 0.2
    done
    sleep 2
    local rss
    rss=$(awk '/^VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$pid/status")
    python3 - "$triple" "$port" "$rss" "$(stat -c %s "$bin")" <<'EOF'
import http.client, json, re, sys
triple, port, rss, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
def call(method, path, body=None):
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, data
def plugin_stats():
    _, text = call("GET", "/metrics")
    calls = micros = 0
    for line in text.decode().splitlines():
        if 'plugin="event_sending_plugin_example"' not in line:
            continue
        if line.startswith("outpost_plugin_calls_total"):
            calls = float(line.split()[-1])
        elif line.startswith("outpost_plugin_call_microseconds_total"):
            micros = float(line.split()[-1])
    return calls, micros
event = {"type": "face", "camera": "entrance", "score": 0.97, "box": [10, 20, 110, 220],
         "note": "x" * 900}
def post(n, requests):
    body = json.dumps({"handler_id": "h", "account_id": "a", "events": [event] * n}).encode()
    for _ in range(requests):
        status, data = call("POST", "/v1/events", body)
        assert status == 202, (status, data)
post(1, 50)  # warm-up: first calls, page faults, the file sink's first writes
row = [triple, f"{size:,}", rss]
for n, requests in ((1, 300), (100, 100)):
    c0, m0 = plugin_stats()
    post(n, requests)
    c1, m1 = plugin_stats()
    per_call = (m1 - m0) / (c1 - c0)
    row.append(f"{per_call:,.0f} µs" + (f" ({per_call / n:,.1f} µs/event)" if n > 1 else ""))
print("| " + " | ".join(row) + " |")
EOF
    kill $pid
    wait $pid 2>/dev/null || true
    rm -rf "$dir"
}

echo "| target | stripped binary, bytes | idle RSS (qemu process) | call, 1 event | call, 100 events |"
echo "|---|---|---|---|---|"
for t in "${triples[@]}"; do measure "$t"; done
