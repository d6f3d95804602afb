# Finds LuaJIT 2.1: pkg-config first, then the usual header and library names.
# Defines the imported target LuaJIT::LuaJIT and LUAJIT_VERSION.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_LUAJIT QUIET luajit)
endif()
find_path(LUAJIT_INCLUDE_DIR luajit.h
  HINTS ${PC_LUAJIT_INCLUDE_DIRS} PATH_SUFFIXES luajit-2.1 luajit-2.0)
find_library(LUAJIT_LIBRARY NAMES luajit-5.1 luajit HINTS ${PC_LUAJIT_LIBRARY_DIRS})
if(LUAJIT_INCLUDE_DIR AND EXISTS "${LUAJIT_INCLUDE_DIR}/luajit.h")
  file(STRINGS "${LUAJIT_INCLUDE_DIR}/luajit.h" _lj_ver REGEX "^#define LUAJIT_VERSION[ \t]+\"")
  string(REGEX REPLACE ".*\"LuaJIT ([^\"]+)\".*" "\\1" LUAJIT_VERSION "${_lj_ver}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LuaJIT
  REQUIRED_VARS LUAJIT_LIBRARY LUAJIT_INCLUDE_DIR VERSION_VAR LUAJIT_VERSION)
if(LuaJIT_FOUND AND NOT TARGET LuaJIT::LuaJIT)
  add_library(LuaJIT::LuaJIT UNKNOWN IMPORTED)
  set_target_properties(LuaJIT::LuaJIT PROPERTIES
    IMPORTED_LOCATION "${LUAJIT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LUAJIT_INCLUDE_DIR}")
endif()
mark_as_advanced(LUAJIT_INCLUDE_DIR LUAJIT_LIBRARY)
