#!/usr/bin/env bash
# Where a proxied request's kernel time goes, understudy against nginx and HAProxy: per request,
# the system calls each proxy makes, its context switches, the TCP segments on the machine and
# its CPU time; with PROFILE=1, its CPU split by system call (perf's cpu-clock samples). The
# cases take turns within each round, so a machine whose speed drifts moves them all alike;
# compare within a round. Several understudy binaries can be set side by side (an A/B).
#
#   bash benches/kernel.sh                               # dist build of this tree, 2 rounds
#   US_BINS="/tmp/a /tmp/b" PEERS= ROUNDS=5 bash benches/kernel.sh    # an A/B, no peers
#   PROFILE=1 ROUNDS=1 CONNS=128 bash benches/kernel.sh
#
# KEEP_WORK=1 keeps the work directory (perf data, logs) for `perf report`. PEER_AFFINITY=1 binds the peers to a CPU per worker or thread (benches/common.sh). Counting
# system calls through tracepoints (COUNT=1, the default) and sampling (PROFILE=1) slow
# every proxy down (up to 1.5x), so these CPU figures are for comparing cases within one round,
# not for quoting: benches/proxy.sh's are. The
# backend is a static nginx (2-byte answer), as benches/proxy.sh's BACKEND=static. Needs perf and
# nstat, and installs wrk, nginx and haproxy from Debian if missing. Never run by `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh

CONNS=${CONNS:-32}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
PEERS=${PEERS-"haproxy nginx"}
COUNT=${COUNT:-1}
PROFILE=${PROFILE:-}
US_BINS=${US_BINS:-}

for tool in perf nstat; do
  command -v "$tool" >/dev/null || { echo "benches/kernel.sh needs $tool (linux-perf, iproute2)" >&2; exit 1; }
done
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ -z "$US_BINS" ]; then cargo build --profile dist -q; US_BINS=$PWD/target/dist/understudy; fi

