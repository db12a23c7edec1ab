"""The engine compatibility matrix (mi50.stack data/engine_matrix.yml) and the
filters that read it: every row is reached by a lookup built for it, the
boundaries the facts name are exact, and the messages carry the fix."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from ansible_collections.mi50.stack.plugins.filter import engine_compat as ec

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ec.load_matrix()


def row_case(row: dict) -> tuple[str, str, str, str, dict]:
    """A lookup that this row, and no earlier one, must answer."""
    version = row.get("max_version") or row.get("min_version") or ""
    target = (row.get("targets") or ["gfx906"])[0]
    options: dict = {}
    if "option_true" in row:
        options[row["option_true"]] = True
    if "option_lists_target" in row:
        options[row["option_lists_target"]] = [target]
    elif row["engine"] == "llamacpp" and row["tier"] == "rocm":
        options["gpu_targets"] = ["gfx90a"]  # a build without the card's target
    return row["engine"], row["tier"], version, target, options


@pytest.mark.parametrize("index", range(len(MATRIX["rows"])),
                         ids=[f"{r['engine']}-{r['tier']}-{r['result']}-{i + 1}" for i, r in enumerate(MATRIX["rows"])])
def test_every_row_answers_its_own_case(index):
    row = MATRIX["rows"][index]
    engine, tier, version, target, options = row_case(row)
    found = ec.engine_compat(engine, tier, version, target, options)
    assert found["result"] == row["result"]
    assert found["accelerated"] is (row["result"] == "gpu")
    assert found["serves"] is (row["result"] != "none")
    assert found["why"] == row["why"].format(version=version, target=target, tier=ec.TIER_NAMES[tier])
    if row["result"] != "gpu" and tier != "cpu":
        assert found["fix"] and found["fix"] in found["message"]


@pytest.mark.parametrize(
    ("tier", "version", "result"),
    [
        ("rocm", "0.12.3", "gpu"),     # the last release whose ROCm build has gfx906
        ("rocm", "0.12.2", "gpu"),
        ("rocm", "0.12.4", "cpu"),     # gfx906 dropped here
        ("rocm", "0.13.0-rc1", "cpu"),
        ("rocm", "0.32.7", "cpu"),
        ("vulkan", "0.12.10", "cpu"),  # no Vulkan backend yet
        ("vulkan", "0.12.11", "cpu"),  # OLLAMA_VULKAN read, but the Linux archives lack the libraries (#13104)
        ("vulkan", "0.13.0-rc0", "gpu"),  # the archives carry them from here (PR #13123)
        ("vulkan", "0.13.0", "gpu"),
        ("vulkan", "v0.30.0", "gpu"),  # on by default
        ("opencl", "0.12.3", "cpu"),   # Ollama has no OpenCL backend
        ("opencl", "0.32.7", "cpu"),
        ("cpu", "0.32.7", "cpu"),
    ],
)
def test_ollama_on_an_mi50_follows_the_release_history(tier, version, result):
    assert ec.engine_compat("ollama", tier, version, "gfx906")["result"] == result


def test_newer_ollama_on_rocm_names_the_pin_and_the_tier_order():
    message = ec.engine_compat("ollama", "rocm", "0.13.0", "gfx906")["message"]
    assert message.startswith("Ollama 0.13.0 cannot use gfx906 on the ROCm tier and would serve on the CPU only")
    assert 'ollama_version "0.12.3"' in message
    assert "put vulkan first in gpu_tiers" in message


@pytest.mark.parametrize("version", ["0.12.3", "0.12.11"])
def test_old_ollama_on_vulkan_names_the_minimum_and_why(version):
    message = ec.engine_compat("ollama", "vulkan", version, "gfx906")["message"]
    assert "carry no Vulkan libraries before 0.13.0" in message
    assert "ollama issue #13104" in message
    assert 'ollama_version "0.13.0" or newer' in message
    assert "0.12.11 or newer" not in message


def test_a_target_without_a_row_is_unknown_not_refused():
    found = ec.engine_compat("ollama", "rocm", "0.12.3", "gfx1100")
    assert found["result"] == "unknown" and found["serves"] and not found["accelerated"]
    assert "no row for Ollama 0.12.3 on the ROCm tier with gfx1100" in found["message"]


def test_a_version_bound_row_needs_a_version():
    assert ec.engine_compat("ollama", "rocm", "", "gfx906")["result"] == "unknown"


def test_vllm_on_gfx906_needs_a_build_flagged_as_gfx906():
    assert ec.engine_compat("vllm", "rocm", "", "gfx906")["result"] == "none"
    assert ec.engine_compat("vllm", "rocm", "", "gfx906", {"gfx906_build": "yes"})["result"] == "none"
    assert ec.engine_compat("vllm", "rocm", "", "gfx906", {"gfx906_build": True})["result"] == "gpu"
    assert ec.engine_compat("vllm", "rocm", "", "gfx942")["result"] == "gpu"


@pytest.mark.parametrize(("targets", "result"), [(None, "gpu"), ("gfx906", "gpu"), ("gfx900;gfx906", "gpu"),
                                                 ("gfx90a, gfx942", "cpu"), ([], "cpu"), (["gfx906"], "gpu")])
def test_llamacpp_hip_build_must_list_the_target_when_its_targets_are_known(targets, result):
    options = {} if targets is None else {"gpu_targets": targets}
    assert ec.engine_compat("llamacpp", "rocm", "", "gfx906", options)["result"] == result


def test_unknown_engine_or_tier_is_an_error():
    with pytest.raises(ec.MatrixError, match="unknown inference engine"):
        ec.engine_compat("tgi", "rocm")
    with pytest.raises(ec.MatrixError, match="unknown tier"):
        ec.engine_compat("ollama", "cuda", "0.12.3")


@pytest.mark.parametrize(("text", "parsed"), [("0.12.3", (0, 12, 3)), ("v0.12.11", (0, 12, 11)),
                                              ("0.13.0-rc1", (0, 13, 0)), ("1.2", (1, 2, 0))])
def test_versions_compare_as_numbers(text, parsed):
    assert ec.parse_version(text) == parsed


def test_unreadable_version_is_an_error():
    with pytest.raises(ec.MatrixError, match="cannot read the version"):
        ec.parse_version("latest")


# --------------------------------------------------------------------- preflight's policy

def check(**kw):
    args = {"engine": "ollama", "tiers": ["rocm", "vulkan", "opencl"], "gfx_targets": ["gfx906"]}
    args.update(kw)
    return ec.engine_tier_check(**args)


def test_first_tier_that_runs_on_the_cpu_is_a_problem_with_the_fix():
    out = check(version="0.13.0")
    assert len(out["problems"]) == 1
    assert out["problems"][0].startswith("Tier rocm (first in gpu_tiers): Ollama 0.13.0 cannot use gfx906")
    assert 'Pin ollama_version "0.12.3"' in out["problems"][0]


def test_per_tier_versions_pass_and_warn_only_about_the_cpu_fallbacks():
    out = check(version_by_tier={"rocm": "0.12.3", "vulkan": "0.32.7", "opencl": "0.32.7"})
    assert out["problems"] == []
    assert out["warnings"] == [
        "If gpu_backend falls back to opencl: " + ec.engine_compat("ollama", "opencl", "0.32.7", "gfx906")["message"]]


def test_a_pin_applies_to_every_tier():
    out = check(version="0.12.3", version_by_tier={"vulkan": "0.32.7"})
    assert out["problems"] == []
    assert any(w.startswith("If gpu_backend falls back to vulkan: Ollama 0.12.3 cannot use") for w in out["warnings"])


def test_old_ollama_with_vulkan_first_is_refused():
    out = check(tiers=["vulkan", "rocm"], version="0.12.3")
    assert out["first_tier"] == "vulkan"
    assert "no Vulkan libraries before 0.13.0" in out["problems"][0]


def test_ollama_0_12_11_with_vulkan_first_is_refused():
    out = check(tiers=["vulkan", "rocm"], version="0.12.11")
    assert out["problems"] and 'Pin ollama_version "0.13.0" or newer' in out["problems"][0]


def test_the_forced_tier_is_the_one_checked():
    out = check(forced_tier="vulkan", version="0.12.3")
    assert out["first_tier"] == "vulkan"
    assert out["problems"][0].startswith("Tier vulkan (forced by gpu_backend_force_tier)")
    assert len(out["checks"]) == 1  # a forced tier has no fallbacks


def test_cpu_allowed_turns_the_problem_into_a_warning_but_not_for_an_engine_that_cannot_serve():
    assert check(version="0.13.0", allow_cpu=True)["problems"] == []
    assert check(engine="vllm", allow_cpu=True)["problems"]


def test_a_forced_cpu_tier_is_a_choice_not_a_problem():
    out = check(forced_tier="cpu", version="0.32.7")
    assert out["problems"] == [] and out["warnings"] == []


def test_an_engine_that_cannot_serve_on_the_cpu_says_so_and_is_refused():
    found = ec.engine_compat("vllm", "cpu", "", "gfx906")
    assert found["serves"] is False
    assert "cannot serve on the cpu tier" in found["message"]
    assert check(engine="vllm", forced_tier="cpu")["problems"]


def test_every_gpu_target_is_checked():
    out = check(version="0.12.3", tiers=["rocm"], gfx_targets=["gfx906", "gfx1100"])
    assert out["problems"] == [] and "gfx1100: not checked" in out["warnings"][0]


def test_no_tiers_is_a_warning():
    assert check(tiers=[], version="0.12.3")["warnings"]


# --------------------------------------------------------------------- the data itself

def test_a_row_with_an_unknown_key_is_refused():
    broken = copy.deepcopy(MATRIX)
    broken["rows"][0]["max_verison"] = "0.12.3"
    with pytest.raises(ec.MatrixError, match="unknown keys"):
        ec.validate(broken)


def test_a_refusal_without_a_fix_is_refused():
    broken = copy.deepcopy(MATRIX)
    del broken["rows"][1]["fix"]
    with pytest.raises(ec.MatrixError, match="needs a fix"):
        ec.validate(broken)


def test_a_version_bound_without_its_source_is_refused():
    broken = copy.deepcopy(MATRIX)
    bounded = next(r for r in broken["rows"] if "min_version" in r or "max_version" in r)
    del bounded["source"]
    with pytest.raises(ec.MatrixError, match="needs its source"):
        ec.validate(broken)


def test_every_floor_and_ceiling_carries_its_source():
    for row in MATRIX["rows"]:
        if "min_version" in row or "max_version" in row:
            assert row.get("source", "").strip(), row


def test_every_engine_has_a_row_for_every_tier():
    for engine in MATRIX["engines"]:
        assert {r["tier"] for r in MATRIX["rows"] if r["engine"] == engine} == set(MATRIX["tiers"]), engine


def test_readme_shows_the_matrix_as_it_is():
    readme = (ROOT / "README.md").read_text()
    assert ec.matrix_markdown() in readme, "paste matrix_markdown() into README's engines section"
    assert re.search(r"^\| engine \| tier \|", readme, re.M)
