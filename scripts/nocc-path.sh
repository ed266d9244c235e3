#!/usr/bin/env bash
# Print a PATH on which no C compiler, assembler or linker is reachable: one directory of
# symlinks to every program of /usr/local/bin /usr/bin /bin /usr/sbin /sbin except cc, c++,
# c89, c99, gcc*, g++*, cpp*, clang*, ld, ld.*, as and their <triplet>-prefixed forms (the first
# directory wins for a name found in several, as on the real PATH).
#
#   scripts/nocc-path.sh [DIR]      DIR default: ${TMPDIR:-/tmp}/uwsgipy-nocc-bin, made anew
#
# For the test run against an installed wheel on "a machine state with no compiler reachable"
# (issue 13); the caller also sets CC=false CXX=false, so a build that falls back to $CC fails:
#
#   PATH="$(scripts/nocc-path.sh)" CC=false CXX=false PYTHONSAFEPATH=1 UWSGIPY_TEST_INSTALLED=1 \
#       /path/to/venv/bin/python -m pytest
#
# Exits 1 (and prints nothing on stdout) if a compiler is still found on the new PATH.
set -euo pipefail

dir="${1:-${TMPDIR:-/tmp}/uwsgipy-nocc-bin}"
case "$dir" in
/*) ;;
*) dir="$PWD/$dir" ;;
esac

hidden() {
    case "$1" in
    cc | c++ | c89 | c99 | c89-gcc | c99-gcc | as | ld | ld.*) return 0 ;;
    gcc* | g++* | cpp* | clang* | *-gcc* | *-g++* | *-cpp* | *-cc | *-c++ | *-as | *-ld | *-ld.*) return 0 ;;
    esac
    return 1
}

new="$dir.new.$$"
rm -rf "$new"
mkdir -p "$new"
trap 'rm -rf "$new"' EXIT
for src in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
    [ -d "$src" ] || continue
    for prog in "$src"/*; do
        name="${prog##*/}"
        [ -x "$prog" ] && [ ! -d "$prog" ] || continue
        hidden "$name" && continue
        [ -e "$new/$name" ] || [ -L "$new/$name" ] || ln -s "$prog" "$new/$name"
    done
done
rm -rf "$dir"
mv "$new" "$dir"
trap - EXIT

for tool in cc c++ gcc g++ clang clang++ cpp ld as x86_64-linux-gnu-gcc; do
    if found=$(PATH="$dir" command -v "$tool" 2>/dev/null); then
        echo "nocc-path.sh: $tool is still reachable on $dir ($found)" >&2
        exit 1
    fi
done
printf '%s\n' "$dir"
