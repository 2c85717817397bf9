#!/usr/bin/env bash
# Load test over real HTTP: wrk against the example server on loopback, the same
# handler with the layer (a repeated, so cached, token) and without it.
#
#   scripts/load_test.sh [SECONDS] [CONNECTIONS]      (defaults: 10 s, 32 connections)
#
# Needs wrk (Debian: apt-get install wrk) and openssl. Prints requests per second and
# latency percentiles for GET /system/healthz (protected) and GET /healthz (open).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-32}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --example server --example key2jwt
dir=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
openssl genrsa -out "$dir/system-user-1.pem" 2048 2>/dev/null
openssl rsa -in "$dir/system-user-1.pem" -pubout -out "$dir/system-user-1.pub" 2>/dev/null
cat > "$dir/config.yaml" <<YAML
ExternalDomain: localhost
ExternalPort: 8080
ExternalSecure: false
SystemAPIUsers:
  - system-user-1:
      Path: system-user-1.pub
YAML
RUST_LOG=warn target/release/examples/server --config "$dir/config.yaml" --listen 127.0.0.1:0 > "$dir/out" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/out")
token=$(target/release/examples/key2jwt --audience http://localhost:8080 \
  --key "$dir/system-user-1.pem" --issuer system-user-1 --lifetime 3600)
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/system/healthz")" = 200

echo "== with the layer (cached token): GET /system/healthz"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$url/system/healthz"
echo "== without the layer: GET /healthz (same handler, same Authorization header)"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$url/healthz"
