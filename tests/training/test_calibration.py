"""Calibration is the training loop with wake rounds: it resumes exactly from any stage."""

import copy
import dataclasses
import json
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import dropamort
from dropamort.config import (CalibrateConfig, DataConfig, EncoderConfig, ModelConfig,
                              TrainConfig, TrainerConfig)
from dropamort.read_config import InferConfig
from dropamort.inference.api import DropletReader
from dropamort.model.decoder import SHARP_EDGE_PX, edge_width, load_params
from dropamort.model.prior import IDENTITY_EDGE
from dropamort.model.simulate import make_simulate
from dropamort.training.edge import BIN_MIN
from dropamort.training import polish
from dropamort.training.loop import train
from dropamort.training.state import DONE, REFIT, SLEEP, WAKE, rounds
from dropamort.training.trainer import Preempted, Trainer

OPTS = InferConfig(samples=10, progress=False)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
  model = ModelConfig(height=32, width=32, radius_max=4.0)
  images, _ = make_simulate(dataclasses.replace(model, height=64, width=64), 3)(
      jax.random.key(3), load_params("default", 3, 3, (64, 32, 16)))
  folder = tmp_path_factory.mktemp("real")
  for i, im in enumerate(np.clip(np.asarray(images), 0, 1)):
    Image.fromarray((im * 255).astype(np.uint8)).save(folder / f"{i}.png")
  return TrainConfig(
      model=model, encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=2, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False),
      data=DataConfig(real=str(folder)),
      calibrate=CalibrateConfig(rounds=2, sleep_steps=2, wake_steps=3, wake_batch=2,
                                wake_crop=32, min_found=0.0, outline=False,
                                polish_steps=20))


@pytest.fixture(scope="module")
def uninterrupted(cfg, tmp_path_factory):
  run = tmp_path_factory.mktemp("whole")
  return run, train(cfg, str(run))


# An edge map planted in place of the one each round measures (too few droplets here to
# measure one): a, b px, r0 px in the analysed images' pixels.
PLANTED_EDGE = (0.8, -0.6, 3.0)


@pytest.fixture(scope="module")
def scaled(cfg, tmp_path_factory):
  """``cfg``'s calibration at data.scale=0.5 on its images magnified twice (each pixel a
  2 × 2 block, so the analysed images are exactly ``cfg``'s), every round's edge map
  ``PLANTED_EDGE``: (run directory, folder of the magnified images, train's result)."""
  from dropamort.training import trainer as trainer_module

  big = tmp_path_factory.mktemp("big")
  for i in range(3):
    small = np.asarray(Image.open(os.path.join(cfg.data.real, f"{i}.png")))
    Image.fromarray(np.kron(small, np.ones((2, 2, 1), np.uint8))).save(big / f"{i}.png")
  run = tmp_path_factory.mktemp("scaled")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(trainer_module, "edge_map", lambda images, tables: (PLANTED_EDGE, BIN_MIN))
    result = train(dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, real=str(big), scale=0.5)), str(run))
  return run, big, result


def _assert_same_state(a, b):
  for name in ("params", "decoder_params", "prior", "opt_state"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(getattr(a, name)),
                 jax.device_get(getattr(b, name)))


def test_rounds_are_logged_and_the_calibrated_model_is_what_inference_reads(uninterrupted,
                                                                            cfg):
  run, result = uninterrupted
  records = [json.loads(line) for line in (run / "calibration.jsonl").read_text().splitlines()]
  assert [r["round"] for r in records if r["event"] == "round"] == [0, 1, 2]
  assert [r["round"] for r in records if r["event"] == "wake"] == [1, 2]
  assert result["step"] == 2 + 2 * 2 and result["checkpoint"].endswith("calibrated")
  reader = dropamort.load(str(run))  # infer.py finds the calibrated model.
  best = min((r for r in records if r["event"] == "round"), key=lambda r: r["real_rmse"])
  np.testing.assert_allclose(float(reader.predictor.prior.noise_sigma), best["noise_sigma"],
                             rtol=1e-5)
  assert float(reader.predictor.prior.noise_sigma) != cfg.model.noise_sigma or (
      best["round"] == 0)
  # The round's widening factors travel with the model, and its tables use them: each
  # droplet's 90% interval of log r is widen[2] times the encoder's own (x, y unmoved).
  widen = np.asarray(reader.predictor.prior.widen)
  np.testing.assert_allclose(widen, best["widen"], rtol=1e-6)
  # The fixture's bootstrap widened r by 2.26 before the octave layers (4d6bd64) and by
  # 1.0 since, so the tables' use of a factor is checked with a set one (x, y, r: 1, 1, 2).
  widen = np.array([1.0, 1.0, 2.0], np.float32)
  own, set_ = copy.copy(reader.predictor), copy.copy(reader.predictor)
  own.prior = own.prior.replace(widen=jnp.ones(3, jnp.float32))
  set_.prior = set_.prior.replace(widen=jnp.asarray(widen))
  image = _real_image(cfg, 2)
  widened, unwidened = (DropletReader(p).infer(image, OPTS).table for p in (set_, own))
  assert len(widened) > 0
  np.testing.assert_array_equal(widened[["x", "y", "r"]], unwidened[["x", "y", "r"]])
  log_width = lambda t: np.log(t["r_q95"].to_numpy() / t["r_q05"].to_numpy())
  np.testing.assert_allclose(log_width(widened), widen[2] * log_width(unwidened), rtol=1e-4)


