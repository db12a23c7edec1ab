#!/usr/bin/env python3
"""STAND-IN for Ollama's `ollama` binary. Tests only; never shipped.

mi50-llm-stack cannot download Ollama here, so tests/lab/fixtures/ollama_mirror.py
packs this file as `bin/ollama` into archives laid out like Ollama's Linux
release archives. It follows Ollama's published CLI and HTTP API (docs/api.md,
docs/openai.md, envconfig/config.go) for the part the ollama role and the router
use, and it is NOT Ollama: no GPU code, no Go, no model conversion.

What is real: text generation. The stand-in starts llama.cpp's `llama-server`
(bundled beside it in lib/ollama/, as Ollama bundles its runners) on a private
loopback port for each loaded model and translates Ollama's API to it.

CLI:  serve | pull NAME [--insecure] | create NAME -f Modelfile | list | ps | rm NAME | --version
HTTP: GET / | GET /api/version | GET /api/tags | GET /api/ps | POST /api/pull | POST /api/create
      HEAD|POST /api/blobs/sha256:<hex> | POST /api/show | POST /api/copy | DELETE /api/delete
      POST /api/generate | POST /api/chat | GET /v1/models | POST /v1/chat/completions | POST /v1/completions

Environment (Ollama's names): OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_KEEP_ALIVE, OLLAMA_NUM_PARALLEL,
OLLAMA_MAX_LOADED_MODELS, OLLAMA_MAX_QUEUE, OLLAMA_CONTEXT_LENGTH, and the GPU ones below.

GPU or CPU: decided at start the way the release it stands in for decides it (see `discover_gpus`),
from the card tests/standins/rocm/simulate-gpu describes (KFD topology under /run/mi50-standin/sys,
else /sys), the device nodes as the service user can open them, the visible-device variables
(ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / GPU_DEVICE_ORDINAL for ROCm, GGML_VK_VISIBLE_DEVICES
and OLLAMA_VULKAN for Vulkan) and the ROCm add-on beside it. Each model loaded is then placed
by its size against the card's free VRAM, as Ollama's scheduler does: /api/ps reports `size_vram`
(0 on the CPU, `size` when fully offloaded, in between when partly) and the log says
"offloaded N/M layers to GPU" as Ollama's ggml backend does. Generation itself still runs on the
CPU through llama-server: the placement is what Ollama would report, not a GPU at work.

Test knobs (not Ollama's): MI50_STANDIN_START_DELAY (seconds before listening),
MI50_STANDIN_INTERRUPT_PULL_AT (bytes: a blob download with nothing to resume is cut there by the
fixture server's ?truncate=, and the pull fails like a dropped connection; the partial file is kept
and the next pull resumes it with a Range request).

Model store: Ollama's layout, $OLLAMA_MODELS/manifests/<host>/<namespace>/<model>/<tag> and
$OLLAMA_MODELS/blobs/sha256-<hex> (partial downloads: sha256-<hex>-partial).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "0.0.0"  # set by tests/lab/fixtures/ollama_mirror.py for each archive it builds
STANDIN = "mi50-llm-stack stand-in"
DEFAULT_HOST = "registry.ollama.ai"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {"model": "application/vnd.ollama.image.model", "template": "application/vnd.ollama.image.template",
               "system": "application/vnd.ollama.image.system", "params": "application/vnd.ollama.image.params"}
LIB_DIR = Path(os.path.realpath(sys.argv[0] if sys.argv[0] else __file__)).parent.parent / "lib" / "ollama"


def log(msg: str, level: str = "INFO", **attrs: object) -> None:
    """One line as Go's log/slog text handler writes it (Ollama's server log): key=value, quoted when needed."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    fields = " ".join(f"{key}={slog_value(value)}" for key, value in attrs.items())
    print(f"time={stamp} level={level} msg={slog_value(msg)}{' ' + fields if fields else ''}",
          file=sys.stderr, flush=True)


def slog_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        value = "[" + " ".join(str(v) for v in value) + "]"
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\') or not text.isprintable():
        return json.dumps(text)
    return text


def human_bytes2(size: float) -> str:
    """Ollama's format.HumanBytes2 (binary units, one decimal)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat()


# --------------------------------------------------------------------------- configuration

def host_port() -> tuple[str, int, str]:
    """OLLAMA_HOST as Ollama reads it: [scheme://]host[:port], default 127.0.0.1:11434."""
    raw = os.environ.get("OLLAMA_HOST", "").strip() or "127.0.0.1:11434"
    scheme, _, rest = raw.rpartition("://")
    scheme = scheme or "http"
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    return host or "127.0.0.1", int(port or 11434), scheme


def duration(text: str | int | float | None, default: float) -> float:
    """Ollama's keep-alive: '5m', '30s', '1h', a number of seconds, negative = forever."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)):
        return float("inf") if text < 0 else float(text)
    match = re.fullmatch(r"\s*(-?[\d.]+)\s*(ms|s|m|h)?\s*", str(text))
    if not match:
        return default
    value = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float("inf") if value < 0 else value


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


# --------------------------------------------------------------------------- names and store

class Name:
    """Ollama's model names: [host/][namespace/]model[:tag], defaults registry.ollama.ai/library/...:latest."""

    def __init__(self, text: str):
        text = text.strip()
        if "://" in text:
            text = text.split("://", 1)[1]
        self.tag = "latest"
        if text.rfind(":") > text.rfind("/"):
            text, self.tag = text.rsplit(":", 1)
        parts = text.split("/")
        self.model = parts[-1]
        self.namespace = parts[-2] if len(parts) >= 2 else "library"
        self.host = "/".join(parts[:-2]) if len(parts) >= 3 else DEFAULT_HOST
        part = r"[\w][\w.\-]*"
        if not self.model or not re.fullmatch(part, self.model) or not re.fullmatch(part, self.tag):
            raise ValueError(f"invalid model name {text!r}")

    def display(self) -> str:
        if self.host == DEFAULT_HOST and self.namespace == "library":
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def manifest_path(self) -> Path:
        return models_dir() / "manifests" / self.host / self.namespace / self.model / self.tag


def blob_path(digest: str) -> Path:
    if not re.fullmatch(r"sha256[:-][0-9a-f]{64}", digest):
        raise ValueError(f"invalid digest {digest!r}")
    return models_dir() / "blobs" / digest.replace(":", "-")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def write_blob(data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blob_path(digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + "-tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return {"digest": digest, "size": len(data)}


def all_manifests() -> list[tuple[Name, Path]]:
    root = models_dir() / "manifests"
    found = []
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).parts
            if path.is_file() and len(rel) >= 4:
                try:
                    found.append((Name("/".join(rel[:-1]) + ":" + rel[-1]), path))
                except ValueError:
                    continue
    return found


def read_manifest(name: Name) -> dict | None:
    path = name.manifest_path()
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_manifest(name: Name, manifest: dict) -> None:
    path = name.manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest))
    tmp.rename(path)


