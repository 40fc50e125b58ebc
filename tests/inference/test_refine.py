import dataclasses

import jax
import numpy as np

import dropamort
from dropamort.config import InferConfig
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
