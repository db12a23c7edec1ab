#!/bin/sh
# STAND-IN for the build of AMD's amdgpu kernel module (mi50-llm-stack tests
# only): run by the real DKMS from dkms.conf's MAKE with the kernel release and
# its headers' directory. It compiles nothing: it fails without headers, like a
# real build, and otherwise writes a placeholder amdgpu.ko that says what it is.
set -e
kernel="$1"
headers="$2"
if [ ! -f "$headers/Makefile" ]; then
    echo "amdgpu-dkms STAND-IN: no kernel headers for $kernel in $headers" >&2
    exit 1
fi
mkdir -p amd/amdgpu
printf 'STAND-IN amdgpu.ko (amdgpu-dkms 6.12.12-2187269.@SUITE_VERSION@) for kernel %s: not a kernel module\n' \
    "$kernel" > amd/amdgpu/amdgpu.ko
echo "amdgpu-dkms STAND-IN: placeholder amdgpu.ko for $kernel (nothing was compiled)"
