#!/usr/bin/env bash
# Proxy benchmarks, side by side in one run on this machine: the fixture app directly (the floor),
# understudy (running only; running + mirrored testing; hung testing), nginx (plain reverse proxy;
# with `mirror`), and a promotion under load. Prints a table; docs/benchmarks.md keeps results.
#
#   bash benches/proxy.sh            # 15 s per case at 1, 32 and 128 connections
#   DURATION=5 CONNS="32" bash benches/proxy.sh
#   CASES="mirror" US_ENV='DIFF_SAMPLE=0\nNOISE_CANCEL=off\n' APP_FLAGS=--noisy bash benches/proxy.sh
#
# CASES picks cases (direct nginx running mirror hung promotion; default all); US_ENV adds .env
# lines to the understudy of cases 2 and 3; APP_FLAGS adds fixture-app flags to its builds.
#
# Installs wrk and nginx from Debian's packages if missing. Never run by `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"1 32 128"}   # 1 connection shows the hop's own latency; 32 and 128 show load
THREADS=${THREADS:-2}
CASES=${CASES:-all}
US_ENV=${US_ENV:-}
APP_FLAGS=${APP_FLAGS:-}
want() { [ "$CASES" = all ] || [[ " $CASES " == *" $1 "* ]]; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q
if want promotion; then cargo bench -q --bench switch --no-run 2>/dev/null; fi
BIN=$PWD/target/release/understudy
WORK=$(mktemp -d /tmp/understudy-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/report.lua" <<'LUA'
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", s.requests, s.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout + e.status))
end
LUA

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
wait_body() { for _ in $(seq 400); do curl -s "http://127.0.0.1:$1/" | grep -q "$2" && return 0; sleep 0.05; done; echo "no '$2' on $1" >&2; return 1; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }  # current, at the end of the case

# run_case NAME PORT [PID-to-measure]
run_case() {
  local name=$1 port=$2 pid=${3:-}
  for c in $CONNS; do
    local t=$(( c < THREADS ? c : THREADS ))
    wrk -t"$t" -c"$c" -d"${WARMUP}s" "http://127.0.0.1:$port/api/items" >/dev/null 2>&1 || true
    local t0=0; [ -n "$pid" ] && t0=$(cpu_ticks "$pid")
    local out; out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" -s "$WORK/report.lua" "http://127.0.0.1:$port/api/items" 2>&1 | grep RESULT)
    local cpu="-" rss="-"
    if [ -n "$pid" ]; then
      cpu=$(( ( $(cpu_ticks "$pid") - t0 ) * 100 / (DURATION * $(getconf CLK_TCK)) ))%
      rss="$(( $(rss_kib "$pid") / 1024 ))MiB"
    fi
    read -r _ req dur p50 p99 p999 err <<<"$out"
    local rps=$(( req * 1000000 / dur ))
    printf "%s %s %s %s %s %s %s %s %s\n" "$name" "$c" "$rps" "$p50" "$p99" "$p999" "$err" "$cpu" "$rss" >> "$WORK/results"
    printf "%-28s c=%-4s %8s req/s  p50 %6sus  p99 %6sus  p99.9 %6sus  errors %s  cpu %s  rss %s\n" "$name" "$c" "$rps" "$p50" "$p99" "$p999" "$err" "$cpu" "$rss"
  done
}

app() { # app PORT VERSION [faults...]
  local port=$1 v=$2; shift 2
  "$BIN" fixture-app --version "$v" --port "$port" --quiet "$@" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

build() { # build BASE VERSION [faults]
  printf '#!/bin/sh\nexec %s fixture-app --version %s --quiet %s\n' "$BIN" "$2" "${3:-}" > "$1/.tmp-$2"
  chmod +x "$1/.tmp-$2"; mv "$1/.tmp-$2" "$1/app-$2"
}

# start_understudy DIR PORT RANGE EXTRA-ENV LOG: sets USPID to understudy's pid once it listens.
start_understudy() {
  mkdir -p "$1"
  printf 'IDENTIFIER=app\nLISTEN=127.0.0.1:%s\nPORT_RANGE=%s\nSETTLE_TIME=100ms\n%b' "$2" "$3" "$4" > "$1/.env"
  "$BIN" run --base "$1" 2>"$5" &
  USPID=$!; PIDS+=($USPID)
  wait_port "$2"
}
# mirror_status BASE: what understudy's admin API says about the mirror and the diffs.
mirror_status() {
  curl -s --unix-socket "$1/.understudy/admin.sock" http://admin/api/status | python3 -c '
import json, sys
s = json.load(sys.stdin); c = s.get("counters", {})
bodies = next((p["detail"] for p in ((s.get("verdict") or {}).get("parts") or []) if p.get("name") == "bodies"), "-")
sec = "up" if s.get("secondary") else "none"
m, d = c.get("mirrored"), c.get("dropped_copies")
print(f"mirror: {m} copies, {d} dropped; secondary {sec}; bodies: {bodies}")' || true
}
wait_testing() { for _ in $(seq 200); do [ -L "$1/testing" ] && break; sleep 0.05; done; }
stop_understudy() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

echo "understudy benchmarks: $(nproc) cores, wrk -t$THREADS, ${DURATION}s per case after ${WARMUP}s warm-up"
: > "$WORK/results"

# 1. Direct.
if want direct || want nginx; then
mkdir -p "$WORK/direct" && cd "$WORK/direct"
app 18001 1.0.0; app 18002 1.0.0
cd - >/dev/null
fi
if want direct; then run_case direct 18001; fi

# 4. nginx, plain and mirrored (to the second app instance).
cat > "$WORK/nginx.conf" <<NGX
worker_processes 2;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  upstream app { server 127.0.0.1:18001; keepalive 256; }
  upstream mirror_app { server 127.0.0.1:18002; keepalive 256; }
  server { listen 127.0.0.1:18101;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18102;
    location / { mirror /__mirror; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /__mirror { internal; proxy_pass http://mirror_app\$request_uri; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
if want nginx; then
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g "daemon on;" 2>/dev/null
wait_port 18101
run_case nginx-plain 18101
run_case nginx-mirror 18102
kill "$(cat "$WORK/nginx.pid")"; rm -f "$WORK/nginx.pid"
fi

# 2 and 3. understudy: running only, then running + testing (every GET mirrored), then hung testing.
B=$WORK/base
if want running || want mirror; then
start_understudy "$B" 18200 18300-18349 "STABLE_WINDOW=1h\nLOG_LEVEL=warn\n$US_ENV" "$WORK/understudy.log"
UPID=$USPID
build "$B" 1.0.0 "$APP_FLAGS"; wait_body 18200 "1.0.0"
if want running; then run_case understudy-running 18200 "$UPID"; fi
if want mirror; then
  build "$B" 1.1.0 "$APP_FLAGS"; wait_testing "$B"
  run_case understudy-mirror 18200 "$UPID"
  mirror_status "$B"
fi
stop_understudy "$UPID"
fi

# 3b. A fresh understudy whose testing instance hangs (answers after 10 s): users must not notice,
# and memory must stay bounded (measured in its own process, so earlier cases do not count).
if want hung; then
H=$WORK/hung
start_understudy "$H" 18205 18350-18399 'STABLE_WINDOW=1h\nLOG_LEVEL=warn\n' "$WORK/hung.log"
HPID=$USPID
build "$H" 1.0.0; wait_body 18205 "1.0.0"
build "$H" 1.1.0 "--slow-ms 10000"; wait_testing "$H"
run_case understudy-mirror-hung 18205 "$HPID"
stop_understudy "$HPID"
fi

# 5. A promotion under 128 connections of load: errors, and the switch's own latency.
if want promotion; then
P=$WORK/promote
start_understudy "$P" 18210 18400-18499 'STABLE_WINDOW=3s\nMIN_MIRRORED=100\nEVALUATE_EVERY=250ms\nLOG_LEVEL=info\n' "$WORK/promote.log"
PPID2=$USPID
build "$P" 1.0.0; wait_body 18210 "1.0.0"
(sleep 2; build "$P" 1.1.0) &
# Our own load generator here: it reports latency per second, so the switch second can be compared.
cargo bench -q --bench switch -- 127.0.0.1:18210 128 12 /api/items > "$WORK/switch.txt"
python3 - "$WORK/promote.log" "$WORK/switch.txt" <<'PY'
import json, re, sys, statistics
from datetime import datetime, timezone
ts = lambda l: datetime.fromisoformat(l.split()[0].rstrip('Z')).replace(tzinfo=timezone.utc)
ev = []
for l in open(sys.argv[1]):
    m = re.search(r'(\{"event".*\})\s*$', l)
    if m: ev.append((ts(l), json.loads(m.group(1))))
seconds = [l.split()[1:] for l in open(sys.argv[2]) if l.startswith("SECOND")]
seconds = [(int(s), int(n), int(e), int(p50), int(p99)) for s, n, e, p50, p99 in seconds]
total = sum(n for _, n, _, _, _ in seconds); errors = sum(e for _, _, e, _, _ in seconds)
first = lambda pred: next((t for t, e in ev if pred(e)), None)
verdict = first(lambda e: e["event"] == "scored" and e["verdict"] == "promote")
started = first(lambda e: e["event"] == "started" and e["role"] == "running" and e["version"] == "1.1.0")
ready = first(lambda e: e["event"] == "ready" and e["role"] == "running" and e["version"] == "1.1.0")
promoted = first(lambda e: e["event"] == "promoted")
print(f"promotion-under-load c=128: {total} requests in {len(seconds)} s, errors {errors}")
if None in (verdict, started, ready, promoted):
    print("promotion: none seen"); sys.exit(0)
ms = lambda d: d.total_seconds() * 1000
print(f"promotion latency: verdict→traffic {ms(promoted - verdict):.1f} ms, of which app start→ready {ms(ready - started):.1f} ms; understudy's own part {ms(promoted - verdict) - ms(ready - started):.1f} ms")
switch = int(promoted.timestamp())
steady = [p99 for s, n, e, p50, p99 in seconds[1:-1] if abs(s - switch) > 1]
at = [p99 for s, n, e, p50, p99 in seconds if s == switch]
if steady and at:
    base = statistics.median(steady)
    print(f"switch second p99 {at[0]} µs vs steady median p99 {base:.0f} µs ({at[0] / base:.2f}×)")
for s, n, e, p50, p99 in seconds:
    mark = "  <- switch" if s == switch else ""
    print(f"  second {s - seconds[0][0]:>2}: {n:>6} req, {e} errors, p50 {p50} µs, p99 {p99} µs{mark}")
PY
stop_understudy "$PPID2"
fi

echo
python3 - "$WORK/results" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
by = {(r[0], r[1]): r for r in rows}
print("| case | conns | req/s | p50 µs | p99 µs | p99.9 µs | errors | understudy CPU | understudy RSS | vs direct | vs nginx |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    name, c = r[0], r[1]
    d = by.get(("direct", c)); n = by.get(("nginx-mirror" if "mirror" in name else "nginx-plain", c))
    vd = f"{int(r[2])/int(d[2]):.2f}×" if d and name != "direct" else "-"
    vn = f"{int(r[2])/int(n[2]):.2f}×" if n and name.startswith("understudy") else "-"
    print(f"| {name} | {c} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | {r[8]} | {vd} | {vn} |")
PY
