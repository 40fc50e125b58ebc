"""bench/sequence.py --smoke: the simulated sequence benchmark's whole path (simulate,
render, read with the shipped start model, link three ways, score), in this process."""

import json
import os
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# trackpy 0.7 sorts with pandas' deprecated inplace=True: its warning, not ours.
@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning",
                            "ignore:The inplace keyword")
def test_the_smoke_sequence_is_read_and_linked_without_a_mistake(tmp_path, monkeypatch,
                                                                capsys):
  """Six small frames of ten droplets: every droplet is read, and every linker follows
  every droplet (MOTA and IDF1 1), dropamort's growth rates included."""
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, "argv", ["sequence.py", "--smoke", "--out", str(tmp_path)])
  capsys.readouterr()
  runpy.run_path(os.path.join(ROOT, "bench", "sequence.py"), run_name="__main__")
  out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert out["sequence"]["frames"] == 6 and out["read"]["recall"] == 1.0
  for method in ("dropamort", "trackpy", "nearest"):
    assert out[method]["mota"] == 1.0 and out[method]["idf1"] == 1.0, (method, out[method])
  assert out["dropamort"]["idsw"] == 0
  assert len(out["pictures"]) == 3 and all(os.path.exists(p) for p in out["pictures"])
