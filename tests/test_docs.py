"""The pages under docs/ hold together with the repository they describe.

- every relative link (and its #heading) points to something that exists;
- no page names the team's own notes file, which lives outside the repository;
- docs/paper.md keeps the section numbers that code comments cite, and its two tables carry the
  same numbers and marks as l0repro/report/paper.yaml, the report's copy;
- docs/testing.md's lists of tests (those that need data, the slow ones, those that need a GPU,
  those that hold on a CPU only) are the ones the test files define: read from the test files'
  syntax (fixtures, markers, parametrize, skip conditions), so no import of the suite is needed;
- docs/README.md indexes every page;
- docs/library.md's examples run, once the library API they show is in ``l0repro``.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
TESTS = REPO / "tests"
NOTES_FILE = "PAPER" + ".md"  # the team's notes outside the repository: never cited from docs/

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: Counter[str] = Counter()
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            out.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return out


def test_there_are_pages():
    names = {p.name for p in PAGES}
    assert {"README.md", "paper.md", "decisions.md", "training.md", "reliability.md", "gpu.md",
            "slurm.md", "library.md", "testing.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_an_existing_file(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_no_page_names_the_teams_notes_file():
    offenders = [str(p.relative_to(REPO)) for p in DOCS.rglob("*") if p.is_file()
                 and NOTES_FILE in p.read_text(errors="replace")]
    assert not offenders, f"{offenders} mention {NOTES_FILE}: cite docs/paper.md instead"


def test_the_index_links_every_page():
    index = (DOCS / "README.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(index)}
    missing = [p.name for p in PAGES if p.name != "README.md" and p.name not in linked]
    assert not missing, f"docs/README.md does not link {missing}"


# ----------------------------------------------------------------------------- docs/paper.md

PAPER = DOCS / "paper.md"
SECTIONS = ["## 1.", "## 2.", "### Table 1", "### Table 2", "### Figures", "## 3.", "## 3b.", "## 4.",
            "## 5."]
CITATION = re.compile(r"docs/paper\.md[,;:]?\s+(?:section\s+)?(\d+b?)\b")


def paper_headings() -> list[str]:
    return [line for line in FENCE.sub("", PAPER.read_text()).splitlines() if line.startswith("#")]


def test_paper_keeps_its_section_numbers_in_order():
    headings = paper_headings()
    found = [next((i for i, h in enumerate(headings) if h == s or h.startswith(s + " ")), None)
             for s in SECTIONS]
    assert None not in found, dict(zip(SECTIONS, found, strict=True))
    assert found == sorted(found), dict(zip(SECTIONS, found, strict=True))


def test_every_cited_paper_section_exists():
    numbers = {h.split()[1].rstrip(".") for h in paper_headings() if h.startswith("## ")}
    roots = [REPO / d for d in ("l0repro", "conf", "tests", "scripts", "results", "docs")]
    missing = []
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix not in {".py", ".yaml", ".md", ".sh"} or not path.is_file():
                continue
            for n in CITATION.findall(path.read_text(errors="replace")):
                if n not in numbers:
                    missing.append(f"{path.relative_to(REPO)} cites docs/paper.md {n}")
    assert not missing, "\n".join(missing) + f"\nsections: {sorted(numbers)}"


def markdown_table(text: str, after: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after the heading ``after``."""
    lines = text[text.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append(cells)
    return rows[1:]  # without the header


def cell(text: str) -> tuple[str, str]:
    """``"1.8 [?] (RigL quotes 1.6)"`` -> ``("1.8", "?")``."""
    m = re.match(r"(\S+) \[([v?])\]", text)
    assert m, f"a cell without a value and a [v]/[?] mark: {text!r}"
    return m.group(1), m.group(2)


def paper_yaml() -> dict:
    return yaml.safe_load((REPO / "l0repro/report/paper.yaml").read_text())


def test_table_1_matches_the_reports_data():
    spec = paper_yaml()["tables"]["table1"]
    rows = {(r[0], r[1]): r for r in markdown_table(PAPER.read_text(), "### Table 1")}
    assert len(rows) == len(spec["rows"]), sorted(rows)
    for row in spec["rows"]:
        md = rows.get((row["network"], row["method"]))
        assert md, f"docs/paper.md Table 1 has no row {row['network']}, {row['method']}"
        arch, arch_mark = cell(md[2])
        assert (arch, arch_mark) == (row["architecture"]["value"], row["architecture"]["mark"]), md
        err, err_mark = cell(md[3])
        assert (err, err_mark) == (f"{row['error']['value']:.{spec['decimals']}f}", row["error"]["mark"]), md
        if "alt" in row["error"]:
            assert f"{row['error']['alt']['value']:.{spec['decimals']}f}" in md[3], md


def test_table_2_matches_the_reports_data():
    spec = paper_yaml()["tables"]["table2"]
    rows = markdown_table(PAPER.read_text(), "### Table 2")
    for column, dataset in ((1, "cifar10"), (2, "cifar100")):
        ours = [cell(r[column]) for r in rows]
        theirs = [(f"{r['error']['value']:.{spec['decimals']}f}", r["error"]["mark"])
                  for r in spec["rows"] if r["dataset"] == dataset]
        assert ours == theirs, f"{dataset}: docs/paper.md {ours}, paper.yaml {theirs}"


# ------------------------------------------------------------- docs/testing.md's test lists

TESTING = DOCS / "testing.md"


def listed(kind: str) -> str:
    text = TESTING.read_text()
    start = f"<!-- the list of {kind}: checked by tests/test_docs.py -->"
    end = f"<!-- end of the list of {kind} -->"
    assert start in text and end in text, f"docs/testing.md lost the markers of the list of {kind}"
    return text[text.index(start) + len(start):text.index(end)]


def listed_by_file(kind: str) -> dict[str, dict[str, int]]:
    """``- `tests/x.py`: `test_a` (2 cases), `test_b``` -> {"tests/x.py": {"test_a": 2, "test_b": 1}}."""
    out: dict[str, dict[str, int]] = {}
    for bullet in re.split(r"^- ", listed(kind), flags=re.M)[1:]:
        path = re.match(r"`(tests/[\w/]+\.py)`:", bullet)
        assert path, f"a bullet of the list of {kind} that does not start with a test file: {bullet!r}"
        tests = re.findall(r"`(test_\w+)`(?:\s*\((\d+) cases\))?", bullet[path.end():])
        out[path.group(1)] = {name: int(n or 1) for name, n in tests}
    return out


def listed_node_ids(kind: str) -> set[str]:
    return set(re.findall(r"^- `(tests/[\w/]+\.py::test_\w+)`", listed(kind), flags=re.M))


def decorator_call(node: ast.expr, name: str) -> ast.Call | None:
    """``@pytest.mark.<name>(...)`` or ``@pytest.fixture(...)`` as a call, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
        return node
    return None


def has_marker(node: ast.expr, name: str) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == name


def literal_length(node: ast.expr, where: str) -> int:
    assert isinstance(node, (ast.List, ast.Tuple)), (
        f"{where}: parametrize/params is not a literal list, so tests/test_docs.py cannot count its "
        "cases; write the values as a literal list")
    return len(node.elts)


def parametrize_cases(func: ast.FunctionDef, where: str) -> int:
    cases = 1
    for dec in func.decorator_list:
        call = decorator_call(dec, "parametrize")
        if call:
            values = call.args[1] if len(call.args) > 1 else next(k.value for k in call.keywords
                                                                   if k.arg == "argvalues")
            cases *= literal_length(values, where)
    return cases


def fixture_of(func: ast.FunctionDef) -> ast.expr | None:
    for dec in func.decorator_list:
        if has_marker(dec, "fixture"):
            return dec
    return None


def fixture_kw(dec: ast.expr, key: str) -> ast.expr | None:
    if isinstance(dec, ast.Call):
        return next((k.value for k in dec.keywords if k.arg == key), None)
    return None


def module_marks(tree: ast.Module) -> list[ast.expr]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            value = node.value
            return list(value.elts) if isinstance(value, (ast.List, ast.Tuple)) else [value]
    return []


def conftest_data_fixtures() -> set[str]:
    import tests.conftest as conftest  # loaded by pytest already

    return set(conftest.DATA_FIXTURES)


def module_tests(path: Path) -> tuple[ast.Module, list[ast.FunctionDef], dict[str, ast.FunctionDef]]:
    tree = ast.parse(path.read_text(), str(path))
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")):
        funcs += [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    fixtures = {f.name: f for f in funcs if fixture_of(f)}
    tests = [f for f in funcs if f.name.startswith("test_") and not fixture_of(f)]
    return tree, tests, fixtures


def arg_names(func: ast.FunctionDef) -> list[str]:
    return [a.arg for a in func.args.args + func.args.kwonlyargs]


def used_fixtures(func: ast.FunctionDef) -> set[str]:
    names = set(arg_names(func))
    for dec in func.decorator_list:
        call = decorator_call(dec, "usefixtures")
        if call:
            names |= {a.value for a in call.args if isinstance(a, ast.Constant)}
    return names


def data_tests() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """The tests that need real data, from the test files' syntax: (make test's, the slow ones),
    each as {file: {test: cases}}. A test needs data when it asks for a data fixture, directly or
    through a fixture of its module (or an autouse one)."""
    data = conftest_data_fixtures()
    found: tuple[dict, dict] = ({}, {})
    for path in sorted(TESTS.glob("test_*.py")):
        tree, tests, fixtures = module_tests(path)
        needs = set(data)
        while True:  # fixtures of this module that need data, directly or through each other
            more = {n for n, f in fixtures.items() if used_fixtures(f) & needs} - needs
            if not more:
                break
            needs |= more
        autouse = any(isinstance(kw := fixture_kw(fixture_of(f), "autouse"), ast.Constant) and kw.value
                      for n, f in fixtures.items() if n in needs)
        slow_module = any(has_marker(m, "slow") for m in module_marks(tree))
        rel = str(path.relative_to(REPO))
        for test in tests:
            used = used_fixtures(test)
            if not (autouse or used & needs):
                continue
            cases = parametrize_cases(test, f"{rel}::{test.name}")
            for name in used & fixtures.keys():
                params = fixture_kw(fixture_of(fixtures[name]), "params")
                if params is not None:
                    cases *= literal_length(params, f"{rel}::{name}")
            slow = slow_module or any(has_marker(d, "slow") for d in test.decorator_list)
            found[slow].setdefault(rel, {})[test.name] = cases
    return found


def test_the_list_of_tests_that_need_data_is_the_test_files():
    quick, slow = data_tests()
    assert quick, "found no test that asks for a data fixture: has conftest's DATA_FIXTURES moved?"
    assert listed_by_file("data tests") == quick, (
        "docs/testing.md's list of data tests differs from the test files; it should read:\n"
        + format_listing(quick))
    assert listed_by_file("slow tests") == slow, format_listing(slow)
    count = sum(sum(t.values()) for t in quick.values())
    assert re.search(rf"skips\s+the\s+{count}\s+tests\s+that\s+need\s+real\s+data", TESTING.read_text()), (
        f"docs/testing.md should say that make test skips the {count} tests that need real data")


def format_listing(by_file: dict[str, dict[str, int]]) -> str:
    return "\n".join(f"- `{f}`: " + ", ".join(f"`{t}`" + (f" ({n} cases)" if n > 1 else "")
                                               for t, n in tests.items())
                     for f, tests in sorted(by_file.items()))


ON_A_CPU = {  # what a skip condition sees on a machine without a GPU under the default --device cpu
    "torch": SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)),
    "test_device": SimpleNamespace(type="cpu"), "device": SimpleNamespace(type="cpu"),
}


def skips_on_a_cpu(condition: ast.expr) -> bool:
    """Whether a skip condition that is about the device holds on a CPU-only machine."""
    source = ast.unparse(condition)
    if "cuda" not in source and "device" not in source:
        return False
    try:
        return bool(eval(compile(ast.Expression(condition), "<skip condition>", "eval"), dict(ON_A_CPU)))
    except (NameError, AttributeError):
        return False  # a condition about something else


def is_skip_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "skip"


def gpu_tests() -> set[str]:
    """Tests that skip without a GPU: a ``skipif`` mark, or an ``if <cond>: pytest.skip(...)`` in
    the body, whose device condition holds on a CPU."""
    found = set()
    for path in sorted(TESTS.glob("test_*.py")):
        tree, tests, _ = module_tests(path)
        module_skip = any(decorator_call(m, "skipif") and skips_on_a_cpu(m.args[0])
                          for m in module_marks(tree))
        for test in tests:
            marks = [d for d in test.decorator_list if decorator_call(d, "skipif")]
            ifs = [n for n in ast.walk(test) if isinstance(n, ast.If)
                   and any(is_skip_call(c) for stmt in n.body for c in ast.walk(stmt))]
            if module_skip or any(skips_on_a_cpu(m.args[0]) for m in marks) \
                    or any(skips_on_a_cpu(n.test) for n in ifs):
                found.add(f"{path.relative_to(REPO)}::{test.name}")
    return found


def test_the_list_of_tests_that_need_a_gpu_is_the_test_files():
    found = gpu_tests()
    assert found, "found no test that skips without a GPU"
    assert listed_node_ids("GPU tests") == found, (
        "docs/testing.md's list of GPU tests differs from the tests' skip conditions; it should name:\n"
        + "\n".join(sorted(found)))


def test_the_device_option_lists_match_the_page():
    from tests import device_option

    cpu_only = {f"tests/{key}" for key in device_option.CPU_ONLY}
    assert listed_node_ids("CPU-only tests") == cpu_only, sorted(cpu_only)
    section = TESTING.read_text().split("## Tests that need a GPU")[1]
    missing = [m for m in device_option.DEVICE_MODULES if f"`tests/{m}`" not in section]
    assert not missing, f"docs/testing.md does not name the device modules {missing}"


# ---------------------------------------------------------------------- docs/library.md

LIBRARY_API = ("L0Linear", "L0Conv2d", "L0Regularizer", "expected_flops", "pruned_flops", "dense_flops",
               "compact", "save_compact", "load_compact")


def library_blocks(published: bool) -> list[str]:
    """docs/library.md's python blocks: those that build their own model, or (``published``)
    those that load a published run from results/."""
    import l0repro

    absent = [name for name in LIBRARY_API if not hasattr(l0repro, name)]
    if absent:
        pytest.skip(f"docs/library.md shows the library API, but l0repro does not export {absent} yet")
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / "library.md").read_text(), re.S | re.M)
    chosen = [b for b in blocks if ("results/" in b) == published]
    assert chosen, f"docs/library.md has no python block {'with' if published else 'without'} results/"
    return chosen


def run_blocks(blocks: list[str], cwd: Path, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/library.md, python block {i + 1}", "exec"), namespace)
    return namespace


def test_library_examples_run(tmp_path, monkeypatch):
    ns = run_blocks(library_blocks(published=False), tmp_path, monkeypatch)
    loss = float(ns["loss"].detach())
    assert math.isfinite(loss) and loss > 0
    assert all(p.grad is not None for p in ns["model"].parameters())
    assert 0 < float(ns["pruned"]) <= float(ns["dense"])
    assert 0 < float(torch.as_tensor(ns["expected"]).detach()) <= float(ns["dense"])
    assert "L0" not in repr(ns["small"]) and "L0" not in repr(ns["again"])
    assert os.path.exists(tmp_path / "small.pt")


def test_library_example_loads_a_published_compact_network(monkeypatch):
    ns = run_blocks(library_blocks(published=True), REPO, monkeypatch)
    assert ns["logits"].shape == (5, 10)
    assert "L0" not in repr(ns["published"])


BAD_INPUT_EXAMPLES = {"table1/nope"}  # reliability.md's unknown experiment, there to be refused


def test_the_names_the_pages_use_for_experiments_exist():
    """Every `table1/...`-style experiment a page names is a config under conf/experiment/."""
    configs = {str(p.relative_to(REPO / "conf/experiment").with_suffix(""))
               for p in (REPO / "conf/experiment").rglob("*.yaml")}
    groups = {c.split("/")[0] for c in configs}
    named = re.compile(r"`(?:experiment=)?((?:" + "|".join(sorted(groups)) + r")/[\w.]+)`")
    missing = set()
    for page in PAGES:
        for name in named.findall(page.read_text()):
            if name in BAD_INPUT_EXAMPLES:
                continue
            if name not in configs and not any(name.startswith(f"{c}/") for c in configs):
                missing.add(f"{page.name}: {name}")
    assert not missing, sorted(missing)



def test_importing_the_library_loads_none_of_the_suites_packages():
    """docs/library.md: ``import l0repro`` loads no hydra, wandb, pandas, matplotlib or torchvision."""
    import subprocess
    import sys

    heavy = ("hydra", "wandb", "pandas", "matplotlib", "torchvision")
    code = ("import sys, l0repro; loaded = {m.split('.')[0] for m in sys.modules}; "
            f"print(' '.join(sorted(loaded & set({heavy!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"import l0repro loaded {proc.stdout.strip()}"
