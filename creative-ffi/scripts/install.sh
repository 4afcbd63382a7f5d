#!/usr/bin/env bash
# Install the creative C ABI into PREFIX (default /usr/local): headers, shared
# and static library, pkg-config file and CMake package config.
#
#   cargo build --release -p creative-ffi
#   sudo creative-ffi/scripts/install.sh target/release            # /usr/local
#   creative-ffi/scripts/install.sh target/release "$HOME/.local"  # no root
#
# Layout (Linux):
#   PREFIX/include/creative.h, creative.hpp
#   PREFIX/lib/libcreative_ffi.so.<version>        the library, stripped
#   PREFIX/lib/libcreative_ffi.so.<abi> -> ...     its SONAME (what programs load)
#   PREFIX/lib/libcreative_ffi.so -> ...so.<abi>   for the linker (-lcreative_ffi)
#   PREFIX/lib/.debug/libcreative_ffi.so.<version>.debug
#                                                  its debug info (gdb finds it
#                                                  through .gnu_debuglink)
#   PREFIX/lib/libcreative_ffi.a
#   PREFIX/lib/pkgconfig/creative.pc
#   PREFIX/lib/cmake/creative/creativeConfig.cmake (+ ConfigVersion)
#
# Under /usr/local (or /usr), pkg-config, CMake's find_package and the dynamic
# loader find everything without environment variables (the script runs
# ldconfig when it can). Elsewhere, point PKG_CONFIG_PATH / CMAKE_PREFIX_PATH
# at PREFIX and link with an rpath (-Wl,-rpath,PREFIX/lib).
#
# Set CREATIVE_NO_STRIP=1 to install the library with its debug info inside.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 CARGO_PROFILE_DIR [PREFIX]   (e.g. $0 target/release /usr/local)" >&2
  exit 2
fi
libdir_in=$1
prefix=${2:-/usr/local}
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
version=$(sed -n 's/^Version: *//p' "$here/pkgconfig/creative.pc")
abi=$(sed -n 's/^#define CREATIVE_ABI_VERSION \([0-9]*\).*/\1/p' "$repo/include/creative.h")
if [ -z "$version" ] || [ -z "$abi" ]; then
  echo "error: cannot read the version (creative.pc) or the ABI version (creative.h)" >&2
  exit 1
fi
if [ ! -f "$libdir_in/libcreative_ffi.a" ]; then
  echo "error: $libdir_in has no libcreative_ffi.a; run cargo build -p creative-ffi first" >&2
  exit 1
fi
install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/creative"
install -m 644 "$repo/include/creative.h" "$repo/include/creative.hpp" "$prefix/include/"
install -m 644 "$libdir_in/libcreative_ffi.a" "$prefix/lib/"

if [ -f "$libdir_in/libcreative_ffi.so" ]; then
  real="libcreative_ffi.so.$version"
  soname="libcreative_ffi.so.$abi"
  rm -f "$prefix/lib/$real" "$prefix/lib/$soname" "$prefix/lib/libcreative_ffi.so"
  install -m 755 "$libdir_in/libcreative_ffi.so" "$prefix/lib/$real"
  if [ -z "${CREATIVE_NO_STRIP:-}" ]; then
    if ! command -v objcopy >/dev/null 2>&1; then
      echo "error: objcopy (binutils) is needed to split the debug info off; or set CREATIVE_NO_STRIP=1" >&2
      exit 1
    fi
    install -d "$prefix/lib/.debug"
    objcopy --only-keep-debug "$prefix/lib/$real" "$prefix/lib/.debug/$real.debug"
    chmod 644 "$prefix/lib/.debug/$real.debug"
    objcopy --strip-debug --strip-unneeded \
      --add-gnu-debuglink="$prefix/lib/.debug/$real.debug" "$prefix/lib/$real"
  fi
  ln -s "$real" "$prefix/lib/$soname"
  ln -s "$soname" "$prefix/lib/libcreative_ffi.so"
  if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
    case "$prefix" in /usr | /usr/local) ldconfig ;; esac
  fi
elif [ -f "$libdir_in/libcreative_ffi.dylib" ]; then
  install -m 755 "$libdir_in/libcreative_ffi.dylib" "$prefix/lib/libcreative_ffi.$abi.dylib"
  ln -sf "libcreative_ffi.$abi.dylib" "$prefix/lib/libcreative_ffi.dylib"
else
  echo "error: $libdir_in has no libcreative_ffi shared library; run cargo build -p creative-ffi first" >&2
  exit 1
fi

install -m 644 "$here/pkgconfig/creative.pc" "$prefix/lib/pkgconfig/"
install -m 644 "$here/cmake/creativeConfig.cmake" "$here/cmake/creativeConfigVersion.cmake" \
  "$prefix/lib/cmake/creative/"
echo "installed creative $version (ABI $abi) into $prefix"
