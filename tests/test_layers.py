"""Dependencies run one way: model -> encoder -> objective -> training | inference.

Every import inside the package (top-level or inside a function) is read from the source
with ``ast`` and checked against the layer order below: a module may import its own unit
and the units below it, never one above.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dropamort"

# Lowest first. A unit is the first name after ``dropamort.``.
LAYERS = ["errors", "schema", "user_tier", "config", "read_config", "parallel", "figures", "metrics", "data", "model",
          "encoder", "pyramid", "objective", "datasets", "checkpoint", "training", "inference",
          "sequence", "evaluation", "cli", "__init__"]
RANK = {unit: i for i, unit in enumerate(LAYERS)}
# Above the checkpoint, training and inference are separate branches: the checkpoint is
# the hand-off, so neither inference, sequences nor evaluation imports training.
FORBIDDEN = {("inference", "training"), ("evaluation", "training"), ("sequence", "training")}


def unit_of(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def imports_of(source: str, module: str) -> list[str]:
  """Absolute names of the dropamort modules that ``source`` (module ``module``) imports."""
  out = []
  package = module.rsplit(".", 1)[0]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [a.name for a in node.names if a.name.startswith("dropamort")]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: resolve against the importing package.
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                        + ([base] if base else []))
      if base == "dropamort":  # `from dropamort import checkpoint`: the names are modules.
        out += [f"dropamort.{a.name}" for a in node.names]
      elif base.startswith("dropamort."):
        out.append(base)
  return out


def violations(source: str, module: str) -> list[str]:
  mine = unit_of(module)
  bad = []
  for name in imports_of(source, module):
    theirs = unit_of(name)
    if theirs not in RANK:
      bad.append(f"{module} imports {name}: unit '{theirs}' is not in the layer list")
    elif theirs != mine and RANK[theirs] >= RANK[mine]:
      bad.append(f"{module} imports {name} ('{theirs}' is not below '{mine}')")
    elif (mine, theirs) in FORBIDDEN:
      bad.append(f"{module} imports {name} ('{mine}' never imports '{theirs}')")
  return bad


def package_modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
      parts = parts[:-1] if len(parts) > 2 else parts
    yield ".".join(parts), path


def test_every_unit_has_a_layer():
  units = {unit_of(m) for m, _ in package_modules()}
  assert units <= set(RANK), sorted(units - set(RANK))


def test_imports_only_go_down_the_layers():
  bad = [v for module, path in package_modules() for v in violations(path.read_text(), module)]
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module,source", [
    ("dropamort.inference.api", "from dropamort.training.loop import train"),
    ("dropamort.training.trainer", "def f():\n  from dropamort.inference import api"),
    ("dropamort.model.render", "import dropamort.encoder.posterior"),
    ("dropamort.checkpoint", "from dropamort import training"),
])
def test_a_wrong_way_import_is_caught(module, source):
  assert violations(source, module)


def test_allowed_imports_pass():
  assert not violations("from dropamort.model.prior import Prior\nfrom . import step",
                        "dropamort.training.trainer")
