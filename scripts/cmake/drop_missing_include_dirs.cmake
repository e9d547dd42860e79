# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> by scripts/build_msgs.sh (never needed on a
# normal ROS 2 install, where it is a no-op).
#
# Message packages installed from the ROS 2 PyPI wheels (pip install ros-jazzy-*) export imported
# targets whose INTERFACE_INCLUDE_DIRECTORIES point at the wheel builder's Python
# (/opt/python/cp311-cp311/...), which does not exist here; CMake then refuses to generate. At the
# end of the top-level CMakeLists (after every find_package), drop include directories that do not
# exist. Deferred, so the same file works for any interface package without editing its sources.
function(_dp_drop_missing_include_dirs)
  get_property(_dp_imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_dp_target IN LISTS _dp_imported)
    get_target_property(_dp_dirs ${_dp_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dp_dirs)
      set(_dp_kept)
      foreach(_dp_dir IN LISTS _dp_dirs)
        if(_dp_dir MATCHES "^\\$<" OR EXISTS "${_dp_dir}")
          list(APPEND _dp_kept "${_dp_dir}")
        endif()
      endforeach()
      if(NOT "${_dp_kept}" STREQUAL "${_dp_dirs}")
        set_target_properties(${_dp_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dp_kept}")
      endif()
    endif()
  endforeach()
endfunction()

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _dp_drop_missing_include_dirs)
endif()
