"""The stage playbooks that install packages keep needrestart (Ubuntu 24.04 restarts
services after apt runs on its own) from restarting services under the play: its
apt hook skips when NEEDRESTART_SUSPEND is set (needrestart's ex/apt/apt-pinvoke)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", ["gpu", "engine", "router"])
def test_stages_that_run_apt_suspend_needrestart(stage):
    plays = yaml.safe_load((ROOT / "playbooks" / f"{stage}.yml").read_text())
    for play in plays:
        assert play.get("environment", {}).get("NEEDRESTART_SUSPEND") == "1", play["name"]
