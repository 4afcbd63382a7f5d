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
#   PREFIX/lib/libcreative_ffi.a                   without debug info
#   PREFIX/lib/pkgconfig/creative.pc
#   PREFIX/lib/cmake/creative/creativeConfig.cmake (+ ConfigVersion)
#
# Under /usr/local (or /usr), pkg-config, CMake's find_package and the dynamic
# loader find everything without environment variables (the script runs
# ldconfig when it can). Elsewhere, point PKG_CONFIG_PATH / CMAKE_PREFIX_PATH
# at PREFIX and link with an rpath (-Wl,-rpath,PREFIX/lib).
#
# Set CREATIVE_NO_STRIP=1 to install the libraries with their debug info inside.
# DESTDIR stages the install for a package (DESTDIR=pkgroot ... /usr puts the
# files under pkgroot/usr); the files are the same wherever they end up (the
# pkg-config and CMake files are relocatable), and ldconfig is left to the
# package's own install.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 CARGO_PROFILE_DIR [PREFIX]   (e.g. $0 target/release /usr/local)" >&2
  exit 2
fi
libdir_in=$1
prefix=${2:-/usr/local}
destdir=${DESTDIR:-}
case "$prefix" in
  /*) ;;
  *) if [ -n "$destdir" ]; then
       echo "error: with DESTDIR, PREFIX must be absolute (got $prefix)" >&2
       exit 2
     fi ;;
esac
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
root=$destdir$prefix
install -d "$root/include" "$root/lib/pkgconfig" "$root/lib/cmake/creative"
install -m 644 "$repo/include/creative.h" "$repo/include/creative.hpp" "$root/include/"
install -m 644 "$libdir_in/libcreative_ffi.a" "$root/lib/"
if [ -z "${CREATIVE_NO_STRIP:-}" ] && command -v strip >/dev/null 2>&1; then
  # As Debian's dh_strip does for archives: the debug info of every member goes
  # (a release archive halves, 222 MB to 115 MB); what a host links is the same.
  strip --strip-debug "$root/lib/libcreative_ffi.a"
fi

if [ -f "$libdir_in/libcreative_ffi.so" ]; then
  real="libcreative_ffi.so.$version"
  soname="libcreative_ffi.so.$abi"
  rm -f "$root/lib/$real" "$root/lib/$soname" "$root/lib/libcreative_ffi.so"
  install -m 755 "$libdir_in/libcreative_ffi.so" "$root/lib/$real"
  if [ -z "${CREATIVE_NO_STRIP:-}" ]; then
    if ! command -v objcopy >/dev/null 2>&1; then
      echo "error: objcopy (binutils) is needed to split the debug info off; or set CREATIVE_NO_STRIP=1" >&2
      exit 1
    fi
    install -d "$root/lib/.debug"
    objcopy --only-keep-debug "$root/lib/$real" "$root/lib/.debug/$real.debug"
    chmod 644 "$root/lib/.debug/$real.debug"
    objcopy --strip-debug --strip-unneeded \
      --add-gnu-debuglink="$root/lib/.debug/$real.debug" "$root/lib/$real"
  fi
  ln -s "$real" "$root/lib/$soname"
  ln -s "$soname" "$root/lib/libcreative_ffi.so"
  if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
    case "$prefix" in /usr | /usr/local) ldconfig ;; esac
  fi
elif [ -f "$libdir_in/libcreative_ffi.dylib" ]; then
  install -m 755 "$libdir_in/libcreative_ffi.dylib" "$root/lib/libcreative_ffi.$abi.dylib"
  ln -sf "libcreative_ffi.$abi.dylib" "$root/lib/libcreative_ffi.dylib"
else
  echo "error: $libdir_in has no libcreative_ffi shared library; run cargo build -p creative-ffi first" >&2
  exit 1
fi

install -m 644 "$here/pkgconfig/creative.pc" "$root/lib/pkgconfig/"
install -m 644 "$here/cmake/creativeConfig.cmake" "$here/cmake/creativeConfigVersion.cmake" \
  "$root/lib/cmake/creative/"
echo "installed creative $version (ABI $abi) into $root"