def _real_image(cfg, i: int) -> np.ndarray:
  """The ``i``-th calibration image of ``cfg`` as inference reads it."""
  return np.asarray(Image.open(os.path.join(cfg.data.real, f"{i}.png")), np.float32) / 255


def test_with_the_edge_decoder_the_edge_map_is_measured_but_not_applied(cfg, tmp_path):
  """model.appearance=edge: r is the edge, so the map measured each round is recorded
  (``edge_measured``) and the model reports the read radii (``Prior.edge`` the identity)."""
  edge_cfg = dataclasses.replace(
      cfg, model=dataclasses.replace(cfg.model, appearance="edge"),
      calibrate=dataclasses.replace(cfg.calibrate, rounds=1, polish_steps=0))
  train(edge_cfg, str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  rounds = [r for r in records if r["event"] == "round"]
  assert all(r["edge"] == list(IDENTITY_EDGE) for r in rounds)
  reader = dropamort.load(str(tmp_path))
  np.testing.assert_array_equal(np.asarray(reader.predictor.prior.edge), IDENTITY_EDGE)
  assert any(r["edge_found"] >= BIN_MIN for r in rounds) == any(
      not np.allclose(r["edge_measured"], IDENTITY_EDGE) for r in rounds)


def test_killed_after_round_one_resumes_to_the_same_model(cfg, uninterrupted, tmp_path):
  _, whole = uninterrupted
  first = train(cfg, str(tmp_path), stop_at=2 + 2)  # Stops after round 1 is recorded.
  assert first["round"] == 2 and int(first["state"].stage) == WAKE
  resumed = train(cfg, str(tmp_path))  # A new process would do exactly this.
  _assert_same_state(resumed["state"], whole["state"])


def test_killed_in_the_middle_of_a_wake_stage_resumes_to_the_same_model(cfg, uninterrupted,
                                                                         tmp_path):
  _, whole = uninterrupted
  trainer = Trainer(cfg, str(tmp_path))
  state, _ = trainer.initial_state()
  state = trainer.end_round(trainer.sleep(state, 2))
  state = trainer.wake(state, steps=1)  # 1 of 3 wake steps, then "killed".
  assert int(state.wake_step) == 1 and int(state.stage) == WAKE
  trainer.close()
  resumed = train(cfg, str(tmp_path))
  _assert_same_state(resumed["state"], whole["state"])


def test_at_data_scale_half_calibration_fits_what_it_reads_and_reports_original_pixels(
    cfg, uninterrupted, scaled):
  """Images read at half size are the images calibration fits: on images magnified twice
  with data.scale=0.5 every round ends where the run on the originals does. The edge map
  is measured in the analysed pixels and kept in the original ones (its b and r0 doubled);
  the model then reads at its calibration's scale, and its table is in original pixels,
  radii through that map: twice the scale-1 model's reads, mapped by hand."""
  whole_run, whole = uninterrupted
  run, big, result = scaled
  for name in ("params", "decoder_params", "opt_state"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(getattr(result["state"], name)),
                 jax.device_get(getattr(whole["state"], name)))
  mine, theirs = result["state"].prior, whole["state"].prior
  for name in ("density", "radius_loc", "radius_scale", "background_low", "background_high",
               "background_sd", "larger_fraction", "noise_sigma", "widen", "outline"):
    np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=name)
  a, b, r0 = PLANTED_EDGE
  in_original = (a, b / 0.5, r0 / 0.5)
  np.testing.assert_allclose(np.asarray(mine.edge), in_original, rtol=1e-6)
  records = [json.loads(line) for line in (run / "calibration.jsonl").read_text().splitlines()]
  for r in (r for r in records if r["event"] == "round"):
    np.testing.assert_allclose(r["edge_measured"], in_original, rtol=1e-6)
  reader, plain = dropamort.load(str(run)), dropamort.load(str(whole_run))
  image = _real_image(cfg, 2)
  magnified = np.asarray(Image.open(big / "2.png"), np.float32) / 255
  got = reader.infer(magnified, OPTS)
  read = plain.infer(image, dataclasses.replace(OPTS, edge_map=False)).table
  assert got.summary["scale"] == 0.5 and got.summary["analysed_size"] == [64, 64]
  assert len(read) > 0
  np.testing.assert_allclose(got.table["x"], 2 * read["x"], rtol=1e-6)
  np.testing.assert_allclose(got.table["y"], 2 * read["y"], rtol=1e-6)
  r2 = 2 * read["r"].to_numpy()  # Read radii in original px; the map: a r + b above r0.
  want = np.where(r2 >= 2 * r0, a * r2 + 2 * b, r2 * (a + 2 * b / (2 * r0)))
  np.testing.assert_allclose(got.table["r"], want, rtol=1e-5)


