#!/usr/bin/env bash
# Idle cost: understudy with a running and a testing instance and no traffic, measured for
# SECONDS_IDLE seconds from /proc (user + system clock ticks). Moved out of `cargo test`: CPU
# figures on a shared 2-core machine are measurements, not assertions.
#
#   bash benches/idle.sh              # 10 s
#   SECONDS_IDLE=30 bash benches/idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_IDLE=${SECONDS_IDLE:-10}
cargo build --profile dist -q
BIN=$PWD/target/dist/understudy
WORK=$(mktemp -d /tmp/understudy-idle.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'IDENTIFIER=app\nLISTEN=127.0.0.1:%s\nPORT_RANGE=26000-26019\nSETTLE_TIME=200ms\n' "$PORT" > "$WORK/.env"
"$BIN" run --base "$WORK" 2>"$WORK/understudy.log" &
PID=$!
for v in 1.0.0 1.1.0; do
  printf '#!/bin/sh\nexec %s fixture-app --version %s\n' "$BIN" "$v" > "$WORK/.tmp"
  chmod +x "$WORK/.tmp"; mv "$WORK/.tmp" "$WORK/app-$v"
  for _ in $(seq 100); do [ -L "$WORK/$([ $v = 1.0.0 ] && echo running || echo testing)" ] && break; sleep 0.1; done
done
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks); sleep "$SECONDS_IDLE"; after=$(ticks)
used=$((after - before))
echo "understudy idle with running + testing: $used ticks in ${SECONDS_IDLE}s = $(python3 -c "print(f'{100*$used/($hz*$SECONDS_IDLE):.2f}')")% of one core"
