# sunrise-link: the Mooncake overlay (TENT and the classic Transfer Engine).
#
# Builds Mooncake with the Sunrise Link transports (TENT's and the classic engine's) and TENT's
# Sunrise platform taken from sunrise-link, without changing Mooncake's sources. Pass this
# file to Mooncake's configure step as a project include:
#
#   cmake -S <mooncake> -B <build> -DUSE_TENT=ON -DUSE_SUNRISE=ON \
#         -DMC_TANGRT_ROOT=<Tang SDK root, or the emulator's root> \
#         -DCMAKE_PROJECT_INCLUDE=<sunrise-link>/cmake/SunriseLinkTentOverlay.cmake
#
# What it does, at the end of Mooncake's top-level CMakeLists.txt (cmake_language(DEFER)):
#   * the classic engine's transport, sunrise_link_transport (an object library of
#     `transport`), and, with USE_TENT, TENT's tent_xport_sunrise_link and platform_sunrise
#     keep their names (so every consumer, transfer_engine and tent_link_group included,
#     links them unchanged) but are rebuilt from sunrise-link's cpp/ sources; upstream's
#     Sunrise .cpp files are not compiled;
#   * those targets get no Tang include directory, link directory or Tang library: their own
#     copies (and the Tang include directory every target inherits from Mooncake's top-level
#     include_directories) are removed, and the one TENT's tent_interface hands to every
#     TENT target is withheld from them;
#   * sunrise-link's include/ directory is put first on the include path of every target
#     under mooncake-transfer-engine/, so the classic engine's MultiTransport and TENT's
#     transport loader and platform selector compile against the drop-in headers
#     transport/sunrise_link_transport/sunrise_link_transport.h,
#     tent/transport/sunrise_link/sunrise_link_transport.h and tent/platform/sunrise.h;
#   * the path of libsunrise_link.so found at configure time (SUNRISE_LINK_LIBRARY_PATH) is
#     baked into the transports as their default library location.
#
# The rest of Mooncake (tests, tebench, the classic engine's other files) still uses
# MC_TANGRT_ROOT as before; sunrise-link's emulated runtime root (make emu) can serve as
# that root.
#
# Requires CMake >= 3.19. Works from a sunrise-link source tree and from an installed
# package (<prefix>/lib/cmake/SunriseLink/).

include_guard(GLOBAL)

if(CMAKE_VERSION VERSION_LESS 3.19)
  message(FATAL_ERROR "sunrise-link overlay needs CMake >= 3.19 (cmake_language(DEFER))")
endif()

# --- Locate sunrise-link's headers and C++ sources -------------------------------------
get_filename_component(_sunrise_link_here "${CMAKE_CURRENT_LIST_DIR}" ABSOLUTE)
get_filename_component(_sunrise_link_src_root "${_sunrise_link_here}/.." ABSOLUTE)
# Installed: <prefix>/<libdir>/cmake/SunriseLink, where <libdir> may have one or two parts.
set(_sunrise_link_prefix "")
foreach(_up "../../.." "../../../..")
  get_filename_component(_p "${_sunrise_link_here}/${_up}" ABSOLUTE)
  if(NOT _sunrise_link_prefix AND EXISTS "${_p}/share/sunrise_link/cpp/sunrise_link_transport.cpp")
    set(_sunrise_link_prefix "${_p}")
  endif()
endforeach()

if(EXISTS "${_sunrise_link_src_root}/cpp/sunrise_link_transport.cpp"
   AND EXISTS "${_sunrise_link_src_root}/include/sunrise_link.h")
  set(SUNRISE_LINK_OVERLAY_INCLUDE_DIR "${_sunrise_link_src_root}/include")
  set(SUNRISE_LINK_OVERLAY_CPP_DIR "${_sunrise_link_src_root}/cpp")
  set(_sunrise_link_lib_hints "${_sunrise_link_src_root}/target/release")
elseif(_sunrise_link_prefix)
  set(SUNRISE_LINK_OVERLAY_INCLUDE_DIR "${_sunrise_link_prefix}/share/sunrise_link/include")
  set(SUNRISE_LINK_OVERLAY_CPP_DIR "${_sunrise_link_prefix}/share/sunrise_link/cpp")
  get_filename_component(_sunrise_link_lib_hints "${_sunrise_link_here}/../.." ABSOLUTE)
else()
  message(FATAL_ERROR "sunrise-link overlay: cannot find cpp/ and include/ next to "
                      "${_sunrise_link_here}")
endif()

