#!/bin/sh
# STAND-IN for the build of AMD's amdgpu kernel module (mi50-llm-stack tests
# only): run by the real DKMS from dkms.conf's MAKE with the kernel release and
# its headers' directory. It compiles nothing, but fails where a real build
# fails, with output shaped like the real one (DKMS keeps it in make.log):
# - without the kernel's headers (no <build>/Makefile);
# - on a kernel newer than this release's driver knows (amdgpu-dkms 6.4.2
#   builds up to 6.14, ROCm issue #4619; the real source then stops with C
#   compile errors and make exits 2, and DKMS's postinst exits 10, leaving the
#   package half-configured: ROCm/amdgpu issue #192). The kernel version is the
#   one the headers' Makefile declares, as for a real build.
# Otherwise it writes a placeholder amdgpu.ko that says what it is.
set -e
kernel="$1"
headers="$2"
max_version=6
max_patchlevel=14
if [ ! -f "$headers/Makefile" ]; then
    echo "amdgpu-dkms STAND-IN: no kernel headers for $kernel in $headers" >&2
    exit 1
fi
version=$(sed -n 's/^VERSION *= *\([0-9]*\).*/\1/p' "$headers/Makefile" | head -n 1)
patchlevel=$(sed -n 's/^PATCHLEVEL *= *\([0-9]*\).*/\1/p' "$headers/Makefile" | head -n 1)
echo "make: Entering directory '$headers'"
echo "  CC [M]  $PWD/amd/amdkcl/main.o"
echo "  CC [M]  $PWD/amd/amdgpu/amdgpu_drv.o"
if [ -n "$version" ] && [ -n "$patchlevel" ] && \
   { [ "$version" -gt "$max_version" ] || { [ "$version" -eq "$max_version" ] && [ "$patchlevel" -gt "$max_patchlevel" ]; }; }; then
    echo "$PWD/amd/amdgpu/amdgpu_drv.c:2981:10: error: STAND-IN: amdgpu 6.12.12 does not compile against Linux $version.$patchlevel (newer than $max_version.$max_patchlevel)"
    echo "make[3]: *** [scripts/Makefile.build:243: $PWD/amd/amdgpu/amdgpu_drv.o] Error 1"
    echo "make[2]: *** [scripts/Makefile.build:480: $PWD/amd/amdgpu] Error 2"
    echo "make: *** [Makefile:1944: $PWD] Error 2"
    echo "make: Leaving directory '$headers'"
    exit 2
fi
mkdir -p amd/amdgpu
printf 'STAND-IN amdgpu.ko (amdgpu-dkms 6.12.12-2187269.@SUITE_VERSION@) for kernel %s: not a kernel module\n' \
    "$kernel" > amd/amdgpu/amdgpu.ko
echo "amdgpu-dkms STAND-IN: placeholder amdgpu.ko for $kernel (nothing was compiled)"
echo "make: Leaving directory '$headers'"