def prune_empty_dirs(directory: Path) -> None:
    """Remove the manifest directories a delete left empty, as Ollama does."""
    root = models_dir() / "manifests"
    while directory != root and root in directory.parents and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def prune_blobs() -> None:
    """Delete blobs no manifest references (Ollama does this after a delete)."""
    used = set()
    for _name, path in all_manifests():
        manifest = json.loads(path.read_text())
        used.add(manifest["config"]["digest"].replace(":", "-"))
        used.update(layer["digest"].replace(":", "-") for layer in manifest["layers"])
    for blob in (models_dir() / "blobs").glob("sha256-*"):
        if blob.name not in used and not blob.name.endswith("-partial"):
            blob.unlink()


def model_layer(manifest: dict) -> dict | None:
    return next((layer for layer in manifest["layers"] if layer["mediaType"] == LAYER_TYPES["model"]), None)


# --------------------------------------------------------------------------- GGUF metadata

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K"}


def gguf_metadata(path: Path) -> dict:
    """The scalar key/values of a GGUF file's header (arrays are skipped)."""

    def read(handle, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, handle.read(size))[0]

    def read_str(handle):
        return handle.read(read(handle, "<Q")).decode("utf-8", "replace")

    def value(handle, kind):
        if kind in GGUF_SCALARS:
            return read(handle, GGUF_SCALARS[kind])
        if kind == 8:
            return read_str(handle)
        if kind == 9:
            inner, count = read(handle, "<I"), read(handle, "<Q")
            if inner in GGUF_SCALARS:
                handle.seek(struct.calcsize(GGUF_SCALARS[inner]) * count, 1)
            else:
                for _ in range(count):
                    value(handle, inner)
            return None
        raise ValueError(f"unknown GGUF value type {kind}")

    meta = {}
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read(handle, "<I")
        read(handle, "<Q")
        for _ in range(read(handle, "<Q")):
            key = read_str(handle)
            got = value(handle, read(handle, "<I"))
            if got is not None:
                meta[key] = got
    return meta


def config_for(gguf: Path) -> dict:
    meta = gguf_metadata(gguf)
    family = meta.get("general.architecture", "unknown")
    return {"model_format": "gguf", "model_family": family, "model_families": [family],
            "model_type": meta.get("general.size_label", ""),
            "file_type": FILE_TYPES.get(meta.get("general.file_type"), "unknown"),
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_file(gguf)]}}


def details(manifest: dict) -> dict:
    config = json.loads(blob_path(manifest["config"]["digest"]).read_text())
    return {"parent_model": "", "format": config.get("model_format", "gguf"),
            "family": config.get("model_family", ""), "families": config.get("model_families"),
            "parameter_size": config.get("model_type", ""), "quantization_level": config.get("file_type", "")}


# --------------------------------------------------------------------------- registry pulls

class PullError(RuntimeError):
    pass


