#!/usr/bin/env bash
# Checkpoint and restore of a process tree, memzinc against CRIU 4.1.1 (../shared/tools/criu41.sh
# or $CRIU), run as a user runs them (whole processes, wall time from outside, peak RSS from
# /usr/bin/time). The tree is the pre-fork server of tests/targets/zdtm_prefork.c: a parent and
# WORKERS workers sharing a page of counters (MAP_SHARED|MAP_ANONYMOUS) and a pipe of jobs, each
# process with HEAP_MIB MiB of its own written private heap. Its parent steps every 5 ms and
# writes the gap since its previous step (CLOCK_MONOTONIC) to a file: the largest gap while a tool
# runs is the pause the server saw. Each round starts a fresh server per tool (in a rotated
# order, so the tools take turns going first) and measures on it:
#   idle      the largest gap over a 1 s sleep (the machine's own noise)
#   ckpt      a checkpoint that leaves the tree running: `memzinc checkpoint --tree
#             --leave-running`, `criu dump --leave-running`
#   kill      a checkpoint that kills the tree (`--tree --kill`, `criu dump`), then
#   restore   `memzinc restore DIR`, `criu restore -d`; then the server must go on: its lines
#             continue with no gap or repeat, every one "ok" (the shared sum right), and the
#             workers' count grows (jobs flow through the pipe, counts through the shared page)
# The outputs are deleted after each run (a tree of 4 x 256 MiB is 1 GiB on disk).
#
#   scripts/bench-tree.sh        RUNS=5 HEAP_MIB=256 WORKERS=3 OUT_DIR=/tmp TOOLS="memzinc criu"
#
# Prints per tool the median and min–max of each measure and memzinc/CRIU ratios (> 1: memzinc
# takes longer). Needs root, gcc, perl (to make this script the subreaper that reaps the tree's
# processes: restore needs their PIDs free); memzinc from $MEMZINC (default: the release build).
set -euo pipefail
if [ -z "${BENCH_TREE_REAPER:-}" ]; then
  # PR_SET_CHILD_SUBREAPER (prctl = syscall 157 on x86_64), kept across exec: the workers of a
  # killed tree and the roots that restores leave behind become this shell's, which reaps them.
  export BENCH_TREE_REAPER=1
  exec perl -e 'syscall(157, 36, 1, 0, 0, 0) == 0 or die "prctl: $!\n"; exec @ARGV or die "exec: $!\n"' \
    bash "$0" "$@"
fi
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS=${RUNS:-5}
HEAP_MIB=${HEAP_MIB:-256}
WORKERS=${WORKERS:-3}
MEMZINC=${MEMZINC:-$CARGO_TARGET_DIR/release/memzinc}
CRIU=${CRIU:-$MEMZINC_ROOT/../shared/tools/criu41.sh}
[ -x "$CRIU" ] || CRIU=/work/shared/tools/criu41.sh
OUT_DIR=${OUT_DIR:-/tmp}
[ -x "$MEMZINC" ] || { echo "no memzinc at $MEMZINC (cargo build --release -p memzinc-cli)" >&2; exit 1; }
work=$(mktemp -d "$OUT_DIR/bench-tree.XXXXXX")
pids=()
stop_tree() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while [ -e "/proc/$p" ]; do sleep 0.01; done; done
  pids=()
}
trap 'stop_tree; rm -rf "$work"' EXIT
gcc -O2 -o "$work/prefork" "$MEMZINC_ROOT/tests/targets/zdtm_prefork.c"

now_ns() { date +%s%N; }
# Lines in a file (0 if none yet).
count() { if [ -e "$1" ]; then wc -l < "$1"; else echo 0; fi; }
# Waits (up to 20 s) until FILE has at least N lines.
wait_lines() {
  local file=$1 n=$2 i
  for i in $(seq 2000); do [ "$(count "$file")" -ge "$n" ] && return 0; sleep 0.01; done
  return 1
}
# The largest step gap (µs) the server wrote after line N of its gaps file, once two more steps
# have come (the first step after a pause closes the gap).
gap_after() {
  local n=$1 now
  now=$(count "$work/gaps")
  wait_lines "$work/gaps" $((now + 2)) || { echo "the server stopped stepping" >&2; return 1; }
  awk -v n="$n" 'NR > n && NF == 3 && $3 > m {m = $3} END {print m + 0}' "$work/gaps"
}
# Every line of the server's output a step in order, none "bad" or "worker gone".
steps_ok() {
  awk '$1 != NR || $2 != "sent" || $NF != "ok" {print "line " NR ": " $0; bad = 1; exit} END {exit bad}' \
    "$work/out" >&2
}
# "done" of the server's last line.
done_count() { tail -1 "$work/out" | awk '{print $5}'; }

