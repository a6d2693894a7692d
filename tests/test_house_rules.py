"""House rules of tracing_bench/ beyond the layers, read from the code itself (nothing is imported).

* One JSON writer: ``json.dump`` and ``json.dumps`` are called in tracing_bench/files.py only;
  everything else writes or spells JSON through ``files.dumps_json`` / ``files.atomic_write_json``
  (NaN and inf as ``null``, never a bare ``NaN``). Reading (``json.loads``) is free.
* One name cleaner: a character whitelist turned into a file name (``re.sub`` / ``re.compile`` of a
  pattern that is one negated character class, or a per-character ``c if c.isalnum() else "_"``)
  lives in tracing_bench/files.py only (``safe_name``, ``model_slug``).
* No forwarders: a module-level function whose body (after its docstring) is one call of another
  function of the package that passes every parameter on unchanged and adds nothing but constants
  or names is a second name for the callee; call the callee. (Wrapping a library call, such as
  ``re.sub`` with the package's pattern, gives it a meaning here and is not forwarding.)
  Exempt: functions an lm-eval task YAML names (``!function utils.load``: lm-eval looks them up
  by name) and the few in ``FORWARDERS_KEPT``, each with its reason.

* Imports at the top: no function outside tracing_bench/cli/ imports a module of the package
  (``from tracing_bench.x import y`` or a relative import inside a ``def``); the cli/ package keeps
  its lazy imports so that ``tracing-bench --help`` stays fast. The few kept say why in
  ``LAZY_IMPORTS_KEPT``.

* The pre-commit hooks (.pre-commit-config.yaml) are the checks of ``make lint``, one for one.

Each test lists every violation it finds, one per line, with a self-test on a planted package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tracing_bench"
HOME = "files.py"  # the module that owns JSON writing and file-name cleaning

# module:function -> why a one-call function stays
FORWARDERS_KEPT = {
    "files:file_md5": "names the digest that provenance fields are named after (dataset_md5)",
    "files:file_sha256": "names the digest that provenance fields are named after (vector_sha256, file_sha256)",
    "compare.findings:write_findings": "the writer of findings.json, paired with read_findings: its layout "
    "(indent) is set in one place",
}

# module:function -> why it imports a module of the package when called (empty: none kept)
LAZY_IMPORTS_KEPT: dict[str, str] = {}
LAZY_ALLOWED = ("cli",)  # packages whose functions may import lazily (start-up time of the command)


def _sources(package: Path) -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return out


def _where(package: Path, path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"


def _in_file_order(found: list[str]) -> list[str]:
    return sorted(found, key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


# --------------------------------------------------------------------------- one JSON writer
def json_writes(package: Path) -> list[str]:
    """``json.dump(s)`` calls (under any alias) and ``from json import dump(s)`` outside files.py."""
    out = []
    for path, tree in _sources(package).values():
        if path == package / HOME:
            continue
        aliases = {
            a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name == "json"
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "json":
                for a in node.names:
                    if a.name in ("dump", "dumps"):
                        out.append(f"{_where(package, path, node)}: from json import {a.name}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("dump", "dumps")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in aliases
            ):
                out.append(f"{_where(package, path, node)}: {ast.unparse(node.func)}(...)")
    return _in_file_order(out)


# ------------------------------------------------------------------------ one name cleaner
_WHITELIST = re.compile(r"\[\^[^\]]*\][+*]?")  # a whole pattern that is one negated class: "all but these"
_CHAR_TESTS = {"isalnum", "isalpha", "isascii", "isidentifier", "isdigit"}


def name_cleaners(package: Path) -> list[str]:
    """Character-whitelist cleaners outside files.py: ``re.sub/subn/compile`` of a pattern that is one
    negated character class, and per-character ``x if x.isalnum() ... else y`` comprehensions."""
    out = []
    for path, tree in _sources(package).values():
        if path == package / HOME:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("sub", "subn", "compile")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and _WHITELIST.fullmatch(node.args[0].value)
            ):
                out.append(f"{_where(package, path, node)}: re.{node.func.attr}({node.args[0].value!r}, ...)")
            elif isinstance(node, (ast.GeneratorExp, ast.ListComp)) and isinstance(node.elt, ast.IfExp):
                tests = {
                    c.func.attr
                    for c in ast.walk(node.elt.test)
                    if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                }
                if tests & _CHAR_TESTS:
                    out.append(f"{_where(package, path, node)}: per-character cleaner ({', '.join(sorted(tests))})")
    return _in_file_order(out)


# ---------------------------------------------------------------------------- no forwarders
def yaml_functions(package: Path) -> set[tuple[Path, str]]:
    """``(python file, function)`` named by ``!function module.name`` in the package's YAML files."""
    found = set()
    for path in sorted(package.rglob("*")):
        if path.suffix in (".yaml", ".yml") or path.name.endswith("_yaml"):
            for mod, name in re.findall(r"!function\s+(\w+)\.(\w+)", path.read_text(encoding="utf-8")):
                found.add((path.parent / f"{mod}.py", name))
    return found


