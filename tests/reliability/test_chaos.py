"""``scripts/chaos.py`` end to end (slow: ``make chaos`` runs it, and the full 10-kill script after it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_chaos_script_kills_resumes_and_ends_bitwise_equal(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    command = [sys.executable, str(ROOT / "scripts/chaos.py"), "--kills", "5", "--steps", "16", "--seed", "1"]
    run = subprocess.run(
        [*command, "--workdir", str(tmp_path / "w"), "--json", str(report)], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "chaos: PASS" in run.stdout and "5 SIGKILLs" in run.stdout
    summary = json.loads(report.read_text())
    assert summary["ok"] and summary["starts"] == 6 and len(summary["kills"]) == 5
    assert all(kill["killed"] for kill in summary["kills"])
    assert {"save-weights", "data"} <= {kill["kind"] for kill in summary["kills"]}
    assert summary["checks"]["train_losses_logged"] == 16
    assert all(summary["checks"].values())
