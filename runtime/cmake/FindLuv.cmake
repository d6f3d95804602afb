# Finds luv (libuv bindings for Lua 5.1 / LuaJIT). Debian's lua5.1-luv.pc requires PUC Lua's
# lua5.1.pc, which LuaJIT does not provide, so the header and library are located directly.
# Defines the imported target Luv::Luv.
find_path(LUV_INCLUDE_DIR luv/luv.h PATH_SUFFIXES lua5.1 luajit-2.1)
find_library(LUV_LIBRARY NAMES lua5.1-luv luv luv_a)
# luv has no version macro; Debian's package version is the best available answer.
find_program(DPKG_QUERY dpkg-query)
if(DPKG_QUERY AND NOT LUV_VERSION)
  execute_process(COMMAND ${DPKG_QUERY} -W -f=\${Version} lua-luv-dev
    OUTPUT_VARIABLE LUV_VERSION ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(NOT LUV_VERSION)
  set(LUV_VERSION "unknown")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Luv REQUIRED_VARS LUV_LIBRARY LUV_INCLUDE_DIR)
if(Luv_FOUND AND NOT TARGET Luv::Luv)
  add_library(Luv::Luv UNKNOWN IMPORTED)
  set_target_properties(Luv::Luv PROPERTIES
    IMPORTED_LOCATION "${LUV_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LUV_INCLUDE_DIR}")
endif()
mark_as_advanced(LUV_INCLUDE_DIR LUV_LIBRARY)