def _params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return names + [x.arg for x in (a.vararg, a.kwarg) if x is not None]


def _plain(node: ast.expr) -> bool:
    """A constant, a name or a dotted name: nothing computed."""
    if isinstance(node, ast.Starred):
        node = node.value
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, (ast.Constant, ast.Name))


def _package_names(tree: ast.Module, pkg_name: str) -> tuple[set[str], set[str]]:
    """(functions of the package callable by a bare name here, names bound to modules of the package)."""
    functions = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {
                a.asname or a.name.split(".")[0]
                for a in node.names
                if a.name == pkg_name or a.name.startswith(pkg_name + ".")
            }
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == pkg_name):
            functions |= {a.asname or a.name for a in node.names}  # a function, or a module of the package
            modules |= {a.asname or a.name for a in node.names}
    return functions, modules


def _callee_in_package(func: ast.expr, functions: set[str], modules: set[str]) -> bool:
    if isinstance(func, ast.Name):
        return func.id in functions
    root = func
    while isinstance(root, ast.Attribute):
        root = root.value
    return isinstance(root, ast.Name) and root.id in modules


def forwarders(package: Path, kept: dict[str, str] | None = None) -> list[str]:
    """Module-level functions whose body is one call of a function of the package that passes every
    parameter on unchanged and adds only constants or names."""
    kept = FORWARDERS_KEPT if kept is None else kept
    exempt = yaml_functions(package)
    out = []
    for module, (path, tree) in _sources(package).items():
        functions, modules = _package_names(tree, package.name)
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef) or (path, fn.name) in exempt or f"{module}:{fn.name}" in kept:
                continue
            body = fn.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            params = _params(fn)
            if len(body) != 1 or not isinstance(body[0], (ast.Return, ast.Expr)) or not params:
                continue
            call = body[0].value
            if not isinstance(call, ast.Call) or not _callee_in_package(call.func, functions, modules):
                continue
            args = [*call.args, *(k.value for k in call.keywords)]
            passed = {
                (a.value if isinstance(a, ast.Starred) else a).id
                for a in args
                if isinstance(a.value if isinstance(a, ast.Starred) else a, ast.Name)
            }
            if all(map(_plain, args)) and set(params) <= passed:
                out.append(f"{_where(package, path, fn)}: {fn.name} only forwards to {ast.unparse(call.func)}")
    return out


# ------------------------------------------------------------------------ imports at the top
def _imports_package(node: ast.Import | ast.ImportFrom, pkg_name: str) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == pkg_name
    return any(a.name.split(".")[0] == pkg_name for a in node.names)


