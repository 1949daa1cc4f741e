"""The values a measurement can physically take: outside them a result is an entry error, not a result.

A trial file declares them beside each lab's value set (``plausible:``, trial/model.py): an eGFR of -5,
a platelet count of -20 or a SLEDAI-2K of 140 is not an abnormal result but an impossible one, and no
criterion may pass or fail on it. Bounds are deliberately wide: extreme but real values (an eGFR of 5, a
creatinine of 15 mg/dL) are results.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plausible:
    """Possible values: ``low`` (``low_open``: ``low`` itself is impossible too) to ``high``, inclusive.

    ``unit`` is the unit the bounds are in, the one the criteria convert the results to ("" when the
    bounds hold in any unit the results are reported in: no concentration or count is negative).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    unit: str = ""
    why: str = ""

    def breach(self, value: float, comparator: str | None = None) -> str | None:
        """Why a result cannot be real ("below 0", "above 250 mL/min/1.73m2", "outside 20-400 kg"), or
        None when it can. A bound ("<0.2", ">60") is impossible only when every value it allows is."""
        # The values the result allows: [lo, hi], with open ends.
        lo, lo_open, hi, hi_open = value, False, value, False
        if comparator in ("<", "<="):
            lo, hi_open = float("-inf"), comparator == "<"
        elif comparator in (">", ">="):
            hi, lo_open = float("inf"), comparator == ">"
        if self.low is not None and (hi < self.low or (hi == self.low and (hi_open or self.low_open))):
            return self._said("below" if not self.low_open else "at or below", self.low)
        if self.high is not None and (lo > self.high or (lo == self.high and lo_open)):
            return self._said("above", self.high)
        return None

    def _said(self, side: str, bound: float) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None and not self.low_open:
            return f"outside {self.low:g}-{self.high:g}{unit}"
        return f"{side} {bound:g}{unit}"
