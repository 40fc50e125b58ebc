"""Gathering a sweep's validation metrics into one sorted table."""

import json

import pytest

from dropamort.training.sweep import SweepError, gather, main


def _job(root, name, lr, f1, nll):
  d = root / name
  (d / ".hydra").mkdir(parents=True)
  (d / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n- debug=smoke\n")
  lines = [{"step": 1, "loss": 3.0},
           {"step": 2, "event": "validation", "f1": f1 - 0.1, "nll": nll + 5},
           {"step": 4, "event": "validation", "f1": f1, "nll": nll}]
  (d / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")


def test_jobs_sorted_by_their_last_validation(tmp_path):
  for i, (lr, f1, nll) in enumerate([(1e-3, 0.80, 10.0), (3e-3, 0.90, 12.0),
                                     (1e-2, 0.85, 8.0), (3e-2, 0.70, 20.0)]):
    _job(tmp_path, str(i), lr, f1, nll)
  (tmp_path / "multirun.yaml").write_text("not a job\n")
  table = gather(str(tmp_path))
  assert table["job"].tolist() == ["1", "2", "0", "3"]
  assert table["optim.lr"].tolist() == ["0.003", "0.01", "0.001", "0.03"]
  assert table["step"].tolist() == [4, 4, 4, 4]
  assert gather(str(tmp_path), "nll")["job"].tolist() == ["2", "0", "1", "3"]
  assert main([str(tmp_path)]) == 0
  assert (tmp_path / "sweep.csv").read_text().splitlines()[1].startswith("1,")


def test_errors(tmp_path, capsys):
  with pytest.raises(SweepError, match="no such sweep directory"):
    gather(str(tmp_path / "missing"))
  with pytest.raises(SweepError, match="no job with validation metrics"):
    gather(str(tmp_path))
  _job(tmp_path, "0", 1e-3, 0.8, 1.0)
  with pytest.raises(SweepError, match="metric 'auc' not in"):
    gather(str(tmp_path), "auc")
  assert main([str(tmp_path / "missing")]) == 2
  assert capsys.readouterr().err.startswith("dropamort: error:")
