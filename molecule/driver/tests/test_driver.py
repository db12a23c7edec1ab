"""The amdgpu driver as real boxes meet it (see ../molecule.yml).

mi50-dkms-fails: AMD's amdgpu-dkms cannot build for the running kernel (the real
dkms runs the stand-in source, which fails on a kernel newer than 6.14 as the
real one does, against headers that declare the kernel's real version); the
run ends on vulkan with the reason, and apt and dpkg still work.
mi50-distro-driver: rocm on the kernel's own driver, with Debian's firmware.
Stand-ins: the card, AMD's packages and the kernel headers; real: dkms, apt,
dpkg, Mesa's lavapipe, the roles."""

from __future__ import annotations

import json

import pytest
from conftest import line_of, run_playbook

DKMS_FAILS = "mi50-dkms-fails"
DISTRO = "mi50-distro-driver"


def name(host) -> str:
    return host.backend.get_hostname()


def local_fact(host, fact: str) -> dict:
    return json.loads(host.file(f"/etc/ansible/facts.d/{fact}.fact").content_string)


def only(host, wanted: str) -> None:
    if name(host) != wanted:
        pytest.skip(f"about {wanted}")


def kernel_newer_than_amds_range(host) -> bool:
    major, minor = (int(n) for n in host.check_output("uname -r").split(".")[:2])
    return (major, minor) > (6, 14)


# --------------------------------------------------------------------- a build that fails

def test_dkms_failure_ends_on_vulkan_with_the_reason(host):
    only(host, DKMS_FAILS)
    kernel = host.check_output("uname -r")
    gpu = local_fact(host, "gpu_backend")
    assert gpu["tier"] == "vulkan", gpu
    reason = gpu["rejected"]["rocm"]
    assert f"amdgpu-dkms could not build its module for kernel {kernel}." in reason
    # The last error of DKMS's make.log (what the stand-in source printed, as a compiler would).
    assert "make.log: amdgpu_drv.c:" in reason and "error:" in reason
    assert "rocm_dkms: false" in reason
    if kernel_newer_than_amds_range(host):
        assert f"Kernel {kernel} is newer than 6.14, the newest amdgpu-dkms 6.4.2 builds for" in reason


def test_the_failure_is_recorded_and_reported(host):
    only(host, DKMS_FAILS)
    rocm = local_fact(host, "rocm")
    assert rocm["dkms"]["state"] == "failed"
    assert rocm["dkms"]["kernel"] == host.check_output("uname -r")
    assert rocm["dkms"]["make_log"].startswith("/var/lib/dkms/amdgpu/")
    report = json.loads(host.file("/var/lib/mi50-llm-stack/report.json").content_string)
    assert report["gpu"]["tier"] == "vulkan"
    assert report["gpu"]["rejected"]["rocm"] == local_fact(host, "gpu_backend")["rejected"]["rocm"]


def test_dpkg_is_left_consistent_and_apt_works(host):
    only(host, DKMS_FAILS)
    assert host.run_expect([0], "dpkg --audit").stdout.strip() == ""
    status = host.run("dpkg-query -W -f='${db:Status-Abbrev}' amdgpu-dkms")
    assert status.stdout.strip() in ("", "un", "rc"), status.stdout
    host.run_expect([0], "apt-get check")
    # A later apt run works (the half-configured package no longer fails it).
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet --simulate hello")
    assert "amdgpu" not in host.check_output("dkms status")


def test_rocm_user_space_stays_installed(host):
    only(host, DKMS_FAILS)
    assert host.package("rocm").is_installed
    assert host.file("/opt/rocm-6.4.2/bin/rocminfo").exists


# --------------------------------------------------------------------- the distribution's driver

def test_distribution_driver_gets_its_firmware(host):
    only(host, DISTRO)
    assert host.package("firmware-amd-graphics").is_installed
    # The MI50's (Vega 20) firmware files, which the in-tree amdgpu loads.
    assert host.run_expect([0], "ls /lib/firmware/amdgpu/ | grep -c '^vega20_'").stdout.strip() != "0"
    sources = host.file("/etc/apt/sources.list.d/mi50-amdgpu-firmware.list").content_string
    assert " bookworm non-free-firmware" in sources


def test_distribution_driver_path_serves_rocm_without_dkms(host):
    only(host, DISTRO)
    assert local_fact(host, "rocm")["dkms"] == {"wanted": False, "state": "off"}
    assert local_fact(host, "gpu_backend")["tier"] == "rocm"
    assert not host.package("amdgpu-dkms").is_installed


# --------------------------------------------------------------------- a module that loads, or will not

MODULE_LOAD = "mi50-module-load"


@pytest.fixture()
def module_out(host):
    """The card without its driver, as after a boot where amdgpu did not load; restored afterwards."""
    only(host, MODULE_LOAD)
    host.run_expect([0], "simulate-gpu unload && rm -f /run/mi50-standin/kmsg")
    yield
    host.run_expect([0], "rm -f /run/mi50-standin/secure-boot /run/mi50-standin/mok-enrolled "
                         "/etc/modprobe.d/mi50-test-blacklist.conf")
    assert run_playbook(host, "playbooks/gpu.yml").returncode == 0


