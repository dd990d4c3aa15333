#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS seconds
# (default 60), one after another, and prints a table: target, seconds,
# executions, result. Exit status 1 if any target crashed; the crashing
# input is then in fuzz/artifacts/<target>/ (reproduce it with
# `cargo +nightly fuzz run <target> <file>` in fuzz/).
#
#   scripts/fuzz.sh [SECONDS]              all targets
#   FUZZ_TARGETS="kms_blob nbd_request" scripts/fuzz.sh 300
#
# New inputs a run discovers go to a scratch directory, not to the committed
# seed corpora (fuzz/corpus/<target>/), which stay small; to fold them in,
# use `cargo +nightly fuzz cmin <target>` and commit the result.
#
# Needs a nightly toolchain and cargo-fuzz (libFuzzer needs -Z flags):
#   rustup toolchain install nightly
#   cargo install cargo-fuzz
set -uo pipefail

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz" || exit 2

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly Rust toolchain; install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
echo "building fuzz targets (release, AddressSanitizer; the first build takes several minutes)" >&2
if ! cargo +nightly fuzz build -O >&2; then
    echo "fuzz.sh: building the fuzz targets failed" >&2
    exit 2
fi

logs="$root/fuzz/target/fuzz-logs"
mkdir -p "$logs"
rows=()
failed=0
for t in $targets; do
    scratch=$(mktemp -d)
    log="$logs/$t.log"
    echo "fuzzing $t for ${secs}s (log: $log)" >&2
    start=$(date +%s)
    # Seeds come from fuzz/corpus/$t; new inputs go to $scratch. One job,
    # as the machine is shared.
    cargo +nightly fuzz run -O "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 \
        -timeout=60 >"$log" 2>&1
    rc=$?
    # Seconds spent fuzzing as libFuzzer counts them (without the build);
    # wall time if it never got that far.
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
    took=${took:-$(($(date +%s) - start))}
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n1)
    if [ "$rc" -eq 0 ]; then
        result="no crash"
    else
        failed=1
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n1 | sed 's/Test unit written to //')
        result="CRASH (exit $rc) ${artifact:-see $log}"
    fi
    rows+=("$t|$took|${execs:-?}|$result")
    rm -rf "$scratch"
    # kms_api keeps its KMS data dirs in tmpfs, named by process id.
    rm -rf /dev/shm/cryptvol-fuzz-* 2>/dev/null
done

printf '\n| %-18s | %7s | %12s | %s\n' target seconds executions result
printf '|%s|%s|%s|%s\n' -------------------- --------- -------------- --------
for r in "${rows[@]}"; do
    IFS='|' read -r t took execs result <<<"$r"
    printf '| %-18s | %7s | %12s | %s\n' "$t" "$took" "$execs" "$result"
done
exit "$failed"
