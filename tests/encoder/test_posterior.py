"""The posterior's density against hand computation (scipy), and its sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from scipy.special import expit, logit

from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.catalog import Catalog
from dropamort.objective import npe_loss


def tiny():
  """One image, a 1×2 grid, T = 1, C = 1; the first cell on, the second off."""
  post = CatalogPosterior(
      on_logit_BYX=jnp.array([[[0.3, -1.2]]]),
      offset_loc_BYX2=jnp.array([[[[0.2, -0.4], [1.0, 1.0]]]]),
      offset_scale_BYX2=jnp.array([[[[0.5, 0.8], [1.0, 1.0]]]]),
      logr_loc_BYX=jnp.array([[[1.1, 0.0]]]),
      logr_scale_BYX=jnp.array([[[0.3, 1.0]]]),
      comp_loc_BYXT=jnp.array([[[[-0.5], [0.0]]]]),
      comp_scale_BYXT=jnp.array([[[[0.7], [1.0]]]]),
      bg_loc_BYXC=jnp.array([[[[0.4], [0.2]]]]), bg_scale_BYXC=jnp.array([[[[0.1], [0.3]]]]))
  cat = Catalog(on_BYX=jnp.array([[[True, False]]]),
                offset_BYX2=jnp.array([[[[0.6, 0.3], [0.5, 0.5]]]]),
                radius_BYX=jnp.array([[[2.5, 9.0]]]),
                composition_BYXT=jnp.array([[[[0.35], [0.9]]]]),
                background_BYXC=jnp.array([[[[0.45], [0.1]]]]))
  return post, cat


def test_loss_equals_hand_computed():
  post, cat = tiny()
  n = scipy.stats.norm.logpdf
  logit_normal = lambda u, m, s: n(logit(u), m, s) - np.log(u * (1 - u))
  want = (np.log(expit(0.3)) + np.log(1 - expit(-1.2))       # on: cell 1 on, cell 2 off
          + logit_normal(0.6, 0.2, 0.5) + logit_normal(0.3, -0.4, 0.8)  # offset (x, y)
          + scipy.stats.lognorm(s=0.3, scale=np.exp(1.1)).logpdf(2.5)   # radius
          + logit_normal(0.35, -0.5, 0.7)                     # composition
          + n(0.45, 0.4, 0.1) + n(0.1, 0.2, 0.3))             # background, per cell
  np.testing.assert_allclose(float(npe_loss(post, cat)), -want, rtol=1e-5)


def test_off_cells_ignore_their_continuous_factors():
  post, cat = tiny()
  moved = cat.replace(radius_BYX=cat.radius_BYX.at[0, 0, 1].set(0.01),
                      offset_BYX2=cat.offset_BYX2.at[0, 0, 1].set(0.999))
  assert float(post.log_prob(cat)[0]) == float(post.log_prob(moved)[0])


def test_samples_match_factor_parameters(key):
  post, _ = tiny()
  s = post.sample(key, 20000)
  assert s.on_BYX.shape == (20000, 1, 1, 2)
  np.testing.assert_allclose(s.on_BYX.mean(0)[0, 0], expit([0.3, -1.2]), atol=0.015)
  z = logit(np.asarray(s.offset_BYX2[:, 0, 0, 0]))
  np.testing.assert_allclose([z[:, 0].mean(), z[:, 0].std()], [0.2, 0.5], atol=0.02)
  np.testing.assert_allclose([z[:, 1].mean(), z[:, 1].std()], [-0.4, 0.8], atol=0.03)
  lr = np.log(np.asarray(s.radius_BYX[:, 0, 0, 0]))
  np.testing.assert_allclose([lr.mean(), lr.std()], [1.1, 0.3], atol=0.01)
  logq = jax.vmap(post.log_prob)(s)
  assert np.all(np.isfinite(np.asarray(logq)))


def test_table_intervals_and_sds_match_samples(key):
  """The 90% intervals hold 90% of posterior samples, the 50% ones 50%, and every *_sd
  is the samples' standard deviation."""
  post, _ = tiny()
  table = post.to_table(cell=4, threshold=0.5)[0]  # Only cell 1 has p > 0.5.
  half = post.to_table(cell=4, threshold=0.5, level=0.5)[0]
  assert len(table["x"]) == 1
  s = post.sample(key, 40000)
  draws = {"x": (0 + np.asarray(s.offset_BYX2[:, 0, 0, 0, 0])) * 4,
           "y": (0 + np.asarray(s.offset_BYX2[:, 0, 0, 0, 1])) * 4,
           "r": np.asarray(s.radius_BYX[:, 0, 0, 0]),
           "composition": np.asarray(s.composition_BYXT[:, 0, 0, 0, 0])}
  for name, v in draws.items():
    first = lambda a: np.ravel(a)[0]
    for tab, lo, hi, level in ((table, "q05", "q95", 0.9), (half, "q25", "q75", 0.5)):
      inside = (v >= first(tab[f"{name}_{lo}"])) & (v <= first(tab[f"{name}_{hi}"]))
      assert abs(inside.mean() - level) < 0.01, (name, level)
    np.testing.assert_allclose(first(table[f"{name}_sd"]), v.std(), rtol=0.02, err_msg=name)
  np.testing.assert_allclose(table["x"][0], 4 * expit(0.2), rtol=1e-6)  # Median.
  np.testing.assert_allclose(table["r"][0], np.exp(1.1), rtol=1e-6)