def test_a_module_dkms_built_is_loaded_without_a_reboot(host):
    only(host, MODULE_LOAD)
    kernel = host.check_output("uname -r")
    assert f", {kernel}, x86_64: installed" in host.check_output("dkms status -m amdgpu")
    assert host.file("/run/mi50-standin/sys/module/amdgpu").is_directory
    assert local_fact(host, "rocm")["module_load"] == {"rc": 0, "error": ""}
    assert local_fact(host, "gpu_backend")["tier"] == "rocm"
    # Loaded into a kernel that had none: nothing waits for a reboot.
    assert not host.file("/run/reboot-required.pkgs").exists


def test_a_module_refused_by_secure_boot_is_diagnosed_with_the_fix(host, module_out):
    host.run_expect([0], "echo on > /run/mi50-standin/secure-boot")
    assert run_playbook(host, "playbooks/gpu.yml").returncode == 0
    load = local_fact(host, "rocm")["module_load"]
    assert load["rc"] != 0 and "Key was rejected by service" in load["error"]
    gpu = local_fact(host, "gpu_backend")
    assert gpu["tier"] == "cpu" and "rocm" in gpu["rejected"]
    diagnosis = run_playbook(host, "repair.yml", "--check")
    assert diagnosis.returncode == 0, diagnosis.stdout[-3000:]
    finding = line_of(diagnosis.stdout, "PROBLEM [module_key_rejected]")
    assert "Key was rejected by service; Loading of module with unavailable key is rejected" in finding, \
        line_of(diagnosis.stdout, "PROBLEM [") or diagnosis.stdout[-3000:]
    assert "mokutil --import" in finding, finding
    # Once the key is enrolled (at the console, at boot), the next run loads it and moves back to rocm.
    host.run_expect([0], "touch /run/mi50-standin/mok-enrolled")
    assert run_playbook(host, "playbooks/gpu.yml").returncode == 0
    assert local_fact(host, "gpu_backend")["tier"] == "rocm"


def test_an_install_line_in_modprobe_d_is_named(host, module_out):
    host.run_expect([0], "printf 'install amdgpu /bin/false\\n' > /etc/modprobe.d/mi50-test-blacklist.conf")
    assert run_playbook(host, "playbooks/gpu.yml").returncode == 0
    assert "Error running install command '/bin/false'" in local_fact(host, "rocm")["module_load"]["error"]
    diagnosis = run_playbook(host, "repair.yml", "--check")
    finding = line_of(diagnosis.stdout, "PROBLEM [module_blacklisted]")
    assert "/etc/modprobe.d/mi50-test-blacklist.conf: install amdgpu /bin/false" in finding, diagnosis.stdout[-3000:]


# --------------------------------------------------------------------- the kernel that boots next

def pending_kernel(host) -> str:
    major, minor = (int(n) for n in host.check_output("uname -r").split(".")[:2])
    return f"{major}.{minor + 1}.0-99-mi50standin"


def test_the_kernel_that_boots_next_gets_its_headers_and_amdgpu(host):
    only(host, MODULE_LOAD)
    pending = pending_kernel(host)
    assert host.package(f"linux-headers-{pending}").is_installed
    assert f"amdgpu/6.12.12-2187269.22.04, {pending}, x86_64: installed" in host.check_output("dkms status -m amdgpu")


def test_a_next_kernel_outside_amds_range_is_warned_about_and_skipped(host):
    only(host, MODULE_LOAD)
    pending = pending_kernel(host)
    host.run_expect([0], f"dkms remove -m amdgpu -v 6.12.12-2187269.22.04 -k {pending}")
    try:
        result = run_playbook(host, "playbooks/gpu.yml", extra={"rocm_dkms_unsupported_kernel": "skip"})
        assert result.returncode == 0, result.stdout[-3000:]
        assert f"WARNING: kernel {pending} is installed and boots next. Kernel {pending} is newer than 6.14" \
            in result.stdout
        assert "keep booting" in result.stdout
        assert f", {pending}, " not in host.check_output("dkms status -m amdgpu")
    finally:
        assert run_playbook(host, "playbooks/gpu.yml").returncode == 0
    assert f", {pending}, x86_64: installed" in host.check_output("dkms status -m amdgpu")


def test_a_next_kernel_whose_headers_apt_does_not_have_is_reported(host):
    """An installed kernel whose headers left the archive (or never came from one): said, not a failure."""
    only(host, MODULE_LOAD)
    orphan = "6.99.0-98-noheaders"
    host.run_expect([0], f"printf 'STAND-IN kernel image {orphan}\\n' > /boot/vmlinuz-{orphan}")
    try:
        result = run_playbook(host, "playbooks/gpu.yml", extra={"rocm_dkms_unsupported_kernel": "try"})
        assert result.returncode == 0, result.stdout[-3000:]
        assert (f"WARNING: kernel {orphan} is installed and boots next, but DKMS has no amdgpu for it: apt knows no "
                f"linux-headers-{orphan} (install them, or remove that kernel)") in result.stdout
    finally:
        host.run(f"rm -f /boot/vmlinuz-{orphan}")


