#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (see FUZZING.md) for SECONDS_PER_TARGET seconds each
# (default 20), as many at a time as there are cores, and prints libFuzzer's executions per
# target and the total. Exits non-zero if a target finds a crash; the input is then in
# $MEMZINC_CACHE/fuzz/artifacts/<target>/ (replay: cd fuzz && cargo fuzz run -s none <target>
# <file>).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_TARGETS="merkle accounts" scripts/fuzz.sh 60     # a subset
#   FUZZ_SANITIZER=address scripts/fuzz.sh                 # with ASan (slower; see FUZZING.md)
#
# Corpora accumulate in $MEMZINC_CACHE/fuzz/corpus/<target>/ from run to run (outside the
# clone, like every cache). Not part of scripts/test.sh: fuzzing is open-ended, CI time is not.
set -euo pipefail
source "$(dirname "$0")/env.sh"
seconds=${1:-20}
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }
"$MEMZINC_ROOT/scripts/install-tools.sh" toolchain cargo-fuzz

sanitizer=${FUZZ_SANITIZER:-none}
# Without a sanitizer cargo-fuzz only passes stable -C flags. A sanitizer is -Zsanitizer=…,
# which the pinned stable toolchain accepts with RUSTC_BOOTSTRAP (a nightly older than the
# workspace's rust-version could not build the verifier).
[ "$sanitizer" = none ] || export RUSTC_BOOTSTRAP=1
target_dir=$MEMZINC_CACHE/fuzz-target
corpus=$MEMZINC_CACHE/fuzz/corpus
artifacts=$MEMZINC_CACHE/fuzz/artifacts
read -r -a targets <<< "${FUZZ_TARGETS:-submission instruction witness_snapshot accounts rules_structured relocation merkle snapshot_open debug_types registry plan_file tree_manifest heap_walk}"
jobs=$(nproc)
logs=$(mktemp -d)
# The host targets write each input to a scratch file /dev/shm/memzinc-fuzz-<pid>-<name>.
trap 'rm -rf "$logs"; rm -rf /dev/shm/memzinc-fuzz-*' EXIT

cd "$MEMZINC_ROOT/fuzz"
cargo +"$MEMZINC_TOOLCHAIN" fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
bin_dir=$target_dir/$(rustc +"$MEMZINC_TOOLCHAIN" -vV | sed -n 's/^host: //p')/release
CARGO_TARGET_DIR="$target_dir/seeds" cargo +"$MEMZINC_TOOLCHAIN" run -q --locked --example seeds -- "$corpus/submission"
# The host targets' seeds: a real snapshot core of a tiny process (needs gcc and ptrace), its
# plan file, a C binary with DWARF, a registry image.
CARGO_TARGET_DIR="$target_dir/seeds" cargo +"$MEMZINC_TOOLCHAIN" run -q --locked --example host_seeds -- "$corpus"

run() {
  local t=$1 extra=()
  # Inputs bigger than libFuzzer's default -max_len (4 KiB): a submission with a page of
  # evidence, a snapshot core, an executable with DWARF, a plan file with its evidence.
  case $t in
    submission) extra=(-max_len=16384) ;;
    snapshot_open) extra=(-max_len=524288) ;;
    heap_walk) extra=(-max_len=90000) ;;
    debug_types) extra=(-max_len=131072) ;;
    plan_file) extra=(-max_len=65536) ;;
  esac
  mkdir -p "$corpus/$t" "$artifacts/$t"
  # The binary itself rather than `cargo fuzz run`, which creates fuzz/artifacts/ in the clone.
  "$bin_dir/$t" "$corpus/$t" -artifact_prefix="$artifacts/$t/" -max_total_time="$seconds" \
    -print_final_stats=1 "${extra[@]}" > "$logs/$t.log" 2>&1
}

echo "fuzzing ${targets[*]} for ${seconds} s each, $jobs at a time (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  ( if run "$t"; then echo 0; else echo $?; fi > "$logs/$t.rc" ) &
done
wait

total=0 failed=0
printf '%-18s %15s  %s\n' target executions result
for t in "${targets[@]}"; do
  n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  total=$((total + n))
  rc=$(cat "$logs/$t.rc")
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    result="CRASH (exit $rc): $(grep -o 'Test unit written to .*' "$logs/$t.log" | tail -1)"
    grep -m1 -A3 'panicked at' "$logs/$t.log" >&2 || tail -20 "$logs/$t.log" >&2
  fi
  printf '%-18s %15s  %s\n' "$t" "$n" "$result"
done
printf '%-18s %15s\n' total "$total"
exit "$failed"
