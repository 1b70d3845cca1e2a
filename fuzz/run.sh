#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on *stable* Rust (the flags
# cargo-fuzz passes with `--sanitizer none`), then runs each for a bounded
# time. Usage: fuzz/run.sh [seconds-per-target] (default 30).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --locked --target "$host" --bins
for t in bmc_request_frame bmc_response_frame bmc_stream bmc_auth_frame proxydhcp_decide piboot_boot_sig piboot_fat_read kexec_fdt; do
  mkdir -p "corpus/$t"
  echo "fuzzing $t for ${secs}s"
  # corpus/ grows (not committed); seeds/ holds hand-made valid inputs.
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  # A FAT image needs room: its seed is a 64 KiB volume.
  max_len=600
  [ "$t" = piboot_fat_read ] && max_len=65536
  "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$secs" -max_len="$max_len" "corpus/$t" "${seeds[@]}" 2>&1 | tail -n 3
done
echo "fuzz: all targets ran ${secs}s without a failure"