def lazy_imports(package: Path, kept: dict[str, str] | None = None) -> list[str]:
    """Imports of the package's own modules inside a function, outside the packages of LAZY_ALLOWED.

    Each is named with its innermost function (``module:function`` is the key of LAZY_IMPORTS_KEPT).
    """
    kept = LAZY_IMPORTS_KEPT if kept is None else kept
    out = []

    def visit(node: ast.AST, module: str, path: Path, fn: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, module, path, child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                if fn is not None and f"{module}:{fn}" not in kept and _imports_package(child, package.name):
                    out.append(f"{_where(package, path, child)}: {fn} imports {ast.unparse(child)}")
            else:
                visit(child, module, path, fn)

    for module, (path, tree) in _sources(package).items():
        if module.split(".")[0] not in LAZY_ALLOWED:
            visit(tree, module, path, None)
    return _in_file_order(out)


# ------------------------------------------------------------------------------------ tests
def test_json_is_written_through_files_only():
    found = json_writes(PACKAGE)
    assert not found, "\nuse tracing_bench.files.dumps_json / atomic_write_json:\n" + "\n".join(found)


def test_file_names_are_cleaned_in_files_only():
    found = name_cleaners(PACKAGE)
    assert not found, "\nuse tracing_bench.files.safe_name (or model_slug):\n" + "\n".join(found)


def test_no_forwarding_functions():
    found = forwarders(PACKAGE)
    assert not found, "\ncall the callee (or list the function in FORWARDERS_KEPT with why):\n" + "\n".join(found)


def test_kept_forwarders_still_exist_and_still_forward():
    """An entry of FORWARDERS_KEPT that is gone or no longer a forwarder must leave the list."""
    found = forwarders(PACKAGE, {})
    stale = []
    for key in FORWARDERS_KEPT:
        module, name = key.split(":")
        path = f"tracing_bench/{module.replace('.', '/')}.py:"
        if not any(line.startswith(path) and f": {name} only forwards" in line for line in found):
            stale.append(key)
    assert not stale, f"not (or no longer) forwarders; drop them from FORWARDERS_KEPT: {', '.join(stale)}"


def test_no_package_imports_inside_functions():
    found = lazy_imports(PACKAGE)
    assert not found, (
        "\nmove the import to the top of the module (pass a collaborator in where a test must replace it), "
        "or list the function in LAZY_IMPORTS_KEPT with why:\n" + "\n".join(found)
    )


def test_kept_lazy_imports_are_still_lazy():
    """An entry of LAZY_IMPORTS_KEPT whose function no longer imports lazily must leave the list."""
    found = lazy_imports(PACKAGE, {})
    stale = [key for key in LAZY_IMPORTS_KEPT if not any(f": {key.split(':')[1]} imports " in f for f in found)]
    assert not stale, f"no longer lazy; drop them from LAZY_IMPORTS_KEPT: {', '.join(stale)}"


# --------------------------------------------------------------------- the checker, checked
def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "tracing_bench"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_the_json_rule_finds_each_writer(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "files.py": "import json\n\ndef dumps_json(o):\n    return json.dumps(o)\n",
            "a.py": "import json\nimport json as j\n\nx = json.dumps({})\ny = j.dump({}, open('f', 'w'))\n"
            "z = json.loads('{}')\n",
            "sub/b.py": "from json import dumps, loads\n",
        },
    )
    assert json_writes(pkg) == [
        "tracing_bench/a.py:4: json.dumps(...)",
        "tracing_bench/a.py:5: j.dump(...)",
        "tracing_bench/sub/b.py:1: from json import dumps",
    ]


def test_the_name_rule_finds_each_cleaner(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "files.py": "import re\n\ndef safe_name(t):\n    return re.sub(r'[^A-Za-z0-9._-]+', '_', t)\n",
            "a.py": "import re\n\ndef slug(t):\n    return re.sub(r'[^A-Za-z0-9]+', '__', t)\n"
            "P = re.compile('[^a-z]')\n"
            "def keep(t):\n    return re.sub(r'\\s+', ' ', t), re.sub('[^,]+;', '', t)\n",
            "b.py": "def safe(t):\n    return ''.join(c if c.isalnum() or c in '._' else '_' for c in t)\n"
            "def upper(t):\n    return [c.upper() if c.islower() else c for c in t]\n",
        },
    )
    assert name_cleaners(pkg) == [
        "tracing_bench/a.py:4: re.sub('[^A-Za-z0-9]+', ...)",
        "tracing_bench/a.py:5: re.compile('[^a-z]', ...)",
        "tracing_bench/b.py:2: per-character cleaner (isalnum)",
    ]


