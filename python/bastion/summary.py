"""A summary of budgets and SLOs that reads well in a terminal and a notebook.

    import bastion
    bastion.summary(budgets=budgets, slos=slos)   # in Jupyter: an HTML table
    print(bastion.summary(budgets=budgets))        # in a terminal: plain text
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

from bastion._core import Budgets, SloMonitor


def _usd(v: Decimal) -> str:
    q = Decimal("0.01") if abs(v) >= 1 else Decimal("0.0001")
    return f"${v.quantize(q)}"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.0f} ms" if ns >= 1e6 else f"{ns / 1e3:,.1f} µs"


def _budget_left(remaining: float) -> str:
    if remaining < 0:
        return f"overspent {1 - remaining:.1f}x"
    return f"{_pct(remaining)} {_bar(remaining)}"


def _bar(fraction: float, width: int = 10) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


class Summary:
    """Budget usage, SLO compliance and error budget left, as rows."""

    def __init__(self, budget_rows: list[dict[str, Any]] | None,
                 slo_rows: list[dict[str, Any]] | None) -> None:
        # None: that part was not asked for, and is left out of the renderings.
        self.budget_rows = budget_rows
        self.slo_rows = slo_rows

    # -- rows as they are shown --

    def _budget_table(self) -> tuple[list[str], list[list[str]]]:
        head = ["budget", "key", "window", "spent", "reserved", "limit", "used", ""]
        rows = []
        for r in self.budget_rows or []:
            window = r["window"].split(" [")[0]
            rows.append([r["budget"], r["key"] or "(all)", window, _usd(r["spent_usd"]),
                         _usd(r["reserved_usd"]), _usd(r["limit_usd"]), _pct(r["used"]),
                         _bar(r["used"])])
        return head, rows

    def _slo_table(self) -> tuple[list[str], list[list[str]]]:
        head = ["slo", "subject", "calls", "success", "target", "error budget left", "p95",
                "p99", "breaker", "firing"]
        rows = []
        for r in self.slo_rows or []:
            has_success = r["has_success"]
            rows.append([
                r["slo"], r["subject"] or "(all)", f"{r['calls']:,}",
                _pct(r["success_rate"]) if has_success else "-",
                _pct(r["target"]) if has_success else "-",
                _budget_left(r["error_budget_remaining"]) if has_success else "-",
                _ms(r["p95_ns"]) if r["latency_calls"] else "-",
                _ms(r["p99_ns"]) if r["latency_calls"] else "-",
                r["breaker"] or "-",
                ", ".join(r["firing"]) or "-",
            ])
        return head, rows

    # -- renderings --

    @staticmethod
    def _text(title: str, head: list[str], rows: list[list[str]]) -> str:
        if not rows:
            return f"{title}: none"
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()
        out = [title, line, "  ".join("-" * w for w in widths)]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(out)

    @staticmethod
    def _html(title: str, head: list[str], rows: list[list[str]]) -> str:
        if not rows:
            return f"<p><b>{html.escape(title)}</b>: none</p>"
        th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        return (f"<p><b>{html.escape(title)}</b></p><table><thead><tr>{th}</tr></thead>"
                f"<tbody>{body}</tbody></table>")

    def __str__(self) -> str:
        parts = []
        if self.budget_rows is not None:
            parts.append(self._text("Budgets", *self._budget_table()))
        if self.slo_rows is not None:
            parts.append(self._text("SLOs", *self._slo_table()))
        return "\n\n".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        parts = []
        if self.budget_rows is not None:
            parts.append(self._html("Budgets", *self._budget_table()))
        if self.slo_rows is not None:
            parts.append(self._html("SLOs", *self._slo_table()))
        return "".join(parts)

    def to_pandas(self) -> tuple[Any, Any]:
        """(budgets, slos) as two pandas DataFrames, one row per budget key / SLO series."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install 'bastion[frames]'") from e
        return pd.DataFrame(self.budget_rows or []), pd.DataFrame(self.slo_rows or [])


def summary(budgets: Budgets | None = None, slos: SloMonitor | None = None) -> Summary:
    """Budget usage and SLO compliance right now."""
    if budgets is not None and not isinstance(budgets, Budgets):
        raise TypeError(f"budgets must be bastion.Budgets, got {type(budgets).__name__}")
    if slos is not None and not isinstance(slos, SloMonitor):
        raise TypeError(f"slos must be bastion.SloMonitor, got {type(slos).__name__}")
    budget_rows = list(budgets.usage()) if budgets is not None else None
    slo_rows = list(slos.status()) if slos is not None else None
    return Summary(budget_rows, slo_rows)