def test_the_refit_fits_the_prior_to_what_the_wake_read_on_the_fitted_images(cfg, tmp_path):
  """After a wake, the refit gives the prior the background of the fitted images' read
  fields (by hand: the range of their means, widened by a fifth of itself and at least
  0.02 a side, and their spread about those means), and a density and radius law under
  which simulated catalogs (hard-core thinning included) have the density and log-radius
  mean and spread of the band's droplets the wake read, which the prior before did not."""
  from dropamort.training.prior_fit import simulated_stats, stats_of
  from dropamort.training.real import band_stats

  trainer = Trainer(cfg, str(tmp_path))
  state, _ = trainer.initial_state()
  state = trainer.wake(trainer.end_round(trainer.sleep(state, 2)))
  assert int(state.stage) == REFIT
  before = state.prior
  read = trainer._read(state, trainer.real.fitted)
  state = trainer.refit_prior(state)
  trainer.close()
  after = state.prior
  assert int(state.stage) == SLEEP
  fields = [np.asarray(levels[0].posterior.bg_loc_BYXC[0]) for levels in read]
  means = np.stack([f.mean((0, 1)) for f in fields])
  lo, hi = means.min(0), means.max(0)
  pad = np.maximum(0.2 * (hi - lo), 0.02)
  np.testing.assert_allclose(after.background_low, lo - pad, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(after.background_high, hi + pad, rtol=1e-5, atol=1e-6)
  spread = np.sqrt(np.mean([np.mean((f - f.mean((0, 1))) ** 2) for f in fields]))
  np.testing.assert_allclose(after.background_sd, max(spread, 0.02), rtol=1e-5)
  radii, area, _ = band_stats(read, cfg.model, cfg.trainer.threshold)
  seen = stats_of(radii, area)
  assert len(radii) > 10  # Enough for the refit of density and radii.
  sim = lambda prior: simulated_stats(jax.random.key(7), cfg.model, prior, n_images=256)
  fit, old = sim(after), sim(before)
  assert fit.density == pytest.approx(seen.density, rel=0.15)
  assert fit.log_r_mean == pytest.approx(seen.log_r_mean, abs=0.05)
  assert fit.log_r_sd == pytest.approx(seen.log_r_sd, rel=0.15)
  assert abs(old.log_r_mean - seen.log_r_mean) > 0.15  # 0.22 when written.


def test_a_finished_simulation_run_goes_on_into_calibration(cfg, tmp_path):
  """What the README does for the example: train on simulations, then run again in the
  same directory with real images; the rounds start from the trained encoder."""
  plain = dataclasses.replace(cfg, data=DataConfig(real=None))
  first = train(plain, str(tmp_path))
  assert first["step"] == 2 and first["checkpoint"].endswith("best")
  result = train(cfg, str(tmp_path))
  assert result["step"] == 2 + 2 * 2 and result["checkpoint"].endswith("calibrated")
  records = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  assert [r["round"] for r in records if r["event"] == "wake"] == [1, 2]


def test_the_wake_keeps_the_decoder_that_did_best_on_held_out_crops(cfg, tmp_path):
  """Early stopping: the first evaluation always counts as the best so far, and the stage
  ends with the decoder of the best evaluation, not the last step's."""
  longer = dataclasses.replace(cfg, calibrate=dataclasses.replace(
      cfg.calibrate, wake_steps=6, wake_eval_every=2, wake_patience=10))
  trainer = Trainer(longer, str(tmp_path))
  state, _ = trainer.initial_state()
  state = trainer.wake(trainer.end_round(trainer.sleep(state, 2)))
  trainer.close()
  evals = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()
           if json.loads(line)["event"] == "wake_eval"]
  assert [e["wake_step"] for e in evals] == [2, 4, 6]
  best = min(e["held_out_loss"] for e in evals)
  np.testing.assert_allclose(float(state.wake_best), best, rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.decoder_params),
               jax.device_get(state.best_decoder_params))


