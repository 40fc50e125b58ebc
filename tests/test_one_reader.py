"""One reader: no module but ``dropamort.pyramid`` plans or builds an image pyramid or
tiles an image; everything else reads through ``pyramid.read`` / ``pyramid.Encoding``."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
READER = ROOT / "dropamort" / "pyramid.py"
# What only the reader may call: planning and building pyramids, tiling.
OWN = {"plan_levels", "build_pyramid", "tile_starts", "owned_ranges"}


def own_uses(source: str) -> set[str]:
  """The reader's own names that ``source`` imports, calls or reads as attributes."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom):
      found |= {a.name for a in node.names} & OWN
    elif isinstance(node, ast.Name) and node.id in OWN:
      found.add(node.id)
    elif isinstance(node, ast.Attribute) and node.attr in OWN:
      found.add(node.attr)
  return found


def product_sources():
  files = [*(ROOT / "dropamort").rglob("*.py"), *(ROOT / "bench").glob("*.py"),
           *ROOT.glob("*.py")]
  return [f for f in files if f != READER]


def test_the_check_catches_a_pyramid_built_elsewhere():
  assert own_uses("from dropamort.pyramid import build_pyramid\nbuild_pyramid(x, 3)") == {
      "build_pyramid"}
  assert own_uses("import dropamort.pyramid as p\nn = len(p.plan_levels(4, 4, m))") == {
      "plan_levels"}
  assert own_uses("from dropamort.pyramid import read\nread(f, ims, m)") == set()


def test_no_module_but_the_reader_builds_a_pyramid_or_tiles():
  sources = product_sources()
  assert len(sources) > 50  # The scan sees the package, the benchmarks and the scripts.
  offenders = {str(f.relative_to(ROOT)): sorted(own_uses(f.read_text()))
               for f in sources if own_uses(f.read_text())}
  assert not offenders, f"read images through dropamort.pyramid.read instead: {offenders}"


@pytest.mark.parametrize("name", sorted(OWN))
def test_the_reader_defines_what_it_owns(name):
  tree = ast.parse(READER.read_text())
  assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
