"""The benchmark runner's smoke mode: every benchmark script still runs.

The smoke mode uses tiny counts and starts real servers on loopback. Parts
whose tools (wrk, Postfix, PostgreSQL, procrastinate) are missing are
reported as not available, with the reason, instead of failing.
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
