"""The outline search: a line search over one radius scale, judged by the held-out images
rendered from their overlap-resolved point catalogs."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dropamort.config import CalibrateConfig, DataConfig, ModelConfig
from dropamort.data.real import holdout_indices
from dropamort.model.decoder import bind, load_params, sharp
from dropamort.model.model import decoder_module, render_catalog
from dropamort.model.simulate import make_simulate
from dropamort.pyramid import LevelResult, build_pyramid, plan_levels
from dropamort.training import outline
from dropamort.training.real import RealImages
from dropamort.training.state import make_wake_optimizer
from dropamort.training.wake import WakeViews
from tests.training.helpers import sharp_posterior


@pytest.mark.parametrize("shape", ["quadratic", "cusp", "flat"])
@pytest.mark.parametrize("truth", [-5.0, -2.4, -0.5, 0.0, 0.45, 2.5, 4.05, 9.0])
def test_line_search_finds_the_brute_force_minimum(truth, shape):
  """Against the minimum over a fine grid of the same range: a symmetric minimum is found
  within a quarter step, a flat-bottomed function at a point of its bottom; the walk
  tries no more than the steps to the minimum and four."""
  up, down = 6, 3
  f = {"quadratic": lambda k: (k - truth) ** 2,
       "cusp": lambda k: abs(k - truth) ** 0.7,
       "flat": lambda k: max(abs(k - truth) - 0.6, 0.0)}[shape]
  fine = np.linspace(-down, up, 9001)
  ref = fine[np.argmin([f(k) for k in fine])]
  calls = []
  best, tried = outline.line_search(lambda k: calls.append(k) or f(k), up, down)
  assert len(calls) == len(set(calls)) == len(tried)
  assert len(calls) <= abs(round(ref)) + 4
  if shape == "flat":
    assert f(best) == pytest.approx(f(ref), abs=1e-9)
  else:
    assert abs(best - ref) <= 0.25 + 1e-3


def _level_reads(image, catalog, model):
  """Reads of every pyramid level of ``image``: the base level's posterior is concentrated
  on ``catalog``, the coarser levels' hold no droplet."""
  levels = plan_levels(*image.shape[:2], model)
  base = jax.tree.map(np.asarray, sharp_posterior(jax.tree.map(lambda a: a[None], catalog)))
  out = []
  for lv, im in zip(levels, build_pyramid(image, len(levels))):
    gy, gx = (-(-n // model.cell) for n in im.shape[:2])
    post = jax.tree.map(lambda a: a[:, :gy, :gx], base)
    if lv.index:
      post = post.replace(on_logit_BYX=np.full_like(post.on_logit_BYX, -30.0))
    out.append(LevelResult(lv, im, post))
  return out


@pytest.fixture(scope="module")
def sharp_images(tmp_path_factory):
  """Five 64 × 64 images drawn with a sharp-edged decoder, written as PNG and read back
  as calibration reads them, their true catalogs, the model and the decoder."""
  model = ModelConfig(height=32, width=32, radius_max=4.0, larger_layers=0)
  canvas = dataclasses.replace(model, height=64, width=64, margin=0, shift=False)
  params = sharp(load_params("default", 3, 3, (64, 32, 16)))
  key = jax.random.key(5)
  _, catalog = make_simulate(canvas, 5)(key, params)
  images = render_catalog(canvas, bind(decoder_module(canvas), params), catalog)
  images = images + 0.02 * jax.random.normal(jax.random.fold_in(key, 1), images.shape)
  folder = tmp_path_factory.mktemp("sharp")
  for i, im in enumerate(np.clip(np.asarray(images), 0, 1)):
    Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
  calibrate = CalibrateConfig(wake_crop=32, holdout=0.2, wake_lr=1e-2)
  real = RealImages(DataConfig(real=str(folder)), model, calibrate)
  held = holdout_indices(5, calibrate.holdout)
  catalogs = [jax.tree.map(lambda a: a[i], catalog) for i in range(5)]
  fitted_cats = [c for i, c in enumerate(catalogs) if i not in held]
  held_cats = [catalogs[i] for i in held]
  return model, calibrate, params, real, fitted_cats, held_cats


@pytest.mark.parametrize("read_scale", [1 / outline.GRID**2, 1.0])
def test_the_search_finds_where_sharp_droplets_end(sharp_images, read_scale):
  """Reads whose radii are ``read_scale`` × the truth of images drawn with a sharp-edged
  decoder; the search starts, as in calibration, from the decoder the wake fitted to the
  reads at scale 1 (here: 150 steps from the truth), and puts the outline at 1 /
  read_scale within 5 %, from both sides (at the truth it stays near 1). The truth is a
  grid point (GRID² = 1.32): between grid points the search is fragile. Reads at 0.8
  (truth 1.25) gave 1.15 on the 2026-12-03 machine, as its neighbours 1.0 and 1.32 scored
  within 1 % of each other (held-out RMSE 0.0433 and 0.0438) and the half step went the
  wrong way; on earlier machines it gave 1.23."""
  model, calibrate, params, real, fitted_cats, held_cats = sharp_images
  shrink = lambda c: c.replace(radius_BYX=read_scale * c.radius_BYX)
  read_fit = [_level_reads(im, shrink(c), model) for im, c in zip(real.fitted, fitted_cats)]
  read_held = [_level_reads(im, shrink(c), model) for im, c in zip(real.held_out, held_cats)]
  size = calibrate.wake_crop // model.cell
  views = WakeViews(real.views(read_fit, 0.5), size, model.reach_cells, model.cell)
  tx = make_wake_optimizer(calibrate.wake_lr)
  step = outline.make_refit_step(model, tx, size=size)
  start, log_sigma = outline.refit(step, tx, views, params, jnp.log(0.05), 0.0,
                                   jax.random.key(1), steps=150, batch=4)
  log_s, _, log_sigma, rows = outline.search(
      real, views, read_held, start, log_sigma, jax.random.key(0), tx=tx, step=step,
      steps=60, batch=4, threshold=0.5)
  assert math.exp(log_s) == pytest.approx(1 / read_scale, rel=0.05)
  # Two-sided: scales above and below the answer were tried and scored worse.
  assert any(r["scale"] > 1.05 * math.exp(log_s) for r in rows)
  assert any(r["scale"] < 0.95 * math.exp(log_s) for r in rows)
  assert float(jnp.exp(log_sigma)) < 0.05


def test_a_search_stops_between_refit_steps_when_asked(sharp_images):
  """``stop`` is checked between refit steps: the search raises ``Stopped`` after the
  steps it allowed, with nothing returned."""
  model, calibrate, params, real, fitted_cats, _ = sharp_images
  read_fit = [_level_reads(im, c, model) for im, c in zip(real.fitted, fitted_cats)]
  size = calibrate.wake_crop // model.cell
  views = WakeViews(real.views(read_fit, 0.5), size, model.reach_cells, model.cell)
  tx = make_wake_optimizer(calibrate.wake_lr)
  asked = []
  with pytest.raises(outline.Stopped):
    outline.search(real, views, [], params, jnp.log(0.05), jax.random.key(0), tx=tx,
                   step=outline.make_refit_step(model, tx, size=size), steps=5, batch=2,
                   threshold=0.5, stop=lambda: asked.append(1) or len(asked) > 3)
  assert len(asked) == 4
