"""Batched inference: images of one shape share encoder calls, split over the devices;
every image still gets exactly the posterior it gets alone."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pandas as pd

import dropamort
from dropamort.read_config import InferConfig
from dropamort.inference.run import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTS = InferConfig(samples=20, progress=False, threshold=0.05)


def _images():
  rng = np.random.default_rng(3)
  shapes = [(40, 52), (30, 70), (40, 52), (100, 90), (40, 52)]  # (100, 90) is tiled.
  return [rng.random((*s, 3), dtype=np.float32) for s in shapes]


def _assert_same_posteriors(first, second, tol):
  for a, b in zip(first, second):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def test_a_batch_of_mixed_shapes_equals_one_image_at_a_time(checkpoint):
  reader = dropamort.load(checkpoint, tile=64, overlap=2)
  images = _images()
  alone = [reader.infer(image, OPTS) for image in images]
  together = reader.infer_many(images, OPTS)
  _assert_same_posteriors([r.posterior for r in alone], [r.posterior for r in together], 1e-5)
  for a, b in zip(alone, together):
    assert a.summary["analysed_size"] == b.summary["analysed_size"]
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-5)


def test_a_failing_batch_is_retried_image_by_image(checkpoint, tmp_path, monkeypatch,
                                                   capsys):
  from PIL import Image

  folder = tmp_path / "in"
  folder.mkdir()
  for k, image in enumerate(_images()[:3]):
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"{k}.png")
  reader = dropamort.load(checkpoint)
  posteriors = reader.predictor.posteriors

  def fails_on_the_wide_one(images, **kwargs):
    if any(im.shape[1] == 70 for im in images):
      raise RuntimeError("encoder fault")
    return posteriors(images, **kwargs)

  monkeypatch.setattr(reader.predictor, "posteriors", fails_on_the_wide_one)
  out = tmp_path / "out"
  out.mkdir()
  assert run(reader, str(folder), str(out), OPTS) == 1
  err = capsys.readouterr().err
  assert "a batch of 3 images failed (RuntimeError: encoder fault)" in err
  assert "1.png: failed (RuntimeError: encoder fault)" in err
  assert {"0.png", "2.png"} <= set(os.listdir(out)) and "1.png" not in os.listdir(out)
  assert json.loads((out / "run.json").read_text())["images"] == 2


EIGHT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from dropamort.read_config import InferConfig
    from dropamort.inference.api import DropletReader
    from dropamort.inference.predictor import Predictor, TilePlan
    from dropamort.checkpoint import load
    from dropamort.inference.run import run
    from tests.inference.test_batch import _images

    saved = load(sys.argv[1])
    cfg, params, decoder = saved.cfg, saved.params, saved.decoder_params
    plan = TilePlan(64, 2)
    one = Predictor(cfg, params, decoder, plan, devices=jax.local_devices()[:1])
    eight = Predictor(cfg, params, decoder, plan)
    images = _images()
    a, b = one.posteriors(images), eight.posteriors(images)
    diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for pa, pb in zip(a, b) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))
    failed = run(DropletReader(eight), sys.argv[2], sys.argv[3],
                 InferConfig(samples=20, progress=False, pictures=False, batch=3))
    print(json.dumps({"devices": eight.devices, "diff": diff, "failed": failed}))
""")


def test_eight_devices_split_the_batch_and_give_the_same_posteriors(checkpoint, image_folder,
                                                                    tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = tmp_path / "out"
  out.mkdir()
  p = subprocess.run([sys.executable, "-c", EIGHT, checkpoint, str(image_folder), str(out)],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  result = json.loads(p.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8 and result["diff"] < 1e-4 and result["failed"] == 1
  assert "2 images in" in p.stdout and "on 8 devices" in p.stdout
  stats = json.loads((out / "run.json").read_text())
  assert (stats["images"], stats["failed"], stats["devices"]) == (2, 1, 8)
  assert stats["images_per_s"] > 0


def test_any_read_failure_costs_only_its_image(checkpoint, tmp_path, monkeypatch, capsys):
  from PIL import Image

  import dropamort.inference.run as job

  folder = tmp_path / "in"
  folder.mkdir()
  for k, image in enumerate(_images()[:3]):
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"{k}.png")
  read = job.read_image

  def bomb(path, channels):
    if path.endswith("0.png"):
      raise Image.DecompressionBombError("too many pixels")
    return read(path, channels)

  monkeypatch.setattr(job, "read_image", bomb)
  out = tmp_path / "out"
  out.mkdir()
  assert run(dropamort.load(checkpoint), str(folder), str(out), OPTS) == 1
  assert "0.png: failed (DecompressionBombError: too many pixels)" in capsys.readouterr().err
  assert {"1.png", "2.png", "run.json"} <= set(os.listdir(out)) and "0.png" not in os.listdir(out)
