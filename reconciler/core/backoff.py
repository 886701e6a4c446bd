"""Exponential backoff as one small pure value: how long to wait before attempt N.

Used by the planner for both crash restarts and failed actions, so retry timing lives in
one place (kopf's ``throttled()`` plays the same part).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0  # seconds before the second attempt
    factor: float = 2.0
    cap: float = 300.0  # never wait longer than this
    reset_after: float = 600.0  # a run this long forgets earlier crashes

    def delay(self, n: int) -> float:
        """Seconds to wait after the ``n``-th consecutive failure (0 for n <= 0)."""
        if n <= 0:
            return 0.0
        return float(min(self.cap, self.initial * self.factor ** (n - 1)))
