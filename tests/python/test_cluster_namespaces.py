"""Engine namespaces: `--persist --out` gathers a persist cell's values, `%cluster
pull` and `push` move serde values between the session and every engine, and
`--scatter` gives each rank its part of a Vec (ipyparallel's gather, pull, push
and scatter)."""

from __future__ import annotations

import textwrap

from kernel_helpers import error_text, ok, run, stream_text, tables, value
from cluster_helpers import start_cluster


def test_persist_out_gathers_each_engines_value_in_rank_order(kc):
    start_cluster(kc)
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug, Clone)]
        struct Stats { rank: usize, total: u64 }
        """)))
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel cluster --persist --out stats
        let mine: Vec<u64> = (0..100).map(|i| i * (rank as u64 + 1)).collect();
        Stats { rank, total: mine.iter().sum() }
        """), timeout=90)
    ok(reply, outputs)
    [table] = tables(outputs)
    assert "Stats { rank: 1, total: 9900 }" in table["text/plain"], table
    # A typed Vec in the session, in rank order; `mine` stays on the engines.
    assert value(kc, "stats.iter().map(|s| (s.rank, s.total)).collect::<Vec<_>>()") == "[(0, 4950), (1, 9900)]"
    reply, outs = run(kc, "%%parallel cluster --persist --out again\nmine.len() + rank", timeout=60)
    ok(reply, outs)
    assert value(kc, "again") == "[100, 101]"
    # A body without a value has nothing to gather.
    reply, _ = run(kc, "%%parallel cluster --persist --out none\nlet z = 1;")
    assert "has none" in error_text(reply["content"])
    # Gathering under an engine variable's name would hide it: refused.
    reply, _ = run(kc, "%%parallel cluster --persist --out mine\n1")
    assert "is a variable on the engines" in error_text(reply["content"])


def test_pull_and_push_move_values_between_session_and_engines(kc):
    start_cluster(kc)
    ok(*run(kc, "%%parallel cluster --persist\nlet counts: Vec<u32> = vec![rank as u32; 3];", timeout=90))
    reply, outputs = run(kc, "%cluster pull counts --out all_counts", timeout=60)
    ok(reply, outputs)
    assert value(kc, "all_counts") == "[[0, 0, 0], [1, 1, 1]]"
    reply, _ = run(kc, "%cluster pull nothing --out x")
    assert "not a variable on the engines" in error_text(reply["content"])
    reply, _ = run(kc, "%cluster pull counts --out counts")
    assert "is a variable on the engines" in error_text(reply["content"])

    ok(*run(kc, "let weights = vec![0.5f64, 2.0];"))
    reply, outputs = run(kc, "%cluster push weights --as w", timeout=60)
    ok(reply, outputs)
    # The engines' own copy: they change it; the session's stays as it was.
    ok(*run(kc, "%%parallel cluster --persist\nw[0] += rank as f64;", timeout=60))
    reply, outputs = run(kc, "%cluster pull w --out ws", timeout=60)
    ok(reply, outputs)
    assert value(kc, "(&ws, &weights)") == "([[0.5, 2.0], [1.5, 2.0]], [0.5, 2.0])"
    reply, _ = run(kc, "%cluster push missing --as m")
    assert "not a session variable" in error_text(reply["content"])
    reply, _ = run(kc, "%cluster push weights")
    assert "--as NAME gives each engine a copy of its own" in error_text(reply["content"])
    reply, _ = run(kc, "%cluster push weights --as ws")
    assert "is a session variable" in error_text(reply["content"])


def test_scatter_gives_each_rank_its_part(kc):
    ok(*run(kc, "let data: Vec<u64> = (1..=10).collect();"))
    reply, outputs = run(kc, "%%parallel processes 3 --scatter data --out sums\n"
                             "println!(\"{rank}: {data:?}\");\ndata.iter().sum::<u64>()", timeout=120)
    ok(reply, outputs)
    assert sorted(stream_text(outputs).splitlines()) == [
        "[0] 0: [1, 2, 3, 4]", "[1] 1: [5, 6, 7]", "[2] 2: [8, 9, 10]"]
    assert value(kc, "(&sums, data.len())") == "([10, 18, 27], 10)"
    start_cluster(kc)
    reply, outputs = run(kc, "%%parallel cluster --scatter data --out lens\ndata.len()", timeout=90)
    ok(reply, outputs)
    assert value(kc, "lens") == "[5, 5]"
    reply, _ = run(kc, "%%parallel threads 2 --scatter data --out firsts\ndata[0]")
    ok(reply)
    assert value(kc, "firsts") == "[1, 6]"
    reply, _ = run(kc, "%%parallel cluster --persist --scatter data\n1")
    assert "%cluster scatter VAR --as NAME" in error_text(reply["content"])
    # ipyparallel's scatter: each engine keeps its part, as a variable of its own.
    ok(*run(kc, "%cluster scatter data --as mine", timeout=60))
    ok(*run(kc, "%%parallel cluster --persist\nmine.push(0);", timeout=60))
    ok(*run(kc, "%cluster pull mine --out parts", timeout=60))
    assert value(kc, "parts") == "[[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 10, 0]]"
