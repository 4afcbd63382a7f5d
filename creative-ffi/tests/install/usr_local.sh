#!/bin/sh
# Inside a private mount namespace (run by `unshare -m`, or `unshare -rm` without
# root): lay a staged install (install.sh with DESTDIR=STAGED and PREFIX
# /usr/local) over the real /usr/local, refresh the loader's cache as
# install.sh's ldconfig would, then find, build and run the hosts the way a
# user does after `sudo install.sh target/release`: no PKG_CONFIG_PATH, no
# CMAKE_PREFIX_PATH, no rpath, no LD_LIBRARY_PATH. Nothing outside the
# namespace changes: the overlay is read-only and the cache is a private copy.
#
#   unshare -m sh usr_local.sh STAGED REPO WORK
set -eu
PATH=$PATH:/usr/sbin:/sbin
staged=$1
repo=$2
work=$3
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR CMAKE_PREFIX_PATH \
  CMAKE_INCLUDE_PATH CMAKE_LIBRARY_PATH creative_DIR CREATIVE_DIR LD_LIBRARY_PATH LIBRARY_PATH \
  CPATH C_INCLUDE_PATH CPLUS_INCLUDE_PATH

mount -t overlay overlay -o "lowerdir=$staged/usr/local:/usr/local" /usr/local
ldconfig -X -C "$work/ld.so.cache"
mount --bind "$work/ld.so.cache" /etc/ld.so.cache

echo "pkg-config finds creative $(pkg-config --modversion creative): $(pkg-config --cflags --libs creative)"
# shellcheck disable=SC2046 # pkg-config's flags are words
cc -std=c11 -Wall -Wextra -Werror -O1 "$repo/examples/c/host.c" \
  $(pkg-config --cflags --libs creative) -o "$work/host_c"
echo "the loader resolves: $(ldd "$work/host_c" | grep creative_ffi)"
"$work/host_c" "$work/out-c"

cmake -S "$repo/examples/cmake" -B "$work/build" -DCMAKE_SKIP_RPATH=ON >"$work/cmake.log"
grep -h "creative_DIR" "$work/build/CMakeCache.txt"
cmake --build "$work/build" >>"$work/cmake.log"
"$work/build/host_cpp" "$work/out-cpp"
"$work/build/host_c_static" "$work/out-c-static"
