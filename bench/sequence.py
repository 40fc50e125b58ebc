"""Droplet tracking through a simulated condensation sequence with known truth: dropamort's
linker against trackpy and nearest-centroid linking on the same per-frame reads, in one run.

    python bench/sequence.py                 # 50 frames of 960 x 640, about 200+ droplets
    python bench/sequence.py --smoke         # 6 frames of 192 x 128, 20 s on a CPU
    python bench/sequence.py --checkpoint runs/x --out pictures/

Simulates dropwise condensation (``dropamort.sequence.simulate``: nucleation, growth,
coalescence; truth per frame and per event), renders every frame with the reading model's
own renderer and pixel noise, reads all frames with the reader (timed), links the reads
three ways and scores each with ``dropamort.sequence.metrics`` (MOTA, IDF1, coalescence
recall) and by growth rate: for the true tracks of >= 10 catalogued frames that IDF1's
assignment pairs with a predicted track, the median of |predicted − true| / true dR/dt
(true: the least-squares slope of the true radii) and, for dropamort, the fraction of
90 % intervals that contain the true rate. The linkers:

- dropamort: ``sequence.link.link`` (posterior Mahalanobis gating, gaps, coalescence
  by volume) and ``sequence.growth.growth_rates`` (least-squares slopes, intervals from
  the per-frame posteriors);
- trackpy: ``trackpy.link(detections, search_range, memory=2)``;
- nearest: each detection linked to the nearest unclaimed detection of the previous frame
  within a fixed threshold, pairs taken greedily by distance, no gaps (the public
  condensation project's rule).

Both baselines get the same distance, fixed before any score is seen: the 95th percentile
of the true droplets' displacement between consecutive frames of one track, plus 2 px
(droplets are pinned until they coalesce, so this is 2 px). They label no coalescence
(recall 0) and their growth rate is the least-squares slope of their linked radii.
The last line printed is one JSON object.
"""

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.read_config import InferConfig  # noqa: E402
from dropamort.sequence.metrics import (id_assignment, scored_events,  # noqa: E402
                                        tracking_scores)
from dropamort.sequence.simulate import (lsq_slope, render_frames,  # noqa: E402
                                         simulate_sequence)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_TRACK_FRAMES = 10  # True tracks scored by growth rate.
KEYS = ("mota", "idf1", "idsw", "fn", "fp", "coalescence_recall", "coalescence_precision",
        "predicted_events")


def read_frames(reader, images: np.ndarray, chunk: int) -> tuple[list[pd.DataFrame], float]:
  """Each frame's droplet table (``Result.table``) and the seconds all reads took."""
  options = InferConfig(samples=50, progress=False, pictures=False)
  t0 = time.perf_counter()
  tables = []
  for i in range(0, len(images), chunk):
    tables += [r.table for r in reader.infer_many(list(images[i:i + chunk]), options)]
  return tables, time.perf_counter() - t0


def search_range(truth: pd.DataFrame) -> float:
  """95th percentile of the true per-frame displacement within a track, plus 2 px."""
  t = truth.sort_values(["track", "frame"])
  step = np.hypot(t.groupby("track").x.diff(), t.groupby("track").y.diff()).dropna()
  return float(np.percentile(step, 95) if len(step) else 0.0) + 2.0


def detections(tables: list[pd.DataFrame]) -> pd.DataFrame:
  return pd.concat([t[["x", "y", "r"]].assign(frame=f) for f, t in enumerate(tables)],
                   ignore_index=True)


def link_trackpy(tables, distance: float) -> pd.DataFrame:
  import trackpy

  trackpy.quiet()
  linked = trackpy.link(detections(tables), distance, memory=2)
  return linked.rename(columns={"particle": "track"})[["track", "frame", "x", "y", "r"]]


def link_nearest(tables, distance: float) -> pd.DataFrame:
  """Nearest-centroid linking: greedy by distance, one to one, previous frame only."""
  from scipy.spatial.distance import cdist

  rows, prev_ids, prev, next_id = [], np.zeros(0, int), None, 0
  for f, t in enumerate(tables):
    ids = np.full(len(t), -1)
    if prev is not None and len(t) and len(prev):
      d = cdist(t[["x", "y"]].to_numpy(), prev[["x", "y"]].to_numpy())
      taken = set()
      for k in np.argsort(d, axis=None):
        i, j = np.unravel_index(k, d.shape)
        if d[i, j] > distance:
          break
        if ids[i] < 0 and j not in taken:
          ids[i] = prev_ids[j]
          taken.add(j)
    new = ids < 0
    ids[new] = np.arange(next_id, next_id + new.sum())
    next_id += int(new.sum())
    rows.append(t[["x", "y", "r"]].assign(track=ids, frame=f))
    prev, prev_ids = t, ids
  return pd.concat(rows, ignore_index=True)[["track", "frame", "x", "y", "r"]]


