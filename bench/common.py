"""Shared helpers for benchmarks: timing and the one-JSON-line report."""

import json
import os
import platform
import statistics
import time

import jax


def median_ms(fn, *args, repeats: int = 10, warmup: int = 2) -> float:
  """Median wall time of ``fn(*args)`` in ms, blocking on the result, after warm-up."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def machine() -> str:
  dev = jax.devices()[0]
  return f"{platform.machine()} {os.cpu_count()} cores, jax {jax.__version__} {dev.platform}"


def report(**fields) -> None:
  """Prints the benchmark's result as one JSON object on the last line."""
  print(json.dumps({**fields, "machine": machine()}))
