#!/usr/bin/env bash
# A short run of every cargo-fuzz target (fuzz/fuzz_targets/), as `make test` and CI do:
# each target for FUZZ_SECONDS seconds (20 by default), starting from its seeds in
# fuzz/seeds/<target>/. Fails when a target crashes (a panic, a failed check, a 5xx from the
# REST API, an input slower than FUZZ_TIMEOUT seconds) and prints the input that did it.
#
# Installs cargo-fuzz if missing. The toolchain is stable (rust-toolchain.toml);
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags to it. The smoke run builds without a
# sanitizer (FUZZ_SANITIZER=none): our code forbids `unsafe`, so AddressSanitizer finds
# little here, and its build of the controller's dependencies is what made a cold run slow;
# FUZZ_SANITIZER=address for a longer hunt. Nothing is written
# under version control: new inputs go to fuzz/corpus/<target>/ and crashes to
# fuzz/artifacts/<target>/ (both ignored by git).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
timeout="${FUZZ_TIMEOUT:-10}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=(ws_frames device_token rest_bodies)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# One build of every target first, so that each run below spends its seconds fuzzing.
cargo fuzz build --dev --sanitizer "$sanitizer"

failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    log="fuzz/artifacts/$target.log"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz-smoke: $target for ${seconds}s"
    # The scratch corpus comes first: libFuzzer adds new inputs to the first directory only,
    # so the seeds stay as committed.
    if cargo fuzz run --dev --sanitizer "$sanitizer" "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" |
            sed "s/^/fuzz-smoke: $target /" || true
    else
        echo "fuzz-smoke: $target FAILED; its output (last 40 lines of $log):"
        tail -n 40 "$log"
        crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | cut -d' ' -f5 || true)
        if [ -n "$crash" ]; then
            echo "fuzz-smoke: $target crash input: $crash"
            echo "fuzz-smoke: reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run --dev $target $crash"
        fi
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: failed: ${failed[*]}"
    exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets ran ${seconds}s without a crash"
