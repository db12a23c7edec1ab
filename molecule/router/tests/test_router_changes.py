"""The stages run again against the converged router: the smoke compression (alone, as
playbooks/smoke.yml runs it), a configuration the router refuses, and a rebuild when the
requirements change. Runs after test_router.py (file order): it restarts the service."""

from __future__ import annotations

import json
import time

import pytest
from conftest import CONFIG, SECRETS, UNIT_FILE, VENV, VERSION, http, main_pid, run_playbook, task_result

RESULT_TASK = "Record the outcome"
# Every file the role writes, with its modification time and size.
LISTING = (f"find /etc/llm-router {UNIT_FILE} /opt/llm-router /etc/ansible/facts.d/llm_router.fact "
           "-printf '%p %T@ %s\\n'")


def smoke_result(host, extra: dict) -> dict:
    result = run_playbook(host, "smoke.yml", extra, json_output=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    outcome = task_result(result.stdout, RESULT_TASK, host.backend.get_hostname())
    return outcome["ansible_facts"]["llm_router_smoke_result"]


def test_smoke_through_zstd_is_an_exact_round_trip(host):
    s = smoke_result(host, {"llm_router_smoke_backend": "zstd", "llm_router_smoke_expect_backend": "zstd"})
    assert (s["backend"], s["method"], s["exact"], s["round_trip_equal"], s["lossless"]) == (
        "zstd", "zstd", True, True, True)
    assert s["quality"] == 1.0
    assert s["ratio"] > 1
    assert s["attempts"] == ["zstd=ok"]
    assert s["passed_over"] == {}


def test_smoke_names_why_the_local_model_was_passed_over(host):
    # Quality high skips the local model by policy (the plan's rule): the cloud serves it,
    # verified, and the result says why the local model did not.
    s = smoke_result(host, {"llm_router_smoke_quality": "high", "llm_router_smoke_expect_backend": "cloud"})
    assert (s["backend"], s["method"], s["verified"]) == ("cloud", "llm", True)
    assert s["passed_over"] == {"local": "skipped:policy"}
    assert s["quality"] >= s["threshold"] == 0.85
    assert s["ratio"] > 1


def test_smoke_fails_when_the_wrong_backend_serves(host):
    result = run_playbook(host, "smoke.yml", {"llm_router_smoke_backend": "zstd",
                                              "llm_router_smoke_expect_backend": "cloud"})
    assert result.returncode != 0
    assert "did not hold" in result.stdout
    assert "expected backend cloud" in " ".join(result.stdout.split())


def test_smoke_hides_the_token(host):
    result = run_playbook(host, "smoke.yml", {"llm_router_smoke_backend": "zstd"}, verbose=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "smoke: zstd" in result.stdout
    for value in SECRETS.values():
        assert value not in result.stdout


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            {"llm_router_cloud_api_key": "not a token; rm -rf /"},
            "llm_router_cloud_api_key: keys and tokens must be bearer tokens",
        ),
        (
            {"llm_router_api_keys": {}},
            "its api_key_env, if any, a key in llm_router_api_keys",
        ),
        (
            {"llm_router_extra_backends": [{"name": "cloud", "kind": "zstd", "role": "fallback"}]},
            "unique name other than",
        ),
    ],
    ids=["key-not-a-token", "extra-backend-without-its-key", "extra-backend-named-cloud"],
)
def test_bad_inputs_are_refused_before_anything_changes(host, extra, problem):
    before = host.check_output(f"{LISTING} | sort")
    pid = main_pid(host)
    result = run_playbook(host, "router.yml", extra, verbose=True)
    assert result.returncode != 0
    flat = " ".join(result.stdout.split())  # the callback wraps long lines
    assert problem in flat
    assert "Nothing was changed on this host." in flat
    assert "rm -rf" not in result.stdout  # a refused key is not echoed
    assert host.check_output(f"{LISTING} | sort") == before
    assert main_pid(host) == pid


def test_a_host_without_an_engine_is_refused(host):
    host.check_output("mv /etc/ansible/facts.d/inference.fact /etc/ansible/facts.d/inference.fact.away")
    try:
        result = run_playbook(host, "router.yml")
    finally:
        host.check_output("mv /etc/ansible/facts.d/inference.fact.away /etc/ansible/facts.d/inference.fact")
    assert result.returncode != 0
    flat = " ".join(result.stdout.split())
    assert "/etc/ansible/facts.d/inference.fact is missing" in flat
    assert "Run the engine stage first" in flat
    assert "llm_router_local_required: false" in flat


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"llm_router_prompts_version": "v999"}, "prompts.version"),
        ({"llm_router_health_interval_s": 0}, "routing.health_interval_s"),
    ],
    ids=["unknown-prompt-version", "zero-interval"],
)
def test_a_refused_configuration_leaves_the_old_one_running(host, extra, problem):
    before = host.check_output(f"sha256sum {CONFIG}")
    pid = main_pid(host)
    result = run_playbook(host, "router.yml", extra, tags="llm_router_configure")
    assert result.returncode != 0
    assert problem in result.stdout  # llm-router check-config names the key
    assert host.check_output(f"sha256sum {CONFIG}") == before
    assert main_pid(host) == pid  # not restarted
    status, _ = http(host, "/readyz")
    assert status == 200


