#!/usr/bin/env bash
# The sidecar's speed over real HTTP on loopback, with a repeated (so cached) token:
#   - forward-auth: `GET /auth` against `GET /healthz` on the same sidecar
#     (target: /auth takes at most 1.15 times the time per request of /healthz);
#   - reverse proxy: a request through `serve --upstream` against the same request
#     through a plain hyper reverse proxy (examples/plain_proxy.rs) to the same
#     upstream, the example server's open /healthz (target: at most 1.3 times).
#
#   scripts/sidecar_load.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults: 5, 5 s, 32)
#
# Each round runs every case for SECONDS with wrk (2 threads), in an order that
# alternates between rounds, so that each ratio compares figures taken close
# together; the figures are the medians over the rounds. Needs wrk and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-5}
connections=${3:-32}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --features cli --bin zitadel-system-auth --example server --example plain_proxy
bin=target/release/zitadel-system-auth
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

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
token=$("$bin" mint --audience http://localhost:8080 --key "$dir/system-user-1.pem" --issuer system-user-1)

# Starts a server (in this shell, so that the trap above stops it) and waits until it
# prints the URL it listens on; `url NAME` prints that URL.
start() {
  local name=$1; shift
  RUST_LOG=error "$@" > "$dir/$name.out" 2> "$dir/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    grep -q "^listening on" "$dir/$name.out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name did not start: $(cat "$dir/$name.err")" >&2
  exit 1
}
url() { sed -n 's/^listening on //p' "$dir/$1.out"; }

start upstream target/release/examples/server --config "$dir/config.yaml" --listen 127.0.0.1:0
upstream=$(url upstream)
start forward "$bin" serve --config "$dir/config.yaml" --listen 127.0.0.1:0
forward=$(url forward)
start proxy "$bin" serve --config "$dir/config.yaml" --listen 127.0.0.1:0 --upstream "$upstream"
proxy=$(url proxy)
start plain target/release/examples/plain_proxy --listen 127.0.0.1:0 --upstream "$upstream"
plain=$(url plain)

auth="Authorization: Bearer $token"
for check in "$forward/auth" "$proxy/healthz"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "$check")
  [ "$code" = 200 ] || { echo "$check answered $code" >&2; exit 1; }
done

cases=(auth healthz proxy plain)
declare -A url=([auth]="$forward/auth" [healthz]="$forward/healthz" [proxy]="$proxy/healthz" [plain]="$plain/healthz")
declare -A results
for round in $(seq "$rounds"); do
  order=("${cases[@]}")
  if (( round % 2 == 0 )); then order=(plain proxy healthz auth); fi
  for case in "${order[@]}"; do
    rps=$(wrk -t2 -c"$connections" -d"${seconds}s" -H "$auth" "${url[$case]}" | awk '/^Requests\/sec:/ {print $2}')
    results[$case]="${results[$case]:-} $rps"
    echo "round $round: $case ${rps} requests/s" >&2
  done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A med
for case in "${cases[@]}"; do med[$case]=$(echo "${results[$case]}" | median); done

echo
echo "| case | requests/s (median of $rounds rounds of ${seconds} s, $connections connections) |"
echo "| --- | ---: |"
echo "| sidecar GET /healthz | ${med[healthz]} |"
echo "| sidecar GET /auth, repeated token | ${med[auth]} |"
echo "| plain hyper reverse proxy, GET /healthz | ${med[plain]} |"
echo "| sidecar reverse proxy, GET /healthz, repeated token | ${med[proxy]} |"
echo
awk -v a="${med[auth]}" -v h="${med[healthz]}" -v p="${med[proxy]}" -v q="${med[plain]}" 'BEGIN {
  fa = h / a; fp = q / p;
  printf "/auth time per request / /healthz: %.3f (target <= 1.15): %s\n", fa, (fa <= 1.15 ? "PASS" : "FAIL");
  printf "reverse proxy / plain hyper proxy: %.3f (target <= 1.3): %s\n", fp, (fp <= 1.3 ? "PASS" : "FAIL");
}'
