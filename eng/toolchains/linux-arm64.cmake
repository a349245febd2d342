# Linux arm64 (glibc) with Debian's cross compiler (gcc-aarch64-linux-gnu).
# Tests run under qemu-user against the cross glibc in /usr/aarch64-linux-gnu.
# SPDX-License-Identifier: MIT
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FDSEND_CROSS_SYSROOT /usr/aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH ${FDSEND_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
find_program(FDSEND_QEMU NAMES qemu-aarch64-static qemu-aarch64)
if(FDSEND_QEMU)
  # -L: where qemu finds the guest's ELF interpreter (ld-linux-aarch64.so.1) and libc.
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FDSEND_QEMU} -L ${FDSEND_CROSS_SYSROOT})
endif()
