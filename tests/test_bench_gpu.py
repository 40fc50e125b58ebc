"""bench/gpu.py: its rates and training budget against a clock that ticks 1 s per reading
(known answers), and ``--smoke``, the GPU check's whole code path, on the CPU."""

import itertools
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu  # noqa: E402

KEYS = ("train_images_per_s_default", "train_images_per_s_gpu", "gpu_training_steps",
        "gpu_validation_f1", "single_pass_ms_48x64", "single_pass_ms_96x128",
        "batched_images_per_s_48x64", "peak_device_memory_gib", "seconds")


def test_rates_and_the_training_budget_follow_the_clock(monkeypatch, tmp_path):
  ticks = itertools.count()
  monkeypatch.setattr(gpu, "clock", lambda: float(next(ticks)))
  cfg = gpu.compose("debug=smoke")
  # Read before and after the 3 steps, 1 s apart: batch × 3 images in 1 s.
  assert gpu.train_rate(cfg, 3) == cfg.trainer.batch_size * 3
  # A 3 s budget read at 1 and 2 s (under it) and 3 s (not): two steps, then validation.
  steps, f1, state = gpu.timed_training(cfg, 3.0, str(tmp_path))
  assert steps == 2 and int(state.step) == 2


def test_the_gpu_check_runs_its_whole_path_on_the_cpu(tmp_path, monkeypatch, capsys):
  """``python bench/gpu.py --smoke`` run as a script (its own namespace, ``__main__``, the
  command line), in this process: the dropamort it reads is this tree's, and its clock,
  ``time.perf_counter`` as the script binds it, runs 50 times fast, so the 5 s training
  budget takes 0.1 s."""
  import runpy
  import time

  real = time.perf_counter
  monkeypatch.setattr(time, "perf_counter", lambda: 50.0 * real())
  out = tmp_path / "gpu.json"
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, "argv", ["gpu.py", "--smoke", "--out", str(out)])
  capsys.readouterr()
  runpy.run_path(os.path.join(ROOT, "bench", "gpu.py"), run_name="__main__")
  monkeypatch.undo()
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert json.loads(out.read_text()) == printed and printed["smoke"] is True
  assert set(KEYS) <= set(printed)
  assert printed["gpu_training_steps"] >= 1
  assert not list(tmp_path.glob("*.tmp"))
