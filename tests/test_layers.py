"""Two rules of the layers, kept true as the code grows:

- a view (a module serving routes) never runs SQL itself: it parses, calls services, shapes
  the answer and maps errors;
- a service never reads Flask's config: a view or a command takes ``settings()`` and hands
  the service the ``Settings`` (or the one value it needs).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

APP = ROOT / "app"

#: Session (and connection) methods that run SQL.
SQL_METHODS = frozenset({"get", "scalar", "scalars", "execute", "query"})
#: What a view may import from SQLAlchemy: its errors and its engine type, no query builders.
VIEW_SQLALCHEMY_IMPORTS = frozenset({"sqlalchemy.exc", "sqlalchemy.engine"})

#: Framework-level code that reads Flask's config by design; none of it is a service.
FRAMEWORK = frozenset({
    "app/core/api.py",  # the Blueprint class every view module uses
    "app/core/settings.py",  # the one place that turns the config into Settings
    "app/core/limits.py",  # request hooks
    "app/core/headers.py",
})  # fmt: skip

#: Views that still query the database themselves, until the sale path's rework (which is
#: rewriting them) moves those queries into services. Empty it as they are.
VIEWS_STILL_QUERYING = frozenset({
    "app/events/api.py",  # presented_here
})  # fmt: skip

#: Services that still read Flask's config, until the sale path's rework (which is
#: rewriting them) hands them the settings. Empty it as they are.
SERVICES_STILL_READING_CONFIG = frozenset({
    "app/cards/services.py",  # currency, card limits, security-code throttles
    "app/payments/services.py",  # top-up limits
    "app/offline/services.py",  # allowance size and lifetime
    "app/cards/codes.py",  # CARD_CODE_KEY (called from cards and offline services only)
    "app/payments/gateway.py",  # PAYMENT_GATEWAY (called from payments services only)
})  # fmt: skip


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(APP.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        found[name] = ast.parse(path.read_text(), name)
    return found


def serves_routes(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Blueprint"
        for node in ast.walk(tree)
    )


def is_view(name: str, tree: ast.Module) -> bool:
    path = Path(name)
    named_as_one = (
        path.name in ("api.py", "pages.py")
        or path.name.endswith("_api.py")
        or path.parent.as_posix() == "app/web"
    )
    return name not in FRAMEWORK and (named_as_one or serves_routes(tree))


def is_command(tree: ast.Module) -> bool:
    """A module of ``flask`` commands: like a view, it hands services their settings."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "click" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module in ("click", "flask.cli"):
            return True
    return False


def session_names(tree: ast.Module) -> set[str]:
    """Names a module binds to ``session()`` (``s = session()``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.NamedExpr) and is_session_call(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def is_session_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("session", "sessions")
    )


def sql_in_view(tree: ast.Module) -> list[str]:
    """Where a view runs SQL itself or imports SQLAlchemy's query builders."""
    sessions = session_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, on = node.func.attr, node.func.value
            on_a_session = is_session_call(on) or (isinstance(on, ast.Name) and on.id in sessions)
            # ``.get`` is everywhere (dicts, headers); the others run SQL on anything.
            if method in SQL_METHODS and (on_a_session or method != "get"):
                found.append(f"line {node.lineno}: .{method}(...)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            if node.module not in VIEW_SQLALCHEMY_IMPORTS:
                names = ", ".join(a.name for a in node.names)
                found.append(f"line {node.lineno}: from {node.module} import {names}")
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] == "sqlalchemy"
            ]
    return found


def config_reads(tree: ast.Module) -> list[str]:
    """Where a module reads ``current_app.config``."""
    return [
        f"line {node.lineno}: current_app.config"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "config"
        and isinstance(node.value, ast.Name)
        and node.value.id == "current_app"
    ]


def settings_fetched(tree: ast.Module) -> list[str]:
    """Where a module imports ``settings()``, the accessor for views and commands."""
    return [
        f"line {node.lineno}: from app.core.settings import settings"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module == "app.core.settings"
        and any(a.name == "settings" for a in node.names)
    ]


def services(found: dict[str, ast.Module]) -> dict[str, ast.Module]:
    return {
        name: tree
        for name, tree in found.items()
        if name not in FRAMEWORK and not is_view(name, tree)
    }


def test_the_layer_rules_see_every_view_and_service():
    found = modules()
    views = {name for name, tree in found.items() if is_view(name, tree)}
    assert {"app/cards/api.py", "app/web/kiosk.py", "app/kiosk/analytics_api.py",
            "app/catalog/images.py", "app/sales/pages.py"} <= views  # fmt: skip
    assert {"app/auth/passwords.py", "app/kiosk/services.py", "app/demo.py"} <= set(services(found))


def test_views_leave_sql_to_the_services():
    found = modules()
    offences = {
        name: lines
        for name, tree in found.items()
        if is_view(name, tree) and name not in VIEWS_STILL_QUERYING
        for lines in [sql_in_view(tree)]
        if lines
    }
    assert offences == {}, "views that query the database themselves (move it to a service)"


def test_services_take_their_settings_and_never_read_flasks_config():
    offences = {
        name: lines
        for name, tree in services(modules()).items()
        if name not in SERVICES_STILL_READING_CONFIG
        for lines in [config_reads(tree) + ([] if is_command(tree) else settings_fetched(tree))]
        if lines
    }
    assert offences == {}, (
        "services that read Flask's config or fetch settings() themselves: take a Settings "
        "(or the one value) as an argument, handed over by the view or command"
    )


def test_the_lists_of_what_remains_are_still_needed():
    """When a listed module is fixed, take it off its list, so the list only shrinks."""
    found = modules()
    querying = {name for name in VIEWS_STILL_QUERYING if not sql_in_view(found[name])}
    reading = {name for name in SERVICES_STILL_READING_CONFIG if not config_reads(found[name])}
    assert querying == set(), "views that no longer query: remove them from the list"
    assert reading == set(), "services that no longer read config: remove them from the list"
