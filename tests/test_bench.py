"""The benchmark harness runs end to end at a small scale, so that it does not rot.

Figures are not asserted (they are the benchmark's output, and a loaded CI machine would make
them meaningless); what is asserted is that every part runs against the real components it
starts, counts what it should, and loses nothing. The agent part needs pcscd and has its own
test (tests/test_agent_footprint.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_every_part_but_the_agent_runs_at_a_small_scale(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--only", "ingest,latency,rules,storm"]
        + ["--ingest-hosts", "60", "--ingest-rounds", "2"]
        + ["--latency-rate", "100", "--latency-seconds", "2"]
        + ["--rules-hosts", "300", "--storm-agents", "80", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert figures["machine"]["cores"] >= 1

    ingest = figures["ingest"]
    assert (ingest["hosts"], ingest["documents"]) == (60, 120)
    for name in ("controller_first", "controller_steady", "raw_first", "raw_steady"):
        assert ingest[f"{name}_per_second"] > 0, name

    latency = figures["latency"]
    assert latency["documents"] == 200
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]

    rules = figures["rules"]
    assert rules["hosts"] == 300 and rules["findings"] > 0
    assert rules["periodic_evaluation_s"] >= 0 and rules["controller_peak_rss_mb"] > 0

    storm = figures["storm"]
    assert storm["agents"] == 80
    assert storm["messages_acknowledged_by_broker"] == storm["messages_stored"] == 160
    assert storm["messages_lost"] == 0
    assert "ingest" in result.stdout and "storm" in result.stdout  # the printed report