# The pids whose parent is $1 (from /proc/*/stat: /proc/PID/task/TID/children needs a kernel
# option this kernel lacks).
children_of() {
  local stat rest
  for stat in /proc/[0-9]*/stat; do
    rest=$(cat "$stat" 2>/dev/null) || continue
    rest=${rest##*) }   # after the command name, which may hold spaces and parentheses
    read -r _ ppid _ <<< "$rest"
    [ "$ppid" = "$1" ] && { pid=${stat#/proc/}; echo -n "${pid%/stat} "; }
  done
  echo
}

start_server() {
  rm -f "$work/out" "$work/gaps"
  setsid "$work/prefork" "$work/out" "$WORKERS" --heap-mib "$HEAP_MIB" --gaps "$work/gaps" \
    < /dev/null > /dev/null 2>&1 &
  local root=$!
  pids=("$root")
  # "ready" once every process has written its heap, then one line per step.
  wait_lines "$work/gaps" 3 || { echo "the server did not start" >&2; exit 1; }
  read -r -a workers <<< "$(children_of "$root")"
  [ ${#workers[@]} -eq "$WORKERS" ] || { echo "workers: ${workers[*]}" >&2; exit 1; }
  pids+=("${workers[@]}")
}

# Runs COMMAND... under /usr/bin/time; prints "wall_ns peak_rss_kib". Its stdout goes to
# $work/stdout; on failure its output and the tool's log are printed and the bench stops.
timed() {
  local started ended
  started=$(now_ns)
  if ! /usr/bin/time -f %M -o "$work/rss" "$@" > "$work/stdout" 2> "$work/stderr"; then
    echo "FAILED: $*" >&2
    cat "$work/stdout" "$work/stderr" >&2
    for log in "$work"/ckpt/*.log; do [ -e "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }; done
    exit 1
  fi
  ended=$(now_ns)
  echo "$((ended - started)) $(tail -1 "$work/rss")"
}

# One server, one tool: appends "tool measure value" lines to $work/results.
run_tool() {
  local tool=$1 n r wall rss stopped lines before
  local ckpt=$work/ckpt
  start_server
  n=$(count "$work/gaps")
  sleep 1
  echo "$tool idle_gap_ms $(gap_after "$n" | awk '{print $1/1000}')" >> "$work/results"

  # (a) checkpoint, tree left running
  rm -rf "$ckpt"
  [ "$tool" = criu ] && mkdir -p "$ckpt"
  sync
  n=$(count "$work/gaps")
  case $tool in
    memzinc) r=$(timed "$MEMZINC" --json checkpoint --pid "${pids[0]}" --tree --leave-running -o "$ckpt") ;;
    criu) r=$(timed "$CRIU" dump -t "${pids[0]}" -D "$ckpt" --leave-running -o dump.log) ;;
  esac
  read -r wall rss <<< "$r"
  {
    echo "$tool ckpt_s $(awk -v w="$wall" 'BEGIN {print w/1e9}')"
    echo "$tool ckpt_rss_mib $(awk -v k="$rss" 'BEGIN {print k/1024}')"
    echo "$tool ckpt_gap_ms $(gap_after "$n" | awk '{print $1/1000}')"
    echo "$tool ckpt_disk_mib $(du -sm "$ckpt" | cut -f1)"
  } >> "$work/results"
  if [ "$tool" = memzinc ]; then
    stopped=$(sed -n 's/.*"stopped_us": *\([0-9]*\).*/\1/p' "$work/stdout" | head -1)
    echo "$tool ckpt_said_stopped_ms $(awk -v s="$stopped" 'BEGIN {print s/1000}')" >> "$work/results"
  fi
  rm -rf "$ckpt"
  before=$(count "$work/out")
  wait_lines "$work/out" $((before + 20)) || { echo "$tool: the server stopped after the checkpoint" >&2; exit 1; }
  steps_ok || { echo "$tool: the server is wrong after the checkpoint" >&2; exit 1; }

  # (b) checkpoint that kills the tree, then restore
  [ "$tool" = criu ] && mkdir -p "$ckpt"
  sync
  n=$(count "$work/gaps")
  case $tool in
    memzinc) r=$(timed "$MEMZINC" --json checkpoint --pid "${pids[0]}" --tree --kill -o "$ckpt") ;;
    criu) r=$(timed "$CRIU" dump -t "${pids[0]}" -D "$ckpt" -o dump.log) ;;
  esac
  read -r wall rss <<< "$r"
  echo "$tool kill_s $(awk -v w="$wall" 'BEGIN {print w/1e9}')" >> "$work/results"
  # The tree is gone: reaped (this shell is its subreaper), so its PIDs are free.
  local p
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
    while [ -e "/proc/$p" ]; do sleep 0.01; done
  done
  lines=$(count "$work/out")
  before=$(done_count)
  sleep 0.05
  [ "$(count "$work/out")" -eq "$lines" ] || { echo "$tool: the server ran on after the kill" >&2; exit 1; }
  case $tool in
    memzinc) r=$(timed "$MEMZINC" --json restore "$ckpt") ;;
    criu) r=$(timed "$CRIU" restore -D "$ckpt" -d -o restore.log) ;;
  esac
  read -r wall rss <<< "$r"
  {
    echo "$tool restore_s $(awk -v w="$wall" 'BEGIN {print w/1e9}')"
    echo "$tool restore_rss_mib $(awk -v k="$rss" 'BEGIN {print k/1024}')"
  } >> "$work/results"
  rm -rf "$ckpt"
  wait_lines "$work/out" $((lines + 40)) || { echo "$tool: the server did not go on after the restore" >&2; exit 1; }
  steps_ok || { echo "$tool: the server is wrong after the restore" >&2; exit 1; }
  [ "$(done_count)" -gt $((before + 20)) ] || { echo "$tool: the workers do no jobs after the restore" >&2; exit 1; }
  # What the server saw from the step before the kill to the first after the restore.
  echo "$tool down_gap_ms $(gap_after "$n" | awk '{print $1/1000}')" >> "$work/results"
  for p in "${pids[@]}"; do
    [ "$(cut -d' ' -f1 "/proc/$p/stat" 2>/dev/null)" = "$p" ] || { echo "$tool: pid $p not back" >&2; exit 1; }
  done
  stop_tree
}

# "median min max" of numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s %s %s", m, v[1], v[NR]}'; }

read -r -a tools <<< "${TOOLS:-memzinc criu}"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), $(date -u '+%F %H:%M UTC'); memzinc $MEMZINC"
echo "tree: 1 parent + $WORKERS workers, $HEAP_MIB MiB of written private heap each; $RUNS runs per tool, interleaved"
: > "$work/results"
for run in $(seq 1 "$RUNS"); do
  for i in "${!tools[@]}"; do
    tool=${tools[$(( (i + run) % ${#tools[@]} ))]}
    run_tool "$tool"
    echo "round $run: $tool done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
done
echo
echo "## results ($RUNS runs each; load now $(cut -d' ' -f1-3 /proc/loadavg))"
measures=(ckpt_s ckpt_gap_ms ckpt_said_stopped_ms ckpt_rss_mib ckpt_disk_mib kill_s restore_s
          restore_rss_mib down_gap_ms idle_gap_ms)
printf '%-22s %-26s %-26s %s\n' measure "memzinc median (min-max)" "CRIU median (min-max)" "memzinc/CRIU (medians)"
for m in "${measures[@]}"; do
  row=$(printf '%-22s' "$m")
  declare -A med=()
  for tool in "${tools[@]}"; do
    if grep -q "^$tool $m " "$work/results"; then
      read -r md lo hi <<< "$(awk -v t="$tool" -v m="$m" '$1==t && $2==m {print $3}' "$work/results" | stats)"
      med[$tool]=$md
      row+=$(printf ' %-26s' "$(printf '%.3g (%.3g-%.3g)' "$md" "$lo" "$hi")")
    else
      row+=$(printf ' %-26s' -)
    fi
  done
  if [ -n "${med[memzinc]:-}" ] && [ -n "${med[criu]:-}" ]; then
    row+=$(awk -v a="${med[memzinc]}" -v b="${med[criu]}" 'BEGIN {if (b > 0) printf " %.2f", a/b; else printf " -"}')
  fi
  echo "$row"
  unset med
done
echo
echo "raw:"
sort -k1,2 -s "$work/results" | awk '{k=$1" "$2; if (k != p) {if (p) print line; line=k; p=k} line=line" "$3} END {print line}'
