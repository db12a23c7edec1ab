"""The router as the role left it after converge (and the smoke compression in it):
user, virtualenv, configuration, secrets, sandbox, endpoints, fact."""

from __future__ import annotations

import json
import re

import pytest
from conftest import (
    CONFIG, ENGINE_FACT, FACT, ROUTER, SECRETS, SECRETS_FILE, STATE_DIR, TOKEN, UNIT, UNIT_FILE, USER,
    VENV, VERSION, main_pid,
)

# --- user and virtualenv ---------------------------------------------------------------------


def test_service_user_is_a_system_user_without_login(host):
    user = host.user(USER)
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.groups == [USER]


def test_virtualenv_is_one_build_of_the_bundled_version(host):
    link = host.file(VENV)
    assert link.is_symlink
    assert re.fullmatch(rf"/opt/llm-router/venvs/{re.escape(VERSION)}-py3\.\d+-[0-9a-f]{{12}}", link.linked_to)
    assert host.check_output(f"{VENV}/bin/llm-router --version") == f"llm-router {VERSION}"
    assert host.check_output("ls /opt/llm-router/venvs").split() == [link.linked_to.rsplit("/", 1)[1]]
    build = json.loads(host.file(f"{link.linked_to}/build.json").content_string)
    assert build["version"] == VERSION


ACCESS = {
    "venv-bin": (f"{VENV}/bin/", "-w"),
    "venv-lib": (f"{VENV}/lib/", "-w"),
    "config": (CONFIG, "-w"),
    "secrets": (SECRETS_FILE, "-r"),
    "config-dir": ("/etc/llm-router", "-w"),
}


@pytest.fixture(scope="module")
def service_user_access(host) -> dict[str, bool]:
    """Whether the service user may read/write each path (runuser: root becomes that user
    without a password or a login shell), in one call."""
    script = "; ".join(f"runuser -u {USER} -- test {flag} {path} && echo {name}=yes || echo {name}=no"
                       for name, (path, flag) in ACCESS.items())
    return {k: v == "yes" for k, v in (line.split("=") for line in host.check_output(script).splitlines())}


@pytest.mark.parametrize("what", ACCESS)
def test_service_user_cannot_change_its_code_or_read_the_secrets(service_user_access, what):
    assert service_user_access[what] is False


# --- configuration and secrets ---------------------------------------------------------------

MODE_PATHS = [CONFIG, SECRETS_FILE, "/etc/llm-router", STATE_DIR, f"{STATE_DIR}/ledger.sqlite3", FACT]


@pytest.fixture(scope="module")
def modes(host) -> dict[str, tuple[int, str, str]]:
    out = host.check_output("stat -c '%n %a %U %G' " + " ".join(MODE_PATHS))
    rows = (line.split() for line in out.splitlines())
    return {name: (int(mode, 8), user, group) for name, mode, user, group in rows}


@pytest.mark.parametrize(
    ("path", "mode", "owner", "group"),
    [
        (CONFIG, 0o640, "root", USER),
        (SECRETS_FILE, 0o600, "root", "root"),
        ("/etc/llm-router", 0o750, "root", USER),
        (STATE_DIR, 0o750, USER, USER),
        (f"{STATE_DIR}/ledger.sqlite3", 0o600, USER, USER),
        (FACT, 0o644, "root", "root"),
    ],
    ids=["config", "secrets", "config-dir", "state-dir", "ledger", "fact"],
)
def test_file_modes(modes, path, mode, owner, group):
    assert modes[path] == (mode, owner, group)


def test_backends_are_the_engine_then_the_cloud_then_the_extra_then_zstd(config):
    assert [(b["name"], b["kind"], b["role"]) for b in config["backends"]] == [
        ("local", "openai", "local"), ("cloud", "openai", "cloud"), ("backup", "openai", "cloud"),
        ("zstd", "zstd", "fallback")]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("local.base_url", "fact:base_url"),
        ("local.model", "fact:default_model"),
        ("local.health_url", "fact:health_url"),
        ("local.api_key_env", "LLM_ROUTER_LOCAL_API_KEY"),
        ("local.price_per_1k_tokens", 0.0001),
        ("cloud.base_url", "http://mi50-router:8045/v1"),
        ("cloud.api_key_env", "LLM_ROUTER_CLOUD_API_KEY"),
        ("cloud.price_per_1k_tokens", 0.001),
        ("backup.api_key_env", "LAB_BACKUP_KEY"),
        ("backup.model", "standin-backup"),
        ("server.host", "127.0.0.1"),
        ("server.port", 8090),
        ("server.auth_tokens_env", "LLM_ROUTER_TOKENS"),
        ("routing.quality_threshold", 0.85),
        ("ledger.path", f"{STATE_DIR}/ledger.sqlite3"),
        ("baseline.price_per_1k_tokens", 0.001),
    ],
)
def test_config_setting(config, engine_fact, key, expected):
    section, name = key.split(".")
    where = {b["name"]: b for b in config["backends"]}.get(section) or config[section]
    if isinstance(expected, str) and expected.startswith("fact:"):
        expected = engine_fact[expected[5:]]
    assert where[name] == expected


