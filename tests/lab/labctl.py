#!/usr/bin/env python3
"""Lab control: the Docker engine, the lab image, test fixtures and the lab box.

This is test and lab tooling only; nothing here is deployed to a real host.
It needs only the standard library so that the Makefile can call it with any
Python 3.10+.

    labctl.py docker          make sure a Docker engine answers (install/start Debian's if not)
    labctl.py image           build the Debian 12 systemd image unless its recipe is unchanged
    labctl.py fixtures [N..]  build the cached test artifacts (all, or the named builders)
    labctl.py serve           make sure the fixture HTTP server runs on the Docker bridge
    labctl.py unserve         stop it
    labctl.py env             print the environment the tests use (shell syntax)
    labctl.py up | down       start (or reuse) / remove the lab container for `make lab`

Everything heavy lives in the cache directory (MI50_CACHE_DIR, default
~/.cache/mi50-llm-stack), never in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests" / "lab"
IMAGES = LAB / "images"
FIXTURES = LAB / "fixtures"

CACHE = Path(
    os.environ.get("MI50_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mi50-llm-stack"
)
WWW = CACHE / "www"
LAB_IMAGE = os.environ.get("MI50_LAB_IMAGE", "mi50-lab/debian-12:latest")
LAB_CONTAINER = os.environ.get("MI50_LAB_CONTAINER", "mi50-lab")
FIXTURE_PORT = int(os.environ.get("MI50_FIXTURES_PORT", "8765"))
DEBIAN_SUITE = "bookworm"

# The flags that run systemd as PID 1 on these machines (see docs: lab.md).
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
]


def log(msg: str) -> None:
    print(f"labctl: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


# --------------------------------------------------------------------------- docker

def docker_answers() -> bool:
    return shutil.which("docker") is not None and ok(["docker", "info"])


def ensure_docker() -> None:
    """Use a running engine; otherwise install Debian's docker.io and start it."""
    if docker_answers():
        return
    if not shutil.which("dockerd"):
        log("no Docker engine found: installing Debian's docker.io (apt)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run([*sudo(), "apt-get", "update", "-qq"], env=env)
        run([*sudo(), "apt-get", "install", "-y", "-qq", "docker.io"], env=env)
    if docker_answers():  # the package's own unit may have started it
        return
    if Path("/run/systemd/system").is_dir():
        log("starting docker.service")
        run([*sudo(), "systemctl", "start", "docker"])
    else:
        # No systemd on this machine (CI VMs): run the daemon in the background.
        CACHE.mkdir(parents=True, exist_ok=True)
        logfile = CACHE / "dockerd.log"
        log(f"starting dockerd in the background (log: {logfile})")
        with open(logfile, "ab") as out:
            subprocess.Popen([*sudo(), "dockerd"], stdout=out, stderr=out, start_new_session=True)
    for _ in range(60):
        if docker_answers():
            return
        time.sleep(1)
    sys.exit("labctl: the Docker engine did not answer within 60 s")


def bridge_ip() -> str:
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return out or "172.17.0.1"


# --------------------------------------------------------------------------- image

def debian_mirror() -> str:
    """The Debian mirror this machine's own apt uses (not hard-coded)."""
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1].rstrip("/")
            if line.startswith("deb ") and "security" not in line:
                parts = [p for p in line.split() if p.startswith("http")]
                if parts:
                    return parts[0].rstrip("/")
    return "http://deb.debian.org/debian"


