#!/usr/bin/env bash
# Proxy benchmarks, side by side in one run on this machine: the backend directly (the floor),
# understudy (running only; running + mirrored testing; hung testing), nginx (plain reverse proxy;
# with `mirror`), HAProxy (plain), and a promotion under load. Prints a table; docs/benchmarks.md
# keeps results.
#
#   bash benches/proxy.sh            # 15 s per case at 1, 32 and 128 connections
#   DURATION=5 CONNS="32" bash benches/proxy.sh
#   CASES="mirror" US_ENV='DIFF_SAMPLE=0\nNOISE_CANCEL=off\n' APP_FLAGS=--noisy bash benches/proxy.sh
#   BACKEND=static ROUNDS=3 CASES="direct nginx haproxy running mirror" bash benches/proxy.sh
#
# CASES picks cases (direct nginx haproxy running mirror hung promotion; default all); US_ENV adds
# .env lines to the understudy of cases 2 and 3; APP_FLAGS adds fixture-app flags to its builds.
# BACKEND=static replaces the fixture app by nginx answering a fixed 2-byte body (`ok`), so the
# backend is not the bottleneck; understudy's builds are then a script that execs such an nginx on
# $PORT (hung and promotion need the fixture app and are skipped). ROUNDS repeats the cases
# direct..mirror, rotating their order each round, and prints medians. US_BIN measures another
# understudy binary (no build). PEER_AFFINITY=1 binds nginx's workers and HAProxy's threads to a
# CPU each (worker_cpu_affinity auto; cpu-map), as understudy's CPU_AFFINITY=auto does its own;
# off by default, as in their own defaults. For every proxy the CPU time of all its processes (utime + stime
# from /proc) over the measured interval is reported, as a share of one core and per request.
#
# Installs wrk, nginx and haproxy from Debian's packages if missing. Never run by `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"1 32 128"}   # 1 connection shows the hop's own latency; 32 and 128 show load
THREADS=${THREADS:-2}
CASES=${CASES:-all}
US_ENV=${US_ENV:-}
APP_FLAGS=${APP_FLAGS:-}
BACKEND=${BACKEND:-app}      # app (the fixture app) or static (nginx, fixed 2-byte body)
ROUNDS=${ROUNDS:-1}
US_BIN=${US_BIN:-}
want() { [ "$CASES" = all ] || [[ " $CASES " == *" $1 "* ]]; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if want haproxy; then command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy); fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [ -z "$US_BIN" ]; then cargo build --profile dist -q; fi
if want promotion && [ "$BACKEND" = app ]; then cargo bench -q --profile dist --bench switch --no-run 2>/dev/null; fi
BIN=${US_BIN:-$PWD/target/dist/understudy}
WORK=$(mktemp -d /tmp/understudy-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/haproxy.pid" ] && kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
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

wait_body() { for _ in $(seq 400); do curl -s "http://127.0.0.1:$1/" | grep -q "$2" && return 0; sleep 0.05; done; echo "no '$2' on $1" >&2; return 1; }
# A proxy's processes are given as pids (threads are counted in their process); not their children,
# which for understudy are the builds it runs.
with_children() { local p; for p in "$@"; do echo "$p"; pgrep -P "$p" || true; done; }
cpu_ticks() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo "$t"; }
rss_kib() { local t=0 p; for p in "$@"; do t=$(( t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo "$t"; }  # current, at the end of the case
ROUND=1

# run_case NAME PORT [PIDS to measure, space-separated]
run_case() {
  local name=$1 port=$2 pids=${3:-}
  for c in $CONNS; do
    local t=$(( c < THREADS ? c : THREADS ))
    wrk -t"$t" -c"$c" -d"${WARMUP}s" "http://127.0.0.1:$port/api/items" >/dev/null 2>&1 || true
    local t0=0; [ -n "$pids" ] && t0=$(cpu_ticks $pids)
    local out; out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" -s "$WORK/report.lua" "http://127.0.0.1:$port/api/items" 2>&1 | grep RESULT)
    local ticks=-1 cpu="-" rss="-" per="-"
    [ -n "$pids" ] && ticks=$(( $(cpu_ticks $pids) - t0 ))
    read -r _ req dur p50 p99 p999 err <<<"$out"
    local rps=$(( req * 1000000 / dur ))
    if [ -n "$pids" ]; then
      cpu=$(( ticks * 100 * 1000000 / (dur * $(getconf CLK_TCK)) ))%
      per=$(( ticks * 1000000 * 10 / ($(getconf CLK_TCK) * req) ))  # tenths of a µs
      per=$(( per / 10 )).$(( per % 10 ))
      rss="$(( $(rss_kib $pids) / 1024 ))MiB"
    fi
    printf "%s %s %s %s %s %s %s %s %s %s %s\n" "$name" "$c" "$rps" "$p50" "$p99" "$p999" "$err" "$cpu" "$rss" "$per" "$ROUND" >> "$WORK/results"
    printf "%-22s c=%-4s %8s req/s  p50 %6sus  p99 %6sus  p99.9 %6sus  errors %s  cpu %s = %s us/req  rss %s\n" "$name" "$c" "$rps" "$p50" "$p99" "$p999" "$err" "$cpu" "$per" "$rss"
  done
}

app() { # app PORT VERSION [faults...]
  local port=$1 v=$2; shift 2
  "$BIN" fixture-app --version "$v" --port "$port" --quiet "$@" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

# The static backend: nginx in the foreground on $PORT answering `ok` to everything, its files
# in the current directory (an understudy instance folder, or one of ours).
write_static_sh "$WORK/static.sh" "$NGINX"

static() { # static PORT: a static backend of ours
  mkdir -p "$WORK/static-$1"
  (cd "$WORK/static-$1" && PORT=$1 exec "$WORK/static.sh" >/dev/null 2>&1) &
  PIDS+=($!)
  wait_port "$1"
}

build() { # build BASE VERSION [faults]
  if [ "$BACKEND" = static ]; then
    printf '#!/bin/sh\nexec %s\n' "$WORK/static.sh" > "$1/.tmp-$2"
  else
    printf '#!/bin/sh\nexec %s fixture-app --version %s --quiet %s\n' "$BIN" "$2" "${3:-}" > "$1/.tmp-$2"
  fi
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

# Backends: the fixture app (or the static nginx) on 18001, and a second one on 18002 for
# nginx's mirror.
if want direct || want nginx || want haproxy; then
  if [ "$BACKEND" = static ]; then
    static 18001; static 18002
  else
    mkdir -p "$WORK/direct" && cd "$WORK/direct"
    app 18001 1.0.0; app 18002 1.0.0
    cd - >/dev/null
  fi
fi

# nginx, plain and mirrored (to the second backend).
write_nginx_cfg "$WORK" 18101 18001 18102 18002
if want nginx; then
  "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g "daemon on;" 2>/dev/null
  wait_port 18101; wait_port 18102
fi

# HAProxy: 2 threads, idle server connections shared between users, no logging.
write_haproxy_cfg "$WORK/haproxy.cfg" 18111 18001 "$WORK/haproxy.pid"
if want haproxy; then
  "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  HAPID=$!; PIDS+=($HAPID)
  wait_port 18111
fi

# understudy: one with a running instance only, one with running + testing (every GET mirrored).
RUNNING_BODY=1.0.0; [ "$BACKEND" = static ] && RUNNING_BODY=ok
if want running; then
  B=$WORK/base
  start_understudy "$B" 18200 18300-18349 "STABLE_WINDOW=1h\nLOG_LEVEL=warn\n$US_ENV" "$WORK/understudy.log"
  UPID=$USPID
  build "$B" 1.0.0 "$APP_FLAGS"; wait_body 18200 "$RUNNING_BODY"
fi
if want mirror; then
  M=$WORK/mirror
  start_understudy "$M" 18201 18500-18549 "STABLE_WINDOW=1h\nLOG_LEVEL=warn\nADMIN_LISTEN=off\n$US_ENV" "$WORK/understudy-mirror.log"
  MPID=$USPID
  build "$M" 1.0.0 "$APP_FLAGS"; wait_body 18201 "$RUNNING_BODY"
  build "$M" 1.1.0 "$APP_FLAGS"; wait_testing "$M"
fi

one_case() {
  case $1 in
    direct) run_case direct 18001 ;;
    nginx) run_case nginx-plain 18101 "$(with_children "$(cat "$WORK/nginx.pid")")" ;;
    nginx-mirror) run_case nginx-mirror 18102 "$(with_children "$(cat "$WORK/nginx.pid")")" ;;
    haproxy) run_case haproxy 18111 "$HAPID" ;;
    running) run_case understudy-running 18200 "$UPID" ;;
    mirror) run_case understudy-mirror 18201 "$MPID"; mirror_status "$M" ;;
  esac
}
ORDER=()
for k in direct nginx haproxy running nginx-mirror mirror; do
  w=$k; [ "$k" = nginx-mirror ] && w=nginx
  if want "$w"; then ORDER+=("$k"); fi
