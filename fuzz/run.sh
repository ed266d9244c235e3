#!/usr/bin/env bash
# Build every libFuzzer target in fuzz/ (fuzz_*.c) with ASan + UBSan and run
# each one on a copy of its seed corpus (fuzz/corpus/<name>) for a given time.
#
#   fuzz/run.sh [-j JOBS] [-o OUTDIR] [-t NAME[,NAME...]] MINUTES
#   FUZZ_SECONDS=5 fuzz/run.sh [-j JOBS] ...       (time in seconds instead)
#
#   MINUTES   time per target; fractional is fine (0.5 = 30 s)
#   -j JOBS   run up to JOBS targets at once (default 1)
#   -o OUTDIR where binaries, the grown corpora, logs and crash inputs go
#             (default: ${TMPDIR:-/tmp}/uwsgipy-fuzz.YYYYmmdd-HHMMSS)
#   -t NAMES  only these targets (http, chunked, uwsgi, ...)
#
# Prints one line per target: executions, seconds, and whether libFuzzer
# found anything (the inputs are kept in OUTDIR/<name>/artifacts/).  Exits 1
# when any target found a crash, leak, timeout or OOM; 2 on a usage or build
# error.  The time variable is FUZZ_SECONDS, not SECONDS: bash owns SECONDS.
set -euo pipefail

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

jobs=1
outdir=""
only=""
while getopts ":j:o:t:h" opt; do
    case "$opt" in
    j) jobs="$OPTARG" ;;
    o) outdir="$OPTARG" ;;
    t) only="$OPTARG" ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))

if [ -n "${FUZZ_SECONDS:-}" ]; then
    [ $# -eq 0 ] || usage
    seconds="$FUZZ_SECONDS"
else
    [ $# -eq 1 ] || usage
    seconds=$(awk -v m="$1" 'BEGIN { if (m !~ /^[0-9]*\.?[0-9]+$/) exit 1; s = int(m * 60 + 0.5); print (s < 1 ? 1 : s) }') \
        || { echo "run.sh: MINUTES must be a number, got '$1'" >&2; exit 2; }
fi
case "$seconds" in
'' | *[!0-9]* | 0) echo "run.sh: the time must be a whole number of seconds >= 1, got '$seconds'" >&2; exit 2 ;;
esac
case "$jobs" in
'' | *[!0-9]* | 0) echo "run.sh: -j needs a positive number, got '$jobs'" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CC="${CC:-clang}"
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "run.sh: $CC not found; on Debian/Ubuntu: apt-get install -y clang libclang-rt-14-dev" >&2
    exit 2
fi
# The C sources every target links with (the pure-C protocol layer).
sources=("$root/csrc/upy_http.c" "$root/csrc/upy_uwsgi.c" "$root/csrc/upy_cgivars.c" "$root/csrc/upy_proxy.c"
         "$root/csrc/upy_fastcgi.c" "$root/csrc/upy_scgi.c"
         "$root/csrc/upy_static_http.c" "$root/csrc/upy_ws.c")
flags=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"$root/csrc")

# Longest input per target: enough to pass each decoder's own limits
# (the http harness uses a 1024-byte head; chunked lines go to 4096 bytes
# and trailers to 8192).
max_len_of() {
    case "$1" in
    chunked) echo 12288 ;;
    fastcgi) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

targets=()
for src in "$here"/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then
        continue
    fi
    targets+=("$name")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "run.sh: no fuzz target matches '$only'" >&2
    exit 2
fi
[ -n "$outdir" ] || outdir="${TMPDIR:-/tmp}/uwsgipy-fuzz.$(date +%Y%m%d-%H%M%S)"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

mkdir -p "$outdir/bin"
for name in "${targets[@]}"; do
    if ! "$CC" "${flags[@]}" -o "$outdir/bin/fuzz_$name" "$here/fuzz_$name.c" "${sources[@]}" \
        2>"$outdir/bin/fuzz_$name.build.log"; then
        echo "run.sh: building fuzz_$name failed:" >&2
        cat "$outdir/bin/fuzz_$name.build.log" >&2
        echo "(libFuzzer missing? on Debian 12: apt-get install -y libclang-rt-14-dev)" >&2
        exit 2
    fi
done

# One target: its corpus copy, its artifacts, its log; the summary line
# goes to OUTDIR/<name>/summary.
run_target() {
    local name=$1 dir="$outdir/$1" rc=0 execs found
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -d "$here/corpus/$name" ]; then
        cp -p "$here/corpus/$name"/. "$dir/corpus/" -R
    fi
    "$outdir/bin/fuzz_$name" "$dir/corpus" \
        -max_total_time="$seconds" -max_len="$(max_len_of "$name")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -error_exitcode=77 \
        -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    found=$(find "$dir/artifacts" -type f | wc -l)
    if [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]; then
        printf 'fuzz_%-8s %12s executions in %ss: nothing found\n' "$name" "${execs:-?}" "$seconds" >"$dir/summary"
    else
        printf 'fuzz_%-8s %12s executions in %ss: FOUND %s input(s) (exit %s), see %s and %s\n' \
            "$name" "${execs:-?}" "$seconds" "$found" "$rc" "$dir/artifacts/" "$dir/log" >"$dir/summary"
    fi
}

echo "run.sh: ${#targets[@]} target(s), ${seconds}s each, $jobs at a time, output in $outdir" >&2
running=0
for name in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$name" &
    running=$((running + 1))
done
wait

status=0
for name in "${targets[@]}"; do
    if [ -f "$outdir/$name/summary" ]; then
        cat "$outdir/$name/summary"
        grep -q 'nothing found' "$outdir/$name/summary" || status=1
    else
        echo "fuzz_$name: no summary (the run did not finish), see $outdir/$name/log"
        status=1
    fi
done
exit "$status"
