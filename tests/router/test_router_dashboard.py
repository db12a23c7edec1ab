"""The Grafana dashboard is valid JSON and only uses metrics the router exports."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from llm_router.app import Gate
from routerkit import LONG_TEXT, ROOT

DASHBOARD = ROOT / "files" / "grafana" / "llm-router-dashboard.json"


def exprs(panels: list[dict[str, Any]]) -> list[str]:
    out = []
    for panel in panels:
        out += [t["expr"] for t in panel.get("targets", [])]
        out += exprs(panel.get("panels", []))
    return out


def test_dashboard_is_valid_and_uses_a_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("savings", "fallbacks", "latency", "backend usable", "circuit"):
        assert topic in titles


async def test_every_metric_in_the_dashboard_is_exported(
    router_client: tuple[httpx.AsyncClient, Gate], local_api
) -> None:
    client, _ = router_client
    local_api.state.lossy = True  # a quality rejection, a fallback and a verified score
    await client.post("/v1/compress", json={"text": LONG_TEXT})
    await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    exported = set(
        re.findall(r"^(llm_router_\w+?)(?:\{| )", (await client.get("/metrics")).text, re.M)
    )
    used = {
        m
        for e in exprs(json.loads(DASHBOARD.read_text())["panels"])
        for m in re.findall(r"llm_router_\w+", e)
    }
    assert used, "no expressions found"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
