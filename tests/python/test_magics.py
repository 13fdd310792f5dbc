"""The timing magics and %opt, the way IPython users know them."""

from __future__ import annotations

import re
import time

from kernel_helpers import ok, result_text, run, stream_text

TIMEIT = re.compile(
    r"^\d+(\.\d+)? (s|ms|µs|ns) ± \d+(\.\d+)? (s|ms|µs|ns) per loop "
    r"\(mean ± std\. dev\. of (\d+) runs?, ([\d,]+) loops? each\)$"
)


def test_timeit_line_form_with_loops_and_runs(kc):
    ok(*run(kc, "fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }"))
    reply, outputs = run(kc, "%timeit -n 50 -r 3 fib(15)")
    ok(reply, outputs)
    line = stream_text(outputs).strip()
    m = TIMEIT.match(line)
    assert m, line
    assert m.group(5) == "3" and m.group(6) == "50"
    assert result_text(outputs) is None


def test_timeit_cell_form_chooses_the_loop_count(kc):
    code = "%%timeit\nlet v: Vec<u64> = (0..100).collect();\nv.iter().sum::<u64>()"
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    m = TIMEIT.match(stream_text(outputs).strip())
    assert m, stream_text(outputs)
    assert m.group(5) == "7"
    loops = int(m.group(6).replace(",", ""))
    # A sub-microsecond body needs many loops to fill 0.2 s.
    assert loops >= 1000


def test_time_shows_cpu_wall_and_compile_time_and_keeps_the_value(kc):
    reply, outputs = run(kc, "%%time\nlet s: u64 = (0..1000u64).sum();\ns")
    ok(reply, outputs)
    text = stream_text(outputs)
    assert re.search(r"^Compile time: ", text, re.M), text
    assert re.search(r"^CPU time: ", text, re.M), text
    assert re.search(r"^Wall time: ", text, re.M), text
    assert result_text(outputs) == "499500"
    # The same cell again comes from the cache.
    _, outputs = run(kc, "%%time\nlet s: u64 = (0..1000u64).sum();\ns")
    assert "Compile time: none (cached)" in stream_text(outputs)


def test_time_line_form(kc):
    reply, outputs = run(kc, "%time 6 * 7")
    ok(reply, outputs)
    assert result_text(outputs) == "42"
    assert "Wall time: " in stream_text(outputs)


def test_bad_timeit_flags_are_a_clear_error(kc):
    reply, outputs = run(kc, "%timeit -n lots 1 + 1")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "MagicError"
    assert "-n" in reply["content"]["evalue"]


def test_opt_shows_and_sets_the_level(kc):
    _, outputs = run(kc, "%opt")
    assert stream_text(outputs).strip().startswith("opt-level ")
    ok(*run(kc, "%opt 3"))
    _, outputs = run(kc, "%opt")
    assert stream_text(outputs).strip().startswith("opt-level 3 (pinned by %opt")
    assert result_text(run(kc, "%opt 0\n2 + 2")[1]) == "4"


def test_unknown_magic_names_itself(kc):
    reply, _ = run(kc, "%frobnicate 3")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UnknownMagic"
    assert "%frobnicate" in reply["content"]["evalue"]


def test_vars_lists_name_size_and_type_and_reset_clears(kc):
    _, outputs = run(kc, "%vars")
    assert stream_text(outputs).strip() == "No variables."
    ok(*run(kc, 'let v = vec![1u8, 2, 3];\nlet name = String::from("x");\nfn helper() -> u8 { 1 }'))
    # Snapshots are written in the background: "saving" until then, never "none".
    deadline = time.monotonic() + 30
    while True:
        _, outputs = run(kc, "%who")
        lines = stream_text(outputs).strip().splitlines()
        assert lines[0].split() == ["Variable", "Size", "Snapshot", "Type"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows["v"][3] != "none", rows
        if rows["v"][3] != "saving" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows["v"][-1] == "std::vec::Vec<u8>" and rows["v"][1:3] == ["24", "B"]
    # Its crash-safe copy: bincode's length prefix and the three bytes.
    assert rows["v"][3:5] == ["11", "B"]
    assert rows["name"][-1] == "std::string::String"
    # Listing does not disturb the variables.
    assert result_text(run(kc, "v.len()")[1]) == "3"
    ok(*run(kc, "%reset"))
    assert run(kc, "v.len()")[0]["content"]["status"] == "error"
    assert run(kc, "helper()")[0]["content"]["status"] == "error"
    assert stream_text(run(kc, "%vars")[1]).strip() == "No variables."