# Default library location baked into the transports and the platform. Users can still
# override it at run time (transports/sunrise_link/library_path, $SUNRISE_LINK_LIBRARY).
if(NOT SUNRISE_LINK_LIBRARY_PATH)
  find_file(
    _sunrise_link_found_lib
    NAMES libsunrise_link.so
    HINTS ${_sunrise_link_lib_hints}
    NO_DEFAULT_PATH NO_CACHE)
  if(_sunrise_link_found_lib)
    set(_sunrise_link_default_lib "${_sunrise_link_found_lib}")
  else()
    set(_sunrise_link_default_lib "")
  endif()
  set(SUNRISE_LINK_LIBRARY_PATH
      "${_sunrise_link_default_lib}"
      CACHE FILEPATH
            "Default path of libsunrise_link.so baked into the sunrise_link transports")
endif()

# --- The replacement, run once Mooncake's top-level CMakeLists.txt is done --------------

# Drops every entry of the list variable <var> that lies under one of the directories in
# ARGN (string prefix on normalised paths).
function(_sunrise_link_drop_paths var)
  set(kept "")
  foreach(item IN LISTS ${var})
    set(drop FALSE)
    string(REGEX REPLACE "/+$" "" item_norm "${item}")
    foreach(dir IN LISTS ARGN)
      string(REGEX REPLACE "/+$" "" dir_norm "${dir}")
      if(dir_norm AND (item_norm STREQUAL dir_norm OR item_norm MATCHES "^${dir_norm}/"))
        set(drop TRUE)
      endif()
    endforeach()
    if(NOT drop)
      list(APPEND kept "${item}")
    endif()
  endforeach()
  set(${var} "${kept}" PARENT_SCOPE)
endfunction()

# Drops the Tang runtime libraries from the list variable <var>.
function(_sunrise_link_drop_tang_libs var)
  set(kept "")
  foreach(item IN LISTS ${var})
    if(NOT item MATCHES "^(tangrt_shared|ptml_shared)$"
       AND NOT item MATCHES "lib(tangrt_shared|ptml_shared)\\.so")
      list(APPEND kept "${item}")
    endif()
  endforeach()
  set(${var} "${kept}" PARENT_SCOPE)
endfunction()

