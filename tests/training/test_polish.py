"""The decoder's polish: a per-pixel fit that is exactly the render's, and that recovers a
decoder from images it rendered."""

import dataclasses

import jax
import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.model import decoder as D
from dropamort.model.reconstruct import decoder_inputs, reconstruct
from dropamort.training import polish
from tests.model.test_render import random_catalog

CFG = ModelConfig(height=64, width=64, radius_max=8.0)


def scene(key, h=80, w=96):
  """A base catalog (cell 4, radii to 8 px) and a coarser one (factor 4: cells of 16 px,
  radii to 8 of its own px = 32 base px)."""
  base = random_catalog(jax.random.fold_in(key, 0), -(-h // 4), -(-w // 4), p_on=0.3,
                        radius_max=8.0)
  coarse = random_catalog(jax.random.fold_in(key, 1), -(-h // 16), -(-w // 16), p_on=0.3,
                          radius_max=8.0)
  return base, ((4, coarse),)


def inputs_of(key, h=80, w=96):
  base, coarser = scene(key, h, w)
  x = decoder_inputs(CFG, base, height=h, width=w, coarser=coarser, strip_px=32)
  return base, coarser, x.reshape(-1, x.shape[-1])


@pytest.mark.parametrize("which", ["default", "random"])
def test_the_decoder_inputs_shade_to_the_reconstruction(key, which):
  """Inputs gathered once, shaded by any decoder, are that decoder's render, in strips
  (strip_px=32 forces several, the coarse layer's droplets crossing them)."""
  params = (D.load_params("default", 3, 3, CFG.decoder_hidden) if which == "default" else
            D.init_params(jax.random.key(7), 3, 3, CFG.decoder_hidden))
  base, coarser, x = inputs_of(key)
  want = reconstruct(CFG, params, base, height=80, width=96, coarser=coarser, strip_px=32)
  got = np.asarray(polish.make_render(CFG)(params, x)).reshape(want.shape)
  np.testing.assert_allclose(got, want, atol=2e-5)


def _pixels(key, params, n_scenes):
  """The pixels of ``n_scenes`` scenes, rendered a scene at a time: one shape for every
  render of this file, compiled once."""
  xs = [inputs_of(jax.random.fold_in(key, i))[2] for i in range(n_scenes)]
  render = polish.make_render(CFG)
  return polish.Pixels(np.concatenate(xs),
                       np.concatenate([np.asarray(render(params, x)) for x in xs]))


def test_polish_recovers_the_decoder_that_rendered_the_images(key):
  """Images rendered by the packaged decoder; the fit starts from another decoder (its
  weights perturbed, its edge 2 px soft) and must come most of the way back (measured:
  held-out RMSE 0.222, then 0.016 at step 250 and 0.013 at 500; 0.009 after 1,500)."""
  truth = D.load_params("default", 3, 3, CFG.decoder_hidden)
  train, held = _pixels(key, truth, 6), _pixels(jax.random.fold_in(key, 99), truth, 2)
  leaves, tree = jax.tree.flatten(truth)
  noise = jax.random.split(jax.random.key(1), len(leaves))
  start = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape) * np.std(a)
                                    for a, k in zip(leaves, noise)])
  start = {**start, "edge": D.edge_raw(2.0)}
  render = polish.make_render(CFG)
  before = polish.rmse(render, start, held)
  params, rows = polish.fit(CFG, start, train, held, jax.random.key(2), steps=500, lr=3e-3)
  after = polish.rmse(render, params, held)
  assert rows[0] == {"step": 0, "held_out_rmse": pytest.approx(before, rel=1e-6)}
  assert after == pytest.approx(min(r["held_out_rmse"] for r in rows), rel=1e-6)
  assert before > 0.03 and after < 0.3 * before
  assert params["edge"] != start["edge"]  # The edge is fitted too.


def test_polish_keeps_the_start_when_fitting_only_makes_it_worse(key):
  """Fitted pixels that are noise, judged on the truth the start already renders: no
  step judges better, so the start comes back unchanged."""
  truth = D.load_params("default", 3, 3, CFG.decoder_hidden)
  held = _pixels(key, truth, 1)
  x = inputs_of(jax.random.fold_in(key, 5))[2]
  train = polish.Pixels(x, np.asarray(jax.random.uniform(jax.random.key(3), (len(x), 3))))
  params, rows = polish.fit(CFG, truth, train, held, jax.random.key(4), steps=500, lr=3e-3)
  jax.tree.map(np.testing.assert_array_equal, params, truth)
  assert rows[0]["held_out_rmse"] < 1e-6 and min(r["held_out_rmse"] for r in rows[1:]) > 1e-3
  assert len(rows) == 3  # Judged at 250 and 500.


def test_a_stop_request_ends_the_polish_with_an_error(key):
  truth = D.load_params("default", 3, 3, CFG.decoder_hidden)
  held = _pixels(key, truth, 1)
  calls = []
  stop = lambda: calls.append(1) or len(calls) > 3  # True at the 4th step.
  with pytest.raises(polish.Stopped, match="step 3"):
    polish.fit(CFG, truth, held, held, jax.random.key(4), steps=100, lr=3e-3, stop=stop)
