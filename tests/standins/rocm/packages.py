"""STAND-IN package list for AMD's ROCm 6.4.2 apt repository. Tests only; never shipped.

tests/lab/fixtures/rocm_mirror.py builds one .deb per entry (for each Ubuntu
suite AMD publishes) and lays them out like repo.radeon.com. The names and
versions are AMD's; the contents are stand-ins that say so. Sources of the
real names and versions:

- ROCm 6.4.2 packages and their versions (build 120): the apt log of a real
  `apt install rocm amdgpu-dkms` from repo.radeon.com/rocm/apt/6.4.2 on Ubuntu
  24.04, posted in a public ROCm issue (rocm 6.4.2.60402-120~24.04,
  rocminfo 1.0.0.60402-120, hsa-rocr 1.15.0.60402-120, hip-runtime-amd
  6.4.43484.60402-120, rocblas 4.4.1.60402-120, rocm-smi-lib 7.5.0.60402-120,
  rocm-opencl 2.0.0.60402-120, amdgpu-dkms 1:6.12.12.60402-2187269.24.04);
  the jammy pool uses the same versions with "~22.04" (for example
  rocm/apt/6.4.2/pool/main/h/hip-runtime-amd/hip-runtime-amd_6.4.43484.60402-120~22.04_amd64.deb
  in public download scripts).
- ROCm 6.3.3 rocBLAS: rocblas 4.3.0.60303-74 (`rocblas_4.3.0.60303` deb from
  the 6.3.3 pool; 6.3.3's build number 74 from public `apt show rocm-libs`
  output: 6.3.3.60303-74~22.04).
- rocBLAS/Tensile library file names (lib/rocblas/library/): real listings of
  rocBLAS packages (Kernels.so-000-gfx906-xnack-.hsaco,
  TensileLibrary_lazy_gfx906.dat, TensileLibrary_Type_<types>_Contraction_<..>_gfx906.co/.dat,
  ..._gfx906-xnack-.hsaco, ..._fallback_gfx906-xnack-.hsaco and the
  architecture-neutral ..._fallback.dat catalogs).

The dependency tree is trimmed to what the tests need: the real `rocm`
meta-package pulls about a hundred packages (compilers, profilers, MIOpen...).
Exact-version dependencies between AMD's packages are kept, as AMD writes them.
"""

from __future__ import annotations

# Repository roots below the base URL, as on repo.radeon.com.
ROCM_642 = "rocm/apt/6.4.2"
AMDGPU_642 = "amdgpu/6.4.2/ubuntu"
ROCM_633 = "rocm/apt/6.3.3"

# Ubuntu suites AMD publishes for 6.3/6.4, with the version suffix of each.
SUITES = {"jammy": "22.04", "noble": "24.04"}

PREFIX_642 = "opt/rocm-6.4.2"
PREFIX_633 = "opt/rocm-6.3.3"
LIB_642 = f"{PREFIX_642}/lib/rocblas/library"
LIB_633 = f"{PREFIX_633}/lib/rocblas/library"

# rocBLAS 6.4.x ships no gfx906 kernels (ROCm issue #4625): its library
# directory holds other targets and the architecture-neutral fallback catalogs.
ROCBLAS_642_LIBRARY = [
    "Kernels.so-000-gfx90a-xnack-.hsaco",
    "Kernels.so-000-gfx942.hsaco",
    "TensileLibrary_lazy_gfx90a.dat",
    "TensileLibrary_lazy_gfx942.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback_gfx90a-xnack-.hsaco",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx90a.co",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx90a.dat",
    "TensileLibrary_Type_BB_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback.dat",
]

# rocBLAS 6.3.3 still carries gfx906: these are the files the rocm role takes.
ROCBLAS_633_GFX906 = [
    "Kernels.so-000-gfx906-xnack-.hsaco",
    "TensileLibrary_lazy_gfx906.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback_gfx906-xnack-.hsaco",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx906-xnack-.hsaco",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx906.co",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx906.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bljk_Cijk_Dijk_fallback_gfx906-xnack-.hsaco",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bljk_Cijk_Dijk_gfx906.co",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bljk_Cijk_Dijk_gfx906.dat",
    "TensileLibrary_Type_BB_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback_gfx906-xnack-.hsaco",
]
# ...and the files of other targets the role must leave alone.
ROCBLAS_633_OTHER = [
    "Kernels.so-000-gfx90a-xnack-.hsaco",
    "TensileLibrary_lazy_gfx90a.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_fallback.dat",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx90a.co",
    "TensileLibrary_Type_4xi8I_HPA_Contraction_l_Ailk_Bjlk_Cijk_Dijk_gfx90a.dat",
]