def registry_get(url: str, headers: dict | None = None, timeout: float = 60):
    request = urllib.request.Request(url, headers={"User-Agent": f"ollama/{VERSION} ({STANDIN})", **(headers or {})})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise PullError("pull model manifest: file does not exist") from err
        raise PullError(f"pull model manifest: {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise PullError(f"pull model manifest: {getattr(err, 'reason', err)}") from err


def download_blob(base: str, name: Name, layer: dict, emit) -> None:
    digest, total = layer["digest"], layer["size"]
    final = blob_path(digest)
    status = f"pulling {digest.split(':')[1][:12]}"
    if final.exists() and final.stat().st_size == total:
        emit({"status": status, "digest": digest, "total": total, "completed": total})
        return
    partial = final.with_name(final.name + "-partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    url = f"{base}/v2/{name.namespace}/{name.model}/blobs/{digest}"
    headers = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        log(f"resuming the download of {digest} at byte {have} of {total}")
    elif os.environ.get("MI50_STANDIN_INTERRUPT_PULL_AT"):
        url += f"?truncate={int(os.environ['MI50_STANDIN_INTERRUPT_PULL_AT'])}"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except (urllib.error.URLError, OSError) as err:
        raise PullError(f"download {digest}: {getattr(err, 'reason', err)}") from err
    if have and resp.status != 206:
        have = 0  # the server ignored the range: start over
    done, last = have, 0.0
    try:
        with partial.open("ab" if have else "wb") as out:
            while True:
                try:
                    chunk = resp.read(1 << 20)
                except (http.client.IncompleteRead, OSError) as err:
                    chunk = getattr(err, "partial", b"")
                    out.write(chunk)
                    done += len(chunk)
                    break
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    emit({"status": status, "digest": digest, "total": total, "completed": done})
    finally:
        resp.close()
    if done < total:
        log(f"download of {digest} interrupted at byte {done} of {total}; the partial file is kept")
        raise PullError(f"download {digest}: unexpected EOF after {done} of {total} bytes")
    emit({"status": status, "digest": digest, "total": total, "completed": done})
    if sha256_file(partial) != digest:
        partial.unlink()
        raise PullError(f"digest mismatch, file must be downloaded again: want {digest}")
    partial.rename(final)


def pull(model: str, insecure: bool, emit) -> None:
    name = Name(model)
    base = f"{'http' if insecure else 'https'}://{name.host}"
    emit({"status": "pulling manifest"})
    url = f"{base}/v2/{name.namespace}/{name.model}/manifests/{name.tag}"
    with registry_get(url, {"Accept": MANIFEST_TYPE}) as resp:
        manifest = json.loads(resp.read())
    for layer in manifest["layers"] + [manifest["config"]]:
        download_blob(base, name, layer, emit)
    emit({"status": "verifying sha256 digest"})
    emit({"status": "writing manifest"})
    write_manifest(name, manifest)
    emit({"status": "success"})


# --------------------------------------------------------------------------- create

def create(body: dict, emit) -> None:
    name = Name(body.get("model") or body.get("name") or "")
    layers: list[dict] = []
    config: dict | None = None
    if body.get("from"):
        source = read_manifest(Name(body["from"]))
        if source is None:
            raise FileNotFoundError(f"model '{body['from']}' not found")
        layers = list(source["layers"])
        config = json.loads(blob_path(source["config"]["digest"]).read_text())
    for _filename, digest in (body.get("files") or {}).items():
        path = blob_path(digest)
        if not path.exists():
            raise FileNotFoundError(f"blob {digest} not found: upload it with POST /api/blobs/{digest}")
        emit({"status": "parsing GGUF"})
        config = config_for(path)
        layers = [layer for layer in layers if layer["mediaType"] != LAYER_TYPES["model"]]
        layers.insert(0, {"mediaType": LAYER_TYPES["model"], "digest": digest, "size": path.stat().st_size})
        emit({"status": f"using existing layer {digest}"})
    if config is None:
        raise ValueError("neither 'from' nor 'files' names a model")
    for key in ("template", "system"):
        if body.get(key):
            layer = write_blob(body[key].encode())
            layers = [item for item in layers if item["mediaType"] != LAYER_TYPES[key]]
            layers.append({"mediaType": LAYER_TYPES[key], **layer})
    if body.get("parameters"):
        layer = write_blob(json.dumps(body["parameters"]).encode())
        layers = [item for item in layers if item["mediaType"] != LAYER_TYPES["params"]]
        layers.append({"mediaType": LAYER_TYPES["params"], **layer})
    config_blob = write_blob(json.dumps(config).encode())
    emit({"status": "writing manifest"})
    write_manifest(name, {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                          "config": {"mediaType": CONFIG_TYPE, **config_blob}, "layers": layers})
    emit({"status": "success"})


# --------------------------------------------------------------------------- GPU discovery (what Ollama decides)

# The simulated card of tests/standins/rocm/simulate-gpu (a container's /sys is read-only), else the real sysfs.
SIMULATED_SYS = Path("/run/mi50-standin/sys")
# Ollama 0.12.3 discover/amd_linux.go: rocmMinimumMemory (457 MiB kept free on an AMD GPU), IGPUMemLimit (1 GiB).
GPU_RESERVE = 457 * 1024 * 1024
IGPU_MEM_LIMIT = 1 << 30


def version_tuple(text: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", text.split("-")[0])
    return tuple(int(n) for n in nums[:3]) if nums else (0,)


def sysfs_root() -> Path:
    return SIMULATED_SYS if SIMULATED_SYS.is_dir() else Path("/sys")


def kfd_gpu_nodes(root: Path) -> list[dict]:
    """GPU nodes of the KFD topology in node order, as Ollama 0.12.3's AMDGetGPUInfo reads them
    (/sys/class/kfd/kfd/topology/nodes/<n>/properties; gfx_target_version 0 is a CPU node)."""
    nodes_dir = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    found = []
    numbered = sorted((d for d in nodes_dir.glob("*") if d.name.isdigit()), key=lambda d: int(d.name))
    for node in numbered:
        try:
            props = dict(line.split(None, 1) for line in (node / "properties").read_text().splitlines()
                         if len(line.split(None, 1)) == 2)
        except OSError:
            continue
        gfx = props.get("gfx_target_version", "0").strip()
        if gfx == "0" or len(gfx) < 5:
            continue
        major, minor, patch = int(gfx[:-4]), int(gfx[-4:-2]), int(gfx[-2:])
        vendor, device = int(props.get("vendor_id", 0)), int(props.get("device_id", 0))
        unique = int(props.get("unique_id", 0))
        total, used = vram(root, vendor, device, unique, props)
        found.append({"node": node, "compute": f"gfx{major}{minor:x}{patch:x}", "vendor": vendor, "device": device,
                      "unique_id": unique, "render_minor": int(props.get("drm_render_minor", 0)),
                      "total": total, "free": max(0, total - used)})
    return found


def vram(root: Path, vendor: int, device: int, unique: int, props: dict) -> tuple[int, int]:
    """(total, used) VRAM. Ollama 0.12.3 reads mem_info_vram_total and mem_info_vram_used of the DRM
    device (/sys/class/drm/card*/device) whose vendor, device and unique_id (when the KFD node has
    one; hex in sysfs) match the KFD node. simulate-gpu writes no DRM sysfs: then the KFD node's
    local_mem_size (the same VRAM size, kernel kfd_topology.c) stands in, with nothing used."""
    wanted = [(vendor, "vendor"), (device, "device"), (unique, "unique_id")]
    for card in sorted((root / "class" / "drm").glob("card*/device")):
        try:
            if all(int((card / name).read_text().strip().removeprefix("0x"), 16) == value
                   for value, name in wanted if value):
                total = int((card / "mem_info_vram_total").read_text().strip())
                used_file = card / "mem_info_vram_used"
                return total, int(used_file.read_text().strip()) if used_file.exists() else 0
        except (OSError, ValueError):
            continue
    return int(props.get("local_mem_size", 0)), 0


def open_rw(path: Path) -> OSError | None:
    """Open a device node read-write as this process's user, as Ollama and the GPU runtimes do."""
    try:
        os.close(os.open(path, os.O_RDWR))
        return None
    except OSError as err:
        return err


def rocm_supports(version: str, compute: str) -> tuple[str, list[str]]:
    """(library dir, supported gfx targets) of the ROCm libraries this release would load.
    Ollama 0.12.3's ROCm add-on (lib/ollama/rocm, ROCm 6.3.3) has gfx906; 0.12.4 dropped it
    from the build (CMakePresets.json AMDGPU_TARGETS)."""
    lib = rocm_library_dir()
    if lib == "none":
        return "", []
    targets = ["gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1151", "gfx1200",
               "gfx1201"]
    if version_tuple(version) <= (0, 12, 3):
        targets = ["gfx900", "gfx906"] + targets
    return lib, targets


def visible(env_value: str, index: int, gpu_id: str) -> bool:
    return any(v.strip() in (str(index), gpu_id) for v in env_value.split(","))


def discover_rocm(version: str) -> list[dict]:
    """Ollama 0.12.3 discover/amd_linux.go AMDGetGPUInfo, for the decisions that matter here."""
    root = sysfs_root()
    if not (root / "module" / "amdgpu").is_dir():
        return []
    if version_tuple(version) >= (0, 13, 0) and not (LIB_DIR / "rocm").is_dir():
        return []  # newer releases look for ROCm only in their own lib/ollama (discover/runner.go)
    selector = next(((n, os.environ[n]) for n in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
                     if os.environ.get(n, "").strip()), None)
    gpus = []
    for index, node in enumerate(kfd_gpu_nodes(root)):
        gpu_id = f"GPU-{node['unique_id']:016x}" if node["unique_id"] else str(index)
        if selector and not visible(selector[1], index, gpu_id):
            log("filtering out device per user request", id=gpu_id, index=index,
                visible_devices=selector[1].split(","))
            continue
        if node["total"] < IGPU_MEM_LIMIT:
            log("unsupported Radeon iGPU detected skipping", id=gpu_id, total=human_bytes2(node["total"]))
            continue
        lib, supported = rocm_supports(version, node["compute"])
        if not lib:
            log("amdgpu detected, but no compatible rocm library found.  Either install rocm v6, or follow manual "
                "install instructions at https://github.com/ollama/ollama/blob/main/docs/linux.md#manual-install",
                level="WARN")
            log("unable to verify rocm library: no suitable rocm found, falling back to CPU", level="WARN")
            return []
        override = os.environ.get("HSA_OVERRIDE_GFX_VERSION", "")
        if override:
            log("skipping rocm gfx compatibility check", HSA_OVERRIDE_GFX_VERSION=override)
        elif node["compute"] not in supported:
            log(f"amdgpu is not supported (supported types:[{' '.join(supported)}])", level="WARN",
                gpu_type=node["compute"], gpu=gpu_id, library=lib)
            continue
        else:
            log("amdgpu is supported", gpu=gpu_id, gpu_type=node["compute"])
        gpus.append({"id": gpu_id, "library": "rocm", "compute": node["compute"],
                     "name": f"{node['vendor']:04x}:{node['device']:04x}", "total": node["total"],
                     "free": node["free"]})
    if not gpus:
        log("no compatible amdgpu devices detected")
        return []
    denied = open_rw(Path("/dev/kfd"))
    if denied is not None:
        if isinstance(denied, PermissionError):
            why = ("permissions not set up properly.  Either run ollama as root, or add you user account to the "
                   "render group. open /dev/kfd: permission denied")
        elif isinstance(denied, FileNotFoundError):
            why = ("kfd driver not loaded.  If running in a container, remember to include "
                   "'--device /dev/kfd --device /dev/dri'")
        else:
            why = f"failed to check permission on /dev/kfd: {denied}"
        log(f"amdgpu devices detected but permission problems block access: {why}", level="ERROR")
        return []
    return gpus


def vulkan_enabled(version: str) -> bool:
    """OLLAMA_VULKAN: read from 0.12.11 (opt-in), on by default from 0.30.0 (envconfig/config.go)."""
    value = os.environ.get("OLLAMA_VULKAN", "").strip().lower()
    on = value in ("1", "true", "t", "yes", "y", "on")
    off = value in ("0", "false", "f", "no", "n", "off")
    if version_tuple(version) >= (0, 30, 0):
        return not off
    return version_tuple(version) >= (0, 12, 11) and on


def discover_vulkan(version: str) -> list[dict]:
    """Ollama >= 0.13.0 with its bundled ggml-vulkan: RADV lists a device per amdgpu render node the
    user can open; GGML_VK_VISIBLE_DEVICES, when set at all, picks by index (ggml-vulkan.cpp
    ggml_vk_instance_init: an index past the last device throws, so discovery finds no GPU; an
    empty value selects none)."""
    if not vulkan_enabled(version):
        return []
    if version_tuple(version) < (0, 13, 0):
        # ollama issue #13104: the 0.12.11 Linux archives have no lib/ollama/vulkan.
        return []
    root = sysfs_root()
    if not (root / "module" / "amdgpu").is_dir():
        return []
    devices = [n for n in kfd_gpu_nodes(root) if n["render_minor"]
               and open_rw(Path(f"/dev/dri/renderD{n['render_minor']}")) is None]
    if "GGML_VK_VISIBLE_DEVICES" in os.environ:
        chosen = []
        for token in os.environ["GGML_VK_VISIBLE_DEVICES"].replace(",", " ").split():
            if not re.fullmatch(r"\d+", token) or int(token) >= len(devices):
                print(f"ggml_vulkan: Invalid device index {token} in GGML_VK_VISIBLE_DEVICES.", file=sys.stderr,
                      flush=True)
                return []
            chosen.append(devices[int(token)])
        devices = chosen
    elif not devices:
        print("ggml_vulkan: No devices found.", file=sys.stderr, flush=True)
    return [{"id": str(i), "library": "Vulkan", "compute": "0.0", "name": f"Vulkan{i}",
             "description": "AMD Radeon Graphics (RADV VEGA20)", "total": d["total"], "free": d["free"]}
            for i, d in enumerate(devices)]


def discover_gpus(version: str) -> list[dict]:
    gpus = discover_rocm(version) + discover_vulkan(version)
    if not gpus:
        log("no compatible GPUs were discovered")
    for gpu in gpus:
        log("inference compute", id=gpu["id"], library=gpu["library"], compute=gpu["compute"], name=gpu["name"],
            total=human_bytes2(gpu["total"]), available=human_bytes2(gpu["free"]))
    if not gpus:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        log("inference compute", id="cpu", library="cpu", compute="", name="cpu", total=human_bytes2(total),
            available=human_bytes2(total))
    return gpus


def block_count(model: Path) -> int:
    meta = gguf_metadata(model)
    return int(meta.get(f"{meta.get('general.architecture', '')}.block_count", 0) or 0)


def place(size: int, layers: int, gpus: list[dict], used: int) -> tuple[int, int]:
    """(layers offloaded, bytes in VRAM) for a model of `size` bytes and `layers` repeating layers plus
    the output layer, on the first GPU with what other loaded models left free (Ollama's scheduler:
    whole model if it fits, else as many layers as fit, else the CPU)."""
    total_layers = layers + 1
    if not gpus:
        return 0, 0
    free = gpus[0]["free"] - GPU_RESERVE - used
    if size <= free:
        return total_layers, size
    per_layer = size / total_layers
    fit = max(0, min(total_layers, int(free // per_layer))) if per_layer else 0
    return fit, int(fit * per_layer)


# --------------------------------------------------------------------------- runners (llama.cpp)

class Runner:
    def __init__(self, name: str, model: Path, ctx: int, parallel: int):
        self.name = name
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        binary = LIB_DIR / "llama-server"
        cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
               "-c", str(ctx * parallel), "-np", str(parallel), "-a", name, "--no-webui", "--cache-ram", "0"]
        # Like Ollama with its runners: the bundled libraries are found through
        # LD_LIBRARY_PATH set for the child only, never for the server itself.
        env = dict(os.environ, LD_LIBRARY_PATH=str(LIB_DIR))
        log(f"starting llama.cpp runner for {name}: {shlex.join(cmd)}")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.tail: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.expires = float("inf")
        self.busy = 0
        self.size = model.stat().st_size
        self.size_vram = 0
        self.digest = "sha256:" + model.name.split("-", 1)[1]
        self.wait_ready()
        self.load_seconds = time.monotonic() - self.started
        log(f"runner for {name} ready in {self.load_seconds:.2f} s (llama-server on 127.0.0.1:{self.port})")

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.tail = (self.tail + [line.rstrip()])[-20:]

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama runner process has terminated: exit status {self.proc.returncode}: "
                                   + " | ".join(self.tail[-5:]))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("timed out waiting for llama runner to start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        log(f"unloaded {self.name}")

    def request(self, path: str, body: dict, timeout: float = 600):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=timeout)


class Scheduler:
    """Loads models on demand, keeps them for their keep-alive, at most OLLAMA_MAX_LOADED_MODELS."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runners: dict[str, Runner] = {}
        self.keep_alive = duration(os.environ.get("OLLAMA_KEEP_ALIVE"), 300)
        self.max_loaded = env_int("OLLAMA_MAX_LOADED_MODELS", 3)
        self.parallel = env_int("OLLAMA_NUM_PARALLEL", 1)
        self.ctx = env_int("OLLAMA_CONTEXT_LENGTH", 4096)
        self.pending = 0
        self.max_queue = env_int("OLLAMA_MAX_QUEUE", 512)
        self.gpus = discover_gpus(VERSION)
        threading.Thread(target=self._reaper, daemon=True).start()

    def acquire(self, model: str, keep_alive) -> Runner:
        name = Name(model)
        manifest = read_manifest(name)
        if manifest is None:
            raise FileNotFoundError(f"model '{model}' not found")
        layer = model_layer(manifest)
        if layer is None:
            raise ValueError(f"model '{model}' has no model layer")
        key = name.display()
        with self.lock:
            runner = self.runners.get(key)
            if runner is None or not runner.alive():
                while len(self.runners) >= max(self.max_loaded, 1):
                    idle = [r for r in self.runners.values() if r.busy == 0] or list(self.runners.values())
                    victim = min(idle, key=lambda r: r.expires)
                    victim.stop()
                    del self.runners[victim.name]
                path = blob_path(layer["digest"])
                size, layers = path.stat().st_size, block_count(path)
                used = sum(r.size_vram for r in self.runners.values())
                offloaded, in_vram = place(size, layers, self.gpus, used)
                if in_vram:
                    log("model weights", device=f"{'ROCm' if self.gpus[0]['library'] == 'rocm' else 'Vulkan'}0",
                        size=human_bytes2(in_vram))
                if size - in_vram:
                    log("model weights", device="CPU", size=human_bytes2(size - in_vram))
                log(f"offloaded {offloaded}/{layers + 1} layers to GPU")
                runner = Runner(key, path, self.ctx, self.parallel)
                runner.size_vram = in_vram
                self.runners[key] = runner
            runner.busy += 1
            runner.keep = duration(keep_alive, self.keep_alive) if keep_alive is not None else self.keep_alive
            runner.expires = float("inf")
            return runner

    def release(self, runner: Runner) -> None:
        with self.lock:
            runner.busy -= 1
            if runner.busy == 0:
                runner.expires = time.monotonic() + runner.keep

    def unload(self, key: str) -> None:
        with self.lock:
            runner = self.runners.pop(key, None)
        if runner:
            runner.stop()

    def _reaper(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                expired = [r for r in self.runners.values() if r.busy == 0 and r.expires <= time.monotonic()]
                for runner in expired:
                    del self.runners[runner.name]
            for runner in expired:
                runner.stop()

    def stop_all(self) -> None:
        with self.lock:
            runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            runner.stop()


# --------------------------------------------------------------------------- HTTP server

def ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Ollama"
    scheduler: Scheduler

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        log(f"[GIN] {self.command} {self.path} {args[1] if len(args) > 1 else ''}")

    # ----- plumbing
    def body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        return json.loads(raw)

    def send_json(self, status: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def start_stream(self, content_type: str = "application/x-ndjson") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def stream_or_collect(self, stream: bool, work) -> None:
        """Run work(emit); stream each status as a JSON line, or answer with the last one."""
        if stream:
            self.start_stream()
            try:
                work(lambda obj: self.chunk(json.dumps(obj).encode() + b"\n"))
            except Exception as err:  # noqa: BLE001 (reported to the client as Ollama does)
                self.chunk(json.dumps({"error": str(err)}).encode() + b"\n")
            self.end_stream()
            return
        last: dict = {}
        try:
            work(lambda obj: last.update(obj))
        except FileNotFoundError as err:
            self.error(404, str(err))
            return
        except Exception as err:  # noqa: BLE001
            self.error(500, str(err))
            return
        self.send_json(200, last)

    # ----- routes
    def do_HEAD(self) -> None:  # noqa: N802
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "17")
            self.end_headers()
        elif self.path.startswith("/api/blobs/"):
            try:
                exists = blob_path(self.path.rsplit("/", 1)[1]).exists()
            except ValueError as err:
                self.error(400, str(err))
                return
            self.send_response(200 if exists else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.error(404, "404 page not found")

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/version":
            self.send_json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self.send_json(200, {"models": [self.describe(n, p) for n, p in all_manifests()]})
        elif self.path == "/api/ps":
            self.send_json(200, {"models": self.loaded()})
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": n.display(), "object": "model", "created": int(p.stat().st_mtime), "owned_by": n.namespace}
                for n, p in all_manifests()]})
        elif self.path.startswith("/v1/models/"):
            name = Name(self.path[len("/v1/models/"):])
            path = name.manifest_path()
            if not path.is_file():
                self.error(404, f"model '{name.display()}' not found")
                return
            self.send_json(200, {"id": name.display(), "object": "model", "created": int(path.stat().st_mtime),
                                 "owned_by": name.namespace})
        else:
            self.error(404, "404 page not found")

    def do_DELETE(self) -> None:  # noqa: N802
        if self.path != "/api/delete":
            self.error(404, "404 page not found")
            return
        body = self.body()
        name = Name(body.get("model") or body.get("name") or "")
        path = name.manifest_path()
        if not path.is_file():
            self.error(404, f"model '{name.display()}' not found")
            return
        self.scheduler.unload(name.display())
        path.unlink()
        prune_empty_dirs(path.parent)
        prune_blobs()
        self.send_json(200, {})

    def do_POST(self) -> None:  # noqa: N802
        try:
            if self.path.startswith("/api/blobs/"):
                self.upload_blob(self.path.rsplit("/", 1)[1])
                return
            body = self.body()
            routes = {"/api/pull": self.pull, "/api/create": self.create, "/api/show": self.show,
                      "/api/copy": self.copy, "/api/generate": self.generate, "/api/chat": self.chat,
                      "/v1/chat/completions": self.openai, "/v1/completions": self.openai}
            if self.path not in routes:
                self.error(404, "404 page not found")
                return
            routes[self.path](body)
        except (ValueError, KeyError) as err:
            self.error(400, str(err))
        except FileNotFoundError as err:
            self.error(404, str(err))
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ----- handlers
    def describe(self, name: Name, path: Path) -> dict:
        manifest = json.loads(path.read_text())
        return {"name": name.display(), "model": name.display(),
                "modified_at": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).astimezone().isoformat(),
                "size": sum(layer["size"] for layer in manifest["layers"]),
                "digest": hashlib.sha256(path.read_bytes()).hexdigest(), "details": details(manifest)}

    def loaded(self) -> list[dict]:
        out = []
        with self.scheduler.lock:
            for runner in self.scheduler.runners.values():
                until = runner.expires if runner.expires != float("inf") else time.monotonic() + 3600 * 24 * 365
                out.append({"name": runner.name, "model": runner.name, "size": runner.size, "size_vram": runner.size_vram,
                            "digest": runner.digest.split(":")[1],
                            "expires_at": datetime.fromtimestamp(time.time() + until - time.monotonic(),
                                                                 timezone.utc).astimezone().isoformat()})
        return out

    def upload_blob(self, digest: str) -> None:
        path = blob_path(digest)
        length = int(self.headers.get("Content-Length") or 0)
        if path.exists():
            self.rfile.read(length)
            self.send_json(200, {})
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + "-upload")
        sha = hashlib.sha256()
        with tmp.open("wb") as out:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(1 << 20, remaining))
                if not chunk:
                    break
                sha.update(chunk)
                out.write(chunk)
                remaining -= len(chunk)
        if "sha256:" + sha.hexdigest() != digest.replace("-", ":", 1):
            tmp.unlink()
            self.error(400, "digest mismatch")
            return
        tmp.rename(path)
        self.send_json(201, {})

    def pull(self, body: dict) -> None:
        model = body.get("model") or body.get("name") or ""
        self.stream_or_collect(body.get("stream", True), lambda emit: pull(model, bool(body.get("insecure")), emit))

    def create(self, body: dict) -> None:
        self.stream_or_collect(body.get("stream", True), lambda emit: create(body, emit))

    def copy(self, body: dict) -> None:
        source = read_manifest(Name(body["source"]))
        if source is None:
            self.error(404, f"model '{body['source']}' not found")
            return
        write_manifest(Name(body["destination"]), source)
        self.send_json(200, {})

    def show(self, body: dict) -> None:
        name = Name(body.get("model") or body.get("name") or "")
        manifest = read_manifest(name)
        if manifest is None:
            self.error(404, f"model '{name.display()}' not found")
            return
        layer = model_layer(manifest)
        modelfile = f"# Modelfile generated by the {STANDIN}\nFROM {blob_path(layer['digest'])}\n"
        self.send_json(200, {"modelfile": modelfile,
                             "parameters": "", "template": "{{ .Prompt }}", "details": details(manifest),
                             "model_info": gguf_metadata(blob_path(layer["digest"])),
                             "capabilities": ["completion"],
                             "modified_at": now_rfc3339()})

    def admit(self) -> bool:
        with self.scheduler.lock:
            if self.scheduler.pending >= self.scheduler.max_queue:
                busy = True
            else:
                self.scheduler.pending += 1
                busy = False
        if busy:
            self.error(503, "server busy, please try again.  maximum pending requests exceeded")
        return not busy

    def done(self) -> None:
        with self.scheduler.lock:
            self.scheduler.pending -= 1

    def generate(self, body: dict) -> None:
        model = body.get("model", "")
        if not self.admit():
            return
        try:
            started = time.monotonic()
            try:
                runner = self.scheduler.acquire(model, body.get("keep_alive"))
            except RuntimeError as err:
                self.error(500, str(err))
                return
            load = time.monotonic() - started
            try:
                if not body.get("prompt"):
                    # An empty prompt loads the model and returns (Ollama's documented preload).
                    self.send_json(200, {"model": model, "created_at": now_rfc3339(), "response": "", "done": True,
                                         "done_reason": "load"})
                    return
                opts = body.get("options") or {}
                request = {"prompt": body["prompt"], "n_predict": opts.get("num_predict", -1),
                           "stream": bool(body.get("stream", True))}
                for ours, theirs in (("temperature", "temperature"), ("top_k", "top_k"), ("top_p", "top_p"),
                                     ("seed", "seed"), ("stop", "stop"), ("repeat_penalty", "repeat_penalty")):
                    if ours in opts:
                        request[theirs] = opts[ours]
                if body.get("system"):
                    request["prompt"] = body["system"] + "\n\n" + request["prompt"]
                self.relay_completion(runner, model, request, started, load)
            finally:
                self.scheduler.release(runner)
        finally:
            self.done()

    def relay_completion(self, runner: Runner, model: str, request: dict, started: float, load: float) -> None:
        def final(info: dict, text: str) -> dict:
            timings = info.get("timings") or {}
            return {"model": model, "created_at": now_rfc3339(), "response": text, "done": True,
                    "done_reason": "length" if info.get("stop_type") == "limit" else "stop", "context": [],
                    "total_duration": ns(time.monotonic() - started), "load_duration": ns(load),
                    "prompt_eval_count": info.get("tokens_evaluated", 0),
                    "prompt_eval_duration": ns(timings.get("prompt_ms", 0) / 1000),
                    "eval_count": info.get("tokens_predicted", 0),
                    "eval_duration": ns(timings.get("predicted_ms", 0) / 1000)}

        with runner.request("/completion", request) as resp:
            if not request["stream"]:
                info = json.loads(resp.read())
                self.send_json(200, final(info, info.get("content", "")))
                return
            self.start_stream()
            for line in resp:
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                if event.get("stop"):
                    self.chunk(json.dumps(final(event, "")).encode() + b"\n")
                    break
                self.chunk(json.dumps({"model": model, "created_at": now_rfc3339(),
                                       "response": event.get("content", ""), "done": False}).encode() + b"\n")
            self.end_stream()

    def chat(self, body: dict) -> None:
        model = body.get("model", "")
        if not self.admit():
            return
        try:
            started = time.monotonic()
            try:
                runner = self.scheduler.acquire(model, body.get("keep_alive"))
            except RuntimeError as err:
                self.error(500, str(err))
                return
            load = time.monotonic() - started
            try:
                if not body.get("messages"):
                    self.send_json(200, {"model": model, "created_at": now_rfc3339(),
                                         "message": {"role": "assistant", "content": ""}, "done": True,
                                         "done_reason": "load"})
                    return
                opts = body.get("options") or {}
                stream = bool(body.get("stream", True))
                request = {"model": model, "messages": body["messages"], "stream": stream}
                if "num_predict" in opts:
                    request["max_tokens"] = opts["num_predict"]
                for key in ("temperature", "top_p", "seed", "stop"):
                    if key in opts:
                        request[key] = opts[key]
                if stream:
                    request["stream_options"] = {"include_usage": True}
                self.relay_chat(runner, model, request, started, load)
            finally:
                self.scheduler.release(runner)
        finally:
            self.done()

    def relay_chat(self, runner: Runner, model: str, request: dict, started: float, load: float) -> None:
        def final(reason: str | None, usage: dict, content: str) -> dict:
            return {"model": model, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": content},
                    "done": True, "done_reason": "length" if reason == "length" else "stop",
                    "total_duration": ns(time.monotonic() - started), "load_duration": ns(load),
                    "prompt_eval_count": usage.get("prompt_tokens", 0), "eval_count": usage.get("completion_tokens", 0)}

        with runner.request("/v1/chat/completions", request) as resp:
            if not request["stream"]:
                info = json.loads(resp.read())
                choice = info["choices"][0]
                self.send_json(200, final(choice.get("finish_reason"), info.get("usage") or {},
                                          choice["message"].get("content") or ""))
                return
            self.start_stream()
            reason, usage = None, {}
            for line in resp:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    break
                event = json.loads(payload)
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    reason = choice.get("finish_reason") or reason
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        self.chunk(json.dumps({"model": model, "created_at": now_rfc3339(),
                                               "message": {"role": "assistant", "content": text},
                                               "done": False}).encode() + b"\n")
            self.chunk(json.dumps(final(reason, usage, "")).encode() + b"\n")
            self.end_stream()

    def openai(self, body: dict) -> None:
        """OpenAI-compatible endpoints: llama-server speaks them, so the body is passed through."""
        model = body.get("model", "")
        if not self.admit():
            return
        try:
            try:
                runner = self.scheduler.acquire(model, None)
            except FileNotFoundError:
                self.send_json(404, {"error": {"message": f"model \"{model}\" not found, try pulling it first",
                                               "type": "api_error", "param": None, "code": None}})
                return
            except RuntimeError as err:
                self.send_json(500, {"error": {"message": str(err), "type": "api_error", "param": None, "code": None}})
                return
            try:
                try:
                    resp = runner.request(self.path, body)
                except urllib.error.HTTPError as err:
                    data = err.read()
                    self.send_response(err.code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                with resp:
                    if not body.get("stream"):
                        data = resp.read()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    self.start_stream("text/event-stream")
                    for line in resp:
                        self.chunk(line)
                    self.end_stream()
            finally:
                self.scheduler.release(runner)
        finally:
            self.done()


def rocm_library_dir() -> str:
    """Where Ollama 0.12.x looks for ROCm: bundled lib/ollama/rocm, HIP_PATH, LD_LIBRARY_PATH, /opt/rocm/lib."""
    candidates = [LIB_DIR / "rocm"]
    if os.environ.get("HIP_PATH"):
        candidates.append(Path(os.environ["HIP_PATH"]) / "lib")
    candidates += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    candidates.append(Path("/opt/rocm/lib"))
    return next((str(c) for c in candidates if c.is_dir()), "none")


def ensure_identity() -> None:
    """Ollama creates ~/.ollama/id_ed25519 on first start; the stand-in writes a placeholder there."""
    home = Path.home() / ".ollama"
    key = home / "id_ed25519"
    if key.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    log(f"Couldn't find '{key}'. Generating new private key.")
    key.write_text(f"{STANDIN}: placeholder, not a key ({random.getrandbits(128):032x})\n")
    key.chmod(0o600)
    (home / "id_ed25519.pub").write_text(f"{STANDIN}: placeholder public key\n")


def serve() -> int:
    delay = float(os.environ.get("MI50_STANDIN_START_DELAY") or 0)
    if delay:
        log(f"stand-in test knob: waiting {delay:g} s before listening (MI50_STANDIN_START_DELAY)")
        time.sleep(delay)
    ensure_identity()
    host, port, _ = host_port()
    store = models_dir()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "manifests").mkdir(parents=True, exist_ok=True)
    config = dict(sorted((k, v) for k, v in os.environ.items() if k.startswith("OLLAMA_")))
    log(f"server config env={json.dumps(config)}")
    log(f"{STANDIN} {VERSION}: generation runs on the CPU through llama.cpp's llama-server; the GPU "
        "placement below is decided and reported as Ollama would")
    Handler.scheduler = Scheduler()
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def shutdown(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log(f"Listening on {host}:{port} (version {VERSION})")
    try:
        server.serve_forever()
    finally:
        Handler.scheduler.stop_all()
    return 0


# --------------------------------------------------------------------------- CLI

def client_url(path: str) -> str:
    host, port, scheme = host_port()
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{scheme}://{host}:{port}{path}"


def call(method: str, path: str, body: object = None, data: bytes | None = None, timeout: float = 3600):
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(client_url(path), data=payload, method=method,
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def stream_statuses(resp) -> int:
    shown = None
    for line in resp:
        event = json.loads(line)
        if "error" in event:
            print()
            return fail(event["error"])
        status = event.get("status", "")
        if event.get("total"):
            pct = 100 * event.get("completed", 0) // event["total"]
            print(f"\r{status}: {pct:3d}% {event.get('completed', 0) / 1e6:.0f}/{event['total'] / 1e6:.0f} MB",
                  end="", flush=True)
            shown = status
        else:
            print(("\n" if shown else "") + status, flush=True)
            shown = None
    return 0


def cli_version() -> int:
    try:
        with call("GET", "/api/version", timeout=5) as resp:
            server = json.loads(resp.read())["version"]
        print(f"ollama version is {server} ({STANDIN})")
        if server != VERSION:
            print(f"Warning: client version is {VERSION} ({STANDIN})")
    except (urllib.error.URLError, OSError):
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {VERSION} ({STANDIN})")
    return 0


def cli_pull(args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-")]
    if len(names) != 1:
        return fail("usage: ollama pull MODEL [--insecure]")
    try:
        with call("POST", "/api/pull", {"model": names[0], "insecure": "--insecure" in args, "stream": True}) as resp:
            return stream_statuses(resp)
    except urllib.error.HTTPError as err:
        return fail(json.loads(err.read() or b"{}").get("error", str(err)))
    except (urllib.error.URLError, OSError) as err:
        return fail(f"could not connect to ollama app, is it running? ({err})")


def parse_modelfile(path: Path) -> dict:
    """The Modelfile commands the role writes: FROM, PARAMETER, TEMPLATE, SYSTEM (one line or \"\"\"...\"\"\")."""
    text = path.read_text()
    out: dict = {"parameters": {}}
    pattern = re.compile(r'^\s*(FROM|PARAMETER|TEMPLATE|SYSTEM)\s+("""(.*?)"""|[^\n]*)', re.I | re.S | re.M)
    for match in pattern.finditer(text):
        command = match.group(1).upper()
        value = match.group(3) if match.group(3) is not None else match.group(2).strip()
        if command == "FROM":
            out["from"] = value
        elif command == "PARAMETER":
            key, _, val = value.partition(" ")
            try:
                parsed: object = json.loads(val)
            except ValueError:
                parsed = val.strip().strip('"')
            if key == "stop":
                out["parameters"].setdefault("stop", []).append(parsed)
            else:
                out["parameters"][key] = parsed
        else:
            out[command.lower()] = value
    if "from" not in out:
        raise ValueError("no FROM line")
    return out


def cli_create(args: list[str]) -> int:
    if len(args) != 3 or args[1] != "-f":
        return fail("usage: ollama create MODEL -f Modelfile")
    name, modelfile = args[0], Path(args[2])
    try:
        spec = parse_modelfile(modelfile)
    except (OSError, ValueError) as err:
        return fail(f"reading Modelfile {modelfile}: {err}")
    body: dict = {"model": name, "stream": True}
    source = Path(os.path.expanduser(spec["from"]))
    if not source.is_absolute():
        source = modelfile.parent / source
    try:
        if source.is_file():
            print("gathering model components", flush=True)
            digest = sha256_file(source)
            try:
                call("HEAD", f"/api/blobs/{digest}", timeout=30).close()
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
                print(f"copying file {digest} 100%", flush=True)
                with source.open("rb") as handle:
                    req = urllib.request.Request(client_url(f"/api/blobs/{digest}"), data=handle, method="POST",
                                                 headers={"Content-Length": str(source.stat().st_size)})
                    urllib.request.urlopen(req, timeout=3600).close()
            body["files"] = {source.name: digest}
        else:
            body["from"] = spec["from"]
        for key in ("template", "system"):
            if key in spec:
                body[key] = spec[key]
        if spec["parameters"]:
            body["parameters"] = spec["parameters"]
        with call("POST", "/api/create", body) as resp:
            return stream_statuses(resp)
    except urllib.error.HTTPError as err:
        return fail(json.loads(err.read() or b"{}").get("error", str(err)))
    except (urllib.error.URLError, OSError) as err:
        return fail(f"could not connect to ollama app, is it running? ({err})")


def cli_list() -> int:
    try:
        with call("GET", "/api/tags", timeout=30) as resp:
            models = json.loads(resp.read())["models"]
    except (urllib.error.URLError, OSError) as err:
        return fail(f"could not connect to ollama app, is it running? ({err})")
    print(f"{'NAME':<40} {'ID':<14} {'SIZE':<10} MODIFIED")
    for model in models:
        size = f"{model['size'] / 1e6:.0f} MB"
        print(f"{model['name']:<40} {model['digest'][:12]:<14} {size:<10} {model['modified_at']}")
    return 0


def cli_ps() -> int:
    try:
        with call("GET", "/api/ps", timeout=30) as resp:
            models = json.loads(resp.read())["models"]
    except (urllib.error.URLError, OSError) as err:
        return fail(f"could not connect to ollama app, is it running? ({err})")
    print(f"{'NAME':<40} {'SIZE':<10} {'PROCESSOR':<16} UNTIL")
    for model in models:
        print(f"{model['name']:<40} {model['size'] / 1e6:.0f} MB{'':<3} {processor(model):<16} {model['expires_at']}")
    return 0


def processor(model: dict) -> str:
    """The PROCESSOR column of `ollama ps` (cmd/cmd.go ListRunningHandler)."""
    size, vram = model["size"], model["size_vram"]
    if vram == 0:
        return "100% CPU"
    if vram == size:
        return "100% GPU"
    if vram > size or size == 0:
        return "Unknown"
    cpu = round((size - vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def cli_rm(args: list[str]) -> int:
    for model in args:
        try:
            call("DELETE", "/api/delete", {"model": model}, timeout=60).close()
            print(f"deleted '{model}'")
        except urllib.error.HTTPError as err:
            return fail(json.loads(err.read() or b"{}").get("error", str(err)))
    return 0


USAGE = f"""Large language model runner ({STANDIN}: not Ollama, see the file's first lines)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  create      Create a model from a Modelfile
  pull        Pull a model from a registry
  list        List models
  ps          List running models
  rm          Remove a model

Flags:
  -v, --version   Show version information
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    if command in ("-v", "--version"):
        return cli_version()
    if command in ("serve", "start"):
        return serve()
    if command == "pull":
        return cli_pull(args)
    if command == "create":
        return cli_create(args)
    if command in ("list", "ls"):
        return cli_list()
    if command == "ps":
        return cli_ps()
    if command in ("rm", "delete"):
        return cli_rm(args)
    return fail(f'unknown command "{command}" for "ollama"')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
