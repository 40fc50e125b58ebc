"""Single-pass inference time on a 380×507 RGB image vs blob_log and the original
per-image SVI (``quality.seed_model``).

The single pass is the encoder on every level of the image pyramid infer.py reads (four
levels at this size); ``base_level_ms`` is the first level alone.

    python bench/infer.py [--checkpoint runs/train] [--repeats 20]

Also the encoder's time per image in batches of 8 (split over all local devices).
Uses the first image of droplet_sim/380x507_seed (built under --data-dir if missing)
and, when present, ../shared/data/example.jpg at scale 0.25. Also reports refinement:
ELBO after 0, 10 and 100 SVI steps and ms per step.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_ms, report  # noqa: E402
from quality import make_seed_svi  # noqa: E402

import dropamort  # noqa: E402
from dropamort.read_config import InferConfig  # noqa: E402
from dropamort.data.images import read_image, resize  # noqa: E402
from dropamort.datasets import store  # noqa: E402
from dropamort.inference.refine import refine_result  # noqa: E402
from dropamort.pyramid import read  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "example.jpg")


def blob_log_ms(image, repeats=5):
  from skimage.feature import blob_log

  grey = 1 - image.mean(-1)
  times, n = [], 0
  for _ in range(repeats):
    t0 = time.perf_counter()
    n = len(blob_log(grey, threshold=0.1))
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times), n


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--repeats", type=int, default=20)
  ap.add_argument("--data-dir", default="datasets")
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  images, _ = store.read_sim(store.open_sim("380x507_seed", args.data_dir), limit=1)
  image = np.clip(images[0], 0, 1)

  out = {"image": [380, 507, 3]}
  # Single pass: the encoder on every pyramid level infer.py reads (the base alone too).
  pyramid = lambda im: [lr.posterior for lr in read(reader.predictor.posteriors, [im],
                                                     reader.cfg.model)[0]]
  out["pyramid_levels"] = len(pyramid(image))
  out["single_pass_ms"] = round(median_ms(pyramid, image, repeats=args.repeats), 2)
  out["base_level_ms"] = round(median_ms(reader.predictor.posterior, image,
                                         repeats=args.repeats), 2)
  batch = [image] * 8  # A folder from one microscope: 8 images per call, over all devices.
  out["batch8_ms_per_image"] = round(median_ms(reader.predictor.posteriors, batch,
                                               repeats=max(3, args.repeats // 4)) / 8, 2)
  out["devices"] = reader.predictor.devices
  out["blob_log_ms"], out["blob_log_count"] = blob_log_ms(image)
  post = reader.predictor.posterior(image)
  out["dropamort_count"] = int((np.asarray(post.p_BYX) > 0.5).sum())

  _, update, state = make_seed_svi(image, 800)
  step = lambda: update_state(update, state)
  out["svi_step_ms"] = round(median_ms(step, repeats=5, warmup=1), 1)
  out["speedup_vs_blob_log"] = round(out["blob_log_ms"] / out["single_pass_ms"], 2)
  out["speedup_vs_svi_100k"] = round(1e5 * out["svi_step_ms"] / out["single_pass_ms"])

  if os.path.exists(EXAMPLE):
    real = resize(read_image(EXAMPLE, 3)[0], 0.25)
    out["example_single_pass_ms"] = round(median_ms(pyramid, real, repeats=args.repeats), 2)
    out["example_blob_log_ms"], out["example_blob_log_count"] = blob_log_ms(real)
    out["example_dropamort_count"] = int(
        (np.asarray(reader.predictor.posterior(real).p_BYX) > 0.5).sum())

  base = reader.infer(image, InferConfig(scale=1.0, samples=20))
  for k in (10, 100):
    refined = refine_result(reader, base, InferConfig(scale=1.0, refine_steps=k))
    info = refined.summary["refinement"]
    out["elbo_0"] = round(info["elbo_before"], 1)
    out[f"elbo_{k}"] = round(info["elbo_after"], 1)
    out["refine_ms_per_step"] = round(info["ms_per_step"], 2)
  out["single_pass_under_100ms"] = out["single_pass_ms"] <= 100
  report(**out)


def update_state(update, state):
  new_state, loss = update(state)
  return loss


if __name__ == "__main__":
  main()
