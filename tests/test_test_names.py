"""Every test says what it protects: its name carries the policy rule it proves (`test_upg2_...`,
`..._ren3_...`, `test_d1_...`), or it has a docstring that names the rule or, for infrastructure, says
in plain words what it protects. Read from the source with ast, like tests/test_architecture.py."""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# A rule ID as it appears in a test name: upg2, ren3, d1 ... between underscores (after `test_`).
RULE_IN_NAME = re.compile(
    r"(^|_)(d|cat|tri|upg|dwn|can|ren|dun|sus|add|use|inv|ref|pay|tax|not|acc)\d+(_|$)", re.IGNORECASE
)

# tests/test_architecture.py is being edited on another branch; its tests get their docstrings there.
# Remove an entry here once its test is documented.
PENDING: set[str] = set()  # tests allowed to say nothing yet (none)


def collected_tests() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """("tests/path.py::test_name", node) for every test function under tests/, methods included."""
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                found.append((f"{path.relative_to(ROOT).as_posix()}::{node.name}", node))
    return found


def says_what_it_protects(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return bool(RULE_IN_NAME.search(node.name[len("test_"):]) or (ast.get_docstring(node) or "").strip())


def test_every_test_names_its_rule_or_says_what_it_protects():
    """Every test either carries a rule ID in its name or has a docstring saying what it protects,
    so that a failing test tells the reader which promise broke."""
    found = collected_tests()
    assert len(found) > 400, "the walk missed the test files"
    silent = [name for name, node in found if name not in PENDING and not says_what_it_protects(node)]
    assert silent == [], "Name the rule in the test's name or give it a docstring:\n" + "\n".join(silent)


def test_the_pending_list_names_only_tests_that_exist():
    """The exemptions above cannot outlive their tests: a renamed or deleted test must leave the list."""
    names = {name for name, _node in collected_tests()}
    assert sorted(PENDING - names) == []


def test_the_rule_pattern_reads_names_as_the_guide_writes_them():
    """The name pattern accepts rule IDs where the guide puts them and nothing that merely looks alike."""
    def named(name: str) -> bool:
        return bool(RULE_IN_NAME.search(name[len("test_"):]))

    assert named("test_upg2_same_cycle_upgrade_prorates_by_days")
    assert named("test_sign_up_ren3_runs_once")
    assert named("test_d1")
    assert not named("test_ref_a_refund_through_the_engine_reaches_stripe")  # a rule needs its number
    assert not named("test_address_is_saved")  # "add" inside a word is not ADD-n
    assert not named("test_use2x_counts")  # letters right after the digits: not a rule
