import jax
import jax.numpy as jnp
import numpy as np

from tests.training.helpers import sleep_setup


def test_step_compiles_once_and_trains(key, tiny_cfg):
  state, step = sleep_setup(tiny_cfg, key, 40)
  # The loss on the batches of steps 0–3, before and after training: the same images.
  held_out = lambda s: np.mean([float(step(jax.tree.map(jnp.copy, s).replace(
      step=jnp.int32(k)), key)[1]["loss"]) for k in range(4)])
  before = held_out(state)
  for _ in range(40):
    state, m = step(state, key)
  assert step._cache_size() == 1
  assert int(state.step) == 40
  assert held_out(state) < 0.8 * before  # It learns something.


def test_each_step_gets_its_own_batch(key, tiny_cfg):
  """fold_in(key, step): same step -> same loss; next step -> another batch."""
  fresh = lambda: sleep_setup(tiny_cfg, key, 10)[0]
  _, step = sleep_setup(tiny_cfg, key, 10)
  a = step(fresh(), key)[1]["loss"]
  b = step(fresh(), key)[1]["loss"]
  s1 = step(fresh(), key)[0]
  c = step(s1.replace(params=fresh().params), key)[1]["loss"]
  assert float(a) == float(b) and float(a) != float(c)


def test_nonfinite_loss_skips_the_update(key, tiny_cfg):
  state, step = sleep_setup(tiny_cfg, key, 10)
  before = jax.tree.map(np.asarray, state.params)
  bad = state.replace(decoder_params=jax.tree.map(lambda a: jnp.full_like(a, jnp.nan),
                                                  state.decoder_params))
  after, m = step(bad, key)
  assert not bool(m["finite"])
  assert int(after.nonfinite) == 1 and int(after.step) == 1
  jax.tree.map(np.testing.assert_array_equal, before, after.params)


def test_a_new_prior_is_data_not_a_recompile(key, tiny_cfg):
  """Calibration refits the prior between sleep stages: same compiled step, and the
  simulations follow the new numbers (a denser prior gives a higher loss at init)."""
  state, step = sleep_setup(tiny_cfg, key, 10)
  def with_density(d):  # A copy: the step donates its input.
    s = jax.tree.map(jnp.copy, state)
    return s.replace(prior=s.prior.replace(density=jnp.float32(d)))

  sparse, dense = with_density(0.002), with_density(0.05)
  loss_sparse = float(step(sparse, key)[1]["loss"])
  loss_dense = float(step(dense, key)[1]["loss"])
  assert step._cache_size() == 1
  assert loss_dense > loss_sparse + 10
