"""The package graph follows the data flow: every import, at module level or inside a function, points to the same
subpackage or one below it in ``LAYERS``; no back-arrow, hence no import cycle between subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "otce_ray"
# Lowest first: the kit and plumbing, then datasets -> models -> extraction -> store -> scoring -> leaderboard (the
# data flow), then the run (config, pipeline) and what is built on runs. ``package`` is otce_ray/__init__.py: its
# version and lazily exported API; ``api`` is that file's own (lazy) imports of the API it exports.
LAYERS = ("package", "fs", "schema", "cluster", "datasets", "models", "store", "extraction", "scoring", "leaderboard",
          "config", "pipeline", "finetune", "evaluation", "zoo", "demo", "bench", "validation", "cli", "api")


def _layer_of_file(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts == ("__init__",):
        return "api"
    return parts[0]


def _layer_of_import(module: str, name: str | None = None) -> str | None:
    """The layer an import reaches (None: not the project's)."""
    parts = module.split(".")
    if parts[0] != "otce_ray":
        return None
    if len(parts) > 1:
        return parts[1]
    submodule = name is not None and ((PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir())
    return name if submodule else "package"  # ``from otce_ray import fs`` vs ``from otce_ray import __version__``


def _edges() -> list[tuple[str, str, str]]:
    """(importing file, its layer, imported layer) for every project import in the package."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _layer_of_file(path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_layer_of_import(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [_layer_of_import(node.module, alias.name) for alias in node.names]
            edges += [(str(path.relative_to(PACKAGE)), source, target) for target in targets if target is not None]
    return edges


def test_every_subpackage_has_a_layer():
    layers = {layer for _, source, target in _edges() for layer in (source, target)}
    assert layers <= set(LAYERS), sorted(layers - set(LAYERS))


def test_no_import_points_up_the_data_flow():
    back = sorted({(where, source, target) for where, source, target in _edges()
                   if LAYERS.index(target) > LAYERS.index(source)})
    assert back == [], "\n".join(f"{where}: {source} imports {target}" for where, source, target in back)


def test_the_check_sees_imports_inside_functions_and_from_the_package_root():
    edges = {(where, target) for where, _, target in _edges()}
    assert ("leaderboard/writers.py", "fs") in edges and ("leaderboard/writers.py", "package") in edges
    assert ("zoo/run_config.py", "datasets") in edges and ("zoo/truth.py", "demo") not in edges
    assert ("cli.py", "demo") in edges  # imported inside a function
