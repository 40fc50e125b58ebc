"""bench/gpu.py --smoke: the GPU check's code path, on the CPU, in the suite."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("train_images_per_s_default", "train_images_per_s_gpu", "gpu_training_steps",
        "gpu_validation_f1", "single_pass_ms_48x64", "single_pass_ms_96x128",
        "batched_images_per_s_48x64", "peak_device_memory_gib", "seconds")


def test_the_gpu_check_runs_its_whole_path_on_the_cpu(tmp_path):
  out = tmp_path / "gpu.json"
  p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu.py"), "--smoke",
                      "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                     timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  printed = json.loads(p.stdout.strip().splitlines()[-1])
  assert json.loads(out.read_text()) == printed and printed["smoke"] is True
  assert set(KEYS) <= set(printed)
  assert printed["train_images_per_s_default"] > 0 and printed["gpu_training_steps"] >= 1
  assert 0 <= printed["gpu_validation_f1"] <= 1 and printed["single_pass_ms_96x128"] > 0
  assert not list(tmp_path.glob("*.tmp"))
