"""The events know nothing of the webhooks: the webhooks package takes part in sequencing and
runs its worker through the hooks the events offer (``Follower``, ``run_beside_hub``)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT


def imported_modules(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_of_the_events_imports_the_webhooks():
    modules = sorted((ROOT / "app" / "events").glob("*.py"))
    assert modules
    for path in modules:
        imported = imported_modules(ast.parse(path.read_text(), str(path)))
        webhooks = sorted(m for m in imported if m.startswith("app.webhooks"))
        assert webhooks == [], f"{path.name} imports {webhooks}"
