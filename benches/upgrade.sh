#!/bin/bash
# Upgrading understudy itself under load (issue 25): wrk on 32 kept-alive connections for 12 s
# against a fixture build behind understudy; `understudy upgrade` (same binary) at 4 s. Prints
# wrk's latency, its socket errors and non-2xx answers (none expected), how long the command took,
# and that running kept its pid while understudy's changed. ROUNDS runs (default 3), then one
# without an upgrade to compare. Never run by `cargo test`.
#
#   bash benches/upgrade.sh                   # builds the dist profile first
#   US_BIN=target/dist/understudy bash benches/upgrade.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${US_BIN:-}" ]; then
  cargo build -q --profile dist
  US_BIN=target/dist/understudy
fi
BIN=$(realpath "$US_BIN")
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
WORK=$(mktemp -d /tmp/understudy-upgrade-XXXX)
trap 'pkill -f "run --base $WORK" || true; rm -rf "$WORK"' EXIT

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

one() { # one 1|0: a run with or without an upgrade
  local B; B=$(mktemp -d "$WORK/base-XXXX")
  printf 'IDENTIFIER=app\nPORT_RANGE=24000-24009\nLISTEN=127.0.0.1:0\nADMIN_LISTEN=127.0.0.1:0\nNOISE_CANCEL=off\n' > "$B/.env"
  printf "#!/bin/sh\nexec '%s' fixture-app --version 1.0.0\n" "$BIN" > "$B/.t"
  chmod +x "$B/.t" && mv "$B/.t" "$B/app-1.0.0"
  "$BIN" run --base "$B" 2> "$B/log" &
  local old=$! addr=""
  for _ in $(seq 100); do
    sleep 0.1
    addr=$(json "$B/.understudy/admin.json" proxy 2>/dev/null) && curl -sf "http://$addr/" >/dev/null && break
  done
  local running; running=$(json "$B/app-1.0.0/1/instance.json" pid)
  local upgrading=""
  if [ "$1" = 1 ]; then
    (sleep 4; /usr/bin/time -f "  upgrade command: %e s" "$BIN" upgrade --base "$B" >/dev/null) &
    upgrading=$!
  fi
  wrk -t2 -c32 -d12s --latency "http://$addr/" > "$B/wrk.txt"
  if [ -n "$upgrading" ]; then wait "$upgrading"; fi
  local now; now=$(json "$B/.understudy/admin.json" pid)
  echo "  understudy $old -> $now; running $running -> $(json "$B/app-1.0.0/1/instance.json" pid)"
  grep -E "Latency |99%|requests in|Non-2xx|Socket errors" "$B/wrk.txt" | sed 's/^ */  /'
  kill "$now" 2>/dev/null || true
  sleep 2
}

for r in $(seq "${ROUNDS:-3}"); do echo "round $r, with an upgrade:"; one 1; done
echo "without an upgrade:"; one 0
