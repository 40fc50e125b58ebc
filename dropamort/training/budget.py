"""``time_budget``: calibration starts another round only while one more fits.

A round's time (its wake, refit and sleep) is the estimate of the next one's; the budget
counts from the start of this process, so a run stopped by it and started again (same
command, same folder) goes on with the next round under a new budget. The polish after
the last round is not counted in the estimate.
"""

from __future__ import annotations

import time


class TimeBudget:
  """Minutes (None: no budget) from construction, on ``clock`` (seconds)."""

  def __init__(self, minutes: float | None, clock=time.monotonic):
    self.seconds = None if minutes is None else 60.0 * minutes
    self.clock = clock
    self.start = self.round_start = clock()

  def round_ended(self) -> tuple[bool, float, float]:
    """Marks a round's end: (another round of the same length fits, that round's seconds,
    seconds used so far)."""
    now = self.clock()
    took, used = now - self.round_start, now - self.start
    self.round_start = now
    return self.seconds is None or used + took <= self.seconds, took, used
