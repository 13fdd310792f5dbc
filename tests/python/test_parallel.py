"""`%%parallel threads`: the cell body on N OS threads of the runner at once."""

from __future__ import annotations

import os
import re
import textwrap
import time

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, slow_each, stream_text, tables, value


def test_ranks_run_at_once_with_rank_size_and_labelled_output(kc):
    # Only ranks that really run at the same time get past the barrier.
    ok(*run(kc, "let barrier = std::sync::Barrier::new(4);"))
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel threads 4
        barrier.wait();
        println!("rank {rank} of {size}");
        rank * 10
        """), timeout=60)
    ok(reply, outputs)
    lines = sorted(stream_text(outputs).splitlines())
    assert lines == [f"[{r}] rank {r} of 4" for r in range(4)]
    [table] = tables(outputs)
    assert "4 ranks on 4 threads" in table["text/plain"]
    for r in range(4):
        assert re.search(rf"^\s+{r}\s+{r * 10}\s", table["text/plain"], re.M), table["text/plain"]
    assert table["text/html"].startswith("<table>") and "<td>30</td>" not in table["text/html"]
    assert re.search(r"<pre[^>]*>30</pre>", table["text/html"]), table["text/html"]


def test_threads_default_to_the_cores_and_out_keeps_the_values(kc):
    ok(*run(kc, "%%parallel threads --out sizes\nsize"))
    cores = os.cpu_count()
    assert value(kc, "sizes.len()") == str(cores)
    assert value(kc, "sizes.iter().all(|s| *s == sizes.len())") == "true"


def test_a_unit_body_shows_no_table(kc):
    reply, outputs = run(kc, "%%parallel threads 2\nlet _x = rank;")
    ok(reply, outputs)
    assert tables(outputs) == []
    assert of_type(outputs, "execute_result") == []


def test_shared_variables_cannot_be_changed_and_must_be_sync(kc):
    ok(*run(kc, "let mut counter = 0;\nlet local = std::rc::Rc::new(5);"))
    reply, outputs = run(kc, "%%parallel threads 2\ncounter += 1;")
    assert reply["content"]["ename"] == "CompileError"
    text = error_text(of_type(outputs, "error")[0])
    assert "cell:2:1" in text and "shares session variables" in text, text
    reply, outputs = run(kc, "%%parallel threads 2\n*local as usize + rank")
    assert reply["content"]["ename"] == "CompileError"
    text = error_text(of_type(outputs, "error")[0])
    assert "cannot be shared between threads safely" in text and "must be Sync" in text, text
    assert value(kc, "counter + *local") == "5"


def test_a_long_run_shows_progress_replaced_by_the_result(kc):
    reply, outputs = run(kc, textwrap.dedent("""\
        %%parallel threads 2 --each 0..30u64
        std::thread::sleep(std::time::Duration::from_millis(100));
        item
        """), timeout=60)
    ok(reply, outputs)
    displays = [m for m in outputs if m["msg_type"] in ("display_data", "update_display_data")]
    first = displays[0]
    assert first["msg_type"] == "display_data"
    assert "items done" in first["content"]["data"]["text/plain"]
    last = displays[-1]
    assert last["msg_type"] == "update_display_data"
    assert last["content"]["transient"]["display_id"] == first["content"]["transient"]["display_id"]
    assert "30 items on 2 threads" in last["content"]["data"]["text/plain"]


def test_interrupt_stops_a_parallel_run_and_the_session_goes_on(kernel):
    km, kc = kernel
    ok(*run(kc, "let kept = String::from(\"still here\");"))
    msg_id = kc.execute(slow_each("threads 2", 100_000))
    kh.wait_for_output(kc, msg_id)
    start = time.monotonic()
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, start + 30)
    assert time.monotonic() - start < 2.5
    assert reply["content"]["status"] == "error"
    assert value(kc, "kept.clone()") == '"still here"'
    ok(*run(kc, "%%parallel threads 2\nrank"))


def test_bad_worker_counts_are_refused(kc):
    reply, _ = run(kc, "%%parallel threads 0\nrank")
    assert "positive number" in reply["content"]["evalue"]


def test_scaling_charts_speed_up_with_amdahls_fit(kc):
    reply, outputs = run(kc, "%%parallel threads --scaling 2,4 --out last\n(0..200_000u64).map(|i| i % 7).sum::<u64>() + rank as u64",
                         timeout=60)
    ok(reply, outputs)
    charts = [m["content"]["data"] for m in outputs
              if m["msg_type"] == "display_data" and "image/svg+xml" in m["content"]["data"]]
    assert len(charts) == 1
    svg, text = charts[0]["image/svg+xml"], charts[0]["text/plain"]
    # One worker is always the baseline; then the counts asked for.
    assert svg.count("<circle") == 3 and 'class="amdahl"' in svg and 'class="ideal"' in svg
    assert re.search(r"^\s+1\s.*1\.00×", text, re.M) and "serial fraction" in text
    assert value(kc, "last.len()") == "4"
