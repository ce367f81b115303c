"""The before/after table that ``prune`` and ``quantize`` print, and its JSON form."""

from __future__ import annotations

from typing import Any

from deepshrink.pipeline.compress import Measures, changes

__all__ = ["accuracy_note", "before_after", "before_after_table"]


def before_after(before: Measures, after: Measures) -> dict[str, Any]:
    """``{"before": ..., "after": ..., "change": ...}`` as plain data (``--json``)."""
    return {"before": before.to_dict(), "after": after.to_dict(), "change": changes(before, after)}


def before_after_table(before: Measures, after: Measures) -> str:
    """Rows: test top-1 (when measured), MACs, MACs with a non-zero weight, parameters, file bytes."""
    change = changes(before, after)
    rows = [("", "before", "after", "change")]
    if before.top1 is not None or after.top1 is not None:
        rows.append(("test top-1", _percent(before.top1), _percent(after.top1),
                     f"{change['top1_points']:+.2f} points" if change["top1_points"] is not None else ""))
    for label, key, ratio, words in (("MACs", "macs", "macs_times_fewer", ("fewer", "more")),
                                     ("non-zero MACs", "sparse_macs", "sparse_macs_times_fewer", ("fewer", "more")),
                                     ("parameters", "params", "params_times_fewer", ("fewer", "more")),
                                     ("file bytes", "bytes", "bytes_times_smaller", ("smaller", "larger"))):
        first, second = getattr(before, key), getattr(after, key)
        if first is not None or second is not None:
            rows.append((label, _count(first), _count(second), _times(change[ratio], *words)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip() for a, b, c, d in rows)


def accuracy_note(before: Measures, after: Measures, epochs: int, epochs_flag: str, points: float = 5.0) -> str | None:
    """A hint when the test accuracy fell more than ``points`` points without fine-tuning."""
    if epochs or before.top1 is None or after.top1 is None or 100 * (before.top1 - after.top1) <= points:
        return None
    return (f"note: test top-1 fell {100 * (before.top1 - after.top1):.2f} points without fine-tuning; "
            f"{epochs_flag} N with --data recovers most of it")


def _times(ratio: float | None, fewer: str, more: str) -> str:
    """``2.01x fewer``, ``same``, ``2.00x more`` (``ratio``: before / after)."""
    if not ratio:
        return ""
    if ratio == 1:
        return "same"
    return f"{ratio:.2f}x {fewer}" if ratio > 1 else f"{1 / ratio:.2f}x {more}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
