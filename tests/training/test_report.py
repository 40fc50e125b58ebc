"""The run's JSON-lines logs: every record as given, with the time it was written."""

import json
import time

from dropamort.training.report import MetricsLog


def test_records_carry_the_wall_clock_they_were_written_at(tmp_path):
  log = MetricsLog(str(tmp_path / "metrics.jsonl"))
  before = time.time()
  log.write(step=1, loss=2.5, stage="sleep")
  time.sleep(0.05)
  log.write(step=2, event="validation")
  after = time.time()
  first, second = (json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())
  assert {k: first[k] for k in ("step", "loss", "stage")} == {"step": 1, "loss": 2.5, "stage": "sleep"}
  assert before - 0.01 <= first["time"] < second["time"] <= after + 0.01
  assert second["time"] - first["time"] >= 0.04