def test_the_outline_search_sets_the_scale_and_holds_the_edge_sharp(cfg, tmp_path):
  """With ``calibrate.outline`` a (not bootstrapped) wake starts from a sharp edge and
  keeps it; the search after it logs every scale tried, and the state takes the best one
  (the wake's log says so); the next wake starts with the outline back at zero."""
  on = dataclasses.replace(cfg, calibrate=dataclasses.replace(
      cfg.calibrate, outline=True, wake_steps=4, wake_eval_every=2, outline_steps=2))
  trainer = Trainer(on, str(tmp_path))
  state, _ = trainer.initial_state()
  state = trainer.wake(trainer.end_round(trainer.sleep(state, 2)))
  assert not bool(state.bootstrap) and int(state.stage) == REFIT
  assert edge_width(state.decoder_params) == pytest.approx(SHARP_EDGE_PX)
  lines = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  tried = [r for r in lines if r["event"] == "outline"]
  assert {r["round"] for r in tried} == {1} and tried[0]["scale"] == 1.0
  best = min(tried, key=lambda r: r["held_out_rmse"])
  assert float(np.exp(state.prior.outline)) == pytest.approx(best["scale"], rel=1e-6)
  wake = [r for r in lines if r["event"] == "wake"][-1]
  assert wake["outline_scale"] == pytest.approx(best["scale"], rel=1e-6)
  again = trainer._start_wake(state.replace(round=state.round + 1))
  assert float(again.prior.outline) == 0.0
  # Resumed at a finished wake (stopped during the search): no wake step is taken again.
  ended = state.replace(stage=jnp.int32(WAKE), wake_since=jnp.int32(on.calibrate.wake_patience))
  resumed = trainer.wake(jax.tree.map(jnp.copy, ended))
  trainer.close()
  assert int(resumed.wake_step) == int(ended.wake_step)
  assert int(resumed.stage) == REFIT


def test_with_the_outline_search_only_searched_rounds_compete_for_calibrated(cfg):
  """A sharp-edged decoder fits pixels worse than a soft-edged one, so with
  ``calibrate.outline`` round 0 and a bootstrapped round 1 (no search) do not compete;
  the last round always does; without it every round does."""
  on = dataclasses.replace(cfg, calibrate=dataclasses.replace(cfg.calibrate, outline=True,
                                                              rounds=3))
  competes = lambda c, r, b: Trainer._competes(SimpleNamespace(cfg=c, last_round=rounds(c)),
                                               r, b)
  assert [competes(on, r, b) for r, b in [(0, False), (1, True), (1, False), (2, False),
                                          (3, True)]] == [False, False, True, True, True]
  assert all(competes(cfg, r, b) for r in range(3) for b in (True, False))


def test_the_last_round_ends_with_the_polish_and_its_record_is_the_polished_render(
    uninterrupted):
  """Only the last round is polished (no simulation follows it), judged first at step 0;
  its record is the held-out RMSE of the render the polish kept: the held-out image is
  small enough that the polish judges all of its pixels, so the two must agree."""
  run, result = uninterrupted
  records = [json.loads(line) for line in (run / "calibration.jsonl").read_text().splitlines()]
  rows = [r for r in records if r["event"] == "polish"]
  assert {r["round"] for r in rows} == {2} and rows[0]["step"] == 0
  last = [r for r in records if r["event"] == "round"][-1]
  assert last["real_rmse"] == pytest.approx(min(r["held_out_rmse"] for r in rows), rel=1e-4)
  assert min(r["held_out_rmse"] for r in rows) < rows[0]["held_out_rmse"]


