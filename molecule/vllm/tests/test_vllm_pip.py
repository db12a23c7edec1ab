"""The pip method, with the vLLM STAND-IN (tests/standins/vllm) installed from the
fixture server's wheelhouse: it proves the role's virtualenv, sandboxed unit,
secret handling, health wait and restart behaviour against a process that speaks
vLLM's CLI and HTTP API. It proves nothing about vLLM itself, which cannot run here."""

from __future__ import annotations

import json

import pytest
from conftest import EXPECT, exec_start, run_converge

testinfra_hosts = ["mi50-vllm"]

KEY = EXPECT["mi50-vllm"]["key"]
SERVED = EXPECT["mi50-vllm"]["served"]
VENV = "/opt/vllm/venv"
MARKER = "/var/lib/vllm/huggingface/hub/models--Qwen--Qwen2.5-7B-Instruct-AWQ/STANDIN"


def main_pid(host) -> int:
    return int(host.check_output("systemctl show vllm.service --property MainPID --value"))


def http(host, method: str, path: str, key: str | None = None, body: dict | None = None) -> tuple[int, str]:
    """Call the server from inside the instance (it listens on the instance's loopback)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "method, url, key, body = sys.argv[1:5]\n"
        "req = urllib.request.Request(url, method=method, data=body.encode() if body else None)\n"
        "req.add_header('Content-Type', 'application/json')\n"
        "if key: req.add_header('Authorization', 'Bearer ' + key)\n"
        "try:\n"
        "    resp = urllib.request.urlopen(req, timeout=10); print(resp.status); print(resp.read().decode())\n"
        "except urllib.error.HTTPError as err:\n"
        "    print(err.code); print(err.read().decode())\n"
    )
    out = host.check_output(
        "python3 -c %s %s %s %s %s", script, method, f"http://127.0.0.1:8000{path}", key or "",
        json.dumps(body) if body else "",
    )
    status, _, text = out.partition("\n")
    return int(status), text


def test_installed_package_is_the_standin_from_the_wheelhouse(host):
    """Say plainly what ran: the stand-in, not vLLM."""
    shown = host.check_output(f"{VENV}/bin/python -m pip show vllm-standin")
    assert "Version: 0.1.0" in shown
    assert host.check_output(f"{VENV}/bin/vllm --version") == "0.1.0+standin"


def test_virtualenv_is_root_owned_and_read_only_to_the_service(host):
    assert host.file(f"{VENV}/bin").user == "root"
    assert host.run(f"runuser -u vllm -- test -w {VENV}/bin").rc == 1
    assert host.run(f"runuser -u vllm -- test -x {VENV}/bin/vllm").rc == 0


def test_unit_starts_the_virtualenvs_vllm_serve(host):
    assert exec_start(host)[:2] == [f"{VENV}/bin/vllm", "serve"]


def test_running_server_has_the_units_command_line(host):
    pid = main_pid(host)
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")[:-1]
    # The console script runs under the virtualenv's Python.
    assert cmdline[1:] == exec_start(host)


def test_server_runs_as_the_service_user_without_privileges(host):
    pid = main_pid(host)
    status = host.file(f"/proc/{pid}/status").content_string
    fields = dict(line.split(":", 1) for line in status.splitlines())
    uid = host.user("vllm").uid
    assert fields["Uid"].split()[0] == str(uid)
    groups = set(fields["Groups"].split())
    assert {str(host.group("video").gid), str(host.group("render").gid)} <= groups
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == 0


def test_api_key_reaches_the_server_through_its_environment(host):
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid(host)}/environ")
    assert f"VLLM_API_KEY={KEY}" in environ.splitlines()


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/kfd rw"),
        ("DeviceAllow", "char-drm rw"),
        ("PrivateDevices", "no"),
        ("SupplementaryGroups", "video render"),
    ],
    ids=["device-policy", "allow-kfd", "allow-dri", "no-private-devices", "gpu-groups"],
)
def test_unit_opens_only_the_gpu_device_nodes(host, prop, value):
    shown = host.check_output(f"systemctl show vllm.service --property {prop} --value")
    assert value in shown


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("User", "vllm"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("LockPersonality", "yes"),
        ("ReadWritePaths", "/var/lib/vllm /var/lib/vllm/huggingface"),
    ],
)
def test_unit_is_sandboxed(host, prop, value):
    assert host.check_output(f"systemctl show vllm.service --property {prop} --value") == value


def mounts(host) -> dict[str, list[str]]:
    """The running server's mount table (its own namespace): mount point -> options.
    Readable from outside, unlike the namespace itself (nsenter needs CAP_SYS_PTRACE,
    which the test container lacks)."""
    table = {}
    for line in host.file(f"/proc/{main_pid(host)}/mountinfo").content_string.splitlines():
        fields = line.split()
        table[fields[4]] = fields[5].split(",")
    return table


@pytest.mark.parametrize(
    ("mount_point", "mode"),
    [
        ("/", "ro"),              # ProtectSystem=strict
        ("/home", "ro"),          # ProtectHome=yes: an empty read-only tmpfs over it
        ("/root", "ro"),
        ("/var/lib/vllm", "rw"),  # ReadWritePaths: its state and the model cache
        ("/tmp", "rw"),           # PrivateTmp: its own
    ],
)
def test_sandbox_holds_in_the_running_service(host, mount_point, mode):
    table = mounts(host)
    assert mount_point in table, sorted(table)
    assert mode in table[mount_point]


def test_server_wrote_where_vllm_downloads_models(host):
    marker = host.file(MARKER)
    assert marker.exists
    assert marker.user == "vllm"


def test_exposure_level_is_low(host):
    """systemd's own score of the sandbox: 0 is fully locked down, 10 is unprotected."""
    last = host.check_output("systemd-analyze security vllm.service --no-pager").splitlines()[-1]
    level = float(last.split("vllm.service:")[1].split()[0])
    assert level <= 2.5, last