WORK=$(mktemp -d /tmp/understudy-kernel.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# The static backend on 18601, HAProxy on 18611, nginx on 18621 (2 workers, keep-alive upstream).
write_static_sh "$WORK/static.sh" "$NGINX"
mkdir -p "$WORK/backend"
(cd "$WORK/backend" && PORT=18601 exec "$WORK/static.sh" >/dev/null 2>&1) &
PIDS+=($!)
wait_port 18601
declare -A PORT_OF PIDS_OF
if [[ " $PEERS " == *" haproxy "* ]]; then
  write_haproxy_cfg "$WORK/haproxy.cfg" 18611 18601
  "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  PIDS+=($!); PORT_OF[haproxy]=18611; PIDS_OF[haproxy]=$!
  wait_port 18611
fi
if [[ " $PEERS " == *" nginx "* ]]; then
  write_nginx_cfg "$WORK" 18621 18601
  "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g "daemon on;" 2>/dev/null
  wait_port 18621
  PORT_OF[nginx]=18621; PIDS_OF[nginx]=$(pgrep -d, -P "$(cat "$WORK/nginx.pid")")
fi

# One understudy per binary, each with the static nginx as its running build.
NAMES=($PEERS)
i=0
for bin in $US_BINS; do
  name=understudy-$i; port=$((18630 + i)); base=$WORK/base-$i
  mkdir -p "$base"
  printf 'IDENTIFIER=app\nLISTEN=127.0.0.1:%s\nPORT_RANGE=%s-%s\nSETTLE_TIME=100ms\nSTABLE_WINDOW=1h\nLOG_LEVEL=warn\nADMIN_LISTEN=off\n' \
    "$port" $((18700 + i * 50)) $((18749 + i * 50)) > "$base/.env"
  "$bin" run --base "$base" 2>"$WORK/$name.log" &
  PIDS+=($!); PORT_OF[$name]=$port; PIDS_OF[$name]=$!
  wait_port "$port"
  printf '#!/bin/sh\nexec %s\n' "$WORK/static.sh" > "$base/.tmp-app"
  chmod +x "$base/.tmp-app"; mv "$base/.tmp-app" "$base/app-1.0.0"
  for _ in $(seq 400); do [ "$(curl -s "http://127.0.0.1:$port/")" = ok ] && break; sleep 0.05; done
  echo "$name: $bin"
  NAMES+=("$name"); i=$((i + 1))
done

EVENTS=task-clock,context-switches
if [ "$COUNT" = 1 ]; then
  for s in sendto recvfrom read write writev readv epoll_wait epoll_ctl futex; do EVENTS+=",syscalls:sys_enter_$s"; done
fi

# Per request, from `perf script`: the CPU samples of each system call, of user space, the rest.
by_syscall() { # by_syscall PERF-DATA REQUESTS
  perf script -i "$1" -F ip,sym,dso 2>/dev/null | python3 -c '
import collections, sys
req, every = int(sys.argv[1]), 1e6 / 4999   # µs per sample at -F 4999
parts, total = collections.Counter(), 0
for sample in sys.stdin.read().split("\n\n"):
    lines = [l.split() for l in sample.strip().splitlines() if l.strip()]
    if not lines:
        continue
    total += 1
    if "kernel.kallsyms" not in lines[0][-1]:
        parts["(user space)"] += 1
        continue
    frames = [l[1] if len(l) > 2 else "?" for l in lines]
    call = next((f for f in frames if f.startswith(("__x64_sys_", "__do_sys_", "do_writev", "do_readv"))), None)
    if call:
        for prefix in ("__x64_sys_", "__do_sys_", "do_"):
            call = call.removeprefix(prefix)
        parts[call] += 1
    elif any(f in ("schedule", "__schedule") for f in frames):
        parts["(scheduler)"] += 1
    else:
        parts["(kernel, other)"] += 1
print(f"    by system call, {total * every / req:.2f} µs per request in all:")
for name, n in parts.most_common(8):
    print(f"      {name:28s} {n * every / req:6.2f} µs  {100 * n / total:5.1f} %")
' "$2"
}

# Voluntary and involuntary context switches of all threads of the given processes (comma list).
switches() { # switches PIDS
  local p; for p in ${1//,/ }; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v + 0, n + 0}'
}

measure() { # measure NAME
  local name=$1 port=${PORT_OF[$1]} pids=${PIDS_OF[$1]} sp rp=""
  wrk -t2 -c"$CONNS" -d3s "http://127.0.0.1:$port/" >/dev/null
  nstat -n >/dev/null
  local before; before=$(switches "$pids")
  perf stat -x, -e "$EVENTS" -p "$pids" -o "$WORK/$name.stat" -- sleep "$DURATION" >/dev/null 2>&1 &
  sp=$!
  if [ -n "$PROFILE" ]; then
    perf record -q -F 4999 -e cpu-clock -g -p "$pids" -o "$WORK/$name.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    rp=$!
  fi
  local out req
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$port/")
  wait "$sp"; [ -n "$rp" ] && wait "$rp"
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  local after; after=$(switches "$pids")
  printf '%-14s c=%-4s %8s req/s' "$name" "$CONNS" "$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}')"
  awk -F, -v r="$req" '$3 == "task-clock" {printf "  CPU %.2f µs/req", $1 * 1000 / r}' "$WORK/$name.stat"
  echo
  awk -F, -v r="$req" '/^[0-9]/ && $3 != "task-clock" && $1 > 0 {sub("syscalls:sys_enter_", "", $3); printf "    %-18s %6.3f per request\n", $3, $1 / r}' "$WORK/$name.stat"
  echo "$before $after" | awk -v r="$req" '{printf "    %-18s %6.3f voluntary, %.3f involuntary per request\n", "switches", ($3 - $1) / r, ($4 - $2) / r}'
  nstat 2>/dev/null | awk -v r="$req" '$1 == "TcpOutSegs" || $1 == "TcpExtTCPPureAcks" || $1 == "TcpExtDelayedACKs" {printf "    %-18s %6.3f per request (whole machine)\n", $1, $2 / r}'
  if [ -n "$PROFILE" ]; then by_syscall "$WORK/$name.data" "$req"; fi
}

echo "kernel share per request: $(nproc) cores, wrk -t2 -c$CONNS, ${DURATION}s per case after 3s"
if [ "$COUNT" = 1 ] || [ -n "$PROFILE" ]; then
  echo "(counted or sampled: CPU figures are inflated, compare them within a round; quote benches/proxy.sh's)"
fi
for (( round = 1; round <= ROUNDS; round++ )); do
  echo "-- round $round"
  n=${#NAMES[@]}
  for (( k = 0; k < n; k++ )); do measure "${NAMES[$(( (k + round - 1) % n ))]}"; done
done