# Rebuilds <target> from <source>: no Tang paths or libraries, our headers first, the
# given extra link libraries.
function(_sunrise_link_rebuild_target target source)
  set(tang_dirs "${MC_TANGRT_ROOT}/include" "${MC_TANGRT_ROOT}/lib")
  set_property(TARGET ${target} PROPERTY SOURCES "${source}")
  set_property(TARGET ${target} PROPERTY SUNRISE_LINK_NO_TANG ON)

  foreach(prop INCLUDE_DIRECTORIES INTERFACE_INCLUDE_DIRECTORIES LINK_DIRECTORIES
               INTERFACE_LINK_DIRECTORIES)
    get_target_property(v ${target} ${prop})
    if(v)
      _sunrise_link_drop_paths(v ${tang_dirs})
      set_property(TARGET ${target} PROPERTY ${prop} "${v}")
    endif()
  endforeach()
  get_target_property(inc ${target} INCLUDE_DIRECTORIES)
  if(NOT inc)
    set(inc "")
  endif()
  set_property(TARGET ${target} PROPERTY INCLUDE_DIRECTORIES
               "${SUNRISE_LINK_OVERLAY_INCLUDE_DIR};${SUNRISE_LINK_OVERLAY_CPP_DIR};${inc}")

  foreach(prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
    get_target_property(v ${target} ${prop})
    if(v)
      _sunrise_link_drop_tang_libs(v)
    else()
      set(v "")
    endif()
    list(APPEND v ${ARGN})
    list(REMOVE_DUPLICATES v)
    set_property(TARGET ${target} PROPERTY ${prop} "${v}")
  endforeach()

  if(SUNRISE_LINK_LIBRARY_PATH)
    set_property(TARGET ${target} APPEND PROPERTY COMPILE_DEFINITIONS
                 "SUNRISE_LINK_DEFAULT_LIBRARY=\"${SUNRISE_LINK_LIBRARY_PATH}\"")
  endif()
endfunction()

# Every buildsystem target defined in <dir> and below.
function(_sunrise_link_targets_below dir out)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _sunrise_link_targets_below("${sub}" sub_targets)
    list(APPEND targets ${sub_targets})
  endforeach()
  set(${out} "${targets}" PARENT_SCOPE)
endfunction()


# TENT: tent_xport_sunrise_link and platform_sunrise.
function(_sunrise_link_tent_targets)
  foreach(t tent_xport_sunrise_link platform_sunrise tent_interface tent_platform_all)
    if(NOT TARGET ${t})
      message(FATAL_ERROR "sunrise-link overlay: Mooncake defines no target ${t}; "
                          "this Mooncake version is not supported by the overlay")
    endif()
  endforeach()

  _sunrise_link_rebuild_target(
    tent_xport_sunrise_link "${SUNRISE_LINK_OVERLAY_CPP_DIR}/sunrise_link_transport.cpp"
    tent_common glog::glog ${CMAKE_DL_LIBS})
  # CpuPlatform (host memory, NIC and NUMA probing) lives in tent_platform_all, which
  # itself links platform_sunrise: a cycle of static libraries, which CMake repeats on the
  # link line.
  _sunrise_link_rebuild_target(
    platform_sunrise "${SUNRISE_LINK_OVERLAY_CPP_DIR}/sunrise_platform.cpp"
    tent_common tent_platform_all glog::glog ${CMAKE_DL_LIBS})

  # TENT hands the Tang include directory to every TENT target through tent_interface;
  # withhold it from ours (marked SUNRISE_LINK_NO_TANG) and keep it for everyone else.
  set(tang_inc "${MC_TANGRT_ROOT}/include")
  get_target_property(iface_inc tent_interface INTERFACE_INCLUDE_DIRECTORIES)
  if(iface_inc)
    set(before "${iface_inc}")
    _sunrise_link_drop_paths(iface_inc "${tang_inc}")
    if(NOT before STREQUAL iface_inc)
      list(APPEND iface_inc
           "$<$<NOT:$<BOOL:$<TARGET_PROPERTY:SUNRISE_LINK_NO_TANG>>>:${tang_inc}>")
    endif()
    set_property(TARGET tent_interface PROPERTY INTERFACE_INCLUDE_DIRECTORIES
                 "${iface_inc}")
  endif()
endfunction()

# Our drop-in headers first on the include path of every transfer-engine target; sets <out>
# to the number of targets.
function(_sunrise_link_drop_ins_first out)
  _sunrise_link_targets_below("${CMAKE_SOURCE_DIR}" all_targets)
  set(te_dir "${CMAKE_SOURCE_DIR}/mooncake-transfer-engine")
  set(count 0)
  foreach(t IN LISTS all_targets)
    get_target_property(type ${t} TYPE)
    get_target_property(dir ${t} SOURCE_DIR)
    if(type STREQUAL "INTERFACE_LIBRARY" OR type STREQUAL "UTILITY")
      continue()
    endif()
    if(NOT dir STREQUAL te_dir AND NOT dir MATCHES "^${te_dir}/")
      continue()
    endif()
    set_property(TARGET ${t} PROPERTY INCLUDE_DIRECTORIES
                 "${SUNRISE_LINK_OVERLAY_INCLUDE_DIR}" APPEND)
    get_target_property(inc ${t} INCLUDE_DIRECTORIES)
    list(REMOVE_ITEM inc "${SUNRISE_LINK_OVERLAY_INCLUDE_DIR}")
    set_property(TARGET ${t} PROPERTY INCLUDE_DIRECTORIES
                 "${SUNRISE_LINK_OVERLAY_INCLUDE_DIR};${inc}")
    math(EXPR count "${count} + 1")
  endforeach()
  set(${out} ${count} PARENT_SCOPE)
endfunction()

function(_sunrise_link_tent_overlay_apply)
  if(NOT USE_SUNRISE)
    message(STATUS "sunrise-link overlay: USE_SUNRISE is OFF; nothing replaced")
    return()
  endif()
  set(replaced "")

  # The classic engine's transport (mooncake-transfer-engine/src/transport/sunrise_link).
  if(TARGET sunrise_link_transport)
    _sunrise_link_rebuild_target(
      sunrise_link_transport
      "${SUNRISE_LINK_OVERLAY_CPP_DIR}/classic_sunrise_link_transport.cpp"
      glog::glog ${CMAKE_DL_LIBS})
    list(APPEND replaced sunrise_link_transport)
  elseif(WITH_TE)
    message(FATAL_ERROR "sunrise-link overlay: Mooncake defines no target "
                        "sunrise_link_transport (the classic engine's Sunrise transport); "
                        "this Mooncake version is not supported by the overlay")
  endif()

  if(USE_TENT)
    _sunrise_link_tent_targets()
    list(APPEND replaced tent_xport_sunrise_link platform_sunrise)
  endif()
  _sunrise_link_drop_ins_first(count)

  if(SUNRISE_LINK_LIBRARY_PATH)
    set(lib_note "default library ${SUNRISE_LINK_LIBRARY_PATH}")
  else()
    set(lib_note "no default library path (dlopen search; set SUNRISE_LINK_LIBRARY_PATH)")
  endif()
  list(JOIN replaced ", " replaced_text)
  message(STATUS "sunrise-link overlay: ${replaced_text} built from "
                 "${SUNRISE_LINK_OVERLAY_CPP_DIR}; drop-in headers first for "
                 "${count} targets; ${lib_note}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _sunrise_link_tent_overlay_apply)
