# Linux x64 with musl libc (Alpine and other musl distributions), through Debian's
# musl-tools wrapper (x86_64-linux-musl-gcc = gcc + musl's specs file). The test programs
# link dynamically against musl (/lib/ld-musl-x86_64.so.1, from Debian's `musl` package)
# and run natively: no emulator is needed.
# SPDX-License-Identifier: MIT
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-linux-musl-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/lib/x86_64-linux-musl /usr/include/x86_64-linux-musl)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
