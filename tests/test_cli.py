"""Entry-point plumbing: the persistent compilation cache."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp
    from dropamort.cli import use_compilation_cache
    use_compilation_cache()
    jax.jit(lambda x: jnp.sin(x) * 3)(jnp.arange(5.0)).block_until_ready()
    print(jax.config.jax_compilation_cache_dir)
""")


def _run(cache_dir):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["DROPAMORT_CACHE_DIR"] = cache_dir
  return subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_compiled_programs_are_kept_between_runs(tmp_path):
  cache = tmp_path / "cache"
  p = _run(str(cache))
  assert p.returncode == 0, p.stderr
  assert p.stdout.strip() == str(cache) and len(os.listdir(cache)) >= 1


def test_an_unwritable_cache_folder_is_skipped_quietly(tmp_path):
  blocked = tmp_path / "file"
  blocked.write_text("not a folder")
  p = _run(str(blocked / "cache"))
  assert p.returncode == 0, p.stderr
  assert p.stdout.strip() == "None" and "Warning" not in p.stderr
