"""``infer.py infer.sequence=true``: a folder of frames in, tracks and growth rates out.

Every frame is read as ``infer.py`` reads a folder (its own outputs, the combined table and
the report). Then the frames' droplet tables are linked (``sequence.link``), growth rates
are fitted (``sequence.growth``), and ``tracks.csv``/``.parquet``, ``events.csv``,
``growth.csv``, ``sequence.json``, ``tracks.png`` and ``growth.png`` are written beside them,
with a section in ``report.html``.

Frames are checked before anything is read (at least two, all of one size, a time for each
when ``infer.frame_times`` is given), and everything is written into a hidden folder that
is moved into place only when the whole sequence is done: an unreadable frame stops the
run with one line, and nothing partial is left behind. ``sequence.json`` is moved last, so
a folder that holds it holds every output of the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd

from dropamort.read_config import InferConfig
from dropamort.data.images import find_images, image_size, read_image
from dropamort.errors import UserError
from dropamort.inference import report
from dropamort.inference.api import DropletReader
from dropamort.inference.run import output_name, run as run_frames
from dropamort.sequence import pictures
from dropamort.sequence.growth import GrowthOptions, field_heat_flux, growth_rates, units
from dropamort.sequence.link import link

PARTIAL = ".sequence.partial"


class SequenceError(UserError, ValueError):
  """The frames cannot be read as one sequence; the message says why."""


def natural_key(path: str):
  """Sort key that orders frame_2 before frame_10 (digit runs compared as numbers)."""
  name = os.path.basename(path)
  return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def frame_times(paths: list[str], options: InferConfig) -> tuple[list[str], np.ndarray, bool]:
  """The frames in time order, their times and whether the times are seconds: from
  ``infer.frame_times`` (CSV: image, time_s), else name order at ``infer.frame_interval_s``
  apart, else frame numbers."""
  if options.frame_times is None:
    paths = sorted(paths, key=natural_key)
    step = options.frame_interval_s
    return paths, np.arange(len(paths)) * (step or 1.0), step is not None
  try:
    table = pd.read_csv(options.frame_times)
  except Exception as err:  # noqa: BLE001 - any unreadable CSV is the same user error.
    raise SequenceError(f"infer.frame_times={options.frame_times}: not a readable CSV "
                        f"({err})") from None
  if not {"image", "time_s"} <= set(table.columns):
    raise SequenceError(f"infer.frame_times={options.frame_times}: needs the columns image "
                        f"and time_s, has {', '.join(map(str, table.columns))}")
  try:
    names = [str(v) for v in table["image"]]
    values = pd.to_numeric(table["time_s"], errors="raise").astype(float).to_numpy()
  except (ValueError, TypeError) as err:
    raise SequenceError(f"infer.frame_times={options.frame_times}: time_s must be numbers "
                        f"({err})") from None
  if not np.all(np.isfinite(values)):
    raise SequenceError(f"infer.frame_times={options.frame_times}: a time_s is empty or not "
                        "finite")
  by_path = {os.path.abspath(n): v for n, v in zip(names, values)}
  by_name = {os.path.basename(n): v for n, v in zip(names, values)}
  unique = {b for b in by_name if sum(os.path.basename(n) == b for n in names) == 1}

  def time_of(p):  # The CSV's full path if it names one, else its file name if unique.
    if os.path.abspath(p) in by_path:
      return by_path[os.path.abspath(p)]
    return by_name[os.path.basename(p)] if os.path.basename(p) in unique else None

  missing = [os.path.basename(p) for p in paths if time_of(p) is None]
  if missing:
    raise SequenceError(f"infer.frame_times={options.frame_times}: no time for "
                        f"{', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
  paths = sorted(paths, key=time_of)
  t = np.array([time_of(p) for p in paths])
  if np.any(np.diff(t) <= 0):
    raise SequenceError(f"infer.frame_times={options.frame_times}: two frames share a time")
  return paths, t, True


def check_frames(paths: list[str]) -> tuple[int, int]:
  """The frames' common (height, width); a single frame or frames of different sizes
  are refused before any is read."""
  if len(paths) < 2:
    raise SequenceError(f"infer.sequence needs at least 2 frames, found {len(paths)} "
                        f"({paths[0]})")
  sizes = {p: image_size(p) for p in paths}
  first = sizes[paths[0]]
  odd = [p for p in paths if sizes[p] != first]
  if odd:
    raise SequenceError(f"frames differ in size: {paths[0]} is {first[1]}x{first[0]}, "
                        f"{odd[0]} is {sizes[odd[0]][1]}x{sizes[odd[0]][0]}")
  return first


def run_sequence(reader: DropletReader, spec: str, out_root: str, options: InferConfig) -> int:
  """Reads the frames of ``spec``, links and fits them into ``out_root``; returns 0."""
  options = reader.resolve(options)
  paths, times, seconds = frame_times(find_images(spec), options)
  height, width = check_frames(paths)
  staging = os.path.join(out_root, PARTIAL)
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  try:
    if run_frames(reader, paths, staging, options):
      raise SequenceError("a frame could not be read (above); a sequence needs every frame, "
                          "so nothing was written")
    names = _frame_folders(paths)
    tables = [pd.read_parquet(os.path.join(staging, n, "catalog.parquet")) for n in names]
    tracks = link(tables, times)
    tracks.table.insert(2, "image", [names[f] for f in tracks.table["frame"]])
    growth_opts = GrowthOptions(seed=options.seed, contact_angle_deg=options.contact_angle_deg,
                                density_kg_m3=options.density_kg_m3,
                                latent_heat_j_kg=options.latent_heat_j_kg)
    growth = growth_rates(tracks.table, growth_opts, pixel_size=options.pixel_size,
                          seconds=seconds)
    summary = _summary(tracks, growth, times, seconds, options, (height, width), growth_opts)
    _write(staging, tracks, growth, summary, paths, reader.cfg.model.channels, options,
           seconds)
    # sequence.json last: its presence says the outputs beside it are complete.
    for name in sorted(os.listdir(staging), key=lambda n: n == "sequence.json"):
      dest = os.path.join(out_root, name)
      if os.path.isdir(dest):
        shutil.rmtree(dest)
      os.replace(os.path.join(staging, name), dest)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  print(f"{len(paths)} frames: {summary['tracks']} tracks, {summary['events']['birth']} births, "
        f"{summary['events']['coalescence']} coalescences, {summary['events']['death']} "
        f"deaths -> {os.path.join(out_root, 'tracks.csv')}")
  return 0


def _frame_folders(paths: list[str]) -> list[str]:
  """Each frame's output folder, in frame order (``inference.run.output_name``'s names)."""
  taken: set[str] = set()
  return [output_name(p, taken) for p in paths]


def _summary(tracks, growth, times, seconds, options, size, growth_opts) -> dict:
  kinds = tracks.events["kind"].value_counts()
  u = units(options.pixel_size, seconds)
  out = {"frames": len(times), "time_unit": u["time"], "length_unit": u["length"],
         "tracks": int(tracks.table["track"].nunique()),
         "events": {k: int(kinds.get(k, 0)) for k in ("birth", "coalescence", "death", "gap")},
         "tracks_with_rates": len(growth), "min_frames_for_a_rate": growth_opts.min_frames,
         "motion": {"position_var_px2_per_unit_time": tracks.motion.q_xy,
                    "median_growth_px_per_unit_time": tracks.motion.rate,
                    "growth_spread_px_per_unit_time": tracks.motion.rate_sd,
                    "learned_from_pairs": tracks.motion.pairs},
         "contact_angle_deg": options.contact_angle_deg}
  rate = f"drdt_{u['rate']}"
  if len(growth):
    out["median_growth_rate"] = {"value": float(growth[rate].median()), "unit": u["rate"]}
  if options.pixel_size is not None and seconds and len(growth):
    h, w = size
    out["heat_flux"] = field_heat_flux(tracks.table, h * w * options.pixel_size**2,
                                       growth_opts, pixel_size=options.pixel_size,
                                       total_s=float(times[-1] - times[0]))
    out["latent_heat_j_kg"], out["density_kg_m3"] = (options.latent_heat_j_kg,
                                                      options.density_kg_m3)
  else:
    out["heat_flux"] = None
    out["heat_flux_note"] = ("needs infer.pixel_size (µm per px) and frame times in seconds "
                             "(infer.frame_interval_s or infer.frame_times)")
  return out


def _write(folder, tracks, growth, summary, paths, channels, options, seconds) -> None:
  tracks.table.to_csv(os.path.join(folder, "tracks.csv"), index=False)
  tracks.table.to_parquet(os.path.join(folder, "tracks.parquet"), index=False)
  tracks.events.to_csv(os.path.join(folder, "events.csv"), index=False)
  growth.to_csv(os.path.join(folder, "growth.csv"), index=False)
  with open(os.path.join(folder, "sequence.json"), "w") as f:
    json.dump(summary, f, indent=2)
  if options.pictures:
    image, _ = read_image(paths[-1], channels)
    pictures.save_tracks(os.path.join(folder, "tracks.png"), image, tracks.table,
                         tracks.events, frame=len(paths) - 1)
    pictures.save_growth(os.path.join(folder, "growth.png"), tracks.table, growth,
                         pixel_size=options.pixel_size, seconds=seconds)
  report_path = os.path.join(folder, "report.html")
  if os.path.exists(report_path):
    report.add_section(report_path, "Sequence", _report_html(summary, options.pictures))


def _report_html(summary: dict, pictures_on: bool) -> str:
  ev = summary["events"]
  flux = summary.get("heat_flux")
  lines = [f"<p>{summary['frames']} frames linked into {summary['tracks']} tracks: "
           f"{ev['birth']} births, {ev['coalescence']} coalescences, {ev['death']} deaths, "
           f"{ev['gap']} gaps bridged. {summary['tracks_with_rates']} tracks seen in at least "
           f"{summary['min_frames_for_a_rate']} frames have growth rates "
           "(<a href='growth.csv'>growth.csv</a>, tracks in "
           "<a href='tracks.csv'>tracks.csv</a>, events in <a href='events.csv'>events.csv"
           "</a>).</p>"]
  if flux:
    lines.append(f"<p>Mean condensation heat flux {flux['heat_flux_w_m2']:.4g} W/m² (90% CI "
                 f"{flux['ci90'][0]:.4g}–{flux['ci90'][1]:.4g}) over {flux['tracks']} tracks."
                 "</p>")
  if pictures_on:
    lines.append("<img src='tracks.png' width='700'> <img src='growth.png' width='700'>")
  return "\n".join(lines)
