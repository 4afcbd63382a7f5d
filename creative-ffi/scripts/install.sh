#!/usr/bin/env bash
# Install the creative C ABI into PREFIX: headers, shared and static library,
# pkg-config file and CMake package config.
#
#   cargo build --release -p creative-ffi
#   creative-ffi/scripts/install.sh target/release /usr/local
#
# Layout: PREFIX/include/creative.h, creative.hpp; PREFIX/lib/libcreative_ffi.so,
# libcreative_ffi.a; PREFIX/lib/pkgconfig/creative.pc;
# PREFIX/lib/cmake/creative/creativeConfig.cmake (+ ConfigVersion).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 CARGO_PROFILE_DIR PREFIX   (e.g. $0 target/release /usr/local)" >&2
  exit 2
fi
libdir_in=$1
prefix=$2
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
shared=""
for name in libcreative_ffi.so libcreative_ffi.dylib; do
  if [ -f "$libdir_in/$name" ]; then shared=$name; fi
done
if [ -z "$shared" ] || [ ! -f "$libdir_in/libcreative_ffi.a" ]; then
  echo "error: $libdir_in has no libcreative_ffi shared and static library; run cargo build -p creative-ffi first" >&2
  exit 1
fi
install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/creative"
install -m 644 "$repo/include/creative.h" "$repo/include/creative.hpp" "$prefix/include/"
install -m 755 "$libdir_in/$shared" "$prefix/lib/"
install -m 644 "$libdir_in/libcreative_ffi.a" "$prefix/lib/"
install -m 644 "$here/pkgconfig/creative.pc" "$prefix/lib/pkgconfig/"
install -m 644 "$here/cmake/creativeConfig.cmake" "$here/cmake/creativeConfigVersion.cmake" \
  "$prefix/lib/cmake/creative/"
echo "installed creative into $prefix"
