"""The package's layering, read from its source with ast (nothing is imported).

DESIGN's rules: data/ imports no JAX; parallel/ imports no model, task or
training module; evaluation/ nothing from training/ or tasks/; no import
circle anywhere in climjax/ (imports inside functions count too); and one
training loop, in training/train.py.
"""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "climjax")


def _modules() -> dict[str, str]:
  """Dotted module name -> path, for every .py file of the package."""
  found = {}
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        parts = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        found[".".join(parts)] = path
  return found


MODULES = _modules()


def _imports(path: str) -> set[str]:
  """Every module the file imports (climjax ones resolved to the submodule named)."""
  tree = ast.parse(open(path).read(), filename=path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from climjax.parallel import strategy` imports the submodule; the edge to
      # the package counts only where a name defined in the package is imported.
      submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
      out.update(submodules)
      if len(submodules) < len(node.names):
        out.add(node.module)
  return out


def _graph() -> dict[str, set[str]]:
  return {
    name: {m for m in _imports(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
  }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_circles():
  assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_finder_finds_one():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
  "layer, forbidden",
  [
    ("climjax.parallel", ("climjax.models", "climjax.training", "climjax.tasks")),
    ("climjax.evaluation", ("climjax.training", "climjax.tasks")),
    ("climjax.data", ("jax", "flax", "optax", "climjax.models", "climjax.training", "climjax.tasks")),
  ],
)
def test_forbidden_edges(layer, forbidden):
  bad = [
    f"{name} imports {imported}"
    for name, path in MODULES.items()
    if name == layer or name.startswith(layer + ".")
    for imported in _imports(path)
    if any(imported == f or imported.startswith(f + ".") for f in forbidden)
  ]
  assert not bad, bad


def test_one_training_loop():
  loops = [
    (name, node.name)
    for name, path in MODULES.items()
    for node in ast.walk(ast.parse(open(path).read()))
    if isinstance(node, ast.FunctionDef) and node.name == "train_and_evaluate"
  ]
  assert loops == [("climjax.training.train", "train_and_evaluate")]
  # The strategies hold no loop over training steps: no while loop anywhere in them.
  for name in ("climjax.parallel.hybrid", "climjax.parallel.strategy", "climjax.parallel.sync"):
    tree = ast.parse(open(MODULES[name]).read())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.While)], name
