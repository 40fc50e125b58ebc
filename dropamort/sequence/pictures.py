"""Pictures of a sequence: the tracks over the last frame, and R(t) of a sample of tracks."""

from __future__ import annotations

import numpy as np

from dropamort.figures import save_figure


def save_tracks(path: str, image_HWC, tracks, events, frame: int) -> None:
  """Frame ``frame`` (the image, normally the last) with its droplets (yellow circles), the
  path of each of their tracks (one colour per track) and a white cross where a track
  began as a coalescence."""
  import matplotlib.pyplot as plt
  from dropamort.figures import draw_catalog

  h, w = image_HWC.shape[:2]
  fig, ax = plt.subplots(figsize=(10, 10 * h / w))
  ax.imshow(np.clip(image_HWC, 0, 1), extent=(0, w, h, 0))
  colours = plt.get_cmap("tab20")
  last = tracks[tracks["frame"] == frame]
  alive = tracks[tracks["track"].isin(last["track"])]
  for track, part in alive.groupby("track"):
    if len(part) > 1:
      ax.plot(part["x"] - 0.5, part["y"] - 0.5, "-", lw=1.0, color=colours(track % 20))
  draw_catalog(ax, last, color="yellow", linewidth=0.5)
  kids = alive.merge(events[events["kind"] == "coalescence"][["frame", "track"]],
                     on=["frame", "track"])
  ax.plot(kids["x"] - 0.5, kids["y"] - 0.5, "x", color="white", ms=5, mew=1.2)
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)
  ax.set_axis_off()
  ax.set_title(f"last frame: {len(last)} droplets, their tracks over "
               f"{tracks['frame'].nunique()} frames; x: {len(kids)} of them began as a "
               "coalescence", fontsize=9)
  fig.tight_layout()
  save_figure(fig, path)


def save_growth(path: str, tracks, growth, *, pixel_size, seconds: bool, sample: int = 12,
                seed: int = 0) -> None:
  """R(t) of up to ``sample`` tracks with growth rates (the longest half first, then at
  random): the radii read, their 90 % intervals as a band, and the fitted slope."""
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 5))
  unit, scale = ("µm", pixel_size) if pixel_size else ("px", 1.0)
  if len(growth):
    ranked = np.array(growth.sort_values("frames", ascending=False)["track"])  # Writable.
    half = ranked[: max(1, sample // 2)]
    rest = np.random.default_rng(seed).permutation(ranked[len(half):])[: sample - len(half)]
    rate = [c for c in growth.columns if c.startswith("drdt_") and "_q" not in c][0]
    colours = plt.get_cmap("tab20")
    for i, track in enumerate(np.concatenate([half, rest])):
      part = tracks[tracks["track"] == track].sort_values("time_s")
      t, r = part["time_s"].to_numpy(), part["r"].to_numpy() * scale
      c = colours(i % 20)
      if {"r_q05", "r_q95"} <= set(part.columns):
        ax.fill_between(t, part["r_q05"] * scale, part["r_q95"] * scale, color=c, alpha=0.25,
                        lw=0)
      slope = float(growth.loc[growth["track"] == track, rate].iloc[0])
      ax.plot(t, r, "o", ms=3, color=c)
      ax.plot(t, r.mean() + slope * (t - t.mean()), "-", lw=1, color=c)
  ax.set_xlabel("time (s)" if seconds else "frame")
  ax.set_ylabel(f"radius ({unit})")
  ax.set_title("radius against time: reads, 90% intervals and the least-squares growth "
               "rate", fontsize=9)
  fig.tight_layout()
  save_figure(fig, path)
