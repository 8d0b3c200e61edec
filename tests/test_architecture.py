"""The code's shape (issue "Engine by ownership"): imports flow one way, nothing private crosses a
module boundary, locks are taken through the named helpers, and every status change goes through
the lifecycle. Read from the source with ast, so a regression fails here before it deadlocks or
drifts in production."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "bench", "migrations", ".venv", "node_modules", "docs", "static", "templates", "var"}


def project_modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if any(part in SKIP or part.startswith(".") for part in relative.parts):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules[".".join(parts)] = path
    return modules


MODULES = project_modules()


def imported(module: str) -> list[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) for every import in `module`, those inside
    functions included; relative imports resolved; only the project's own modules."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, node.module] if node.module else base)
            targets = [(source, alias.name) for alias in node.names]
        else:
            continue
        for source, name in targets:
            if name and f"{source}.{name}" in MODULES:  # `from package import module`
                found.append((f"{source}.{name}", None, node.lineno))
                continue
            parts = source.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts:
                found.append((".".join(parts), name, node.lineno))
    return found


GRAPH = {module: {target for target, _name, _line in imported(module) if target != module} for module in MODULES}


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_the_import_graph_reads_the_project():
    """Architecture: the import graph really reads the project, so the checks below are not vacuous."""
    assert {"subscriptions.billing", "subscriptions.lifecycle", "core.events", "accounts.services"} <= set(GRAPH)
    assert "subscriptions.charges" in GRAPH["subscriptions.billing"]


def test_imports_form_no_circle_between_modules():
    """Architecture: imports flow one way: no circle between the project's modules."""
    assert cycles() == []


def test_no_private_name_is_imported_from_another_module():
    """Architecture: no `_private` name is imported from another module."""
    crossing = [f"{module}:{line} imports {name} from {target}"
                for module in MODULES for target, name, line in imported(module)
                if name and name.startswith("_") and not name.startswith("__") and target != module]
    assert crossing == []


def module_aliases(tree: ast.AST, package: list[str]) -> dict[str, str]:
    """The local names under which a source binds one of the project's modules:
    `import a.b as x` -> {"x": "a.b"}, `from a import b` (b a module) -> {"b": "a.b"}."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:  # `import a.b` binds `a`; `import a.b as x` binds `x` to a.b
                    bound = alias.name if alias.asname else alias.name.split(".")[0]
                    aliases[alias.asname or bound] = bound
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


def patches(source: str, package: list[str]) -> list[str]:
    """`import *` and writes to another module's names: `setattr(mod, ...)`, `mod.name = ...`,
    `mod.name += ...`, `del mod.name`, where `mod` is a project module bound by an import."""
    tree = ast.parse(source)
    aliases = module_aliases(tree, package)

    def module_of(expr) -> str | None:  # `billing` or `core.events` as the project module it names
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.insert(0, expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name) or expr.id not in aliases:
            return None
        name = ".".join([aliases[expr.id], *parts])
        return name if name in MODULES else None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            found.append(f"{node.lineno} import *")
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args
                and module_of(node.args[0])):
            found.append(f"{node.lineno} setattr on {module_of(node.args[0])}")
        targets = (node.targets if isinstance(node, ast.Assign | ast.Delete)
                   else [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
        for target in targets:
            for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(element, ast.Attribute) and module_of(element.value):
                    found.append(f"{node.lineno} assigns {module_of(element.value)}.{element.attr}")
    return found


def test_the_patching_check_finds_each_kind_of_patch():
    """Architecture: the check below can fail: it finds each way of patching a module from outside."""
    source = """
from subscriptions import billing
import core.events
from core import money as m
from accounts.models import *

billing.subscribe = None
setattr(m, "ZERO", 1)
core.events.KINDS = {}
m.ROUND += 1
local = object()
local.attr = 1
"""
    assert sorted(patches(source, ["tests"])) == sorted([
        "5 import *", "7 assigns subscriptions.billing.subscribe", "8 setattr on core.money",
        "9 assigns core.events.KINDS", "10 assigns core.money.ROUND"])


def test_no_star_import_and_no_module_patched_from_outside():
    """Architecture: no `import *` (settings aside) and no module's name rebound from outside."""
    offenders = []
    for module, path in MODULES.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for found in patches(path.read_text(), package):
            if module.startswith("config.settings") and found.endswith("import *"):
                continue  # settings layer on base.py by design
            offenders.append(f"{module}:{found}")
    assert offenders == []