def test_a_round_ends_the_calibration_once_another_like_it_would_exceed_the_budget(cfg):
  """A 20 min budget (1200 s): round 0 (simulations) never ends the calibration, round 1
  ends at 900 s and another 200 s fits, round 2 ends at 1100 s and another does not."""
  from dropamort.training.budget import TimeBudget

  now = [0.0]
  fake = SimpleNamespace(cfg=dataclasses.replace(cfg, time_budget=20.0), last_round=3,
                         say=lambda *_: None, budget=TimeBudget(20.0, lambda: now[0]))
  last = []
  for r, ends_at in [(0, 700.0), (1, 900.0), (2, 1100.0)]:
    now[0] = ends_at
    Trainer._spend_budget(fake, r)
    last.append(fake.last_round)
  assert last == [3, 3, 2]


@pytest.mark.slow  # Two calibrations of the fixture from scratch (~1 min alone).
def test_a_time_budget_makes_the_round_that_spent_it_the_last_and_the_command_goes_on(
    cfg, tmp_path):
  """``time_budget``: when another round would not fit, the round just made is the last
  one (polished, then DONE); the same command again goes on with the next round."""
  short = dataclasses.replace(cfg, time_budget=1e-6)  # No round fits in it.
  first = train(short, str(tmp_path))
  assert int(first["state"].stage) == DONE and first["round"] == 2
  log = lambda: [json.loads(l) for l in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  events = lambda name: [r["round"] for r in log() if r["event"] == name]
  assert events("round") == [0, 1] and set(events("polish")) == {1}
  again = train(short, str(tmp_path))
  assert int(again["state"].stage) == DONE and again["round"] == 3
  assert events("round") == [0, 1, 2] and set(events("polish")) == {1, 2}


def test_killed_during_the_polish_resumes_to_the_same_model(cfg, uninterrupted, tmp_path,
                                                            monkeypatch):
  """SIGTERM during the polish (its ``stop`` turns true) stops the run with the last
  sleep stage saved and nothing of the polish logged; the same command then polishes
  again and ends where an uninterrupted run does."""
  _, whole = uninterrupted
  fit = polish.fit
  monkeypatch.setattr(polish, "fit", lambda *a, **k: fit(*a, **{**k, "stop": lambda: True}))
  with pytest.raises(Preempted, match="polish"):
    train(cfg, str(tmp_path))
  monkeypatch.setattr(polish, "fit", fit)
  logged = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  assert not [r for r in logged if r["event"] == "polish" or (
      r["event"] == "round" and r["round"] == 2)]
  resumed = train(cfg, str(tmp_path))
  _assert_same_state(resumed["state"], whole["state"])
  records = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["event"] == "polish"][0] == 0
  assert len([r for r in records if r["event"] == "polish" and r["step"] == 0]) == 1


def test_a_calibration_from_the_packaged_start_is_the_one_from_scratch(cfg, uninterrupted,
                                                                       tmp_path, monkeypatch):
  """Round 0 depends on the configuration alone: begun from a start made with the same
  configuration (``training.start``), a calibration skips round 0's sleep and ends in the
  state of one that trained it; a configuration that differs in what round 0 depends on
  is told so and does not use it."""
  from dropamort.training import start
  from dropamort.training.trainer import sleep_target

  monkeypatch.setattr(start, "START_DIR", str(tmp_path / "none"))
  trainer = Trainer(cfg, str(tmp_path / "round0"))
  state, _ = trainer.initial_state()
  state = trainer.sleep(state, sleep_target(cfg, 0))
  trainer.close()
  start.save(state, cfg, str(tmp_path / "start"))
  monkeypatch.setattr(start, "START_DIR", str(tmp_path / "start"))
  result = train(cfg, str(tmp_path / "run"))
  _assert_same_state(result["state"], uninterrupted[1]["state"])
  log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["event"] for r in log if r.get("event") == "packaged_start"] == ["packaged_start"]
  assert not [r for r in log if "loss" in r and r["round"] == 0]  # No round-0 sleep step.
  other = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, seed=1),
                              data=dataclasses.replace(cfg.data, scale=0.5))
  assert start.differences(other) == ["trainer.seed"]  # Where the images are is not round 0.
  assert start.differences(cfg, str(tmp_path / "none")) is None
