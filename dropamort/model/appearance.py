"""An analytic droplet appearance, and fitting the optics decoder to it.

Until the decoder is calibrated on real images, simulations need a decoder that draws
something droplet-like. This module describes one in closed form — a disc whose edge sits
at normalized distance 1 (so ``radius`` is the visible radius in pixels), coloured by dye
absorbance set by the composition, with a darker rim and a lighter highlight in its lower
half, like the bright-field example — and fits the seed's MLP to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dropamort.model.decoder import DropletOpticsModel, init_params

EDGE_BLUR_PX = 0.4  # Width of the disc's edge, in pixels.


def absorbance_matrix(types: int, channels: int) -> np.ndarray:
  """Dye t absorbs mostly channel (C - t) mod C: for RGB, cyan, yellow and magenta dyes."""
  a = np.full((types, channels), 0.15, np.float32)
  for t in range(types):
    a[t, (channels - t) % channels] = 1.0
  return a


def analytic(background, dx, dy, r, composition, *, reach: float):
  """Pixel intensity of the analytic droplet; same inputs as ``DropletOpticsModel``."""
  a = jnp.asarray(absorbance_matrix(composition.shape[-1], background.shape[-1]))
  d = jnp.sqrt(dx**2 + dy**2)
  bg = jax.nn.sigmoid(background)
  transmission = jnp.exp(-1.0 * composition @ a)
  rim = jnp.exp(-(((d - 0.88) / 0.14) ** 2))[..., None]
  highlight = jnp.exp(-(dx**2 + (dy - 0.45) ** 2) / (2 * 0.22**2))[..., None]
  body = bg * transmission * (1 - 0.3 * rim)
  body = body + 0.45 * highlight * (1 - body)
  inside = jax.nn.sigmoid((1 - d) * r / EDGE_BLUR_PX)
  # Fade to exactly nothing at the reach, where the renderer stops asking the decoder.
  fade_start = 0.5 * (1 + reach)
  taper = jnp.clip((reach - d) / (reach - fade_start), 0.0, 1.0)
  taper = taper * taper * (3 - 2 * taper)
  return bg + (inside * taper)[..., None] * (body - bg)


def _inputs(key, n, *, channels, types, radius_range, background_range, reach):
  k = jax.random.split(key, 5)
  # Area-uniform points in a disc a little beyond the reach, plus extra near the edge.
  rad = jnp.concatenate([reach * 1.1 * jnp.sqrt(jax.random.uniform(k[0], (n // 2,))),
                         jax.random.uniform(k[0], (n - n // 2,), minval=0.6, maxval=1.4)])
  ang = jax.random.uniform(k[1], (n,), maxval=2 * jnp.pi)
  log_r = jax.random.uniform(k[2], (n,), minval=np.log(radius_range[0]),
                             maxval=np.log(radius_range[1]))
  bg = jax.random.uniform(k[3], (n, channels), minval=background_range[0],
                          maxval=background_range[1])
  comp = jax.random.uniform(k[4], (n, types))
  return bg, rad * jnp.cos(ang), rad * jnp.sin(ang), jnp.exp(log_r), comp


def fit_decoder(key, *, channels=3, types=3, hidden=(64, 32, 16), reach=2.0,
                radius_range=(1.0, 8.0), background_range=(-0.5, 1.5), steps=20000,
                batch=4096, lr=3e-3, appearance="free", contrast="dark"):
  """Fits the optics decoder (``DropletOpticsModel`` of the given appearance and band
  contrast) to the analytic droplet (``analytic``).

  Returns:
    (params, rmse): the parameters and the intensity RMSE on a fresh held-out sample.
  """
  module = DropletOpticsModel(channels=channels, hidden=tuple(hidden), reach=reach,
                              appearance=appearance, contrast=contrast)
  key, init_key, test_key = jax.random.split(key, 3)
  params = init_params(init_key, channels, types, hidden, appearance)
  sched = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
  opt = optax.adam(sched)
  draw = lambda k: _inputs(k, batch, channels=channels, types=types,
                           radius_range=radius_range, background_range=background_range,
                           reach=reach)

  def loss_fn(p, inputs):
    target = analytic(*inputs, reach=reach)
    return jnp.mean((module.apply({"params": p}, *inputs) - target) ** 2)

  @jax.jit
  def step(carry, i):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p, draw(jax.random.fold_in(key, i)))
    upd, s = opt.update(g, s, p)
    return (optax.apply_updates(p, upd), s), loss

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
  rmse = float(jnp.sqrt(loss_fn(params, draw(test_key))))
  return params, rmse
