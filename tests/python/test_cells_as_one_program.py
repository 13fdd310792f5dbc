"""Property: random sequences of cells, drawn from a small grammar (let, let mut,
assignment, shadowing, `?` failures, panics, fn redefinitions), leave the session with
the same values as the same statements run as one Rust program compiled by rustc.

In the program, a cell's statements after its failure are left out: a cell that
stops at a `?` keeps what it did before (its bindings and changes), and a panicking
cell keeps its changes to earlier variables (the grammar puts a panic only before
any `let` of its cell, where a panic and a `?` agree). A `fn` defined again opens
a block around the rest of the program, whose `fn` shadows the earlier one, as a
later cell's definition replaces an earlier cell's.
"""

from __future__ import annotations

import random
import subprocess

import pytest

from kernel_helpers import error_text, of_type, run, value

NAMES = ["a", "b", "c", "d"]
SEEDS = range(10)
CELLS = 10


class Program:
    """Draws cells and keeps the one-program version alongside."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.mutable: dict[str, bool] = {}  # the variables defined so far
        self.has_f = False
        self.cells: list[str] = []
        self.program: list[str] = []
        self.blocks = 0

    def expr(self) -> str:
        r = self.rng
        # Typed literals: a variable's type is settled at the end of its cell (an
        # untyped literal is an i32 there), while one program would infer it from
        # later uses.
        terms = [f"{r.randint(-9, 9)}i64"]
        if self.mutable:
            terms.append(r.choice(sorted(self.mutable)))
        if self.has_f:
            terms.append("f()")
        r.shuffle(terms)
        return f" {r.choice(['+', '-'])} ".join(terms[:2]) if len(terms) > 1 else terms[0]

    def cell(self) -> None:
        r = self.rng
        lines: list[str] = []
        kept: list[str] = []  # what the one program runs of this cell
        items: list[str] = []  # its fns, which the cell defines before it runs
        bound_here = False
        failed = False
        for _ in range(r.randint(1, 4)):
            kinds = ["let", "let mut"] + ([] if items else ["fn"])
            assignable = [n for n, m in self.mutable.items() if m]
            if assignable:
                kinds += ["assign", "add"]
            kinds += ["try"]
            if not bound_here:
                kinds += ["panic"]
            kind = r.choice(kinds)
            if kind in ("let", "let mut"):
                name = r.choice(NAMES)
                line = f"{kind} {name} = {self.expr()};"
                self.mutable[name] = kind == "let mut"
                bound_here = True
            elif kind == "assign":
                line = f"{r.choice(assignable)} = {self.expr()};"
            elif kind == "add":
                line = f"{r.choice(assignable)} += {self.expr()};"
            elif kind == "fn":
                line = f"fn f() -> i64 {{ {r.randint(-9, 9)} }}"
            elif kind == "try":
                failing = r.random() < 0.5
                text = "oops" if failing else str(r.randint(0, 9))
                line = f'let _ = "{text}".parse::<i64>()?;'
                failed = failing
            else:  # panic
                line = 'if true { panic!("stop"); }'
                failed = True
            lines.append(line)
            if failed:
                break
            if kind == "fn":
                self.has_f = True
                items.append(line)
            elif kind != "try":
                kept.append(line)
        self.cells.append("\n".join(lines))
        # A cell's fn is defined before its statements run (they all see it), and
        # stays defined when they fail; in the program each opens a block.
        for item in items:
            self.program.append("{ " + item)
            self.blocks += 1
        self.program.extend(kept)

    def rust_program(self, final: str) -> str:
        body = "\n".join(self.program)
        return f"fn main() {{\n{body}\nprintln!(\"{{:?}}\", {final});\n{'}' * self.blocks}\n}}\n"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_cells_end_like_one_rust_program(start_kernel, tmp_path, seed):
    p = Program(seed)
    for _ in range(CELLS):
        p.cell()
    if not p.mutable:
        p.cells.append("let a = 0;")
        p.program.append("let a = 0;")
        p.mutable["a"] = False
    names = sorted(p.mutable)
    final = "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"

    source = tmp_path / "one.rs"
    source.write_text(p.rust_program(final))
    binary = tmp_path / "one"
    build = subprocess.run(["rustc", "--edition=2024", "-A", "warnings", "-o", str(binary), str(source)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr + source.read_text()
    expected = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.strip()

    _, kc = start_kernel()
    transcript = []
    for cell in p.cells:
        reply, outputs = run(kc, cell)
        status = reply["content"]["status"]
        transcript.append(f"{cell}\n  -> {status}")
        if status == "error":
            ename = reply["content"]["ename"]
            assert ename in ("Error", "Panic"), (error_text(of_type(outputs, "error")[0]),
                                                 "\n".join(transcript))
            assert "lost" not in error_text(of_type(outputs, "error")[0]), "\n".join(transcript)
    got = value(kc, final)
    assert got == expected, "\n".join(transcript) + "\n\nprogram:\n" + source.read_text()