done
for (( ROUND = 1; ROUND <= ROUNDS; ROUND++ )); do
  [ "$ROUNDS" -gt 1 ] && echo "-- round $ROUND"
  n=${#ORDER[@]}
  for (( i = 0; i < n; i++ )); do one_case "${ORDER[$(( (i + ROUND - 1) % n ))]}"; done
done
ROUND=1
if want nginx; then kill "$(cat "$WORK/nginx.pid")"; rm -f "$WORK/nginx.pid"; fi
if want running; then stop_understudy "$UPID"; fi
if want mirror; then stop_understudy "$MPID"; fi
if [ "$BACKEND" != app ] && { want hung || want promotion; }; then
  echo "hung and promotion need the fixture app: skipped with BACKEND=$BACKEND"
  CASES=" direct nginx haproxy running mirror "  # none of them is wanted any more
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
cargo bench -q --profile dist --bench switch -- 127.0.0.1:18210 128 12 /api/items > "$WORK/switch.txt"
python3 - "$WORK/promote.log" "$WORK/switch.txt" <<'PY'
import json, re, sys, statistics
from datetime import datetime, timezone
# understudy logs `2026-12-01T07:56:20.123456Z  INFO promoted from=1.0.0 to=1.1.0 why=...`,
# perhaps with colour codes.
ev = []
for l in open(sys.argv[1]):
    l = re.sub(r'\x1b\[[0-9;]*m', '', l).strip()
    m = re.match(r'(\d{4}-\d\d-\d\dT[\d:.]+)Z?\s+[A-Z]+\s+(?:\S+: )?(\w+)\b(.*)$', l)
    if not m: continue
    t = datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=timezone.utc)
    e = {k: v.strip('"') for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', m.group(3))}
    e["event"] = m.group(2)
    ev.append((t, e))
seconds = [l.split()[1:] for l in open(sys.argv[2]) if l.startswith("SECOND")]
seconds = [(int(s), int(n), int(e), int(p50), int(p99)) for s, n, e, p50, p99 in seconds]
total = sum(n for _, n, _, _, _ in seconds); errors = sum(e for _, _, e, _, _ in seconds)
first = lambda pred: next((t for t, e in ev if pred(e)), None)
verdict = first(lambda e: e["event"] == "scored" and e.get("verdict") == "promote")
started = first(lambda e: e["event"] == "started" and e.get("role") == "running" and e.get("version") == "1.1.0")
ready = first(lambda e: e["event"] == "ready" and e.get("role") == "running" and e.get("version") == "1.1.0")
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
python3 - "$WORK/results" "$ROUNDS" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
rounds = int(sys.argv[2])
med = lambda xs: statistics.median(xs)
def num(x):
    try: return float(x.rstrip('%'))
    except ValueError: return None
# Medians over rounds of each (case, conns); one round: the run itself.
cells = {}
for r in rows: cells.setdefault((r[0], r[1]), []).append(r)
agg = {}
for key, rs in cells.items():
    m = {}
    for i, f in [(2, "rps"), (3, "p50"), (4, "p99"), (5, "p999"), (7, "cpu"), (9, "per")]:
        v = [num(r[i]) for r in rs if num(r[i]) is not None]
        m[f] = med(v) if v else None
    m["err"] = sum(int(r[6]) for r in rs); m["rss"] = rs[-1][8]; m["n"] = len(rs)
    m["range"] = f"{min(int(r[2]) for r in rs)}–{max(int(r[2]) for r in rs)}"
    agg[key] = m
if rounds > 1:
    print(f"Medians of {rounds} rounds:")
def fmt(v, d=0): return "-" if v is None else (f"{v:.{d}f}" if d else f"{v:.0f}")
print("| case | conns | req/s | range | p50 µs | p99 µs | p99.9 µs | errors | proxy CPU | CPU/req µs | RSS | vs direct | vs nginx | vs haproxy |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in cells:
    name, c = key; m = agg[key]
    ratio = lambda other: f"{m['rps'] / agg[other]['rps']:.2f}×" if other in agg and other != key else "-"
    vd = ratio(("direct", c)) if name != "direct" else "-"
    vn = ratio(("nginx-mirror" if "mirror" in name else "nginx-plain", c)) if name.startswith(("understudy", "haproxy")) else "-"
    vh = ratio(("haproxy", c)) if name.startswith(("understudy", "nginx")) and "mirror" not in name else "-"
    cpu = "-" if m["cpu"] is None else f"{m['cpu']:.0f}%"
    print(f"| {name} | {c} | {fmt(m['rps'])} | {m['range']} | {fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['p999'])} | {m['err']} | {cpu} | {fmt(m['per'], 1)} | {m['rss']} | {vd} | {vn} | {vh} |")
d1 = agg.get(("direct", "1"))
if d1:
    added = [f"{n} +{agg[(n, '1')]['p50'] - d1['p50']:.0f} µs" for n in ("nginx-plain", "haproxy", "understudy-running") if (n, "1") in agg]
    if added: print("p50 added over direct at 1 connection: " + ", ".join(added))
print("(proxy CPU: utime + stime of all the proxy's processes over the measured interval, as a share of one core; CPU/req: the same per request.)")
# The plain path's targets, taken within each round (the machine's speed drifts between rounds):
# CPU per request against the more frugal of nginx and HAProxy, throughput against each.
by_round = {(r[0], r[1], r[10]): r for r in rows}
for c in sorted({r[1] for r in rows}, key=int):
    lines, cpu_ratios = [], []
    for rnd in sorted({r[10] for r in rows}, key=int):
        us, ng, ha = (by_round.get((n, c, rnd)) for n in ("understudy-running", "nginx-plain", "haproxy"))
        if not (us and ng and ha) or None in (num(us[9]), num(ng[9]), num(ha[9])):
            continue
        frugal = min(num(ng[9]), num(ha[9]))
        cpu_ratios.append(num(us[9]) / frugal)
        lines.append(f"  round {rnd}: CPU per request {cpu_ratios[-1]:.2f}× the more frugal peer's; "
                     f"throughput {int(us[2]) / int(ng[2]):.2f}× nginx's, {int(us[2]) / int(ha[2]):.2f}× HAProxy's")
    if cpu_ratios:
        print(f"understudy-running at {c} connections against its peers in the same round "
              f"(median CPU ratio {med(cpu_ratios):.2f}×; the target is at most 0.8×):")
        print("\n".join(lines))
PY