def slopes(pred: pd.DataFrame, dt: float, min_frames: int = 3) -> pd.DataFrame:
  """Per predicted track the least-squares slope of its radii (px/s)."""
  rows = [(k, lsq_slope(g.frame * dt, g.r)) for k, g in pred.groupby("track")
          if len(g) >= min_frames]
  return pd.DataFrame(rows, columns=["track", "rate"])


def growth_scores(seq, pred: pd.DataFrame, rates: pd.DataFrame) -> dict:
  """Median relative growth-rate error (and 90 % coverage where ``rates`` has q05/q95)
  over the true tracks of >= MIN_TRACK_FRAMES frames assigned a rated predicted track."""
  truth = seq.truth
  long = truth.groupby("track").size()
  long = set(long[long >= MIN_TRACK_FRAMES].index)
  assignment, _ = id_assignment(truth, pred)
  true_rate = seq.tracks.set_index("track").growth_rate
  rates = rates.set_index("track")
  err, inside = [], []
  for t, p in assignment.items():
    if t not in long or p not in rates.index or not np.isfinite(rates.rate[p]):
      continue
    err.append(abs(rates.rate[p] - true_rate[t]) / abs(true_rate[t]))
    if "q05" in rates:
      inside.append(rates.q05[p] <= true_rate[t] <= rates.q95[p])
  rnd = lambda v: round(float(v), 4)
  return {"growth_rel_err_median": rnd(np.median(err)) if err else None,
          "growth_coverage_90": rnd(np.mean(inside)) if inside else None,
          "growth_tracks": len(err), "long_true_tracks": len(long)}


def run_dropamort(seq, tables):
  from dropamort.sequence.growth import growth_rates
  from dropamort.sequence.link import link

  tracks = link(tables, np.arange(len(tables)) * seq.dt)
  events = tracks.events[tracks.events["kind"] == "coalescence"]
  g = growth_rates(tracks.table).rename(columns={
      "drdt_px_per_s": "rate", "drdt_px_per_s_q05": "q05", "drdt_px_per_s_q95": "q95"})
  pred = tracks.table[["track", "frame", "x", "y", "r"]]
  return pred, events, g[["track", "rate", "q05", "q95"]]


def score(seq, pred, events, rates, seconds: float) -> dict:
  s = tracking_scores(seq.truth, seq.events, pred, events)
  num = lambda v: None if not np.isfinite(v) else round(float(v), 4)
  out = {k: num(s[k]) if isinstance(s[k], float) else s[k] for k in KEYS}
  return {**out, **growth_scores(seq, pred, rates), "link_seconds": round(seconds, 2)}


