#!/usr/bin/env bash
# The slow-reader attack of issue 21, by hand: `slowhttptest -X` opens CONNS connections (500)
# that ask for a 1 MB answer and read it a few bytes at a time, against an app with 32 blocking
# worker threads (benches/worker_app.py), while 8 ordinary users ask for a small answer every
# 100 ms (benches/users.py): how many users are answered within 5 s, and how fast. Run behind
# understudy (its defaults: ANSWER_BUFFER 1MiB, ANSWER_MEMORY 64MiB, spill to .understudy/), then
# behind nginx with its defaults, then with the app alone. Never run by `cargo test`.
#
#   bash benches/slow-readers.sh
#   CONNS=200 US_ENV='ANSWER_SPILL=0\n' bash benches/slow-readers.sh
#
# Installs slowhttptest and nginx from Debian's packages if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-500}
SECONDS_UNDER_ATTACK=${SECONDS_UNDER_ATTACK:-20}
US_ENV=${US_ENV:-}
US_BIN=${US_BIN:-}
need=()
command -v slowhttptest >/dev/null || need+=(slowhttptest)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "$US_BIN" ]; then cargo build --profile dist -q; fi
BIN=${US_BIN:-$PWD/target/dist/understudy}
WORK=$(mktemp -d /tmp/understudy-slow.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "$WORK" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
ulimit -n 65536 || true

attack() { # attack NAME PORT
  echo "== $1"
  slowhttptest -c "$CONNS" -X -r 500 -w 512 -y 1024 -n 5 -z 32 -k 1 -p 5 \
    -l "$(( SECONDS_UNDER_ATTACK + 10 ))" -u "http://127.0.0.1:$2/big" >"$WORK/slow-$1.log" 2>&1 &
  local slow=$!
  PIDS+=("$slow")
  sleep 5  # let the attack open its connections (the attack is the thing measured)
  URL="http://127.0.0.1:$2/small" USERS=8 SECONDS="$SECONDS_UNDER_ATTACK" python3 benches/users.py
  kill "$slow" 2>/dev/null || true
  wait "$slow" 2>/dev/null || true
}

# Behind understudy: the app is its running build.
B="$WORK/base"; mkdir -p "$B"
printf 'IDENTIFIER=app\nLISTEN=127.0.0.1:18100\nPORT_RANGE=18500-18549\nADMIN_LISTEN=off\nLOG_LEVEL=warn\n%b' "$US_ENV" > "$B/.env"
"$BIN" run --base "$B" 2>"$WORK/understudy.log" &
PIDS+=($!)
printf '#!/bin/sh\nWORKERS=32 exec python3 %s\n' "$PWD/benches/worker_app.py" > "$B/.tmp-app"
chmod +x "$B/.tmp-app"; mv "$B/.tmp-app" "$B/app-1.0.0"
for _ in $(seq 200); do curl -sf http://127.0.0.1:18100/small >/dev/null && break; sleep 0.1; done
attack understudy 18100
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true

# The app alone, and behind a default nginx.
(PORT=18001 WORKERS=32 exec python3 benches/worker_app.py) &
PIDS+=($!)
wait_port 18001
cat > "$WORK/nginx.conf" <<NGX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-body; proxy_temp_path $WORK/nginx-proxy;
  server { listen 127.0.0.1:18102; location / { proxy_pass http://127.0.0.1:18001; } }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"
wait_port 18102
attack nginx 18102
attack app-alone 18001
