#!/usr/bin/env bash
# ci/ffi-header.sh [--check] — regenerate crates/shmbus-ffi/include/shmbus.h
# with cbindgen (ci/ffi-tools.sh installs it), or with --check fail when the
# committed header differs from what the sources generate (CI does this).
# Also checks that the header compiles on its own as C99 (and as C11 and C++).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(ci/ffi-tools.sh)"
crate=crates/shmbus-ffi
header=$crate/include/shmbus.h
fresh=$(mktemp --suffix=.h)
trap 'rm -f "$fresh" "$fresh.o"' EXIT
(cd "$crate" && "$CBINDGEN" --quiet --config cbindgen.toml --output "$fresh" .)

if [[ ${1:-} == --check ]]; then
    if ! diff -u "$header" "$fresh"; then
        echo "ffi-header: $header is out of date with the sources: run ci/ffi-header.sh and commit it" >&2
        exit 1
    fi
    echo "ffi-header: $header matches the sources"
else
    cp "$fresh" "$header"
    echo "ffi-header: wrote $header"
fi

# The header alone, as C99 with every warning an error, then C11 and C++.
for std in c99 c11; do
    printf '#include "shmbus.h"\nint main(void) { return SHMBUS_OK; }\n' |
        cc -std=$std -pedantic -Wall -Wextra -Werror -I"$crate/include" -x c -c -o "$fresh.o" -
done
printf '#include "shmbus.h"\nint main() { return SHMBUS_OK; }\n' |
    c++ -std=c++11 -pedantic -Wall -Wextra -Werror -I"$crate/include" -x c++ -c -o "$fresh.o" -
echo "ffi-header: shmbus.h compiles alone as C99, C11 and C++11 (-pedantic -Werror)"
