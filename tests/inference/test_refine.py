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
  opts = InferConfig(refine_steps=25, samples=20, threshold=0.3)
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
