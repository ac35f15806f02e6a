"""Every benchmark script still runs: the runner's smoke mode and the rest.

The smoke mode uses tiny counts and starts real servers on loopback. Parts
whose tools (wrk, Postfix, PostgreSQL, procrastinate) are missing are
reported as not available, with the reason, instead of failing. The
scripts outside the runner run once each with their smallest counts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--runs", "0"], "argument --runs: must be above 0, not 0"),
        (["--delivery-count", "-5"], "argument --delivery-count: must be above 0"),
        (["--http-seconds", "0.5"], "expected a whole number above 0, got '0.5'"),
        (["--growth-counts", "5000,1000"], "below the large one, got '5000,1000'"),
        (["--growth-counts", "100,1000"], "must hold at least 3,500 messages"),
        (["--output", "missing-folder/results.md"], "does not exist; create it"),
    ],
)
def test_runner_rejects_bad_options(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(ROOT / "benchmarks" / "run"), *arguments],
        cwd=tmp_path,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert message in result.stderr
    assert "starting" not in result.stderr


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("smtp-sink") is None, reason="needs smtp-sink")
def test_sigterm_stops_started_servers(tmp_path: Path) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--only", "delivery", "--runs", "1"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The sink, then the worker, which runs the interpreter of the runner.
        started = _wait_for_descendants(runner.pid, {"smtp-sink", "python"})
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if runner.poll() is None:
            runner.kill()

    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if _alive(pid)]
    assert not list(tmp_path.glob("sendarix-bench-*"))


def _wait_for_descendants(root: int, prefixes: set[str]) -> list[int]:
    """Wait until ``root`` has a descendant named with each prefix; return all."""
    deadline = time.monotonic() + 60
    found: list[tuple[int, str]] = []
    while time.monotonic() < deadline:
        found = _descendants(root)
        names = [name for _, name in found]
        if all(any(name.startswith(p) for name in names) for p in prefixes):
            return [pid for pid, _ in found]
        time.sleep(0.1)
    raise AssertionError(f"the runner did not start {sorted(prefixes)}: {found}")


def _descendants(root: int) -> list[tuple[int, str]]:
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        parents[int(stat.parent.name)] = (parent, name)
    found: list[tuple[int, str]] = []
    frontier = {root}
    while frontier:
        children = {pid for pid, (parent, _) in parents.items() if parent in frontier}
        found.extend((pid, parents[pid][1]) for pid in children)
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
