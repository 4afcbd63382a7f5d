# CMake package config for the creative C ABI: find_package(creative CONFIG).
#
# Installed as PREFIX/lib/cmake/creative/creativeConfig.cmake (see
# creative-ffi/scripts/install.sh); relocatable. Defines:
#   creative::creative         the shared library (libcreative_ffi), headers
#                              creative.h (C) and creative.hpp (C++17 RAII)
#   creative::creative_static  the static library, with its system libraries
get_filename_component(_creative_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET creative::creative)
  find_package(Threads REQUIRED)

  # The SONAME carries the ABI version (creative-ffi/build.rs).
  if(APPLE)
    set(_creative_soname "@rpath/libcreative_ffi.1.dylib")
  else()
    set(_creative_soname "libcreative_ffi.so.1")
  endif()
  add_library(creative::creative SHARED IMPORTED)
  set_target_properties(creative::creative PROPERTIES
    IMPORTED_LOCATION "${_creative_prefix}/lib/${CMAKE_SHARED_LIBRARY_PREFIX}creative_ffi${CMAKE_SHARED_LIBRARY_SUFFIX}"
    IMPORTED_SONAME "${_creative_soname}"
    INTERFACE_INCLUDE_DIRECTORIES "${_creative_prefix}/include")

  add_library(creative::creative_static STATIC IMPORTED)
  set_target_properties(creative::creative_static PROPERTIES
    IMPORTED_LOCATION "${_creative_prefix}/lib/${CMAKE_STATIC_LIBRARY_PREFIX}creative_ffi${CMAKE_STATIC_LIBRARY_SUFFIX}"
    INTERFACE_INCLUDE_DIRECTORIES "${_creative_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

set(creative_INCLUDE_DIRS "${_creative_prefix}/include")
set(creative_LIBRARIES creative::creative)
unset(_creative_prefix)
unset(_creative_soname)
