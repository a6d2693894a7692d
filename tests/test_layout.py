"""The house rules of tracing_bench/, read from the code itself (no import is executed).

* Layers: docs/CONVENTIONS.md holds a ``| layer | modules |`` table; a module may import from its
  own layer or lower ones only, and no modules import each other in a loop. Every import counts,
  also one inside a function or under ``TYPE_CHECKING``.
* No module over 600 lines (as `ruff format` lays it out).
* Atomic renames (``os.replace``) happen in tracing_bench/files.py only.
* No test installs system packages (the Makefile's ``browser`` step does).
* No private name (``_x``, or a module ``_x``) is imported from another module, nor read as an
  attribute of an imported module.

The rules of one JSON writer, one file-name cleaner and no forwarding functions, and the
pre-commit hooks equal to ``make lint``, are checked the same way in tests/test_house_rules.py.

Each test lists every violation it finds, one per line, so a failure says what to move.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tracing_bench"
CONVENTIONS = ROOT / "docs" / "CONVENTIONS.md"
MAX_LINES = 600


# ---------------------------------------------------------------------------------- reading
def layer_table(text: str) -> dict[str, tuple[int, str]]:
    """``{module: (layer number, layer name)}`` from the ``| layer | modules |`` Markdown table.

    A modules cell is a comma list of module paths relative to the package (``probes/mi``,
    ``compare/gate``); a package (``tasks``) covers everything below it.
    """
    lines = [line.strip() for line in text.splitlines()]
    header = [i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*layer\s*\|\s*modules\s*\|", line)]
    if len(header) != 1:
        raise AssertionError(f"{CONVENTIONS} must hold exactly one '| layer | modules |' table, found {len(header)}")
    table: dict[str, tuple[int, str]] = {}
    for line in lines[header[0] + 2 :]:
        if not line.startswith("|"):
            break
        layer, modules = (cell.strip() for cell in line.strip("|").split("|"))
        m = re.fullmatch(r"(\d+)\s+(.+)", layer)
        if m is None:
            raise AssertionError(f"layer cell {layer!r}: expected '<number> <name>', e.g. '0 foundation'")
        for module in filter(None, (x.strip().strip("`").replace("/", ".") for x in modules.split(","))):
            if module in table:
                raise AssertionError(f"module {module} is listed twice in the layer table")
            table[module] = (int(m[1]), m[2])
    return table


def modules(package: Path) -> dict[str, Path]:
    """``{dotted name below the package ("" for its __init__): file}`` of every Python file."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(name: str, table: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    """The layer of a module: its own entry or its nearest listed parent package; a package that
    only hands names on takes the highest layer of the modules listed below it; the root package
    (``__version__``) is layer 0."""
    if name == "":
        return (0, "package root")
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in table:
            return table[".".join(parts[:i])]
    below = [table[k] for k in table if k.startswith(name + ".")]
    return max(below) if below else None


@dataclass(frozen=True)
class Import:
    """One import of a module of the package by another: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int
    names: tuple[str, ...]


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def imports(package: Path, pkg_name: str = "tracing_bench") -> Iterator[Import]:
    """Every import between modules of the package (at module level and inside functions)."""
    known = modules(package)

    def resolve(dotted: str) -> str | None:
        if dotted != pkg_name and not dotted.startswith(pkg_name + "."):
            return None
        rel = dotted[len(pkg_name) + 1 :]
        while rel not in known and rel:
            rel = rel.rpartition(".")[0]
        return rel

    for name, path in known.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = resolve(alias.name)
                    if target is not None:
                        yield Import(name, target, node.lineno, ())
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = [pkg_name, *filter(None, name.split("."))]
                    here = here if is_pkg else here[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join([*here, *filter(None, [base])])
                if resolve(base) is None:
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"[len(pkg_name) + 1 :]
                    if submodule in known:  # `from package import module`
                        yield Import(name, submodule, node.lineno, ())
                    else:
                        yield Import(name, resolve(base) or "", node.lineno, (alias.name,))


def layer_violations(package: Path, table: dict[str, tuple[int, str]]) -> list[str]:
    """Modules missing from the table, and imports from a lower layer to a higher one."""
    out = []
    for name, path in modules(package).items():
        if layer_of(name, table) is None:
            out.append(f"{path.relative_to(package.parent)} is in no layer of the table; add it to docs/CONVENTIONS.md")
    for imp in imports(package):
        src, dst = layer_of(imp.source, table), layer_of(imp.target, table)
        if src is not None and dst is not None and dst[0] > src[0]:
            out.append(
                f"{imp.source or '__init__'} (layer {src[0]} {src[1]}) imports {imp.target} (layer {dst[0]} "
                f"{dst[1]}) at line {imp.line}"
            )
    return out


def cycles(package: Path) -> list[list[str]]:
    """Groups of modules that import each other in a loop (strongly connected components, Tarjan)."""
    graph: dict[str, set[str]] = {name: set() for name in modules(package)}
    for imp in imports(package):
        if imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_violations(package: Path) -> list[str]:
    out = []
    by_pair = {(i.source, i.target): i.line for i in imports(package)}
    for group in cycles(package):
        ties = [f"{a} -> {b} (line {by_pair[a, b]})" for a in group for b in group if (a, b) in by_pair and a != b]
        out.append(f"import cycle {' <-> '.join(group)}: {'; '.join(ties)}")
    return out


def private_violations(package: Path) -> list[str]:
    """``from tracing_bench.x import _y`` (or a private module) in another module, and ``mod._y`` reads."""
    out = []
    for imp in imports(package):
        if imp.target == imp.source:
            continue
        if any(_private(p) for p in imp.target.split(".")):
            out.append(f"{imp.source} imports the private module {imp.target} (line {imp.line})")
        elif any(_private(n) for n in imp.names):
            out.append(
                f"{imp.source} imports private {', '.join(filter(_private, imp.names))} from {imp.target} "
                f"(line {imp.line})"
            )
    known = modules(package)
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases.update(
                    {
                        a.asname: a.name[len(package.name) + 1 :]
                        for a in node.names
                        if a.asname and a.name.startswith(package.name + ".")
                    }
                )
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package.name):
                for a in node.names:
                    full = f"{node.module}.{a.name}"[len(package.name) + 1 :]
                    if full in known:
                        aliases[a.asname or a.name] = full
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                out.append(f"{name} reads private {aliases[node.value.id]}.{node.attr} (line {node.lineno})")
    return out


