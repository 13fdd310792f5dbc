"""Closures and `impl Trait` values persist as boxed trait objects, and cells may
`.await` at top level: on a small executor in the runner, or with `:dep tokio` on one
multi-thread runtime that lives across cells."""

from __future__ import annotations

import textwrap
import time

import kernel_helpers as kh
from kernel_helpers import all_text, error_text, of_type, ok, run, stream_text, value

DEP_TIMEOUT = 900  # tokio with its runtime builds from source the first time


def notes(outputs):
    return all_text(outputs)


# --- closures ----------------------------------------------------------------------


def test_a_closure_is_kept_and_called_in_later_cells(kc):
    ok(*run(kc, "let add_one = |x: i32| x + 1;\nlet greet = |name: &str| format!(\"hi {name}\");"))
    assert value(kc, "add_one(41)") == "42"
    # A borrowed argument stays borrowed for any lifetime: a local String works.
    assert value(kc, 'let who = String::from("ann");\ngreet(&who)') == '"hi ann"'
    reply, outputs = run(kc, ":vars")
    listing = all_text(outputs)
    assert "add_one" in listing and "Fn(i32) -> i32" in listing.replace("dyn ", ""), listing


def test_inferred_arguments_and_owned_captures_are_kept(kc):
    ok(*run(kc, "let base = 100;\nlet offset = String::from(\"ab\");"))
    ok(*run(kc, "let scale = move |x| x * 2 + base;\nlet tag = move |n: usize| offset.len() + n;\nscale(1);"))
    assert value(kc, "scale(5)") == "110"
    assert value(kc, "tag(3)") == "5"
    # `offset` moved into the closure: the cell said so, and `base` (Copy) stays.
    assert value(kc, "base") == "100"


def test_fnmut_and_fnonce_closures_keep_their_kind(kc):
    ok(*run(kc, "let mut count = 0;\nlet mut bump = move || { count += 1; count };\nbump();"))
    assert value(kc, "bump()") == "2"
    assert value(kc, "bump()") == "3"
    ok(*run(kc, 'let words = vec![String::from("a")];\nlet consume = move || words.len();\n'
                'let owner = vec![1, 2, 3];\nlet once = move || owner;'))
    assert value(kc, "consume()") == "1"
    assert value(kc, "once()") == "[1, 2, 3]"
    # Called once, it is gone, as in one block of Rust.
    reply, outputs = run(kc, "once()")
    assert reply["content"]["status"] == "error"
    assert "once" in error_text(of_type(outputs, "error")[0])


def test_a_closure_that_borrows_from_the_cell_is_not_kept_and_the_note_says_why(kc):
    reply, outputs = run(kc, "let v = vec![1, 2];\nlet first = |i: usize| v[i];\nfirst(1)")
    ok(reply, outputs)
    text = notes(outputs)
    assert "`first` is not kept" in text and "borrows" in text, text
    assert value(kc, "v.len()") == "2"


def test_a_closure_survives_a_panic_in_a_later_cell(kc):
    ok(*run(kc, "let double = |x: u64| x * 2;"))
    reply, _ = run(kc, 'let y = double(4);\npanic!("boom {y}");')
    assert reply["content"]["status"] == "error"
    assert value(kc, "double(21)") == "42"


def test_impl_trait_values_are_kept_boxed(kc):
    ok(*run(kc, textwrap.dedent("""\
        pub trait Speak { fn speak(&self) -> String; }
        impl Speak for i32 { fn speak(&self) -> String { format!("i am {self}") } }
        pub fn make() -> impl Speak { 7 }
        fn adder(n: i32) -> impl Fn(i32) -> i32 + Clone { move |x| x + n }
        fn evens() -> impl Iterator<Item = u32> { (0..).step_by(2) }
        let s = make();
        let add3 = adder(3);
        let mut it = evens();
        """)))
    assert value(kc, "s.speak()") == '"i am 7"'
    assert value(kc, "add3(4)") == "7"
    assert value(kc, "it.next()") == "Some(0)"
    assert value(kc, "it.next()") == "Some(2)"


# --- .await ------------------------------------------------------------------------


def test_top_level_await_runs_futures_that_need_no_runtime(kc):
    ok(*run(kc, textwrap.dedent("""\
        async fn answer() -> i32 { 41 }
        async fn plus(x: i32) -> Result<i32, String> { if x > 0 { Ok(x + 1) } else { Err("not positive".into()) } }
        """)))
    assert value(kc, "answer().await + 1") == "42"
    ok(*run(kc, "let mut log = vec![1];\nlet a = answer().await;\nlog.push(a);"))
    assert value(kc, "(a, log.clone())") == "(41, [1, 41])"
    # `?` and `.await` together; a failure keeps what came before it.
    reply, outputs = run(kc, "log.push(2);\nlet b = plus(0).await?;\nlog.push(b);")
    assert reply["content"]["status"] == "error"
    assert "not positive" in error_text(of_type(outputs, "error")[0])
    assert value(kc, "log") == "[1, 41, 2]"
    assert value(kc, "plus(1).await?") == "2"
    # A future kept in a variable is awaited later.
    ok(*run(kc, "let later = answer();"))
    assert value(kc, "later.await") == "41"


def test_an_interrupt_stops_a_pending_await_and_keeps_variables(kc):
    ok(*run(kc, "let mut kept = vec![1];"))
    msg_id = kc.execute("kept.push(2);\nstd::future::pending::<()>().await;")
    time.sleep(3)
    kh.request(kc, "interrupt_request", channel="control", timeout=5)
    reply, outputs = kh.wait(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    assert "runner was replaced" not in error_text(reply["content"])
    assert value(kc, "kept") == "[1, 2]"


def test_await_in_timeit_is_a_clear_error(kc):
    ok(*run(kc, "async fn one() -> u8 { 1 }"))
    reply, outputs = run(kc, "%timeit -n 1 -r 1 one().await")
    assert reply["content"]["status"] == "error"
    assert "%timeit" in error_text(of_type(outputs, "error")[0])
    ok(*run(kc, "%time one().await"))


def test_tokio_runtime_lives_across_cells(kc):
    reply, outputs = run(kc, ':dep tokio = { version = "1", features = ["time", "sync"] }',
                         timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    ok(*run(kc, textwrap.dedent("""\
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            rx.await.unwrap() * 2
        });
        """)))
    # The task runs on while no cell does; a later cell feeds it and awaits it.
    time.sleep(0.5)
    ok(*run(kc, "tx.send(21).unwrap();"))
    assert value(kc, "handle.await.unwrap()") == "42"
    # A task spawned in one cell keeps ticking between cells.
    ok(*run(kc, textwrap.dedent("""\
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t2 = ticks.clone();
        let ticker = tokio::spawn(async move {
            for _ in 0..10_000 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                t2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        """)))
    time.sleep(1.0)
    n = int(value(kc, "ticks.load(std::sync::atomic::Ordering::Relaxed)"))
    assert n >= 10, n
    ok(*run(kc, "ticker.abort();"))