def test_config_passes_the_routers_own_check(host):
    out = host.check_output(f"{VENV}/bin/llm-router check-config {CONFIG} 2>/dev/null")
    assert out == (f"OK: {CONFIG}: backends local (openai, local), cloud (openai, cloud), "
                   "backup (openai, cloud), zstd (zstd, fallback)")


@pytest.fixture(scope="module")
def service_environment(host) -> list[str]:
    """The values of the running router's environment variables."""
    environ = host.check_output(f"cat /proc/{main_pid(host)}/environ | tr '\\0' '\\n'")
    return [line.split("=", 1)[1] for line in environ.splitlines() if "=" in line]


@pytest.mark.parametrize("secret", SECRETS, ids=list(SECRETS))
def test_secret_is_in_the_secrets_file_and_reaches_the_service(host, service_environment, secret):
    value = SECRETS[secret]
    assert value in host.file(SECRETS_FILE).content_string
    assert any(value in v.split(",") for v in service_environment)  # tokens share one variable


PLACES = {
    "config": f"cat {CONFIG}",
    "unit": f"cat {UNIT_FILE}",
    # Every process's command line: the router's, the engine's and the cloud's.
    "command-lines": "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    "journal": "journalctl --no-pager --output cat",
    "systemctl-show": f"systemctl show {UNIT}",
}


@pytest.fixture(scope="module")
def places(host) -> dict[str, str]:
    return {place: host.check_output(command) for place, command in PLACES.items()}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("secret", SECRETS, ids=list(SECRETS))
def test_secret_appears_nowhere_else(places, secret, place):
    assert places[place].strip()  # there is something to look in
    assert SECRETS[secret] not in places[place]


# --- the unit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("User", USER),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("StateDirectory", "llm-router"),
        ("UMask", "0077"),
        ("RestartPreventExitStatus", "2"),
    ],
)
def test_unit_sandbox(unit_properties, prop, value):
    if prop == "RestrictAddressFamilies":  # systemd lists them in its own order
        assert set(unit_properties[prop].split()) == set(value.split())
    else:
        assert unit_properties[prop] == value


def test_unit_reads_the_secrets_file(unit_properties):
    assert unit_properties["EnvironmentFiles"].startswith(SECRETS_FILE)


def test_unit_verifies(host):
    result = host.run(f"systemd-analyze verify {UNIT_FILE}")
    assert result.rc == 0, result.stderr


def test_exposure_is_at_most_2_5(host):
    out = host.check_output(f"systemd-analyze security {UNIT} --no-pager")
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)[1])
    print(f"systemd-analyze security {UNIT}: exposure {exposure}")
    assert exposure <= 2.5


# --- the running service -----------------------------------------------------------------------


def test_listens_on_loopback_only(host, endpoints):
    # ss cannot name the owner of another user's socket here (the container lacks
    # CAP_SYS_PTRACE); the router answers on 8090 (the endpoint tests), so whatever listens
    # on 8090 is the router.
    listening = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert [a for a in listening if a.rsplit(":", 1)[1] == "8090"] == ["127.0.0.1:8090"]
    assert endpoints[("/healthz", None)][0] == 200


@pytest.mark.parametrize(
    ("path", "token", "status", "expect"),
    [
        ("/healthz", None, 200, '"status":"ok"'),
        ("/readyz", None, 200, '"ready":true'),
        ("/metrics", None, 200, 'llm_router_backend_up{backend="local",role="local"} 1.0'),
        ("/v1/cost", TOKEN, 200, '"baseline_price_per_1k_tokens":0.001'),
        ("/v1/cost", None, 401, "unauthorized"),
        ("/v1/models", TOKEN, 200, '"id":"local"'),
    ],
    ids=["healthz", "readyz", "metrics", "cost", "cost-without-token", "models"],
)
def test_endpoint(endpoints, path, token, status, expect):
    got, body = endpoints[(path, token)]
    assert got == status, body
    assert expect in body


@pytest.mark.parametrize("backend", ["local", "cloud", "backup", "zstd"])
def test_every_backend_is_usable(endpoints, backend):
    _, body = endpoints[("/readyz", None)]
    state = {b["name"]: b for b in json.loads(body)["backends"]}[backend]
    assert state["usable"] is True
    assert state["probe"] == ("unknown" if backend == "zstd" else "healthy")  # zstd is never probed


def test_the_real_model_was_tried_first_and_the_cloud_took_over(endpoints):
    """The smoke compression of converge went to the real gemma model first; its dense rewrite
    was refused (a 270M base model), and the cloud stand-in delivered. The durable ledger
    shows both: calls billed to the engine that delivered nothing, requests delivered by the
    cloud."""
    _, cost = endpoints[("/v1/cost", TOKEN)]
    by_backend = json.loads(cost)["by_backend"]
    assert by_backend["local"]["calls"] >= 1
    assert by_backend["local"]["prompt_tokens"] > 0  # the engine really answered
    assert by_backend["cloud"]["requests"] >= 1


def test_fact(host):
    fact = json.loads(host.file(FACT).content_string)
    assert fact == {"schema": 1, "url": ROUTER, "version": VERSION, "config": CONFIG, "service": UNIT}
    assert host.file(ENGINE_FACT).exists