def recipe_hash(directory: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_label(image: str, label: str) -> str | None:
    res = subprocess.run(
        ["docker", "image", "inspect", image, "--format", f'{{{{ index .Config.Labels "{label}" }}}}'],
        capture_output=True, text=True,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def build_image() -> None:
    """Build the Debian 12 lab image once; rebuild only when its recipe changes."""
    if LAB_IMAGE != "mi50-lab/debian-12:latest":
        log(f"using the platform image {LAB_IMAGE} as given (MI50_LAB_IMAGE)")
        return
    recipe = recipe_hash(IMAGES / "debian-12", extra=DEBIAN_SUITE)
    if image_label(LAB_IMAGE, "org.mi50-llm-stack.recipe") == recipe:
        log(f"lab image {LAB_IMAGE} is current (recipe {recipe})")
        return
    base = f"mi50-lab/rootfs:{DEBIAN_SUITE}"
    if not ok(["docker", "image", "inspect", base]):
        if not shutil.which("debootstrap"):
            log("installing debootstrap (apt)")
            run([*sudo(), "apt-get", "install", "-y", "-qq", "debootstrap"],
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        rootfs = CACHE / f"rootfs-{DEBIAN_SUITE}"
        if rootfs.exists():
            run([*sudo(), "rm", "-rf", str(rootfs)])
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        mirror = debian_mirror()
        log(f"debootstrap {DEBIAN_SUITE} from {mirror}")
        run([*sudo(), "debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
            stdout=subprocess.DEVNULL)
        # A real install also has the security and updates suites.
        security = mirror.rsplit("/", 1)[0] + "/debian-security"
        sources = (f"deb {mirror} {DEBIAN_SUITE} main\n"
                   f"deb {mirror} {DEBIAN_SUITE}-updates main\n"
                   f"deb {security} {DEBIAN_SUITE}-security main\n")
        run([*sudo(), "tee", str(rootfs / "etc/apt/sources.list")], input=sources.encode(),
            stdout=subprocess.DEVNULL)
        tar = subprocess.Popen([*sudo(), "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "-", base], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
        run([*sudo(), "rm", "-rf", str(rootfs)])
    log(f"building {LAB_IMAGE}")
    run(["docker", "build", "-q", "--build-arg", f"BASE={base}",
         "--label", f"org.mi50-llm-stack.recipe={recipe}",
         "-t", LAB_IMAGE, str(IMAGES / "debian-12")], stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------- fixtures

def fixture_builders() -> dict[str, Path]:
    return {p.stem: p for p in sorted(FIXTURES.glob("*.py")) if not p.name.startswith("_")}


def load_fixture(name: str):
    spec = importlib.util.spec_from_file_location(f"fixture_{name}", fixture_builders()[name])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_fixtures(names: list[str]) -> None:
    """Run the fixture builders; each one decides itself whether its output is current."""
    builders = fixture_builders()
    unknown = set(names) - set(builders)
    if unknown:
        sys.exit(f"labctl: unknown fixture builder(s): {', '.join(sorted(unknown))}")
    WWW.mkdir(parents=True, exist_ok=True)
    for name in names or list(builders):
        module = load_fixture(name)
        started = time.monotonic()
        module.build(cache=CACHE, www=WWW)
        log(f"fixture {name}: ready ({time.monotonic() - started:.1f} s)")


def fixture_url() -> str:
    return f"http://{bridge_ip()}:{FIXTURE_PORT}"


def serving() -> bool:
    try:
        with urllib.request.urlopen(f"{fixture_url()}/.mi50-fixtures", timeout=2) as resp:
            return resp.read().strip() == b"mi50-fixtures"
    except OSError:
        return False


def serve() -> None:
    """Serve the fixture directory on the bridge so containers (and only they) reach it."""
    WWW.mkdir(parents=True, exist_ok=True)
    (WWW / ".mi50-fixtures").write_text("mi50-fixtures\n")
    if serving():
        print(fixture_url())
        return
    logfile = CACHE / "fixture-server.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(LAB / "fixture_server.py"), "--bind", bridge_ip(),
             "--port", str(FIXTURE_PORT), "--directory", str(WWW)],
            stdout=out, stderr=out, start_new_session=True,
        )
    (CACHE / "fixture-server.pid").write_text(str(proc.pid))
    for _ in range(50):
        if serving():
            print(fixture_url())
            return
        time.sleep(0.1)
    sys.exit(f"labctl: the fixture server did not start (see {logfile})")


def unserve() -> None:
    pidfile = CACHE / "fixture-server.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink()


def print_env() -> None:
    values = {
        "MI50_CACHE_DIR": str(CACHE),
        "MI50_LAB_IMAGE": LAB_IMAGE,
        "MI50_FIXTURES_URL": fixture_url(),
        # The real engine and model the router's end-to-end tests run against.
        "MI50_LLAMA_SERVER": str(load_fixture("llamacpp").server_path(CACHE)),
        "MI50_TEST_MODEL": str(load_fixture("model").model_path(CACHE)),
    }
    for key, value in values.items():
        print(f"export {key}={json.dumps(value)}")


# --------------------------------------------------------------------------- lab box

def container_state(name: str) -> str | None:
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", name],
                         capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def lab_up() -> None:
    """Start the lab container (the stand-in for the MI50 box), or reuse it."""
    state = container_state(LAB_CONTAINER)
    if state == "running":
        log(f"reusing the running lab container {LAB_CONTAINER}")
    elif state is not None:
        run(["docker", "start", LAB_CONTAINER], stdout=subprocess.DEVNULL)
    else:
        log(f"starting the lab container {LAB_CONTAINER} from {LAB_IMAGE}")
        run(["docker", "run", "-d", "--name", LAB_CONTAINER, "--hostname", LAB_CONTAINER,
             *SYSTEMD_RUN_FLAGS, LAB_IMAGE, "/sbin/init"], stdout=subprocess.DEVNULL)
    for _ in range(60):
        res = subprocess.run(["docker", "exec", LAB_CONTAINER, "systemctl", "is-system-running"],
                             capture_output=True, text=True)
        if res.stdout.strip() in {"running", "degraded"}:
            return
        time.sleep(1)
    sys.exit("labctl: systemd in the lab container did not come up within 60 s")


def lab_down() -> None:
    if container_state(LAB_CONTAINER) is not None:
        run(["docker", "rm", "-f", LAB_CONTAINER], stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("docker", "image", "serve", "unserve", "env", "up", "down", "bridge-ip"):
        sub.add_parser(name)
    fixtures = sub.add_parser("fixtures")
    fixtures.add_argument("names", nargs="*")
    args = parser.parse_args()

    if args.cmd == "docker":
        ensure_docker()
    elif args.cmd == "image":
        ensure_docker()
        build_image()
    elif args.cmd == "fixtures":
        build_fixtures(args.names)
    elif args.cmd == "serve":
        serve()
    elif args.cmd == "unserve":
        unserve()
    elif args.cmd == "env":
        print_env()
    elif args.cmd == "bridge-ip":
        print(bridge_ip())
    elif args.cmd == "up":
        lab_up()
    elif args.cmd == "down":
        lab_down()


if __name__ == "__main__":
    main()
