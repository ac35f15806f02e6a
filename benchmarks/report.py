"""Results of benchmark runs and the table that prints them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import attrs


@attrs.frozen
class Series:
    """The values of one measurement over several runs, in ``unit``."""

    label: str
    unit: str
    values: tuple[float, ...]
    samples: str = "runs"

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def describe(self) -> str:
        """Return the median with the spread of the runs (min to max)."""
        median = _number(self.median)
        if len(self.values) == 1:
            return f"{median} {self.unit} (1 run)"
        low, high = _number(min(self.values)), _number(max(self.values))
        count = len(self.values)
        return f"{median} {self.unit} ({low} to {high}, {count} {self.samples})"


@attrs.frozen
class Row:
    """One line of the results table.

    ``ratio`` is the measured median over the reference median, or None
    when there is no reference. ``met`` is None when the target could not
    be judged (not measured, or no target).
    """

    benchmark: str
    measured: Series | None
    reference: Series | None = None
    target: str = "—"
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.measured is None or self.reference is None:
            return None
        if self.reference.median == 0:
            return None
        return self.measured.median / self.reference.median


def counted(count: int, noun: str) -> str:
    """Return ``count`` with ``noun``, plural unless the count is one."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def not_available(benchmark: str, target: str, reason: str) -> Row:
    return Row(benchmark=benchmark, measured=None, target=target, note=reason)


def format_table(rows: Sequence[Row]) -> str:
    """Return the rows as a Markdown table."""
    lines = [
        "| benchmark | measured | reference run | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        measured = row.measured.describe() if row.measured else f"n/a: {row.note}"
        reference = "—"
        if row.reference is not None:
            reference = f"{row.reference.label}: {row.reference.describe()}"
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}x"
        verdict = {True: "met", False: "not met", None: "—"}[row.met]
        if row.measured is not None and row.note:
            measured = f"{measured}; {row.note}"
        cells = (row.benchmark, measured, reference, ratio, row.target, verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
