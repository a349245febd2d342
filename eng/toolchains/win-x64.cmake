# Windows x64 with mingw-w64 (Debian's gcc-mingw-w64-x86-64, win32 thread model).
# libgcc is linked statically so libfdsend.dll imports only system DLLs (KERNEL32,
# WS2_32, msvcrt). Tests run under wine (CMAKE_CROSSCOMPILING_EMULATOR, set by
# eng/cross.sh when wine is installed; the test step creates a throw-away WINEPREFIX).
# SPDX-License-Identifier: MIT
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc")
find_program(FDSEND_WINE NAMES wine wine64)
if(FDSEND_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FDSEND_WINE})
endif()
