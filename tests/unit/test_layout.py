"""The packages form layers: each imports only those below it (no cycles), so each can be
read, tested and changed from the bottom up (docs/architecture.md §10)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top: the domain, process plumbing, storage and the broker, the daemons, the
# use cases, the HTTP service.
LAYERS = [
    "core", "runtime", "db", "broker", "scheduler", "pump", "worker", "inbox", "webhooks", "ops",
    "api",
]  # fmt: skip


def _imports(package: str) -> dict[str, set[str]]:
    """Each other package of ours that `package` imports, with a file that does."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for level, package in enumerate(LAYERS):
        for imported, files in _imports(package).items():
            if LAYERS.index(imported) > level:
                wrong.append(f"{package} imports {imported} ({', '.join(sorted(files))})")
    assert not wrong, wrong


def test_the_layers_are_every_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "demo"}
    assert packages == set(LAYERS)
