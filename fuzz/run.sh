#!/bin/sh
# Coverage-guided fuzzing of the parsers with libFuzzer, on stable Rust (no cargo-fuzz, no
# nightly): builds the targets with SanitizerCoverage and runs each for SECONDS (default 60).
#   sh fuzz/run.sh [SECONDS] [TARGET...]      targets: hex_codec location config
# Corpora stay in fuzz/corpus/<target>, crashes in fuzz/artifacts/. FUZZ_PROFILE=dev builds
# without optimisation (quicker to build, slower to run: what `make test` uses for its short run).
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-hex_codec location config}
triple=$(rustc -vV | sed -n 's/^host: //p')
profile=${FUZZ_PROFILE:-release}
case $profile in
    release) dir=release ;;
    dev) dir=debug ;;
    *) echo "FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Cdebuginfo=0" \
    cargo build --profile "$profile" --bins --target "$triple"
mkdir -p artifacts
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "fuzzing $t for $secs s"
    "target/$triple/$dir/$t" -max_total_time="$secs" -max_len=512 \
        -artifact_prefix=artifacts/ "corpus/$t" 2>&1 | grep -E 'DONE|ERROR|SUMMARY|panicked' || true
done
if [ -n "$(ls artifacts)" ]; then
    echo "crashes found:"; ls artifacts; exit 1
fi
