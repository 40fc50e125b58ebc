"""Wake–sleep calibration on real images: sleep (encoder on simulations), wake (decoder
and noise on real crops), empirical-Bayes prior refit; checkpointed every round."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from dropamort.calibration.bootstrap import blob_posterior, log_blobs
from dropamort.calibration.prior_fit import fit_prior, stats_of
from dropamort.calibration.wake import init_wake, make_wake_step
from dropamort.config import ModelConfig, TrainConfig, from_dict, to_dict
from dropamort.data.real import load_real, random_crops
from dropamort.inference.api import DropletReader
from dropamort.inference.predictor import Predictor
from dropamort.inference.reconstruct import reconstruct
from dropamort.training.loop import train
from dropamort.training.report import MetricsLog
from dropamort.training.step import make_posterior_fn


class WakeFailed(RuntimeError):
  """Every wake step of a round was non-finite; the previous round stays the latest."""


def _manager(path: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(path, item_names=("decoder", "model"),
                               options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def wake(cfg: TrainConfig, model: ModelConfig, params, decoder_params, images, rng, *,
         bootstrap: bool, log: MetricsLog, round_: int):
  """Fits decoder and noise on real crops under the encoder posterior (or LoG blobs)."""
  c = cfg.calibrate
  crop_cfg = dataclasses.replace(model, height=c.wake_crop, width=c.wake_crop, margin=0,
                                 shift=False)
  border = int(math.ceil(model.reach * model.radius_max))
  tx = optax.adam(c.wake_lr)
  state = init_wake(decoder_params, model.noise_sigma, tx)
  step = make_wake_step(crop_cfg, tx, samples=c.wake_samples, border=border)
  posterior_fn = make_posterior_fn(cfg)
  key = jax.random.key(cfg.trainer.seed + 1000 * round_)
  bad = 0
  for i in tqdm(range(c.wake_steps), desc=f"wake round {round_}", leave=False,
                disable=not cfg.trainer.progress):
    crops = random_crops(rng, images, c.wake_batch, (c.wake_crop, c.wake_crop))
    if bootstrap:
      posts = [blob_posterior(x, model.cell, model.radius_max, model.types) for x in crops]
      post = jax.tree.map(lambda *a: np.concatenate(a), *posts)
    else:
      post = posterior_fn(params, crops)
    state, m = step(state, key, post, crops)
    bad += int(not bool(m["finite"]))
  if bad == c.wake_steps:
    raise WakeFailed(f"wake round {round_}: every step was non-finite; the previous round's "
                     "checkpoint is kept")
  log.write(event="wake", round=round_, loss=float(m["loss"]), sigma=float(m["sigma"]),
            nonfinite_steps=bad, bootstrap=bootstrap)
  return state.decoder_params, float(m["sigma"])


def read_real(reader: DropletReader, images, threshold: float):
  """Inferred tables and reconstruction RMSE on the real images."""
  radii, area, sq, n = [], 0.0, 0.0, 0
  for image in images:
    post = reader.predictor.posterior(image)
    h, w = image.shape[:2]
    p = np.asarray(post.to_table(reader.cfg.model.cell, threshold)[0]["r"])
    radii.append(p)
    area += h * w
    recon = reconstruct(reader.cfg.model, reader.predictor.decoder_params, post, height=h,
                        width=w, threshold=threshold)
    sq += float(np.sum((recon - image) ** 2))
    n += recon.size
  return np.concatenate(radii), area, math.sqrt(sq / n)


def calibrate(cfg: TrainConfig, run_dir: str) -> dict:
  """Runs (or resumes) the wake–sleep rounds; writes ``<run>/calibrated``."""
  c, t = cfg.calibrate, cfg.trainer
  images = load_real(cfg.data, cfg.model.channels, (c.wake_crop, c.wake_crop))
  os.makedirs(run_dir, exist_ok=True)
  log = MetricsLog(os.path.join(run_dir, "calibration.jsonl"))
  mngr = _manager(os.path.join(run_dir, "calibration"))
  model, decoder, done = cfg.model, None, 0
  if mngr.latest_step() is not None:
    done = mngr.latest_step()
    saved = mngr.restore(done, args=ocp.args.Composite(decoder=ocp.args.StandardRestore(),
                                                       model=ocp.args.JsonRestore()))
    decoder, model = saved["decoder"], from_dict(ModelConfig, saved["model"])
    print(f"resuming calibration after round {done}")
  total = t.steps + c.rounds * c.sleep_steps
  run_cfg = lambda m: dataclasses.replace(cfg, model=m, trainer=dataclasses.replace(
      t, steps=total))
  rng = np.random.default_rng(t.seed)
  for r in range(done + 1, c.rounds + 1):
    result = train(run_cfg(model), run_dir, stop_at=t.steps + (r - 1) * c.sleep_steps,
                   decoder_params=decoder)
    decoder = result["state"].decoder_params
    reader = DropletReader(Predictor(run_cfg(model), result["params"], decoder))
    radii, area, rmse_before = read_real(reader, images, t.threshold)
    blobs = sum(len(log_blobs(im, model.radius_max)[0]) for im in images)
    bootstrap = r == 1 and len(radii) < c.min_found * blobs
    decoder, sigma = wake(cfg, model, result["params"], decoder, images, rng,
                          bootstrap=bootstrap, log=log, round_=r)
    model = dataclasses.replace(model, noise_sigma=sigma)
    reader = DropletReader(Predictor(run_cfg(model), result["params"], decoder))
    radii, area, rmse = read_real(reader, images, t.threshold)
    if c.refit_prior and len(radii) > 10:
      model = fit_prior(jax.random.key(r), stats_of(radii, area), model)
    record = {"round": r, "reconstruction_rmse_before_wake": rmse_before,
              "reconstruction_rmse": rmse, "count_per_image": len(radii) / len(images),
              "noise_sigma": sigma, "density": model.density, "radius_loc": model.radius_loc,
              "radius_scale": model.radius_scale, "bootstrap": bootstrap}
    log.write(event="round", **record)
    tqdm.write(f"round {r}: real reconstruction RMSE {rmse_before:.4f} -> {rmse:.4f}, "
               f"{record['count_per_image']:.0f} droplets/image, sigma {sigma:.4f}, prior "
               f"density {model.density:.4f}, log r ~ N({model.radius_loc:.2f}, "
               f"{model.radius_scale:.2f})")
    mngr.save(r, args=ocp.args.Composite(decoder=ocp.args.StandardSave(decoder),
                                         model=ocp.args.JsonSave(to_dict(model))))
    mngr.wait_until_finished()
  mngr.close()
  final = train(run_cfg(model), run_dir, decoder_params=decoder)  # Last sleep phase.
  save_calibrated(run_dir, final["state"], run_cfg(model))
  final["calibrated"] = os.path.join(os.path.abspath(run_dir), "calibrated")
  return final


def save_calibrated(run_dir: str, state, cfg: TrainConfig) -> None:
  """The final model (encoder, calibrated decoder, fitted prior) where infer.py looks."""
  mngr = ocp.CheckpointManager(os.path.join(os.path.abspath(run_dir), "calibrated"),
                               item_names=("state", "config"),
                               options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
  step = int(state.step)
  if step not in mngr.all_steps():
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            config=ocp.args.JsonSave(to_dict(cfg))))
  mngr.wait_until_finished()
  mngr.close()
