#!/usr/bin/env bash
# How long each tool stops a process, measured from inside it, and how long each takes, run as a
# user runs them (whole processes): `memzinc snapshot` (copy-on-write, the default: the
# write-protected view, a fork where it cannot be had), the same with `MEMZINC_COW=fork`,
# `memzinc snapshot --stop-the-world`, `memzinc checkpoint --leave-running` (copy-on-write),
# gdb's `gcore` and `criu dump --leave-running` (CRIU 4.1.1, ../shared/tools/criu41.sh or $CRIU). The target (tests/targets/cpause.c) holds SIZE MiB of
# written heap and a thread that spins reading CLOCK_MONOTONIC and reports the largest gap it saw
# while each tool ran. Runs are interleaved (each round runs every tool once, in a rotated
# order); "idle" is the same measurement around a 0.5 s sleep (the machine's own noise).
#
#   scripts/bench-pause.sh [SIZE_MIB...]      default: 100 1024; RUNS=5; OUT_DIR=/tmp
#
# Prints per size and tool: the median and min–max of the largest pause (ms) and of the wall
# time (s) over RUNS runs, the CPU time the VM's host took meanwhile (steal: gaps no tool
# caused), and for memzinc's copy-on-write the memory the copy held alone at the end (MiB). Needs root, gcc, gdb; memzinc from $MEMZINC (default: the release build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS=${RUNS:-5}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 1024)
MEMZINC=${MEMZINC:-$CARGO_TARGET_DIR/release/memzinc}
CRIU=${CRIU:-$MEMZINC_ROOT/../shared/tools/criu41.sh}
[ -x "$CRIU" ] || CRIU=/work/shared/tools/criu41.sh
OUT_DIR=${OUT_DIR:-/tmp}
[ -x "$MEMZINC" ] || { echo "no memzinc at $MEMZINC (cargo build --release -p memzinc-cli)" >&2; exit 1; }
work=$(mktemp -d "$OUT_DIR/bench-pause.XXXXXX")
trap 'if [ -n "${target:-}" ]; then kill "$target" 2>/dev/null; fi; rm -rf "$work"' EXIT
gcc -O2 -pthread -o "$work/cpause" "$MEMZINC_ROOT/tests/targets/cpause.c"

now_ns() { date +%s%N; }

# The target's largest gap since the previous call, in µs (it prints one line per SIGUSR1).
gap_us() {
  local n
  n=$(wc -l < "$work/out")
  kill -USR1 "$target"
  while [ "$(wc -l < "$work/out")" -le "$n" ]; do sleep 0.01; done
  tail -1 "$work/out" | awk '{print $2}'
}

# A field of memzinc's JSON report.
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }

# CPU time the VM's host took from this machine's CPUs so far (/proc/stat's steal), in ms: a
# pause the target sees that no tool here caused.
steal_ms() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%d\n", $9 * 1000 / hz}' /proc/stat; }

# One tool run against the target; prints "pause_us wall_ns extra_bytes stopped_ms route
# steal_ms" (extra_bytes, stopped_ms and route are memzinc's own report: the copy's memory, how
# long it says it held the target stopped, how it copied; steal_ms what the host took meanwhile).
run_tool() {
  local tool=$1 out=$work/dump extra=- stopped=- route=- json started ended stolen
  rm -rf "$out" "$out.core"; mkdir -p "$out"
  sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
  gap_us > /dev/null
  stolen=$(steal_ms)
  started=$(now_ns)
  case $tool in
    memzinc-cow) json=$("$MEMZINC" --json snapshot --pid "$target" -o "$out.core") ;;
    memzinc-fork) json=$(MEMZINC_COW=fork "$MEMZINC" --json snapshot --pid "$target" -o "$out.core") ;;
    memzinc-stw) json=$("$MEMZINC" --json snapshot --stop-the-world --pid "$target" -o "$out.core") ;;
    memzinc-ckpt) json=$("$MEMZINC" --json checkpoint --leave-running --pid "$target" -o "$out.core") ;;
    gcore) gcore -o "$out/core" "$target" > /dev/null 2>&1 ;;
    criu) "$CRIU" dump -t "$target" -D "$out" --leave-running -o dump.log > /dev/null 2>&1 \
            || { echo "criu failed: $(tail -3 "$out/dump.log")" >&2; }
      ;;
    idle) sleep 0.5 ;;
  esac
  ended=$(now_ns)
  if [ -n "${json:-}" ]; then
    extra=$(field extra_bytes <<< "$json"); stopped=$(field frozen_ms <<< "$json")
    route=$(sed -n 's/.*"copy_on_write_by": *"\([a-z-]*\)".*/\1/p' <<< "$json" | head -1)
  fi
  echo "$(gap_us) $((ended - started)) ${extra:--} ${stopped:--} ${route:--} $(( $(steal_ms) - stolen ))"
  rm -rf "$out" "$out.core"
}

# "median min max" of numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s %s %s", m, v[1], v[NR]}'; }

tools=(memzinc-cow memzinc-fork memzinc-stw memzinc-ckpt gcore criu idle)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); memzinc $MEMZINC"
for size in "${SIZES[@]}"; do
  setsid "$work/cpause" "$size" > "$work/out" 2>&1 < /dev/null &
  target=$!
  while ! grep -q ready "$work/out" 2>/dev/null; do sleep 0.05; done
  : > "$work/results"
  for run in $(seq 1 "$RUNS"); do
    for i in "${!tools[@]}"; do
      tool=${tools[$(( (i + run) % ${#tools[@]} ))]}
      echo "$tool $(run_tool "$tool")" >> "$work/results"
    done
  done
  echo
  echo "## $size MiB of written heap, $RUNS runs each, interleaved (load now $(cut -d' ' -f1-3 /proc/loadavg))"
  printf '%-13s %-28s %-26s %-26s %-22s %s\n' tool "largest pause ms (median, min-max)" "wall s (median, min-max)" "memzinc says stopped ms" "host steal ms (median, max)" "copy's own memory MiB (median, max)"
  for tool in "${tools[@]}"; do
    read -r pm pl ph <<< "$(awk -v t="$tool" '$1==t {print $2/1000}' "$work/results" | stats)"
    read -r wm wl wh <<< "$(awk -v t="$tool" '$1==t {print $3/1e9}' "$work/results" | stats)"
    extra="" said=""
    if [ "$tool" = memzinc-cow ] || [ "$tool" = memzinc-fork ] || [ "$tool" = memzinc-ckpt ]; then
      read -r em _ eh <<< "$(awk -v t="$tool" '$1==t && $4!="-" {print $4/1048576}' "$work/results" | stats)"
      extra=$(printf '%.1f (max %.1f)' "$em" "$eh")
    fi
    if [[ $tool == memzinc-* ]]; then
      read -r sm sl sh <<< "$(awk -v t="$tool" '$1==t && $5!="-" {print $5}' "$work/results" | stats)"
      said=$(printf '%.1f (%.1f-%.1f)' "$sm" "$sl" "$sh")
    fi
    read -r tm _ th <<< "$(awk -v t="$tool" '$1==t {print $7}' "$work/results" | stats)"
    printf '%-13s %8.1f (%.1f-%.1f)%9s %6.2f (%.2f-%.2f)%8s %-26s %-22s %s\n' "$tool" "$pm" "$pl" "$ph" "" "$wm" "$wl" "$wh" "" "$said" "$tm (max $th)" "$extra"
  done
  echo "routes of memzinc-cow: $(awk '$1=="memzinc-cow" {print $6}' "$work/results" | sort | uniq -c | xargs)"
  kill "$target"; wait "$target" 2>/dev/null || true
done
