import dataclasses

import jax
import numpy as np

import dropamort
from dropamort.read_config import InferConfig
from dropamort.inference.refine import refine_result
from dropamort.model.simulate import make_simulate


def test_refinement_raises_the_elbo_and_compiles_once_per_size(checkpoint):
  reader = dropamort.load(checkpoint)
  cfg = dataclasses.replace(reader.cfg.model, height=32, width=32)
  images, _ = make_simulate(cfg, 2)(jax.random.key(3), reader.predictor.decoder_params)
  opts = InferConfig(refine_steps=25, samples=20, threshold=0.3, levels=1)
  for i in range(2):
    result = reader.infer(np.asarray(images[i]), opts)
    assert len(result.table) > 0  # Something to refine.
    refined = refine_result(reader, result, opts)
    info = refined.summary["refinement"]
    assert np.isfinite(info["elbo_before"]) and np.isfinite(info["elbo_after"])
    assert info["elbo_after"] >= info["elbo_before"]
    assert len(refined.table) == len(result.table)
    assert np.all(refined.table["x_q05"] <= refined.table["x"])
    assert np.all(refined.table["x"] <= refined.table["x_q95"])
  (refiner,) = reader._refiners.values()
  assert refiner.update._cache_size() == 1


def _refiner_and_args(checkpoint, seed=3):
  from dropamort.inference.refine import Refiner, _init_values

  reader = dropamort.load(checkpoint)
  cfg = dataclasses.replace(reader.cfg.model, height=32, width=32)
  images, _ = make_simulate(cfg, 1)(jax.random.key(seed), reader.predictor.decoder_params)
  image = jax.numpy.asarray(images[0])
  post = reader.predictor.posterior(np.asarray(image))
  refiner = Refiner(reader, 32, 32, 0.01)
  gy, gx = refiner.cfg.grid_shape
  on = (post.p_BYX[0, :gy, :gx] > 0.3).reshape(-1)
  fixed = (on, post.bg_loc_BYXC[0, :gy, :gx])
  values, sds = _init_values(post, refiner.cfg, refiner.prior, gy, gx)
  state = refiner.init_state(jax.random.key(0), image, fixed, values, sds)
  return refiner, state, image, fixed


def test_ordered_elbo_equals_numpyros_trace_elbo(checkpoint):
  from numpyro.infer import Trace_ELBO

  from dropamort.inference.refine import OrderedTraceELBO

  refiner, state, image, on = _refiner_and_args(checkpoint)
  params = refiner.svi.get_params(state)
  for n in (1, 4):
    args = (jax.random.key(7), params, refiner._model, refiner.svi.guide, image, on)
    ours = float(OrderedTraceELBO(num_particles=n).loss(*args))
    theirs = float(Trace_ELBO(num_particles=n).loss(*args))
    assert np.isfinite(ours) and abs(ours - theirs) <= 1e-5 * abs(theirs), (n, ours, theirs)


LOWER = """
import hashlib, sys
import jax
from tests.inference.test_refine import _refiner_and_args
refiner, state, image, on = _refiner_and_args(sys.argv[1])
text = jax.jit(refiner.svi.update).lower(state, image, on).as_text(debug_info=False)
print(hashlib.sha256(text.encode()).hexdigest())
"""


def test_the_refinement_program_does_not_depend_on_the_hash_seed(checkpoint):
  """The same program in every process: the persistent compilation cache can hit."""
  import os
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  digests = set()
  for seed in ("1", "2"):
    p = subprocess.run([sys.executable, "-c", LOWER, checkpoint], cwd=root,
                       env=dict(os.environ, PYTHONHASHSEED=seed), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    digests.add(p.stdout.strip().splitlines()[-1])
  assert len(digests) == 1


def test_refined_intervals_are_widened_by_the_calibrations_factors(checkpoint):
  """Same SVI, prior.widen (2, 2, 3) against ones: same medians, and the intervals of x, y
  (logits of the in-cell offset) and of r (logit of its place in the band: the guide's
  unconstrained space) exactly 2, 2 and 3 times as wide."""
  reader = dropamort.load(checkpoint)
  cfg = dataclasses.replace(reader.cfg.model, height=32, width=32)
  images, _ = make_simulate(cfg, 1)(jax.random.key(5), reader.predictor.decoder_params)
  opts = InferConfig(refine_steps=5, samples=20, threshold=0.3, levels=1)
  # Rows whose intervals are not saturated at the edges of the cell or band (float32).
  def logit(u):
    v = np.clip(u, 1e-4, 1 - 1e-4)
    return np.where(v == u, np.log(v / (1 - v)), np.nan)

  widths = []
  for widen in ((1.0, 1.0, 1.0), (2.0, 2.0, 3.0)):
    reader.predictor.prior = dataclasses.replace(reader.predictor.prior,
                                                 widen=jax.numpy.asarray(widen))
    reader.__dict__.pop("_refiners", None)
    t = refine_result(reader, reader.infer(np.asarray(images[0]), opts), opts).table
    assert len(t) > 0
    c = cfg.cell
    w = {}
    for name in ("x", "y"):
      origin = np.floor(t[name].to_numpy() / c)
      w[name] = (logit(t[f"{name}_q95"].to_numpy() / c - origin)
                 - logit(t[f"{name}_q05"].to_numpy() / c - origin))
    band = lambda r: (r - cfg.radius_min) / (cfg.radius_max - cfg.radius_min)
    w["r"] = logit(band(t["r_q95"].to_numpy())) - logit(band(t["r_q05"].to_numpy()))
    widths.append((t[["x", "y", "r"]].to_numpy(), w))
  np.testing.assert_allclose(widths[1][0], widths[0][0], rtol=1e-5)
  for name, k in (("x", 2.0), ("y", 2.0), ("r", 3.0)):
    ok = np.isfinite(widths[1][1][name]) & np.isfinite(widths[0][1][name])
    assert ok.sum() >= 3, (name, ok.sum())
    np.testing.assert_allclose(widths[1][1][name][ok], k * widths[0][1][name][ok], rtol=2e-3)
