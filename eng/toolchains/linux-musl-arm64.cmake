# Linux arm64 with musl libc. Debian's musl-dev:arm64 (multiarch: `dpkg --add-architecture
# arm64`) installs musl's arm64 headers, crt files and libc into /usr/include and
# /usr/lib/aarch64-linux-musl, its loader as /lib/ld-musl-aarch64.so.1, and the wrapper
# /usr/bin/aarch64-linux-musl-gcc, which runs the glibc cross compiler
# (aarch64-linux-gnu-gcc) with musl's gcc specs file (-nostdinc, musl's include path,
# crt files and dynamic linker). Tests run under qemu-user: the musl loader lives at its
# real path on this machine, so qemu needs no -L.
# SPDX-License-Identifier: MIT
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-musl-gcc)
# gcc's default outline atomics (__aarch64_* in libgcc.a) look the CPU up with glibc's
# __getauxval, which musl lacks: inline them (ARMv8.0 LL/SC, correct on every arm64).
set(CMAKE_C_FLAGS_INIT "-mno-outline-atomics")
set(CMAKE_FIND_ROOT_PATH /usr/lib/aarch64-linux-musl /usr/include/aarch64-linux-musl)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
find_program(FDSEND_QEMU NAMES qemu-aarch64-static qemu-aarch64)
if(FDSEND_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FDSEND_QEMU})
endif()