def readyz_backends(host) -> dict[str, dict]:
    """The backends /readyz reports, once every LLM backend has been probed (after a restart)."""
    for _ in range(30):
        status, body = http(host, "/readyz")
        backends = {b["name"]: b for b in json.loads(body)["backends"]} if status == 200 else {}
        if backends and all(b["probe"] != "unknown" for b in backends.values() if b["kind"] == "openai"):
            return backends
        time.sleep(1)
    raise AssertionError(f"/readyz: {status} {body}")


NEW_TOKEN = "lab-rotated-token-24680"


@pytest.fixture(scope="module")
def redeployed(host):
    """The router deployed again with other inputs, with --diff and -vvv: a toggled pin of the
    installed httpx (the dependencies stay the same, the requirements do not: a rebuild,
    whichever state an earlier run left), no cloud and no backup (every backend is then on
    loopback), and a rotated client token. The last test restores the scenario's inputs."""
    old_build = host.file(VENV).linked_to
    pid = main_pid(host)
    httpx = host.check_output(f"{VENV}/bin/python -c 'import httpx; print(httpx.__version__)'")
    pinned = host.file(f"{old_build}/constraints.txt").content_string.strip() != ""
    constraints = [] if pinned else [f"httpx=={httpx}"]
    extra = {"llm_router_pip_constraints": constraints, "llm_router_cloud_enabled": False,
             "llm_router_extra_backends": [], "llm_router_auth_tokens": [NEW_TOKEN]}
    result = run_playbook(host, "router.yml", extra, verbose=True, diff=True)
    state = {"old_build": old_build, "pid": pid, "constraints": constraints, "result": result, "restored": False}
    yield state
    if not state["restored"]:
        run_playbook(host, "router.yml", {"llm_router_pip_constraints": constraints})


def test_changed_requirements_build_a_new_virtualenv_and_restart(host, redeployed):
    assert redeployed["result"].returncode == 0, redeployed["result"].stdout[-3000:]
    new_build = host.file(VENV).linked_to
    assert new_build != redeployed["old_build"]
    assert host.file(f"{new_build}/constraints.txt").content_string.split() == redeployed["constraints"]
    assert host.check_output(f"{VENV}/bin/llm-router --version") == f"llm-router {VERSION}"
    assert not host.file(redeployed["old_build"]).exists  # removed once the new one runs
    assert main_pid(host) != redeployed["pid"]  # restarted on the new build


def test_a_router_with_only_loopback_backends_is_fenced_to_loopback(host, redeployed):
    unit = host.file(UNIT_FILE).content_string
    assert "IPAddressAllow=localhost" in unit and "IPAddressDeny=any" in unit
    backends = readyz_backends(host)
    assert list(backends) == ["local", "zstd"]
    assert backends["local"]["probe"] == "healthy"  # the engine is reached inside the fence


def test_a_rotated_token_replaces_the_old_one_and_is_printed_nowhere(host, redeployed):
    assert http(host, "/v1/cost", NEW_TOKEN)[0] == 200
    assert http(host, "/v1/cost", SECRETS["router-token"])[0] == 401
    output = redeployed["result"].stdout + redeployed["result"].stderr
    # The run did rewrite the secrets file (with --diff and -vvv), and showed nothing of it.
    task = next(chunk for chunk in output.split("TASK [") if chunk.startswith("llm_router : Write the secrets"))
    assert "changed: [" in task
    assert NEW_TOKEN not in output
    for value in SECRETS.values():
        assert value not in output


def test_the_same_requirements_again_reconfigure_without_rebuilding(host, redeployed):
    build = host.file(VENV).linked_to
    restored = run_playbook(host, "router.yml", {"llm_router_pip_constraints": redeployed["constraints"]})
    redeployed["restored"] = True
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert host.file(VENV).linked_to == build
    assert "IPAddressDeny" not in host.file(UNIT_FILE).content_string  # the cloud is not on loopback
    assert list(readyz_backends(host)) == ["local", "cloud", "backup", "zstd"]
    assert http(host, "/v1/cost", SECRETS["router-token"])[0] == 200
