#!/usr/bin/env bash
# User-space instructions per proxied request, understudy against HAProxy, under callgrind.
# Wall-clock figures on a shared 2-core machine move by ±20 % between runs; instruction counts
# repeat within about 3 %, so this is how single changes to the request path are judged
# (docs/benchmarks.md, "Proxy speed, December"). Counts user space only: the kernel's share
# (sockets, wakeups) is not in it.
#
#   bash benches/instructions.sh                 # dist build of this tree, and HAProxy
#   US_BIN=/other/understudy CONNS=128 bash benches/instructions.sh
#   KEEP_WORK=1 bash benches/instructions.sh     # keeps the callgrind files for callgrind_annotate
#
# Each proxy runs under `valgrind --tool=callgrind` in front of a static nginx (2-byte answer;
# understudy's running build is a script that execs it); wrk -t1 warms up for 3 s, the counters
# are zeroed, wrk runs 10 s, and the instructions counted are divided by the requests wrk
# completed. Installs valgrind, wrk, nginx and haproxy from Debian if missing. Never run by
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
CONNS=${CONNS:-8}
US_BIN=${US_BIN:-}
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ -z "$US_BIN" ]; then cargo build --profile dist -q; fi
BIN=${US_BIN:-$PWD/target/dist/understudy}
WORK=$(mktemp -d /tmp/understudy-instr.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/backend/nginx.pid "$WORK"/base/*/*/nginx.pid; do
    if [ -f "$f" ]; then kill "$(cat "$f" 2>/dev/null)" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK (callgrind_annotate $WORK/understudy.cg.*)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

write_static_sh "$WORK/static.sh" "$NGINX"

answers_ok() { # answers_ok PORT: wait (up to 2 minutes: valgrind is slow) for `ok`
  for _ in $(seq 600); do
    [ "$(curl -s "http://127.0.0.1:$1/" 2>/dev/null)" = ok ] && return 0
    sleep 0.2
  done
  echo "nothing answered ok on port $1" >&2
  return 1
}

# measure NAME PID PORT: warm up, zero, measure, dump; prints instructions per request.
measure() {
  wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:$3/" >/dev/null
  callgrind_control -z "$2" >/dev/null 2>&1
  local out req ir f=""
  out=$(wrk -t1 -c"$CONNS" -d10s "http://127.0.0.1:$3/")
  callgrind_control -d "$2" >/dev/null 2>&1
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  for _ in $(seq 100); do
    f=$(ls "$WORK/$1.cg".* 2>/dev/null | tail -1 || true)
    [ -n "$f" ] && grep -q '^totals:\|^summary:' "$f" && break
    sleep 0.1
  done
  ir=$(grep -h '^summary:\|^totals:' "$f" | head -1 | awk '{print $2}')
  printf '%-10s %3d connections: %7d requests, %11d instructions, %6d per request\n' \
    "$1" "$CONNS" "$req" "$ir" $((ir / req))
}

echo "user-space instructions per request under callgrind (wrk -t1 -c$CONNS, 10 s after 3 s)"

# HAProxy (benches/common.sh), in front of its own static backend.
mkdir -p "$WORK/backend"
(cd "$WORK/backend" && PORT=19401 exec "$WORK/static.sh" >/dev/null 2>&1) &
PIDS+=($!)
write_haproxy_cfg "$WORK/haproxy.cfg" 19411 19401
valgrind -q --tool=callgrind --callgrind-out-file="$WORK/haproxy.cg" \
  "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HPID=$!
PIDS+=($HPID)
answers_ok 19411
measure haproxy "$HPID" 19411
kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true

# understudy: running only, its build the same static nginx.
mkdir -p "$WORK/base"
printf 'IDENTIFIER=app\nLISTEN=127.0.0.1:19200\nPORT_RANGE=19300-19349\nSETTLE_TIME=100ms\nSTABLE_WINDOW=1h\nLOG_LEVEL=warn\n' \
  > "$WORK/base/.env"
# The watchdog runs understudy's file itself: `/proc/self/exe` would be valgrind's tool.
UNDERSTUDY_WATCHDOG_EXE="$BIN" valgrind -q --tool=callgrind --callgrind-out-file="$WORK/understudy.cg" \
  "$BIN" run --base "$WORK/base" 2>"$WORK/understudy.log" &
UPID=$!
PIDS+=($UPID)
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:19200/" && break; sleep 0.2; done
printf '#!/bin/sh\nexec %s\n' "$WORK/static.sh" > "$WORK/base/.tmp-app"
chmod +x "$WORK/base/.tmp-app"
mv "$WORK/base/.tmp-app" "$WORK/base/app-1.0.0"
answers_ok 19200
measure understudy "$UPID" 19200
kill -TERM "$UPID"; wait "$UPID" 2>/dev/null || true