# ------------------------------------------------------------------------------------ tests
def test_layer_table_is_in_the_conventions():
    table = layer_table(CONVENTIONS.read_text(encoding="utf-8"))
    layers = sorted({layer for layer, _ in table.values()})
    assert layers == list(range(len(layers))), f"layers must be numbered 0, 1, 2, ... without gaps: {layers}"
    assert {"errors", "files", "results", "cli"} <= set(table)


def test_imports_run_one_way_down_the_layers():
    violations = layer_violations(PACKAGE, layer_table(CONVENTIONS.read_text(encoding="utf-8")))
    assert not violations, "\n" + "\n".join(violations)


def test_every_module_in_the_table_exists():
    table = layer_table(CONVENTIONS.read_text(encoding="utf-8"))
    present = modules(PACKAGE)
    missing = [m for m in table if m not in present and not any(p.startswith(m + ".") for p in present)]
    assert not missing, "in docs/CONVENTIONS.md's layer table but not in tracing_bench/: " + ", ".join(missing)


def test_no_import_cycle():
    violations = cycle_violations(PACKAGE)
    assert not violations, "\n" + "\n".join(violations)


def test_no_module_over_600_lines():
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}
    over = [f"{p.relative_to(ROOT)}: {n} lines" for p, n in sizes.items() if n > MAX_LINES]
    assert not over, f"\nsplit by concept (at most {MAX_LINES} lines):\n" + "\n".join(over)


