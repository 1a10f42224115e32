#!/usr/bin/env bash
# Runs Outpost end to end with the example WASM plugins: builds the plugins and the
# agent, starts it with examples/outpost.toml, posts a sample request every second and
# shows the messages as the file sinks receive them. Ctrl-C stops everything.
#
#   examples/demo.sh          # run until Ctrl-C
#   examples/demo.sh --once   # post 3 requests, show what arrived, stop
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = "--once" ] && once=true
config=examples/outpost.toml
listen=127.0.0.1:8080
out=data/demo

# A fresh machine: the pinned toolchain and targets, a C compiler, curl.
tests/setup.sh demo

echo "== building the example plugins (wasm32) and the agent"
cargo build --quiet --profile plugin --target wasm32-unknown-unknown \
    -p event_sending_plugin_example -p request_monitoring_plugin -p teapot_plugin
mkdir -p target/plugins
for p in event_sending_plugin_example request_monitoring_plugin teapot_plugin; do
    cp "target/wasm32-unknown-unknown/plugin/$p.wasm" target/plugins/
done
cargo build --quiet -p outpost
bin=target/debug/outpost

"$bin" check --config "$config"
mkdir -p "$out"
"$bin" run --config "$config" 2> "$out/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null; echo; echo "agent stopped; its log: $out/agent.log"' EXIT

for _ in $(seq 1 600); do
    curl -sf "http://$listen/v1/health" >/dev/null && break
    kill -0 $agent 2>/dev/null || { cat "$out/agent.log"; exit 1; }
    sleep 0.1
done
echo "== outpost is up on $listen; data in $out"

post() {
    curl -sS -X POST "http://$listen/v1/events" -H "X-Request-Id: demo-$1" \
        -d "{\"handler_id\": \"entrance\", \"account_id\": \"acme\", \"events\": [{\"type\": \"face\", \"seq\": $1, \"score\": 0.97}]}"
    echo
}

if $once; then
    for i in 1 2 3; do post "$i"; done
    sleep 1.5
    echo "== $out/events.ndjson"; tail -n 3 "$out/events.ndjson"
    echo "== $out/monitoring.ndjson"; tail -n 1 "$out/monitoring.ndjson"
    echo "== GET /v1/health"; curl -s "http://$listen/v1/health"; echo
    echo "== GET /v1/plugins/teapot_plugin/teapot"; curl -si "http://$listen/v1/plugins/teapot_plugin/teapot" | sed -n '1p;$p'; echo
    exit 0
fi

( i=0; while sleep 1; do i=$((i + 1)); post "$i" >/dev/null; done ) &
poster=$!
trap 'kill $poster $agent 2>/dev/null; wait $agent 2>/dev/null; echo; echo "agent stopped; its log: $out/agent.log"' EXIT
echo "== posting a request every second; messages as they arrive (Ctrl-C to stop):"
touch "$out/events.ndjson"
tail -n 0 -f "$out/events.ndjson"