def picture(path: str, image, truth_last, pred_last, assigned: set, title: str) -> None:
  """The last frame: true droplets green, the method's red (thick: its track is not the
  one IDF1 assigned to the true droplet there, or it matches none)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from dropamort.figures import draw_catalog, save_figure

  h, w = image.shape[:2]
  fig, ax = plt.subplots(figsize=(w / 100, h / 100 + 0.3))
  ax.imshow(image, interpolation="nearest")
  draw_catalog(ax, truth_last, color="lime", linewidth=0.8)
  ok = pred_last.track.isin(assigned).to_numpy()
  draw_catalog(ax, pred_last[ok], color="red", linewidth=0.8)
  draw_catalog(ax, pred_last[~ok], color="red", linewidth=2.2)
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  ax.set_axis_off()
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  save_figure(fig, path, dpi=100)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--frames", type=int, default=50)
  ap.add_argument("--height", type=int, default=640)
  ap.add_argument("--width", type=int, default=960)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--beta", type=float, default=1.0, help="growth exponent")
  ap.add_argument("--smoke", action="store_true",
                  help="6 frames of 192 x 128, denser and faster-growing droplets")
  ap.add_argument("--checkpoint", default=None, help="default: the shipped start model")
  ap.add_argument("--noise-sigma", type=float, default=None,
                  help="pixel noise (default: the model's noise_sigma)")
  ap.add_argument("--chunk", type=int, default=10, help="frames per infer_many call")
  ap.add_argument("--out", default=None, help="folder for the pictures")
  args = ap.parse_args()
  physics = {"beta": args.beta}
  if args.smoke:  # Enough droplets and merges in 6 small frames to run the pipeline.
    args.frames, args.height, args.width = 6, 128, 192
    physics.update(nucleation=1.0, growth=1.5)
  start = os.path.join(ROOT, "dropamort", "assets", "start_model")
  reader = dropamort.load(args.checkpoint or start)
  t0 = time.perf_counter()
  seq = simulate_sequence(args.seed, frames=args.frames, height=args.height,
                          width=args.width, types=reader.cfg.model.types, **physics)
  noise = reader.cfg.model.noise_sigma if args.noise_sigma is None else args.noise_sigma
  images = render_frames(seq, reader.cfg.model, reader.predictor.decoder_params,
                         noise_sigma=noise, seed=args.seed)
  t_sim = time.perf_counter() - t0
  tables, t_read = read_frames(reader, images, args.chunk)
  truth = seq.truth
  cover = truth.groupby("frame").r.apply(lambda r: float(np.pi * np.sum(r**2)))
  cover = float(cover.max() / (args.height * args.width))
  r_last = float(truth[truth.frame == args.frames - 1].r.max())
  distance = search_range(truth)
  out = {"sequence": {"frames": args.frames, "height": args.height, "width": args.width,
                      "seed": args.seed, "noise_sigma": noise, **physics,
                      "droplets": int(truth.track.nunique()),
                      "coalescences": len(seq.events),
                      "coalescences_scored": len(scored_events(truth, seq.events)),
                      "max_coverage": round(cover, 4), "last_frame_r_max": round(r_last, 2),
                      "simulate_render_seconds": round(t_sim, 1)},
         "read": {"seconds": round(t_read, 1),
                  "seconds_per_frame": round(t_read / args.frames, 3),
                  "detections": int(sum(len(t) for t in tables))},
         "search_range_px": round(distance, 3),
         "search_range_rule": "95th percentile of true per-frame displacement + 2 px"}
  methods = {}
  t1 = time.perf_counter()
  try:
    pred, events, rates = run_dropamort(seq, tables)
    methods["dropamort"] = (pred, score(seq, pred, events, rates, time.perf_counter() - t1))
  except ImportError as e:  # The linker is not there yet: the baselines still run.
    out["dropamort"] = {"error": f"{type(e).__name__}: {e}"}
  for name, fn in (("trackpy", link_trackpy), ("nearest", link_nearest)):
    t1 = time.perf_counter()
    pred = fn(tables, distance)
    seconds = time.perf_counter() - t1
    methods[name] = (pred, score(seq, pred, None, slopes(pred, seq.dt), seconds))
  out.update({name: s for name, (_, s) in methods.items()})
  det = next(iter(methods.values()))[1]  # Every method links the same detections.
  gt = len(truth)
  out["read"]["recall"] = round(1 - det["fn"] / gt, 4) if gt else None
  n_det = out["read"]["detections"]
  out["read"]["precision"] = round(1 - det["fp"] / n_det, 4) if n_det else None
  if "dropamort" in methods:
    best = max(methods[n][1]["idf1"] or 0.0 for n in ("trackpy", "nearest"))
    margin = methods["dropamort"][1]["idf1"] - best
    out["summary"] = {"idf1_over_best_baseline": round(margin, 4),
                      "read_goal_met": t_read <= 120.0 * args.frames / 50}
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    last = args.frames - 1
    written = []
    for name, (pred, s) in methods.items():
      assigned = set(id_assignment(truth, pred)[0].values())
      path = os.path.join(args.out, f"sequence_last_{name}.png")
      picture(path, images[last], truth[truth.frame == last], pred[pred.frame == last],
              assigned, f"{name}, frame {last}: truth green, predicted red (thick: not the "
              f"assigned track); IDF1 {s['idf1']}, MOTA {s['mota']}")
      written.append(path)
    out["pictures"] = written
  report(**out)


if __name__ == "__main__":
  main()