def test_atomic_renames_only_in_files_py():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "files.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "replace" and getattr(node.value, "id", None) == "os":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: os.replace")
            elif isinstance(node, ast.ImportFrom) and node.module == "os" and "replace" in {a.name for a in node.names}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from os import replace")
    assert not found, "\nwrite through tracing_bench.files (atomic_write*, replace_folder):\n" + "\n".join(found)


def test_no_test_installs_system_packages():
    needle = "apt" + "-get"  # spelled in two parts so this file does not match itself
    found = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "tests").rglob("*"))
        if p.is_file() and p.suffix in (".py", ".txt", ".cfg", ".ini", ".toml") and needle in p.read_text("utf-8")
    ]
    assert not found, f"{needle} belongs in the Makefile's set-up, not in tests: {', '.join(found)}"


def test_no_private_names_across_modules():
    violations = private_violations(PACKAGE)
    assert not violations, "\nmake the name public in its home module:\n" + "\n".join(violations)


# --------------------------------------------------------------------- the checker, checked
@pytest.fixture
def toy(tmp_path) -> Path:
    """A package ``tracing_bench`` with one of each fault: an unlisted module, imports up the layers
    (one inside a function), two cycles, a private name imported and one read off a module."""
    pkg = tmp_path / "tracing_bench"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": '__version__ = "0"\n',
        "low.py": "from tracing_bench import __version__\n\ndef f():\n    from tracing_bench import high\n",
        "high.py": "import tracing_bench.low as low\nx = low._secret\n",
        "sub/__init__.py": "",
        "sub/mid.py": "from . import leaf\nfrom ..low import f\n",
        "sub/leaf.py": "from tracing_bench.sub import mid\n",
        "sub/_hidden.py": "from tracing_bench.sub import leaf\n",
        "stray.py": "from tracing_bench.sub.mid import _helper\nimport tracing_bench.sub._hidden\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    return pkg


def test_the_checker_finds_each_fault(toy):
    table = layer_table("| layer | modules |\n|---|---|\n| 0 base | low, `sub/leaf` |\n| 1 top | high, sub/mid |\n")
    assert table == {"low": (0, "base"), "sub.leaf": (0, "base"), "high": (1, "top"), "sub.mid": (1, "top")}
    assert layer_of("sub", table) == (1, "top") and layer_of("", table) == (0, "package root")
    assert {(i.source, i.target, i.names) for i in imports(toy)} == {
        ("low", "", ("__version__",)),
        ("low", "high", ()),
        ("high", "low", ()),
        ("stray", "sub.mid", ("_helper",)),
        ("sub.mid", "sub.leaf", ()),
        ("sub.mid", "low", ("f",)),
        ("sub.leaf", "sub.mid", ()),
        ("stray", "sub._hidden", ()),
        ("sub._hidden", "sub.leaf", ()),
    }
    assert layer_violations(toy, table) == [
        "tracing_bench/stray.py is in no layer of the table; add it to docs/CONVENTIONS.md",
        "tracing_bench/sub/_hidden.py is in no layer of the table; add it to docs/CONVENTIONS.md",
        "low (layer 0 base) imports high (layer 1 top) at line 4",  # inside a function
        "sub.leaf (layer 0 base) imports sub.mid (layer 1 top) at line 1",
    ]
    assert cycles(toy) == [["high", "low"], ["sub.leaf", "sub.mid"]]
    assert cycle_violations(toy)[0] == "import cycle high <-> low: high -> low (line 1); low -> high (line 4)"
    assert private_violations(toy) == [
        "stray imports private _helper from sub.mid (line 1)",
        "stray imports the private module sub._hidden (line 2)",
        "high reads private low._secret (line 2)",
    ]
