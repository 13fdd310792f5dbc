"""papermill runs ferrocell notebooks with parameters.

The translator in python/ferrocell-papermill writes papermill's parameters as Rust
`let` bindings. These tests run the real `papermill` command on
notebooks/06-parameters.ipynb (papermill finds the translator through the package's
entry point, as it would for a user), and run the translator's Rust for every kind
of value papermill passes in a real ferrocell kernel, reading the values back.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernel_helpers as kh
from ferrocell_papermill import RustTranslationError, RustTranslator

PAPERMILL = Path(sys.executable).with_name("papermill")
NOTEBOOK = kh.REPO / "notebooks" / "06-parameters.ipynb"
LABEL = 'x "quoted" \\ y'
PAPERMILL_TIMEOUT = 600


def papermill(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the papermill command with the test run's JUPYTER_PATH and ferrocell
    directories (kernel_helpers.ensure_environment put them in os.environ)."""
    proc = subprocess.Popen([str(PAPERMILL), *args], cwd=cwd, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=PAPERMILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def stdout_of(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def result_of(cell) -> str:
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(results) == 1, cell.outputs
    return results[0].data["text/plain"]


def table(label: str, n: int, scale: float = 1.5) -> str:
    """What the notebook's table cell prints for these parameters."""
    rows = [label, f"{'i':>4} {'i*i':>6} {'i*scale':>10}"]
    rows += [f"{i:>4} {i * i:>6} {i * scale:>10.2f}" for i in range(1, n + 1)]
    return "\n".join(rows) + "\n"


def assert_ran_cleanly(done: subprocess.CompletedProcess, nb) -> None:
    assert done.returncode == 0, done.stderr
    assert nb.metadata.papermill.exception is not True
    errors = [o for cell in code_cells(nb) for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    assert "does not support parameter introspection" not in done.stderr
    assert "Passed unknown parameter" not in done.stderr


# ---------------------------------------------------------------------------
# The papermill command


def test_papermill_injects_and_runs_parameters(tmp_path):
    out = tmp_path / "out.ipynb"
    done = papermill(str(NOTEBOOK), str(out), "-k", "ferrocell", "--no-progress-bar",
                     "-p", "n", "4", "-p", "label", LABEL, cwd=tmp_path)
    nb = nbformat.read(out, as_version=4)
    assert_ran_cleanly(done, nb)

    cells = code_cells(nb)
    assert "parameters" in cells[0].metadata.tags
    injected = cells[1]
    assert injected.metadata.tags == ["injected-parameters"]
    assert injected.source == (
        '// Parameters\nlet n = 4;\nlet label = String::from("x \\"quoted\\" \\\\ y");\n')
    assert nb.metadata.papermill.parameters == {"n": 4, "label": LABEL}
    assert stdout_of(cells[2]) == table(LABEL, 4)
    assert result_of(cells[3]) == f"({len(LABEL)}, [1, 4, 9, 16])"


def test_papermill_runs_with_the_defaults(tmp_path):
    out = tmp_path / "out.ipynb"
    # No -k: papermill starts the kernel the notebook's kernelspec names.
    done = papermill(str(NOTEBOOK), str(out), "--no-progress-bar", cwd=tmp_path)
    nb = nbformat.read(out, as_version=4)
    assert_ran_cleanly(done, nb)

    cells = code_cells(nb)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    assert stdout_of(cells[1]) == table("demo", 3)
    assert result_of(cells[2]) == "(4, [1, 4, 9])"


def test_help_notebook_reads_the_parameters_cell(tmp_path):
    done = papermill("--help-notebook", str(NOTEBOOK), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "n: i32 (default 3)" in done.stdout and "rows of the table" in done.stdout
    assert 'label: String (default String::from("demo"))' in done.stdout
    assert "scale: f64 (default 1.5)" in done.stdout


def test_a_value_without_a_rust_type_stops_papermill_before_it_runs(tmp_path):
    out = tmp_path / "out.ipynb"
    done = papermill(str(NOTEBOOK), str(out), "--prepare-only", "-y", 'n: [1, "a"]', cwd=tmp_path)
    assert done.returncode != 0
    assert "RustTranslationError" in done.stderr and "cannot share one Rust type" in done.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------
# Each kind of value, run in a real kernel


def inject(kc, parameters: dict) -> str:
    """Run the cell papermill would inject for `parameters`; return its source."""
    source = RustTranslator.codify(parameters, "Parameters")
    reply, outputs = kh.run(kc, source)
    kh.ok(reply, outputs)
    return source


def printed(kc, code: str) -> list[str]:
    """The lines a later cell prints."""
    reply, outputs = kh.run(kc, code)
    kh.ok(reply, outputs)
    return kh.stream_text(outputs).splitlines()


def debug_and_type(names) -> str:
    """A cell that prints `{value:?} {type}` for each variable, one a line."""
    return "\n".join(
        f'println!("{{:?}} {{}}", {n}, std::any::type_name_of_val(&{n}));' for n in names)


INTS = [0, 4, -7, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63,
        2**64 - 1, 2**64, -(2**127), 2**128 - 1]


def int_type(value: int) -> str:
    for name, low, high in [("i32", -(2**31), 2**31 - 1), ("i64", -(2**63), 2**63 - 1),
                            ("u64", 0, 2**64 - 1), ("i128", -(2**127), 2**127 - 1)]:
        if low <= value <= high:
            return name
    return "u128"


def test_ints(kc):
    params = {f"v{i}": value for i, value in enumerate(INTS)}
    params["type"] = 7  # a keyword, written r#type
    source = inject(kc, params)
    assert "let v1 = 4;\n" in source and "let v2 = -7;\n" in source  # no suffix in i32
    assert "let r#type = 7;\n" in source
    lines = printed(kc, debug_and_type([f"v{i}" for i in range(len(INTS))] + ["r#type"]))
    assert lines == [f"{v} {int_type(v)}" for v in INTS] + ["7 i32"]


FLOATS = [0.5, 1e-9, 3.0, -0.0, 0.1 + 0.2, 1e16, 1e300, 5e-324, 1.7976931348623157e308,
          -123456789.125, math.inf, -math.inf, math.nan]


def test_floats(kc):
    params = {f"x{i}": value for i, value in enumerate(FLOATS)}
    source = inject(kc, params)
    for literal in ("let x0 = 0.5;", "let x1 = 1e-9;", "let x2 = 3.0;", "let x3 = -0.0;",
                    "let x10 = f64::INFINITY;", "let x11 = f64::NEG_INFINITY;",
                    "let x12 = f64::NAN;"):
        assert literal + "\n" in source
    lines = printed(kc, debug_and_type(params))
    assert len(lines) == len(FLOATS)
    for value, line in zip(FLOATS, lines):
        text, rust_type = line.split(" ")
        assert rust_type == "f64"
        back = float(text)
        if math.isnan(value):
            assert math.isnan(back), line
        else:
            assert back == value and math.copysign(1, back) == math.copysign(1, value), line


def test_bools(kc):
    source = inject(kc, {"yes": True, "no": False})
    assert source == "// Parameters\nlet yes = true;\nlet no = false;\n"
    assert printed(kc, debug_and_type(["yes", "no"])) == ["true bool", "false bool"]


STRINGS = [LABEL, "", "line\nbreak\r\nand\ttab", 'a "# raw-looking "## end', 'r#"x"#',
           "{} {0} {:?}", "nul\0 del\x7f esc\x1b bell\x07", "é 日本語 🦀 \u00a0nbsp",
           "\u202e bidi \u2066 isolate \u200b zero-width", "\\n is not a newline",
           "trailing backslash \\"]


def test_strings_round_trip_and_survive_a_runner_restart(kc):
    params = {f"s{i}": text for i, text in enumerate(STRINGS)}
    source = inject(kc, params)
    assert 'let s0 = String::from("x \\"quoted\\" \\\\ y");\n' in source
    hex_of = "\n".join(
        f'println!("{{}} {{}}", std::any::type_name_of_val(&{n}), '
        f'{n}.bytes().map(|b| format!("{{b:02x}}")).collect::<String>());' for n in params)
    expected = [f"alloc::string::String {text.encode('utf-8').hex()}".rstrip() for text in STRINGS]
    assert [line.rstrip() for line in printed(kc, hex_of)] == expected

    # Owned Strings come back from ferrocell's snapshot when the runner dies.
    reply, outputs = kh.run(kc, "std::process::abort();")
    assert reply["content"]["status"] == "error"
    assert [line.rstrip() for line in printed(kc, hex_of)] == expected


def test_none_and_empty_collections_take_the_type_of_their_default(kc):
    kh.ok(*kh.run(kc, "let cutoff: Option<f64> = Some(0.5);\n"
                      "let sizes: Vec<u64> = vec![1, 2];\n"
                      "let names: std::collections::BTreeMap<String, usize> = "
                      "std::collections::BTreeMap::new();\n"
                      "let maybe: Vec<Option<bool>> = vec![Some(true)];"))
    source = inject(kc, {"cutoff": None, "sizes": [], "names": {}, "maybe": [None, None]})
    assert "let cutoff = if false { cutoff } else { None };" in source
    lines = printed(kc, debug_and_type(["cutoff", "sizes", "names", "maybe"]) +
                    '\nprintln!("{}", cutoff.unwrap_or(2.0) * 2.0);')
    assert lines == [
        "None core::option::Option<f64>",
        "[] alloc::vec::Vec<u64>",
        "{} alloc::collections::btree::map::BTreeMap<alloc::string::String, usize>",
        "[None, None] alloc::vec::Vec<core::option::Option<bool>>",
        "4",
    ]
    # Without a default there is no type to take: rustc says which name is missing.
    reply, outputs = kh.run(kc, RustTranslator.codify({"undeclared": None}))
    assert reply["content"]["status"] == "error"
    assert "cannot find value `undeclared`" in kh.error_text(reply["content"])


def test_lists(kc):
    params = {
        "ints": [1, 2, 3],
        "wide": [1, 2**40],
        "numbers": [1, 2.5, -3],
        "texts": ["a", 'b "c"', ""],
        "nested": [[1, 2], [], [3]],
        "holes": [1, None, 3],
        "floats": [0.5, math.nan, math.inf],
        "flags": [True, False],
        "maps": [{"a": 1}, {}],
    }
    source = inject(kc, params)
    assert "let ints = vec![1, 2, 3];\n" in source
    assert "let numbers = vec![1.0, 2.5, -3.0];\n" in source
    assert printed(kc, debug_and_type(params)) == [
        "[1, 2, 3] alloc::vec::Vec<i32>",
        "[1, 1099511627776] alloc::vec::Vec<i64>",
        "[1.0, 2.5, -3.0] alloc::vec::Vec<f64>",
        '["a", "b \\"c\\"", ""] alloc::vec::Vec<alloc::string::String>',
        "[[1, 2], [], [3]] alloc::vec::Vec<alloc::vec::Vec<i32>>",
        "[Some(1), None, Some(3)] alloc::vec::Vec<core::option::Option<i32>>",
        "[0.5, NaN, inf] alloc::vec::Vec<f64>",
        "[true, false] alloc::vec::Vec<bool>",
        '[{"a": 1}, {}] alloc::vec::Vec<alloc::collections::btree::map::BTreeMap<'
        "alloc::string::String, i32>>",
    ]


def test_dicts(kc):
    params = {
        "counts": {"b": 2, "a": 1, "c": 3},
        "nested": {"x": {"y": [1, 2]}, "w": {}},
        "by_id": {2: "two", 1: "one"},
        "by_flag": {True: 0.5, False: 1},
        "sparse": {"a": None, "b": 1.5},
    }
    source = inject(kc, params)
    assert ('let counts = std::collections::BTreeMap::from([(String::from("b"), 2), '
            '(String::from("a"), 1), (String::from("c"), 3)]);\n') in source
    btree = "alloc::collections::btree::map::BTreeMap"
    string = "alloc::string::String"
    assert printed(kc, debug_and_type(params)) == [
        f'{{"a": 1, "b": 2, "c": 3}} {btree}<{string}, i32>',
        f'{{"w": {{}}, "x": {{"y": [1, 2]}}}} {btree}<{string}, {btree}<{string}, '
        "alloc::vec::Vec<i32>>>",
        f'{{1: "one", 2: "two"}} {btree}<i32, {string}>',
        f"{{false: 1.0, true: 0.5}} {btree}<bool, f64>",
        f'{{"a": None, "b": Some(1.5)}} {btree}<{string}, core::option::Option<f64>>',
    ]


# ---------------------------------------------------------------------------
# What the translator refuses, and its comments (no kernel needed)


@pytest.mark.parametrize("parameters, message", [
    ({"mixed": [1, "a"]}, "cannot share one Rust type"),
    ({"mixed": {"a": 1, "b": "x"}}, "cannot share one Rust type"),
    ({"deep": [[1], ["a"]]}, "cannot share one Rust type"),
    ({"keys": {1.5: "a"}}, "f64 cannot be a map key"),
    ({"huge": 2**128}, "does not fit any Rust integer type"),
    ({"text": "lone \udc80 surrogate"}, "lone surrogate"),
    ({"my-param": 1}, "not a Rust variable name"),
    ({"self": 1}, "not a Rust variable name"),
    ({"2fast": 1}, "not a Rust variable name"),
], ids=["list", "dict-values", "nested", "float-keys", "int", "surrogate", "dash", "self",
        "digit"])
def test_values_without_a_rust_form_are_refused(parameters, message):
    with pytest.raises(RustTranslationError, match=message):
        RustTranslator.codify(parameters)


def test_comments_are_rust_line_comments():
    assert RustTranslator.codify({}, "Injected\nParameters") == "// Injected\n// Parameters\n"