def test_a_kernel_flavour_without_modules_extra_is_reported_not_fatal(host):
    """Ubuntu's linux-modules-extra-<kernel> is missing for some flavours. Debian has none at all, so the
    Ubuntu package list is given to the role on this Debian box: apt really does not know the package."""
    only(host, MODULE_LOAD)
    extra_pkg = f"linux-modules-extra-{host.check_output('uname -r')}"
    result = run_playbook(host, "playbooks/gpu.yml", extra={"_rocm_dkms_os_packages": [extra_pkg]})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"WARNING: apt knows no {extra_pkg}. This kernel flavour may not have it; the amdgpu build is tried " \
           "anyway" in result.stdout


# --------------------------------------------------------------------- an interrupted dpkg

def test_an_interrupted_dpkg_is_diagnosed_and_finished_first(host):
    """A package unpacked but never configured (a killed apt): apt refuses to run until dpkg --configure -a."""
    only(host, DISTRO)
    host.run_expect([0], "cd /tmp && apt-get download hello && dpkg --unpack /tmp/hello_*.deb")
    assert "hello" in host.check_output("dpkg --audit")
    diagnosis = run_playbook(host, "repair.yml", "--check")
    assert diagnosis.returncode == 0, diagnosis.stdout[-3000:]
    assert "PROBLEM [dpkg_interrupted] dpkg left hello unfinished" in diagnosis.stdout
    stage = run_playbook(host, "playbooks/gpu.yml")
    assert stage.returncode == 0, stage.stdout[-3000:]
    assert "finishing them with dpkg --configure -a" in stage.stdout
    assert host.check_output("dpkg --audit") == ""
    assert host.package("hello").is_installed
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get purge --yes --quiet hello")


# --------------------------------------------------------------------- broken dependencies

def _install_needing(host, package: str, depends: str) -> None:
    """`dpkg -i` of a local package whose dependency is not installed, as users install AMD's
    amdgpu-install .deb: dpkg leaves it unconfigured and apt refuses every install after it."""
    host.run_expect([0], f"mkdir -p /tmp/{package}/DEBIAN && printf '%s\\n' 'Package: {package}' 'Version: 1.0' "
                         f"'Architecture: all' 'Maintainer: lab <lab@localhost>' 'Depends: {depends}' "
                         f"'Description: a package installed without its dependency' > /tmp/{package}/DEBIAN/control "
                         f"&& dpkg-deb -b /tmp/{package} /tmp/{package}.deb")
    host.run_expect([1], f"dpkg -i /tmp/{package}.deb")
    assert host.run("apt-get check").rc == 100


def test_unmet_dependencies_are_diagnosed_and_installed_first(host):
    only(host, DISTRO)
    assert not host.package("hello").is_installed
    _install_needing(host, "mi50-test-needs-hello", "hello")
    try:
        diagnosis = run_playbook(host, "repair.yml", "--check")
        assert diagnosis.returncode == 0, diagnosis.stdout[-3000:]
        # apt-get check names the dependency alone when the archive has it.
        assert "PROBLEM [packages_broken] apt reports unmet dependencies " \
               "(mi50-test-needs-hello : Depends: hello)" in diagnosis.stdout
        stage = run_playbook(host, "playbooks/gpu.yml")
        assert stage.returncode == 0, stage.stdout[-3000:]
        assert "installing them with apt-get --fix-broken install, removing nothing" in stage.stdout
        assert host.run("apt-get check").rc == 0
        assert host.package("hello").is_installed
        assert host.package("mi50-test-needs-hello").is_installed
    finally:
        host.run("DEBIAN_FRONTEND=noninteractive apt-get purge --yes --quiet mi50-test-needs-hello hello")


def test_a_fix_that_needs_a_removal_is_left_to_the_user(host):
    only(host, DISTRO)
    _install_needing(host, "mi50-test-needs-nothing", "mi50-no-such-package")
    try:
        stage = run_playbook(host, "playbooks/gpu.yml")
        assert stage.returncode != 0
        assert "it could fix them only by removing mi50-test-needs-nothing (E: Packages need to be removed but " \
               "remove is disabled.)" in stage.stdout
        # Nothing was removed behind the user's back.
        assert host.run("dpkg-query -W -f='${Status}' mi50-test-needs-nothing").stdout.startswith("install ok")
    finally:
        host.run("dpkg --purge mi50-test-needs-nothing")
    assert host.run("apt-get check").rc == 0


# --------------------------------------------------------------------- check mode

@pytest.mark.parametrize("playbook", ["playbooks/gpu.yml"])
def test_check_mode_on_a_converged_box_changes_nothing(host, playbook):
    """Every instance, whatever its driver path (a failed build recorded, the distribution's driver, a
    module DKMS built), is converged: a check run reports nothing to change."""
    result = run_playbook(host, playbook, "--check")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{name(host)} : ok=" in result.stdout
    assert " changed=0 " in result.stdout.split(f"{name(host)} : ok=")[-1], result.stdout[-3000:]
