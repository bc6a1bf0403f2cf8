#!/usr/bin/env bash
# What an incremental snapshot costs against what the process wrote, run as a user runs it
# (whole processes). The target (tests/targets/cpause.c) holds SIZE MiB of written heap, is
# tracked (`memzinc track`), and before every snapshot writes one byte in each of DIRTY MiB worth
# of pages scattered over its heap; a thread inside it reports the largest gap it saw while the
# snapshot ran (its pause). Each round takes, in a rotated order, one of each:
#
#   delta    memzinc snapshot --since LAST        (the default: stores only what was read and
#                                                  refers to LAST for the rest)
#   merged   memzinc snapshot --since LAST --merged  (the same, with the rest copied: a full core)
#   full     memzinc snapshot                     (everything read again)
#   criu     criu dump --leave-running            (the peer, CRIU 4.1.1: ../shared/tools/criu41.sh
#                                                  or $CRIU; see below)
#
# CRIU's own incremental dump (`pre-dump --track-mem`, then `dump --prev-images-dir`) finds the
# written pages by the kernel's soft-dirty bits. Where the kernel has none (`criu check --feature
# mem_dirty_track` says "Dirty tracking is OFF"; then `--track-mem` is refused and `pre-dump`
# aborts), a full dump is all CRIU can give: the script says which it found, and the criu row is
# that full dump. CRIU cannot dump a process that holds a userfaultfd ("Can't dump file 3 of that
# type"), which tracking gives the target, so CRIU dumps a twin: the same program with the same
# arguments, untracked, that writes the same pages before each dump. Only one of the two runs at
# a time (the other is SIGSTOPped), so each tool finds the same CPUs free.
#
# LAST is always the snapshot just before (the tracking's last scan), so deltas chain on deltas.
# Page cache as a user finds it: the previous snapshot was just written (`sync` before each run,
# caches not dropped). Cores no chain needs any more are deleted as the rounds go.
#
#   scripts/bench-incremental.sh [SIZE_MIB [DIRTY_MIB]]   default: 4096 100; RUNS=5; OUT_DIR=/tmp;
#                                 MODES="delta merged full criu" (a subset: only those)
#
# Prints per mode the median and min–max of the wall time (s), of the largest pause seen from
# inside the target (ms) and of memzinc's own count of it, the pages read and the file size.
# Needs root and gcc; memzinc from $MEMZINC (default: the release build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS=${RUNS:-5}
SIZE=${1:-4096}
DIRTY=${2:-100}
MEMZINC=${MEMZINC:-$CARGO_TARGET_DIR/release/memzinc}
OUT_DIR=${OUT_DIR:-/tmp}
CRIU=${CRIU:-$MEMZINC_ROOT/../shared/tools/criu41.sh}
[ -x "$CRIU" ] || CRIU=/work/shared/tools/criu41.sh
[ -x "$MEMZINC" ] || { echo "no memzinc at $MEMZINC (cargo build --release -p memzinc-cli)" >&2; exit 1; }
work=$(mktemp -d "$OUT_DIR/bench-incremental.XXXXXX")
export MEMZINC_STATE_DIR=$work/state
# (Each pid only once set: `kill 0` would signal this script's whole process group.)
trap 'for p in ${target:-} ${twin:-}; do kill -CONT "$p"; kill "$p"; done 2>/dev/null; rm -rf "$work"' EXIT
gcc -O2 -pthread -o "$work/cpause" "$MEMZINC_ROOT/tests/targets/cpause.c"

now_ns() { date +%s%N; }

# Sends a process (the target, or the one named by PID and OUTPUT) a signal and waits for the
# line it prints in answer; prints that line.
ask() {
  local n pid=${2:-$target} out=${3:-$work/out}
  n=$(wc -l < "$out")
  kill "-$1" "$pid"
  while [ "$(wc -l < "$out")" -le "$n" ]; do sleep 0.01; done
  tail -1 "$out"
}

# A field of memzinc's JSON report.
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }

