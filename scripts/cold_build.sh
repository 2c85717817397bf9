#!/usr/bin/env bash
# Cold build times (issue 12, point 4), with the crates already downloaded:
#
#   1. `cargo run --example quickstart -- --once` on a fresh target folder: the
#      time from the start to the quickstart's first line on stdout
#      (target: under 100 s on 2 cores);
#   2. then `cargo test --no-run`: how much longer the tests take to build
#      (target: under 60 s more), and then `cargo test` itself, which only runs
#      them (printed apart; skip it with --no-test-run).
#
#   scripts/cold_build.sh [--no-test-run] [OUT]
#
# Both builds run with `--timings`; their HTML reports are copied to OUT (default:
# a new folder under /tmp, outside the repository), and the slowest units of
# each are printed. The target folder is a new one in a temporary folder
# (CARGO_TARGET_DIR=$(mktemp -d)/target: made by cargo, so that it is marked
# with CACHEDIR.TAG like any target folder, which tests/example_server.rs looks
# for), removed at the end (KEEP_TARGET=1 keeps it).
# Anything else running on the machine slows this down: note the load printed
# at the start and the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

run_tests=1
if [ "${1:-}" = "--no-test-run" ]; then
  run_tests=0
  shift
fi
out=${1:-$(mktemp -d /tmp/cold-build.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Downloads are not part of the measurement.
cargo fetch --locked >/dev/null

scratch=$(mktemp -d /tmp/cold-target.XXXXXX)
target=$scratch/target
export CARGO_TARGET_DIR=$target
if [ "${KEEP_TARGET:-0}" != 1 ]; then
  trap 'rm -rf "$scratch"' EXIT
fi

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
timing_report() { ls -t "$target"/cargo-timings/cargo-timing-2*.html 2>/dev/null | head -n 1; }

echo "cold build of $repo ($(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD || echo ', with changes')), target $target"
echo "$(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo --version
echo

# 1. The quickstart: the time of its first stdout line, written by a reader that
# passes every line on.
first_line_at="$out/quickstart.first-line-at"
rm -f "$first_line_at"
start=$(now)
set +e
cargo run --locked --timings --example quickstart -- --once 2>"$out/quickstart.stderr" |
  while IFS= read -r line; do
    [ -e "$first_line_at" ] || now >"$first_line_at"
    printf '%s\n' "$line" >>"$out/quickstart.stdout"
  done
quickstart_status=${PIPESTATUS[0]}
set -e
quickstart_done=$(now)
if [ ! -s "$first_line_at" ]; then
  echo "the quickstart printed nothing (exit status $quickstart_status): see $out/quickstart.stderr" >&2
  exit 1
fi
first=$(cat "$first_line_at")
cp "$(timing_report)" "$out/timings-quickstart.html"
echo "quickstart: first line after $(seconds "$start" "$first") s (target < 100 s), exit status $quickstart_status after $(seconds "$start" "$quickstart_done") s"
echo "  first line: $(head -n 1 "$out/quickstart.stdout")"

# 2. The tests, built after it, then run.
test_start=$(now)
cargo test --locked --timings --no-run 2>"$out/test-build.stderr"
test_built=$(now)
cp "$(timing_report)" "$out/timings-test.html"
echo "cargo test --no-run after it: $(seconds "$test_start" "$test_built") s (target < 60 s)"
if [ "$run_tests" = 1 ]; then
  set +e
  cargo test --locked >"$out/test-run.log" 2>&1
  test_status=$?
  set -e
  test_done=$(now)
  echo "cargo test (running the tests, already built): $(seconds "$test_built" "$test_done") s more, exit status $test_status; build and run: $(seconds "$test_start" "$test_done") s"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# The slowest units of each build, from the data in the timing reports.
python3 - "$out/timings-quickstart.html" "$out/timings-test.html" <<'PY'
import json, re, sys

for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    match = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
    if not match:
        print(f"{path}: no UNIT_DATA found")
        continue
    units = json.loads(match.group(1))
    total = re.search(r"<td>Total time:</td><td>([^<]*)</td>", text)
    print(f"{path} (total {total.group(1) if total else '?'}, {len(units)} units); slowest:")
    for unit in sorted(units, key=lambda u: -u["duration"])[:12]:
        what = unit["target"].strip() or "lib"
        print(f"  {unit['duration']:6.1f} s  {unit['name']} {unit['version']}{what and ' ' + what}")
PY
echo
echo "reports and logs: $out"
