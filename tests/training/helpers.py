"""Helpers shared by the training tests."""


def sleep_setup(cfg, key, steps: int, mesh=None):
  """(fresh state, jitted sleep step) of ``cfg`` with a schedule of ``steps``."""
  from dropamort.encoder.cnn import make_encoder
  from dropamort.training.state import init_state, make_optimizer, make_wake_optimizer
  from dropamort.training.step import make_sleep_step

  tx = make_optimizer(cfg.optim, steps)
  state = init_state(key, cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr))
  step = make_sleep_step(cfg.model, make_encoder(cfg.encoder, cfg.model), tx,
                         cfg.trainer.batch_size, mesh)
  return state, step
