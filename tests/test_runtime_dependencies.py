"""Every third-party package huntaze_cli imports is a declared runtime dependency.

The fast half of the check; `.ci/run` also imports every module in a virtualenv built
from the runtime dependencies alone (scripts/import_all.py).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "huntaze_cli"


def _imported_top_levels() -> dict[str, str]:
    """Top-level module name -> a file importing it, for absolute imports."""
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(PACKAGE.parent)))
    return found


def _runtime_requirements() -> set[str]:
    names = set()
    for line in requires("huntaze_cli") or []:
        if "extra ==" in line:
            continue
        names.add(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_imported_package_is_a_runtime_dependency() -> None:
    declared = _runtime_requirements()
    distributions = packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in sys.stdlib_module_names or module in {"huntaze_cli", "__future__"}:
            continue
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & declared:
            missing.append(f"{module} (imported in {where}; distribution {sorted(dists)})")
    assert not missing, "not in [project] dependencies: " + "; ".join(missing)