def test_listens_on_localhost_only(host):
    listeners = host.check_output("ss -Hltn 'sport = :8000'")
    assert listeners.split()[3] == "127.0.0.1:8000", listeners
    assert len(listeners.splitlines()) == 1


def test_health_answers_without_the_key(host):
    assert http(host, "GET", "/health")[0] == 200


def test_models_needs_the_key(host):
    assert http(host, "GET", "/v1/models")[0] == 401
    status, body = http(host, "GET", "/v1/models", key=KEY)
    assert status == 200
    assert [model["id"] for model in json.loads(body)["data"]] == [SERVED]


def test_chat_completion_through_the_endpoint(host):
    """The endpoint's plumbing (port, key, model name), answered by the stand-in, not a model."""
    status, body = http(host, "POST", "/v1/chat/completions", key=KEY,
                        body={"model": SERVED, "messages": [{"role": "user", "content": "ping"}]})
    assert status == 200
    reply = json.loads(body)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"].startswith("[vllm stand-in")


def test_changed_setting_restarts_and_waits_until_healthy(host):
    """A new max-model-len restarts the service, and the run itself asks the new
    server for /health and /v1/models until they answer (the stand-in opens its port
    3 s after starting), so it returns with the server up. The runs use --tags
    vllm_configure, which must work on its own (and is quicker)."""
    before = main_pid(host)
    try:
        result = run_converge(host, {"vllm_max_model_len": 4096}, tags="vllm_configure")
        assert result.returncode == 0, result.stdout
        assert "RUNNING HANDLER [vllm : Restart vllm]" in result.stdout
        after = main_pid(host)
        assert after != before
        # What the new server process logged while the run was going on.
        served = host.check_output(f"journalctl --unit vllm.service _PID={after} --output cat")
        assert '"GET /health HTTP/1.1" 200' in served
        assert '"GET /v1/models HTTP/1.1" 200' in served
        # Straight after the run, with no waiting of our own.
        status, body = http(host, "GET", "/v1/models", key=KEY)
        assert status == 200
        assert json.loads(body)["data"][0]["max_model_len"] == 4096
    finally:
        restored = run_converge(host, tags="vllm_configure")
    assert restored.returncode == 0, restored.stdout
    assert json.loads(http(host, "GET", "/v1/models", key=KEY)[1])["data"][0]["max_model_len"] == 8192
