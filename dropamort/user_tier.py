"""The user tier: the few things a scientist knows about their images, in their words.

``train.py images=DIR pixel_size=0.65 contrast=dark`` sets top-level fields of
``TrainConfig``; each one stands for tuning fields (``model.*``, ``data.*``,
``trainer.*``, ``calibrate.*``), which ``apply`` sets from it. A user field left unset
(None) changes nothing. Setting a user field and, to another value, a tuning field it
stands for is refused in one line: the run would otherwise silently obey one of them.

The tuning tier keeps every default (the dataclasses in ``config``); the user tier only
translates. ``python train.py --help`` lists the user fields (``conf/train.yaml``; a
test keeps the list and the fields in step).
"""

from __future__ import annotations

import dataclasses
import math

CONTRASTS = ("dark", "bright", "either")
# radius_range: images are read at the scale that puts the smallest expected radius at
# this many pixels (the prior's median radius, exp(model.radius_loc), is ~2 px), never
# enlarged; larger droplets are read at coarser pyramid levels.
SMALLEST_RADIUS_PX = 2.0


def tuning(cfg) -> list[tuple[str, str, object]]:
  """(user field, "group.field", value) for each tuning field the user fields set on
  ``cfg`` stand for (unset user fields: none)."""
  out = []
  if cfg.images is not None:
    out.append(("images", "data.real", cfg.images))
  if cfg.contrast is not None:
    # The decoder whose r is the droplet's edge draws a rim of this contrast; its radii
    # need no outline search and no polish (training.outline, training.polish).
    out += [("contrast", "model.appearance", "edge"),
            ("contrast", "model.contrast", cfg.contrast),
            ("contrast", "calibrate.outline", False),
            ("contrast", "calibrate.polish_steps", 0)]
  if cfg.overlap is not None:
    out.append(("overlap", "model.hard_core", not cfg.overlap))
  if cfg.radius_range is not None:
    out.append(("radius_range", "data.scale", radius_scale(cfg.radius_range)))
  for user, path in (("steps", "trainer.steps"), ("rounds", "calibrate.rounds"),
                     ("seed", "trainer.seed")):
    if getattr(cfg, user) is not None:
      out.append((user, path, getattr(cfg, user)))
  return out


def radius_scale(radius_range) -> float:
  """``data.scale`` for an expected radius range (px): the smallest radius read at
  ``SMALLEST_RADIUS_PX``, never above 1."""
  return min(1.0, SMALLEST_RADIUS_PX / float(radius_range[0]))


def apply(cfg, check) -> None:
  """Validates ``cfg``'s user fields and sets the tuning fields they stand for, in place.

  ``check(ok, field, allowed, value)`` raises the config's one-line error. Idempotent: a
  config whose tuning fields already hold what its user fields stand for (one restored
  from a checkpoint) is left as it is.
  """
  check(cfg.contrast is None or cfg.contrast in CONTRASTS, "contrast",
        " or ".join(CONTRASTS) + " (or unset)", cfg.contrast)
  check(cfg.pixel_size is None or 0 < cfg.pixel_size < math.inf, "pixel_size",
        "> 0 (µm per pixel)", cfg.pixel_size)
  if cfg.radius_range is not None:
    cfg.radius_range = tuple(float(v) for v in cfg.radius_range)
    check(len(cfg.radius_range) == 2 and 0 < cfg.radius_range[0] < cfg.radius_range[1],
          "radius_range", "[smallest, largest] px with 0 < smallest < largest",
          list(cfg.radius_range))
  check(cfg.time_budget is None or cfg.time_budget > 0, "time_budget", "> 0 minutes",
        cfg.time_budget)
  for name in ("steps", "rounds"):
    value = getattr(cfg, name)
    check(value is None or value >= 1, name, ">= 1", value)
  changes = {}
  for user, path, value in tuning(cfg):
    group, name = path.split(".")
    sub = getattr(cfg, group)
    now, default = getattr(sub, name), getattr(type(sub)(), name)
    check(now == default or now == value, path,
          f"left at its default ({default!r}) when {user}={getattr(cfg, user)!r} sets it "
          f"to {value!r}", now)
    changes.setdefault(group, {})[name] = value
  for group, fields in changes.items():  # New groups (others may share the old ones),
    setattr(cfg, group, dataclasses.replace(getattr(cfg, group), **fields))  # re-checked.
