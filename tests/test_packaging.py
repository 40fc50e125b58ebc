"""pyproject.toml states ranges, constraints.txt the tested versions, and the two agree.

Ranges let dropamort install next to a lab's own numpy or matplotlib; the constraints
file is what CI installs, so every version in it must lie inside the range it tests.
"""

import pathlib
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _requirements():
  """{extra or "core": [Requirement]} from pyproject.toml."""
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  groups = {"core": project["dependencies"], **project.get("optional-dependencies", {})}
  return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


def _constraints():
  """{canonical name: Version} from constraints.txt; each line must be an exact pin."""
  pins = {}
  for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    req = Requirement(line)
    (spec,) = req.specifier  # exactly one clause
    assert spec.operator == "==" and "*" not in spec.version, f"line {number}: {line}"
    name = canonicalize_name(req.name)
    assert name not in pins, f"line {number}: {name} constrained twice"
    pins[name] = Version(spec.version)
  return pins


REQUIREMENTS = _requirements()
ALL = [(group, req) for group, reqs in REQUIREMENTS.items() for req in reqs]


@pytest.mark.parametrize("group,req", ALL, ids=[f"{g}:{r.name}" for g, r in ALL])
def test_requirement_is_a_range_with_a_floor(group, req):
  ops = {spec.operator for spec in req.specifier}
  assert not ops & {"==", "==="}, f"[{group}] {req} is pinned; pin in constraints.txt"
  assert ops & {">=", "~="}, f"[{group}] {req} has no lower bound"


def test_every_requirement_is_constrained():
  pins = _constraints()
  missing = [f"[{g}] {r}" for g, r in ALL if canonicalize_name(r.name) not in pins]
  assert not missing, f"not in constraints.txt: {missing}"


@pytest.mark.parametrize("group,req", ALL, ids=[f"{g}:{r.name}" for g, r in ALL])
def test_constrained_version_lies_in_the_range(group, req):
  version = _constraints()[canonicalize_name(req.name)]
  assert req.specifier.contains(version, prereleases=True), \
      f"constraints.txt has {req.name}=={version}, outside [{group}] {req.specifier}"