def test_the_forwarder_rule_finds_each_forwarder(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "a.py": (
                "import re\nfrom tracing_bench.x import write\nfrom . import files as f\n"
                "def write_json(obj, path):\n    '''doc'''\n    return write(path, obj, default=str)\n"  # forwarder
                "def log(*args, **kw):\n    f.log(*args, **kw)\n"  # forwarder
                "def clean(t):\n    return re.sub('x', 'y', t)\n"  # wraps a library function
                "def local(t):\n    return clean(t)\n"  # forwarder to a function of the same module
                "def partial(path):\n    return write(path, indent=1)\n"  # forwarder (constant added)
                "def kept(path):\n    return write(path, 'md5')\n"  # listed as kept
                "def computes(path):\n    return write(str(path))\n"  # computes an argument
                "def drops(path, extra):\n    return write(path)\n"  # not every parameter passed
                "def two(path):\n    x = 1\n    return write(path, x)\n"  # two statements
                "def none():\n    return write()\n"  # no parameter
                "def method(path):\n    return path.open()\n"  # calls a method of its parameter
                "class C:\n    def m(self, a):\n        return write(a)\n"  # not module level
            ),
            "tasks/t/utils.py": "from tracing_bench.common import load_split\n"
            "def load(metadata):\n    return load_split('t', metadata)\n"
            "def other(metadata):\n    return load_split('t', metadata)\n",
            "tasks/t/t.yaml": "custom_dataset: !function utils.load\n",
        },
    )
    assert yaml_functions(pkg) == {(pkg / "tasks/t/utils.py", "load")}
    assert forwarders(pkg, {"a:kept": "a reason"}) == [
        "tracing_bench/a.py:4: write_json only forwards to write",
        "tracing_bench/a.py:7: log only forwards to f.log",
        "tracing_bench/a.py:11: local only forwards to clean",
        "tracing_bench/a.py:13: partial only forwards to write",
        "tracing_bench/tasks/t/utils.py:4: other only forwards to load_split",
    ]


def test_the_import_rule_finds_each_lazy_import(tmp_path):
    pkg = _plant(
        tmp_path,
        {
            "a.py": "from tracing_bench.b import x\n\ndef f():\n    import json\n    from tracing_bench.b import y\n"
            "    return y\n\nclass C:\n    def m(self):\n        from .b import z\n"
            "        import tracing_bench.b\n",
            "b.py": "x = y = z = 1\n\ndef kept():\n    from tracing_bench.a import f\n",
            "cli/c.py": "def command():\n    from tracing_bench.a import f\n",
        },
    )
    assert lazy_imports(pkg, {}) == [
        "tracing_bench/a.py:5: f imports from tracing_bench.b import y",
        "tracing_bench/a.py:10: m imports from .b import z",
        "tracing_bench/a.py:11: m imports import tracing_bench.b",
        "tracing_bench/b.py:4: kept imports from tracing_bench.a import f",
    ]
    assert lazy_imports(pkg, {"b:kept": "a planted reason"}) == lazy_imports(pkg, {})[:3]


# --------------------------------------------------------------- pre-commit = make lint
def lint_commands(makefile: str) -> dict[str, set[str]]:
    """``{command: paths}`` of the ``lint:`` recipe (``$(BIN)/`` spelled ``.venv/bin/``)."""
    recipe = makefile.split("\nlint:", 1)[1].split("\n")[1:]
    out = {}
    for line in recipe:
        if not line.startswith("\t"):
            break
        words = line.strip().replace("$(BIN)/", ".venv/bin/").split()
        paths = {w for w in words if "/" not in w and (ROOT / w).is_dir()}
        out[" ".join(w for w in words if w not in paths)] = paths
    return out


def hook_commands(config: str) -> dict[str, set[str]]:
    """``{entry: folders its files pattern covers}`` of the local pre-commit hooks (none when the hook
    takes no file names)."""
    out = {}
    for repo in yaml.safe_load(config)["repos"]:
        for hook in repo["hooks"]:
            folders = set(re.findall(r"\w+", re.sub(r"^\^\(?|\)?/?$", "", hook.get("files", ""))))
            out[hook["entry"]] = folders if hook.get("pass_filenames", True) else set()
    return out


def test_pre_commit_hooks_are_make_lint():
    lint = lint_commands((ROOT / "Makefile").read_text(encoding="utf-8"))
    hooks = hook_commands((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert lint == hooks, f"\nmake lint: {lint}\npre-commit: {hooks}"
    assert {"ruff check", "ruff format --check", "mypy"} == {c.removeprefix(".venv/bin/") for c in lint}