last=""
# One snapshot in `mode`; adds "mode pause_us wall_ns stopped_ms pages_read file_bytes" to the
# results, "-" where the tool does not say (not in a subshell: it moves `last` on).
run_mode() {
  local mode=$1 out=$work/$(date +%s%N).core json="" started ended pid=$target log=$work/out
  if [ "$mode" = criu ]; then
    kill -STOP "$target"; kill -CONT "$twin"
    pid=$twin log=$work/twin.out
  fi
  ask USR2 "$pid" "$log" > /dev/null
  sync
  ask USR1 "$pid" "$log" > /dev/null
  started=$(now_ns)
  case $mode in
    delta) json=$("$MEMZINC" --json snapshot --pid "$target" -o "$out" --since "$last") ;;
    merged) json=$("$MEMZINC" --json snapshot --pid "$target" -o "$out" --since "$last" --merged) ;;
    full) json=$("$MEMZINC" --json snapshot --pid "$target" -o "$out") ;;
    criu) mkdir "$out"
      "$CRIU" dump -t "$twin" -D "$out" --leave-running -o dump.log > /dev/null 2>&1 \
        || { echo "criu dump failed: $(grep Error "$out/dump.log" | tail -1)" >&2; exit 1; } ;;
  esac
  ended=$(now_ns)
  local stopped pages
  stopped=$(field frozen_ms <<< "$json"); pages=$(field pages_from_target <<< "$json")
  echo "$mode $(ask USR1 "$pid" "$log" | awk '{print $2}') $((ended - started)) ${stopped:--} ${pages:--} $(du -sb "$out" | cut -f1)" >> "$work/results"
  if [ "$mode" = criu ]; then
    rm -rf "$out"
    kill -STOP "$twin"; kill -CONT "$target"
    return
  fi
  # A full core starts a new chain: what came before it is needed no more.
  if [ "$mode" != delta ]; then
    find "$work" -maxdepth 1 -name '*.core' ! -name "$(basename "$out")" -delete
  fi
  last=$out
}

# "median min max" of the numbers on stdin ("- - -" when there are none).
stats() {
  grep -E '^[0-9.]+$' | sort -g \
    | awk '{v[NR]=$1} END {if (!NR) {printf "- - -"; exit}; m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s %s %s", m, v[1], v[NR]}'
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r); memzinc $MEMZINC"
read -ra modes <<< "${MODES:-delta merged full criu}"
with_criu=false
[[ " ${modes[*]} " == *" criu "* ]] && with_criu=true
if $with_criu; then
  tracking=$("$CRIU" check --feature mem_dirty_track 2>&1 || true)
  if grep -q 'Dirty tracking is OFF' <<< "$tracking"; then
    echo "criu: this kernel has no soft-dirty bits (criu check: \"Dirty tracking is OFF\"), so CRIU's"
    echo "      incremental dump cannot run here; its row is a full dump of the same program state"
  else
    echo "criu: this kernel has soft-dirty bits; the row is still CRIU's full dump (its incremental"
    echo "      pre-dump chain is not timed by this script)"
  fi
fi
# Starts a cpause writing to OUTPUT, its pid in the variable named VAR at once (for the exit
# trap), and waits until its memory is written.
start_cpause() {
  setsid "$work/cpause" "$SIZE" $((DIRTY * 256)) > "$2" 2>&1 < /dev/null &
  printf -v "$1" %s "$!"
  while ! grep -q ready "$2" 2>/dev/null; do sleep 0.05; done
}
start_cpause target "$work/out"
"$MEMZINC" track --pid "$target" > /dev/null
last=$work/base.core
"$MEMZINC" snapshot --pid "$target" -o "$last" > /dev/null
if $with_criu; then
  kill -STOP "$target"
  start_cpause twin "$work/twin.out"
  kill -STOP "$twin"; kill -CONT "$target"
fi
: > "$work/results"
for run in $(seq 1 "$RUNS"); do
  for i in "${!modes[@]}"; do
    mode=${modes[$(( (i + run) % ${#modes[@]} ))]}
    run_mode "$mode"
  done
done
echo
echo "## $SIZE MiB of written heap, $DIRTY MiB ($((DIRTY * 256)) pages) written before each snapshot, $RUNS runs each, interleaved (load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-7s %-24s %-30s %-26s %-12s %s\n' mode "wall s (median, min-max)" "largest pause ms (median, min-max)" "memzinc says stopped ms" "pages read" "file MiB"
for mode in "${modes[@]}"; do
  read -r wm wl wh <<< "$(awk -v t="$mode" '$1==t {print $3/1e9}' "$work/results" | stats)"
  read -r pm pl ph <<< "$(awk -v t="$mode" '$1==t {print $2/1000}' "$work/results" | stats)"
  read -r sm sl sh <<< "$(awk -v t="$mode" '$1==t {print $4}' "$work/results" | stats)"
  read -r rm _ _ <<< "$(awk -v t="$mode" '$1==t {print $5}' "$work/results" | stats)"
  read -r fm _ _ <<< "$(awk -v t="$mode" '$1==t {print $6/1048576}' "$work/results" | stats)"
  stopped=-
  [ "$sm" = - ] || stopped=$(printf '%6.1f (%.1f-%.1f)' "$sm" "$sl" "$sh")
  printf '%-7s %.3f (%.3f-%.3f)%6s %6.1f (%.1f-%.1f)%14s %-26s %-12s %.0f\n' \
    "$mode" "$wm" "$wl" "$wh" "" "$pm" "$pl" "$ph" "" "$stopped" "$rm" "$fm"
done
