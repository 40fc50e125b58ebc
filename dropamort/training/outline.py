"""Where the real images put a droplet's outline, relative to the encoder's reads.

A decoder whose edge may be soft paints a droplet's rim outside its radius, so the wake
alone cannot say where a droplet ends, and the wake–sleep loop keeps whatever radius
convention it starts from. With the decoder's edge held sharp (``decoder.sharp``: it
paints nothing beyond r) one radius scale s of all reads is identified from both sides
by the held-out images rendered from their *point* catalogs, overlaps resolved with the
scaled radii (hard core): too small a disc leaves the rim unpainted, too large a disc
takes its neighbours' pixels (or is dropped as overlapping them). In the drawn catalogs
the wake fits, overlaps are not resolved, so a gradient on s there bounds it from below
only (it went to 2–3 × on real images).

``search`` is a line search over s on a geometric grid (ratio ``GRID``, from ``MAX_DOWN``
steps down to ``MAX_UP`` up): each candidate refits the decoder and noise level for a few
wake steps from the same start with the same crops (``refit``), its edge and s held, and
is scored by the held-out RMSE (``held_out_rmse``); the minimum, once bracketed, is
refined by half a grid step toward its better neighbour (the score is far from a
parabola: too large a scale costs more than too small). The sleep stage that follows,
with the chosen decoder, teaches the encoder to read the outline.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dropamort.config import ModelConfig
from dropamort.pyramid import LevelResult
from dropamort.training.real import RealImages
from dropamort.training.wake import WakeViews, fit_update, make_wake_loss

GRID = 1.15  # Ratio between neighbouring candidate scales.
# How far one search may move, in grid steps: GRID**-3 = 0.66 to GRID**4 = 1.75. Not
# beyond 2: the renderer and the wake's halo look as far as the decoder's reach (2 radii
# of the band's largest droplet).
MAX_DOWN, MAX_UP = 3, 4


class Stopped(Exception):
  """``search``'s ``stop`` said to stop."""


def scaled(read: list[list[LevelResult]], log_s: float) -> list[list[LevelResult]]:
  """The levels' posteriors with every radius times exp(log_s)."""
  return [[dataclasses.replace(lr, posterior=lr.posterior.replace(
      logr_loc_BYX=lr.posterior.logr_loc_BYX + log_s)) for lr in levels] for levels in read]


def make_refit_step(model: ModelConfig, tx: optax.GradientTransformation, *, size: int,
                    samples: int = 1, hold_edge: bool = True):
  """``step(trainable, opt_state, key, posterior, images, weights)``, one jit: the wake's
  ``fit_update`` on (decoder params, log sigma, log s), log s and (``hold_edge``) the
  decoder's edge held."""
  loss_fn = make_wake_loss(model, size=size, samples=samples)

  @jax.jit
  def step(trainable, opt_state, key, posterior, images, weights):
    return fit_update(loss_fn, tx, trainable, opt_state, key, posterior, images, weights,
                      hold_edge)[:2]

  return step


def refit(step, tx, views: WakeViews, decoder_params, log_sigma, log_s: float, key, *,
          steps: int, batch: int, stop=lambda: False):
  """(decoder params, log sigma) after ``steps`` refit steps (``make_refit_step``) at
  radius scale exp(log_s), from the given start; crops and draws come from ``key`` alone,
  so every candidate scale sees the same ones. The views' masks under larger droplets
  stay those of the reads (scale 1); only the drawn radii are scaled. Raises ``Stopped``
  when ``stop()`` turns true between steps."""
  trainable = (decoder_params, jnp.asarray(log_sigma, jnp.float32),
               jnp.asarray(log_s, jnp.float32))
  opt_state = tx.init(trainable)
  crop_key, draw_key = jax.random.split(key)
  for i in range(steps):
    if stop():
      raise Stopped
    positions = views.positions(jax.random.fold_in(crop_key, i), batch)
    trainable, opt_state = step(trainable, opt_state, jax.random.fold_in(draw_key, i),
                                *views.batch(positions))
  return trainable[0], trainable[1]


def held_out_rmse(real: RealImages, decoder_params, read_held, log_s: float,
                  threshold: float) -> dict:
  """``RealImages.record`` of the held-out images rendered from their point catalogs at
  radius scale exp(log_s)."""
  return real.record([real.points(decoder_params, levels, threshold)
                      for levels in scaled(read_held, log_s)])


def line_search(score: Callable[[int | float], float], max_up: int, max_down: int):
  """The grid step k (scale GRID**k) of least ``score``: k = 0 and 1 first, then on in
  the better direction while the score falls (at most ``max_up`` steps up, ``max_down``
  down); a bracketed minimum is refined by half a step toward its better neighbour (for a
  symmetric unimodal score: within a quarter step of the minimum). Returns (best k,
  {k: score} of every k tried, in order)."""
  tried = {}

  def at(k):
    if k not in tried:
      tried[k] = score(k)
    return tried[k]

  at(0)
  d = 1 if max_up >= 1 and at(1) < at(0) else -1
  k = 1 if d == 1 else 0
  while -max_down <= k + d <= max_up and at(k + d) < at(k):
    k += d
  if k - 1 in tried and k + 1 in tried:  # Bracketed: half a step toward the better side.
    at(k + (0.5 if tried[k + 1] < tried[k - 1] else -0.5))
  return min(tried, key=lambda k: (math.isnan(tried[k]), tried[k])), tried


def search(real: RealImages, views: WakeViews, read_held, decoder_params, log_sigma, key, *,
           tx, step, steps: int, batch: int, threshold: float,
           say=lambda *_: None, stop=lambda: False):
  """The radius scale the images call for (see the module's doc).

  Args:
    real: the run's real images (their held-out part scores each candidate).
    views: the fitted images' wake views at the reads (scale 1).
    read_held: the held-out images' reads (every level).
    decoder_params, log_sigma: the start of every refit (the wake's, edge sharp).
    key: the refits' crops and draws.
    tx, step: the refits' optimizer and ``make_refit_step``'s step for it.
    steps, batch: refit steps per candidate and crops per step.
    threshold: the point catalogs' probability threshold.
    say: where each candidate's line goes.
    stop: checked between refit steps; ``Stopped`` is raised when it turns true.

  Returns:
    (log s, decoder params, log sigma, rows): the best candidate and, per candidate tried,
    {"scale", "held_out_rmse", "count_per_image"}.
  """
  fits, rows = {}, []

  def score(k):
    log_s = k * math.log(GRID)
    params, sigma = refit(step, tx, views, decoder_params, log_sigma, log_s, key,
                          steps=steps, batch=batch, stop=stop)
    record = held_out_rmse(real, params, read_held, log_s, threshold)
    fits[k] = (log_s, params, sigma)
    rows.append({"scale": math.exp(log_s), "held_out_rmse": record["real_rmse"],
                 "count_per_image": record["count_per_image"]})
    say(f"  outline at {rows[-1]['scale']:.3f} × the read radius: held-out RMSE "
        f"{record['real_rmse']:.4f}, {record['count_per_image']:.0f} droplets/image")
    return record["real_rmse"]

  best, _ = line_search(score, MAX_UP, MAX_DOWN)
  log_s, params, sigma = fits[best]
  return log_s, params, sigma, rows