# The DKMS module version of amdgpu-dkms; @SUITE_VERSION@ (22.04, 24.04) is
# filled in per suite by the mirror builder, in file paths, files and scripts.
AMDGPU_DKMS_VERSION = "6.12.12-2187269.@SUITE_VERSION@"

STANDIN = "STAND-IN (mi50-llm-stack tests): not AMD's software; no real code or kernels inside."


def _placeholders(prefix: str, names: list[str]) -> dict[str, str]:
    return {f"{prefix}/{name}": f"@standin:{name}" for name in names}


# Each entry: name, version (without the per-suite suffix), suffix style
# ("~" + 22.04 for ROCm, "." + 22.04 for the amdgpu driver packages), arch,
# repository root, Depends (with {v:<package>} for "= that package's version"),
# description, files {path in package: "@standin:<what>" | "file:<name in this dir>" | "text:<content>"},
# optional maintainer scripts {postinst|prerm: file name in this dir}. "@SUITE_VERSION@"
# in paths, "file:"/"text:" contents and scripts becomes the suite's 22.04 or 24.04.
PACKAGES = [
    {
        "name": "rocm-core", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": [],
        "description": "ROCm core package: release file and the /opt/rocm alternative",
        "files": {
            # The release file gpu_backend reads (/opt/rocm/.info/version), in AMD's format.
            f"{PREFIX_642}/.info/version": "text:6.4.2-120\n",
            f"{PREFIX_642}/lib/librocm-core.so.1.0.60402": "@standin:librocm-core",
        },
        "scripts": {"postinst": "rocm-core.postinst", "prerm": "rocm-core.prerm"},
    },
    {
        "name": "hsa-rocr", "version": "1.15.0.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocm-core ({v:rocm-core})"],
        "description": "AMD Heterogeneous System Architecture (HSA) runtime (ROCr)",
        "files": {f"{PREFIX_642}/lib/libhsa-runtime64.so.1.15.60402": "@standin:libhsa-runtime64"},
    },
    {
        "name": "rocminfo", "version": "1.0.0.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        # The real package also depends on kmod and pciutils; the stand-in needs only python3.
        "depends": ["hsa-rocr ({v:hsa-rocr})", "python3", "rocm-core ({v:rocm-core})"],
        "description": "ROCm agent enumerator: lists the HSA agents (CPUs and GPUs)",
        "files": {f"{PREFIX_642}/bin/rocminfo": "file:rocminfo"},
    },
    {
        "name": "hip-runtime-amd", "version": "6.4.43484.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["hsa-rocr ({v:hsa-rocr})", "rocm-core ({v:rocm-core})"],
        "description": "HIP runtime for AMD GPUs",
        "files": {f"{PREFIX_642}/lib/libamdhip64.so.6.4.60402": "@standin:libamdhip64"},
    },
    {
        "name": "rocblas", "version": "4.4.1.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["hip-runtime-amd ({v:hip-runtime-amd})", "rocm-core ({v:rocm-core})"],
        "description": "rocBLAS, AMD's BLAS library (no gfx906 kernels in 6.4, ROCm issue #4625)",
        "files": {f"{PREFIX_642}/lib/librocblas.so.4.4.60402": "@standin:librocblas",
                  **_placeholders(LIB_642, ROCBLAS_642_LIBRARY)},
    },
    {
        "name": "rocm-smi-lib", "version": "7.5.0.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocm-core ({v:rocm-core})"],
        "description": "ROCm System Management Interface library",
        "files": {f"{PREFIX_642}/lib/librocm_smi64.so.7.5.60402": "@standin:librocm_smi64"},
    },
    {
        # No ICD file under /etc/OpenCL/vendors: the stand-in has no OpenCL
        # implementation, and a registered fake would mislead clinfo.
        "name": "rocm-opencl", "version": "2.0.0.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["hsa-rocr ({v:hsa-rocr})", "rocm-core ({v:rocm-core})"],
        "description": "ROCm OpenCL implementation (libamdocl64)",
        "files": {f"{PREFIX_642}/lib/libamdocl64.so.2": "@standin:libamdocl64"},
    },
    {
        "name": "rocm-opencl-runtime", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocm-core ({v:rocm-core})", "rocm-opencl ({v:rocm-opencl})"],
        "description": "ROCm OpenCL runtime (meta package)",
        "files": {},
    },
    {
        "name": "rocm-hip-runtime", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["hip-runtime-amd ({v:hip-runtime-amd})", "rocm-core ({v:rocm-core})",
                    "rocminfo ({v:rocminfo})"],
        "description": "ROCm HIP runtime (meta package)",
        "files": {},
    },
    {
        "name": "rocm-hip-libraries", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocblas ({v:rocblas})", "rocm-core ({v:rocm-core})",
                    "rocm-hip-runtime ({v:rocm-hip-runtime})"],
        "description": "ROCm HIP libraries (meta package)",
        "files": {},
    },
    {
        "name": "rocm-utils", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocm-core ({v:rocm-core})", "rocminfo ({v:rocminfo})"],
        "description": "ROCm utilities (meta package)",
        "files": {},
    },
    {
        # What llama.cpp's HIP build needs: the HIP compiler, headers and the BLAS libraries.
        "name": "rocm-hip-sdk", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        "depends": ["rocm-core ({v:rocm-core})", "rocm-hip-libraries ({v:rocm-hip-libraries})",
                    "rocm-hip-runtime ({v:rocm-hip-runtime})"],
        "description": "ROCm HIP SDK (meta package: develop HIP applications)",
        "files": {},
    },
    {
        "name": "rocm", "version": "6.4.2.60402-120", "suffix": "~", "arch": "amd64", "repo": ROCM_642,
        # AMD's rocm pulls the SDKs too (rocm-hip-sdk through rocm-ml-sdk and others; trimmed here).
        "depends": ["rocm-core ({v:rocm-core})", "rocm-hip-libraries ({v:rocm-hip-libraries})",
                    "rocm-hip-runtime ({v:rocm-hip-runtime})", "rocm-hip-sdk ({v:rocm-hip-sdk})",
                    "rocm-opencl-runtime ({v:rocm-opencl-runtime})",
                    "rocm-smi-lib ({v:rocm-smi-lib})", "rocm-utils ({v:rocm-utils})"],
        "description": "Radeon Open Compute (ROCm) software stack meta package (what amdgpu-install --usecase=rocm installs)",
        "files": {},
    },
    {
        "name": "amdgpu-dkms-firmware", "version": "1:6.12.12.60402-2187269", "suffix": ".", "arch": "all",
        "repo": AMDGPU_642, "depends": [],
        "description": "firmware for the amdgpu DKMS kernel module",
        "files": {"usr/share/doc/amdgpu-dkms-firmware/STANDIN": "@standin:amdgpu-dkms-firmware"},
    },
    {
        # The real package hands amdgpu's source to DKMS, which builds amdgpu.ko
        # for the running kernel when that kernel's headers are installed (a
        # dh_dkms postinst). The stand-in does the same with the real dkms, but
        # its source only writes a placeholder amdgpu.ko (dkms.conf's MAKE).
        # DKMS names the module amdgpu/<driver version>-<build>.<suite version>,
        # e.g. amdgpu/6.12.12-2187269.22.04 (AMD's `dkms status` sample output).
        "name": "amdgpu-dkms", "version": "1:6.12.12.60402-2187269", "suffix": ".", "arch": "all",
        "repo": AMDGPU_642, "depends": ["dkms", "amdgpu-dkms-firmware ({v:amdgpu-dkms-firmware})"],
        "description": "amdgpu kernel module (DKMS) for ROCm 6.4.2",
        "files": {
            f"usr/src/amdgpu-{AMDGPU_DKMS_VERSION}/dkms.conf": "file:amdgpu-dkms.conf",
            f"usr/src/amdgpu-{AMDGPU_DKMS_VERSION}/amd/dkms/standin-build.sh": "file:amdgpu-dkms-build.sh",
        },
        "scripts": {"postinst": "amdgpu-dkms.postinst", "prerm": "amdgpu-dkms.prerm"},
    },
    {
        "name": "rocblas", "version": "4.3.0.60303-74", "suffix": "~", "arch": "amd64", "repo": ROCM_633,
        # Simplified: the real package depends on its own release's HIP runtime.
        "depends": ["hip-runtime-amd", "rocm-core"],
        "description": "rocBLAS, AMD's BLAS library (ROCm 6.3.3, still with gfx906 kernels)",
        "files": {f"{PREFIX_633}/lib/librocblas.so.4.3.60303": "@standin:librocblas",
                  **_placeholders(LIB_633, ROCBLAS_633_GFX906 + ROCBLAS_633_OTHER)},
    },
]