@pytest.mark.parametrize(("lower", "higher"), [
    ("core", ("accounts", "plans", "subscriptions", "invoices", "notifications", "api", "metrics", "ops")),
    ("accounts.services", ("subscriptions", "invoices.services", "notifications", "api", "ops")),
    ("accounts.usage", ("subscriptions.billing", "subscriptions.staff", "subscriptions.scheduler", "notifications")),
    ("invoices.services", ("subscriptions", "notifications", "api", "ops")),
    # ops (metrics at scrape time, the ledger check) sits above the engine and the ledger: it reads them,
    # and nothing of theirs reads it (the schedule is created by the setup_schedules command).
    ("subscriptions.scheduler", ("ops",)),
    ("subscriptions.billing", ("ops",)),
    ("invoices", ("ops",)),
    ("notifications", ("ops",)),
    ("metrics", ("ops",)),
    ("accounts", ("ops",)),
    ("subscriptions.pricing", ("django", "accounts", "invoices", "subscriptions.terms")),
    ("subscriptions.periods", ("django", "accounts", "invoices", "subscriptions.terms", "subscriptions.pricing")),
    ("invoices.totals", ("django", "accounts.models", "invoices.models", "invoices.services")),
    ("subscriptions.changes", ("django", "accounts", "invoices", "plans", "subscriptions.models")),
    ("subscriptions.terms", ("subscriptions.lifecycle", "subscriptions.charges", "subscriptions.billing")),
    ("subscriptions.lifecycle", ("subscriptions.charges", "subscriptions.billing", "subscriptions.staff",
                                 "subscriptions.scheduler", "subscriptions.renewals")),
    ("subscriptions.charges", ("subscriptions.billing", "subscriptions.staff", "subscriptions.scheduler",
                               "subscriptions.renewals", "subscriptions.dunning")),
    ("subscriptions.renewals", ("subscriptions.billing", "subscriptions.staff", "subscriptions.scheduler")),
    ("subscriptions.billing", ("subscriptions.staff", "subscriptions.scheduler")),
    ("subscriptions.staff", ("subscriptions.billing", "subscriptions.scheduler")),
])
def test_imports_flow_downwards(lower, higher):
    """Entry points → billing, staff, scheduler → renewals, dunning, overage → charges → lifecycle →
    terms, quotes, selectors → pricing → core. A module never imports one above it."""
    modules = [name for name in MODULES if name == lower or name.startswith(lower + ".")]
    upward = []
    for module in modules:
        path = MODULES[module]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if any(name == top or name.startswith(top + ".") for top in higher):
                    upward.append(f"{module}:{node.lineno} imports {name}")
        for target in GRAPH[module]:
            if any(target == top or target.startswith(top + ".") for top in higher):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_row_locks_of_the_engine_are_taken_only_through_the_lock_helpers():
    """One lock order (account → subscription → invoice → payment) holds by construction."""
    takers = sorted(module for module, path in MODULES.items()
                    if module.startswith("subscriptions.") and "select_for_update" in path.read_text())
    assert takers == ["subscriptions.locks"]


def test_statuses_of_subscriptions_and_accounts_are_assigned_only_by_the_lifecycle():
    """Safety: only subscriptions.lifecycle assigns a subscription's or account's status (its table)."""
    assigned = []
    for module, path in MODULES.items():
        if module == "subscriptions.lifecycle":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign | ast.AugAssign) else []
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (isinstance(element, ast.Attribute) and element.attr == "status"
                            and isinstance(element.value, ast.Name)
                            and element.value.id in {"sub", "subscription", "new", "free", "account", "locked"}):
                        assigned.append(f"{module}:{node.lineno}")
    assert assigned == []


def test_browser_tests_assert_with_waiting_expectations():
    """Browser tests never assert a bare `is_visible()` (it does not wait for the next page and
    flips in CI); they use Playwright's waiting `expect(...)` (issue 24)."""
    bare = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "tests" / "browser").glob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if "assert " in line and ".is_visible()" in line]
    assert bare == []
