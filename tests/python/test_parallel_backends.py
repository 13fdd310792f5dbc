"""What `%%parallel threads` and `%%parallel processes` promise alike: the same
cell on either backend hands out every item in order, reports a failed rank by
its number while keeping the others' values, and keeps output lines whole."""

from __future__ import annotations

import re
import textwrap

import pytest

from kernel_helpers import error_text, ok, run, stream_text, tables, value

# Each backend with the ranks its line test runs (threads are cheap: more of them).
BACKENDS = [("threads", 4), ("processes", 2)]


@pytest.mark.parametrize("backend", [b for b, _ in BACKENDS])
def test_each_hands_out_every_item_in_order_and_binds_them(kc, backend):
    ok(*run(kc, "let offset = 7u64;"))
    reply, outputs = run(kc, f"%%parallel {backend} 2 --each 0..100_000u64 --out shifted\nitem + offset",
                         timeout=60)
    ok(reply, outputs)
    [table] = tables(outputs)
    assert f"100000 items on 2 {backend}" in table["text/plain"]
    assert "…" in table["text/plain"]  # a long table shows its ends only
    assert value(kc, "shifted.len()") == "100000"
    assert value(kc, "shifted.iter().enumerate().all(|(i, v)| *v == i as u64 + 7)") == "true"


@pytest.mark.parametrize("backend", [b for b, _ in BACKENDS])
def test_a_panicking_rank_is_reported_and_the_others_kept(kc, backend):
    ok(*run(kc, "let kept = vec![1, 2, 3];"))
    reply, outputs = run(kc, textwrap.dedent(f"""\
        %%parallel {backend} 3
        if rank == 1 {{ panic!("rank one gives up"); }}
        kept.len() + rank
        """), timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ParallelError"
    text = error_text(reply["content"])
    assert "1 of 3 ranks failed" in text and "rank 1: panicked: rank one gives up" in text
    [table] = tables(outputs)
    assert re.search(r"^\s+0\s+3\s", table["text/plain"], re.M), table["text/plain"]
    assert re.search(r"^\s+2\s+5\s", table["text/plain"], re.M), table["text/plain"]
    assert "panicked: rank one gives up" in table["text/plain"]
    assert value(kc, "kept.len()") == "3"
    # The ranks (a worker process, too) survive a panic.
    ok(*run(kc, f"%%parallel {backend} 3\nrank"))


@pytest.mark.parametrize("backend,ranks", BACKENDS)
def test_output_lines_stay_whole_and_group_collects_them(kc, backend, ranks):
    reply, outputs = run(kc, textwrap.dedent(f"""\
        %%parallel {backend} {ranks}
        for i in 0..200 {{ println!("{{}}", format!("{{rank}}").repeat(60)); }}
        """), timeout=60)
    ok(reply, outputs)
    assert tables(outputs) == []  # a unit body shows no table
    lines = stream_text(outputs).splitlines()
    assert len(lines) == 200 * ranks
    for line in lines:
        m = re.fullmatch(r"\[(\d)\] (\d{60})", line)
        assert m and set(m.group(2)) == {m.group(1)}, line
    reply, outputs = run(kc, f"%%parallel {backend} 2 --group\n"
                             'for i in 0..3 { println!("rank {rank} line {i}"); }')
    ok(reply, outputs)
    text = stream_text(outputs)
    for r in range(2):
        block = text.split(f"[rank {r}]\n")[1].splitlines()[:3]
        assert block == [f"rank {r} line {i}" for i in range(3)], text
