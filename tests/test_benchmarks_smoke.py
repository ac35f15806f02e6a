"""Every benchmark script still runs: the runner's smoke mode and the rest.

The smoke mode uses tiny counts and starts real servers on loopback. Parts
whose tools (wrk, Postfix, PostgreSQL, procrastinate) are missing are
reported as not available, with the reason, instead of failing. The
scripts outside the runner run once each with their smallest counts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_benchmarks_smoke_mode(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    print(result.stdout)
    print(result.stderr, file=sys.stderr)

    assert result.returncode == 0, result.stderr[-4000:]
    assert "| benchmark | measured |" in result.stdout
    assert output.exists()


# The scripts outside the runner, each with the smallest counts it accepts.
STANDALONE = {
    "pacing": ["--smoke"],
    "content": ["--seconds", "0.2", "--runs", "1"],
    "webhooks": ["--events", "20", "--messages", "20", "--runs", "1"],
    "batch_send": ["--runs", "1", "--seconds", "1"],
    "mime_build": ["--count", "100", "--runs", "1"],
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(STANDALONE))
def test_standalone_benchmark_runs(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *STANDALONE[name]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(result.stdout)
    print(result.stderr, file=sys.stderr)

    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip()
