"""Gather the validation metrics of every job of a Hydra sweep into one sorted table.

    python -m dropamort.training.sweep multirun/2026-11-28_09-00-00 [--metric f1]

Each job directory holds ``metrics.jsonl`` (its last validation record is used) and
``.hydra/overrides.yaml`` (what the job changed). Writes ``sweep.csv`` into the sweep
directory and prints the table, best first (higher is better, except ``nll``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd
import yaml

from dropamort.errors import UserError

LOWER_IS_BETTER = ("nll", "position_rmse", "radius_rel_error", "composition_mae")


class SweepError(UserError, ValueError):
  """The folder is not a sweep, or holds no job with validation metrics."""


def _last_validation(path: str) -> dict | None:
  last = None
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      if record.get("event") == "validation":
        last = record
  return last


def gather(sweep_dir: str, metric: str = "f1") -> pd.DataFrame:
  """One row per job: its overrides as columns, then step and validation metrics.

  Raises:
    SweepError: no such folder, or no job in it has validation metrics yet.
  """
  if not os.path.isdir(sweep_dir):
    raise SweepError(f"{sweep_dir}: no such sweep directory")
  rows = []
  for job in sorted(os.listdir(sweep_dir), key=lambda d: (not d.isdigit(), d.zfill(8))):
    log = os.path.join(sweep_dir, job, "metrics.jsonl")
    if not os.path.isfile(log):
      continue
    record = _last_validation(log)
    if record is None:
      continue
    row = {"job": job}
    overrides = os.path.join(sweep_dir, job, ".hydra", "overrides.yaml")
    if os.path.isfile(overrides):
      with open(overrides) as f:
        for item in yaml.safe_load(f) or []:
          key, _, value = item.partition("=")
          row[key] = value
    row.update({k: v for k, v in record.items() if k not in ("event", "time")})
    rows.append(row)
  if not rows:
    raise SweepError(f"{sweep_dir}: no job with validation metrics (metrics.jsonl) found")
  table = pd.DataFrame(rows)
  if metric not in table.columns:
    known = sorted(c for c in table.columns if c not in ("job", "step") and "." not in c)
    raise SweepError(f"metric {metric!r} not in the jobs' metrics ({', '.join(known)})")
  return table.sort_values(metric, ascending=metric in LOWER_IS_BETTER, kind="stable")


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("sweep_dir")
  ap.add_argument("--metric", default="f1")
  args = ap.parse_args(argv)
  try:
    table = gather(args.sweep_dir, args.metric)
  except SweepError as err:
    print(f"dropamort: error: {err}", file=sys.stderr)
    return 2
  out = os.path.join(args.sweep_dir, "sweep.csv")
  table.to_csv(out, index=False)
  shown = [c for c in table.columns if c not in ("steps_per_s",)]
  print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
  print(f"table: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
