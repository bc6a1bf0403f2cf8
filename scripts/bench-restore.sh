#!/usr/bin/env bash
# How soon a restored process runs again, and how long until all its pages are in, run as a user
# runs the tools (whole processes): `memzinc restore` (eager), `memzinc restore --lazy`, CRIU
# 4.1.1's `criu restore` and `criu restore --lazy-pages` with its `lazy-pages` daemon
# (../shared/tools/criu41.sh or $CRIU; left out, with the reason, if it does not run here).
# The target (tests/targets/crestore.c) holds SIZE MiB of written heap and appends the
# CLOCK_REALTIME of its first step after a stop to a file: "ran again" is that time minus the
# time the restore command was started. "all in" is when the command that serves the pages
# exits: memzinc restore (eager: before the process runs; lazy: once every page is in), criu
# restore (eager) or the lazy-pages daemon (started, and listening, before the restore command,
# as CRIU has it; not timed). Runs are interleaved (each round restores once with
# every tool, in a rotated order); the page cache holds the images (warm).
#
#   scripts/bench-restore.sh [SIZE_MIB]      default: 1024; RUNS=5; OUT_DIR=/tmp
#
# Needs root and gcc; memzinc from $MEMZINC (default: the release build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS=${RUNS:-5}
SIZE=${1:-1024}
MEMZINC=${MEMZINC:-$CARGO_TARGET_DIR/release/memzinc}
CRIU=${CRIU:-$MEMZINC_ROOT/../shared/tools/criu41.sh}
[ -x "$CRIU" ] || CRIU=/work/shared/tools/criu41.sh
OUT_DIR=${OUT_DIR:-/tmp}
[ -x "$MEMZINC" ] || { echo "no memzinc at $MEMZINC (cargo build --release -p memzinc-cli)" >&2; exit 1; }
work=$(mktemp -d "$OUT_DIR/bench-restore.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
gcc -O2 -o "$work/crestore" "$MEMZINC_ROOT/tests/targets/crestore.c"

now_ns() { date +%s%N; }

# Starts a target writing to $work/ran.$1; prints its pid once its memory is written.
start_target() {
  setsid "$work/crestore" "$work/ran.$1" "$SIZE" > "$work/ready.$1" 2>&1 < /dev/null &
  while ! grep -q ready "$work/ready.$1" 2>/dev/null; do sleep 0.05; done
  awk '{print $2}' "$work/ready.$1"
}

gone() { while [ -e "/proc/$1" ]; do sleep 0.01; done; }

# memzinc's checkpoint of one target, CRIU's dump of another (each restores its own pid).
mz_pid=$(start_target mz); pids+=("$mz_pid")
"$MEMZINC" checkpoint --pid "$mz_pid" --kill -o "$work/mz.core" > /dev/null
gone "$mz_pid"
tools=(memzinc memzinc-lazy)
criu_pid=$(start_target criu); pids+=("$criu_pid")
mkdir -p "$work/criu"
if "$CRIU" dump -t "$criu_pid" -D "$work/criu" -o dump.log > /dev/null 2>&1; then
  gone "$criu_pid"
  tools+=(criu criu-lazy)
else
  echo "criu dump failed: $(tail -1 "$work/criu/dump.log")" >&2
  kill -9 "$criu_pid"
fi

# One restore; prints "ran_again_ms all_in_ms" (or "fail why").
run_tool() {
  local tool=$1 started ended ran pid file lazy_pid
  case $tool in memzinc*) pid=$mz_pid file=$work/ran.mz ;; *) pid=$criu_pid file=$work/ran.criu ;; esac
  local before
  before=$(grep -c '^ran' "$file" || true)
  if [ "$tool" = criu-lazy ]; then
    # The daemon first, as CRIU's workflow has it; timed from the restore command on.
    "$CRIU" lazy-pages -D "$work/criu" -o lazy.log > /dev/null 2>&1 &
    lazy_pid=$!
    local wait_until=$((SECONDS + 10))
    while [ ! -S "$work/criu/lazy-pages.socket" ] && [ $SECONDS -lt $wait_until ]; do sleep 0.005; done
    sleep 0.2
  fi
  started=$(now_ns)
  case $tool in
    memzinc) "$MEMZINC" restore "$work/mz.core" > /dev/null ;;
    memzinc-lazy) "$MEMZINC" restore --lazy "$work/mz.core" > /dev/null ;;
    criu) "$CRIU" restore -D "$work/criu" -d -o restore.log > /dev/null 2>&1 \
            || { echo "fail criu restore: $(tail -1 "$work/criu/restore.log")"; return; } ;;
    criu-lazy)
      "$CRIU" restore -D "$work/criu" -d --lazy-pages -o restore-lazy.log > /dev/null 2>&1 \
        || { kill "$lazy_pid" 2>/dev/null; echo "fail criu restore --lazy-pages: $(tail -1 "$work/criu/restore-lazy.log")"; return; }
      wait "$lazy_pid" || { echo "fail criu lazy-pages: $(tail -1 "$work/criu/lazy.log")"; kill -9 "$pid"; gone "$pid"; return; }
      ;;
  esac
  ended=$(now_ns)
  local deadline=$((SECONDS + 30))
  while [ "$(grep -c '^ran' "$file" || true)" -le "$before" ]; do
    [ $SECONDS -lt $deadline ] || { echo "fail the process never ran again"; kill -9 "$pid" 2>/dev/null; return; }
    sleep 0.01
  done
  ran=$(grep '^ran' "$file" | tail -1 | awk '{print $2}')
  kill -9 "$pid"; gone "$pid"
  echo "$(( (ran - started) / 1000 )) $(( (ended - started) / 1000 ))" | awk '{printf "%.1f %.1f\n", $1/1000, $2/1000}'
}

# "median min max" of numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s %s %s\n", m, v[1], v[NR]}'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); $SIZE MiB; memzinc $MEMZINC"
: > "$work/results"
for run in $(seq 1 "$RUNS"); do
  for i in "${!tools[@]}"; do
    tool=${tools[$(( (i + run) % ${#tools[@]} ))]}
    echo "$tool $(run_tool "$tool")" | tee -a "$work/results" >&2
  done
done
printf "%-14s %-28s %-28s\n" tool "ran again ms: median (min-max)" "all in ms: median (min-max)"
for tool in "${tools[@]}"; do
  if grep -q "^$tool fail" "$work/results"; then
    printf "%-14s %s\n" "$tool" "$(grep "^$tool fail" "$work/results" | head -1 | cut -d' ' -f3-)"
    continue
  fi
  read -r m1 lo1 hi1 < <(awk -v t="$tool" '$1 == t {print $2}' "$work/results" | stats)
  read -r m2 lo2 hi2 < <(awk -v t="$tool" '$1 == t {print $3}' "$work/results" | stats)
  printf "%-14s %-28s %-28s\n" "$tool" "$m1 ($lo1-$hi1)" "$m2 ($lo2-$hi2)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
