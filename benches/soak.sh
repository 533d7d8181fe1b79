#!/usr/bin/env bash
# Soak: SOAK_SECS (default 600) of steady user load through understudy while build after build
# is dropped (every other one bad: a lost endpoint or a 5xx endpoint), each as soon as the one
# before is promoted or rejected, with a 1 s stable window. It is the test in tests/soak.rs,
# which `cargo test` skips (ignored), run in the `dist` profile (fat LTO, as shipped), and it
# judges what that test does not: memory at the end within 10 % of the first minute's (descriptors
# not growing, no failed user request and every decision right are the test's own assertions).
#
#   bash benches/soak.sh             # 10 minutes
#   SOAK_SECS=120 bash benches/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECS=${SOAK_SECS:-600}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
UNDERSTUDY_SOAK_SECS=$SOAK_SECS cargo test --profile dist -q --test tests soak:: -- --ignored --nocapture 2>&1 | tee "$out" | grep -A1 -E "^soak |test result|panicked"
line=$(grep -E "^soak " "$out")
rss0=$(sed -E 's/.*RSS ([0-9]+) → .*/\1/' <<<"$line")
rss1=$(sed -E 's/.*→ ([0-9]+) KiB.*/\1/' <<<"$line")
rss_ok=1
if [ $((rss1 * 100)) -le $((rss0 * 110)) ]; then verdict="within 10 %"; else verdict="MORE than 10 % above the first minute"; rss_ok=0; fi
echo "RSS end vs first minute: $rss0 → $rss1 KiB: $verdict"
# Only this checkout's binary: other checkouts' tests may run fixture apps on the same machine.
left=$(pgrep -af "$PWD/target/dist/understudy" | grep -v pgrep || true)
[ -z "$left" ] && echo "no process left behind" || { echo "processes left behind:"; echo "$left"; exit 1; }
# The RSS criterion fails the script too, after everything has been printed.
[ "$rss_ok" = 1 ]
