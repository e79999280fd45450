"""The package's architecture, kept by tests: imports flow one way, private
names stay in their package, files and functions stay small enough to read."""

import ast
from pathlib import Path

import pytest

import jaxprop as jp

PACKAGE = Path(jp.__file__).parent

# Units (a subpackage or a top-level module) from the ground floor up: a unit
# imports only from units on lower tiers, and from itself.
TIERS = [
    ["_validate", "_devices"],
    ["_core"],
    ["_inputs", "_io", "layers"],
    ["_network"],
    ["rules", "data"],
    ["_vjp", "_metrics", "_checks"],
    ["_per_example"],
    ["curvature"],
    ["_engine"],
    ["_experiment", "reference"],
    ["_cli"],
    ["__main__", "__init__"],
]
TIER = {unit: i for i, units in enumerate(TIERS) for unit in units}
# jaxprop.__version__, read where a run folder records it (lazily, at run time).
TIER["__version__"] = -1
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules():
    """(dotted name within jaxprop as a list, path, parsed tree) for every module."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        yield parts, path, ast.parse(path.read_text(), str(path))


def _unit(parts: list[str]) -> str:
    return parts[0]


def _imports(parts, path, tree):
    """(imported module as a list of parts within jaxprop, names) of every import
    of jaxprop code, relative or absolute: ``from m import a, b`` gives (m, [a, b]),
    ``import jaxprop.m as z`` gives (m, [])."""
    package = parts[:-1]  # an __init__'s parts end with "__init__" too
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module = alias.name.split(".")
                if module[0] == "jaxprop":
                    yield module[1:] or ["__init__"], []
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            module = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "jaxprop":
            module = node.module.split(".")[1:]
        else:
            continue
        names = [a.name for a in node.names]
        if not module:  # from jaxprop import x: a module, or a root attribute
            for name in names:
                yield [name], []
        else:
            yield module, names


def test_imports_flow_one_way():
    wrong = []
    for parts, path, tree in _modules():
        unit = _unit(parts)
        for module, _ in _imports(parts, path, tree):
            other = _unit(module)
            if other != unit and TIER[other] >= TIER[unit]:
                wrong.append(f"{'.'.join(parts)} imports {'.'.join(module)}")
    assert not wrong, "\n".join(wrong)


def _private(name: str) -> bool:
    return name.startswith("_") and name != "__version__"


def test_no_private_name_crosses_packages():
    """Across units, neither an imported name nor a module on the path to it
    (past the unit itself, e.g. ``_engine``) starts with ``_``."""
    wrong = []
    for parts, path, tree in _modules():
        unit = _unit(parts)
        for module, names in _imports(parts, path, tree):
            if _unit(module) == unit:
                continue
            private = [p for p in module[1:] if _private(p)]
            private += [n for n in names if _private(n)]
            if private:
                wrong.append(
                    f"{'.'.join(parts)} imports {private} from {'.'.join(module)}"
                )
    assert not wrong, "\n".join(wrong)


# Underscore attributes of other code that jaxprop reads on purpose: a
# NamedTuple's methods, CPython's sys._getframe (a warning's stacklevel) and
# tqdm's clock bar._time (the one its rate reads).
FOREIGN_ATTRIBUTES = {
    *("_replace", "_asdict", "_fields", "_make", "_field_defaults"),
    *("_getframe", "_time"),
}


def _defined(tree) -> set[str]:
    """Every name a module defines or binds: functions, classes, methods,
    assigned names and attributes, fields, arguments, imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name | ast.Attribute) and isinstance(
            node.ctx, ast.Store
        ):
            names.add(node.id if isinstance(node, ast.Name) else node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


def test_no_private_attribute_crosses_packages():
    """``obj._name`` (not a dunder) outside ``self``/``cls`` must name something
    its own unit defines.

    A check by name, not by type: it cannot tell which object ``obj`` is, so a
    ``_name`` that the unit defines for one class passes on any object, and it
    sees neither ``getattr(obj, "_name")`` nor private names reached through
    ``self`` (``self.trainer._x`` is caught, ``self._x`` is not). It catches
    the common slip: one package calling another's private method or field.
    """
    modules = list(_modules())
    defined = {}
    for parts, _, tree in modules:
        defined.setdefault(_unit(parts), set()).update(_defined(tree))
    wrong = []
    for parts, _, tree in modules:
        unit = _unit(parts)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if name in defined[unit] or name in FOREIGN_ATTRIBUTES:
                continue
            wrong.append(f"{'.'.join(parts)}:{node.lineno} reads .{name}")
    assert not wrong, "\n".join(wrong)


def _function_lines(node) -> int:
    """Lines of a function's body, its docstring left out."""
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    ):
        if isinstance(body[0].value.value, str):
            body = body[1:]
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def test_files_and_functions_stay_readable():
    long = []
    for _, path, tree in _modules():
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            long.append(f"{path.relative_to(PACKAGE)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _function_lines(node)
                if n > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    long.append(f"{where} {node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_every_unit_has_a_tier():
    units = {_unit(parts) for parts, _, _ in _modules()}
    assert units <= TIER.keys(), units - TIER.keys()


def test_public_registries_are_read_only():
    """A registry changed by one script would change every net built after it."""

    for registry in (jp.ACTIVATIONS, jp.COSTS, jp.DEFAULT_SCHEME, jp.TARGET_KINDS,
                     jp.rules.RULES):  # fmt: skip
        with pytest.raises(TypeError):
            registry["mine"] = None


def test_alignment_lives_with_the_rules():
    assert jp.rules.alignment is jp.alignment
    assert jp.rules.Alignment is jp.Alignment


def test_the_heavy_list_names_tests_that_exist():
    """Every node id in tests/heavy.txt is a test function of its module (a
    renamed test would otherwise fall back into the default suite)."""
    from tests.conftest import heavy_tests

    for node in heavy_tests():
        path, name = node.split("::")
        tree = ast.parse((PACKAGE.parent / path).read_text())
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name.split("[")[0] in functions, node
