"""No error loses a session variable: a cell that stops at a `?` (any `Debug` error),
panics (also under %time and %timeit) or obeys an interrupt keeps every variable,
with the changes it made before it stopped, exactly as a panic in a plain cell does."""

from __future__ import annotations

import textwrap
import time

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, value


def failed(reply, outputs, ename="Error"):
    """The cell failed with one error of `ename`: return its text."""
    assert reply["content"]["status"] == "error", reply["content"]
    errors = of_type(outputs, "error")
    assert len(errors) == 1, outputs
    assert errors[0]["content"]["ename"] == ename, errors[0]["content"]
    return error_text(errors[0])


def test_a_question_mark_keeps_what_the_cell_changed(kc):
    ok(*run(kc, "let mut log: Vec<i32> = vec![];\nlet total = 10;"))
    text = failed(*run(kc, 'log.push(1);\nlet n: i32 = "x".parse()?;\nlog.push(n);'))
    assert "invalid digit found in string" in text
    assert "lost" not in text, text
    assert value(kc, "(log.clone(), total)") == "([1], 10)"
    # And the variables go on working as before.
    ok(*run(kc, "log.push(2);"))
    assert value(kc, "log") == "[1, 2]"


def test_a_rebinding_keeps_its_old_value_after_a_panic_and_its_new_after_a_question_mark(kc):
    ok(*run(kc, "let v = 1;"))
    failed(*run(kc, 'let v = v + 100;\npanic!("stop");'), ename="Panic")
    assert value(kc, "v") == "1"
    text = failed(*run(kc, 'let v = v + 100;\nlet _n: u8 = "300".parse()?;'))
    assert "Kept from before the error: v" in text
    assert value(kc, "v") == "101"


def test_any_debug_error_goes_through_a_question_mark(kc):
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        struct MyErr { code: i32 }
        fn check(x: i32) -> Result<i32, MyErr> {
            if x < 0 { Err(MyErr { code: x }) } else { Ok(x) }
        }
        let mut seen = 0;
        """)))
    text = failed(*run(kc, "seen += check(5)?;\nseen += check(-7)?;"))
    assert "MyErr { code: -7 }" in text, text
    assert value(kc, "seen") == "5"
    text = failed(*run(kc, "Err::<(), i32>(42)?;"))
    assert "42" in text
    # A cell whose `?` succeeds shows its value as usual.
    assert value(kc, "check(3)? + 1") == "4"


def test_an_error_shows_its_display_and_source_chain(kc):
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        struct Outer(std::num::ParseIntError);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "the config could not be read")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
        }
        fn read() -> Result<i32, Outer> { "x".parse::<i32>().map_err(Outer) }
        """)))
    text = failed(*run(kc, "let n = read()?;"))
    assert "the config could not be read" in text
    assert "Caused by:" in text and "0: invalid digit found in string" in text, text


def test_a_panic_under_time_and_timeit_keeps_the_variables(kc):
    ok(*run(kc, "let mut counter = 0u32;\nlet name = String::from(\"kept\");"))
    text = failed(*run(kc, '%time { counter += 1; if counter > 0 { panic!("boom") } }'),
                  ename="Panic")
    assert "boom" in text
    assert "lost" not in text, text
    assert value(kc, "(counter, name.clone())") == '(1, "kept")'
    failed(*run(kc, '%%timeit -n 1 -r 1\ncounter += 1;\npanic!("again {}", name);'),
           ename="Panic")
    assert value(kc, "(counter, name.len())") == "(2, 4)"
    # A %timeit that succeeds keeps what it took too.
    ok(*run(kc, "%timeit -n 2 -r 1 counter += 1"))
    assert value(kc, "counter") == "4"


def test_an_interrupt_the_cell_obeys_keeps_its_changes(kernel):
    km, kc = kernel
    ok(*run(kc, "let mut steps = 0u64;\nlet other = vec![1, 2];"))
    msg_id = kc.execute(textwrap.dedent("""\
        println!("started");
        while !interrupted() {
            steps += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        """))
    deadline = time.monotonic() + 60
    while kh.next_iopub(kc, msg_id, deadline)["msg_type"] != "stream":
        pass
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 30)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    outputs = kh.collect_iopub(kc, msg_id, time.monotonic() + 10)
    assert "lost" not in kh.all_text(outputs), kh.all_text(outputs)
    assert value(kc, "(steps > 10, other.len())") == "(true, 2)"


def test_only_what_the_cell_moved_away_is_reported(kc):
    ok(*run(kc, 'let s = String::from("gone");\nlet t = String::from("stays");'))
    reply, outputs = run(kc, 'drop(s);\nlet _n: i32 = "x".parse()?;')
    text = failed(reply, outputs)
    notes = kh.all_text(outputs)
    assert "`s` was moved" in notes or "lost with the cell: s" in text, (text, notes)
    assert value(kc, "t") == '"stays"'


def test_bindings_made_before_a_question_mark_are_kept_and_named(kc):
    ok(*run(kc, "let mut total = 1;"))
    text = failed(*run(kc, textwrap.dedent("""\
        let a = 10;
        let s = String::from("hi");
        total += a;
        let n: i32 = "x".parse()?;
        let after = n + 1;
        """)))
    assert "Kept from before the error: a, s" in text, text
    assert value(kc, "(a, s.clone(), total)") == '(10, "hi", 11)'
    # What came after the error was never bound.
    reply, outputs = run(kc, "after")
    assert "cannot find value `after`" in error_text(of_type(outputs, "error")[0])


def test_each_question_mark_keeps_what_can_be_kept_there(kc):
    # `b` is moved between the two `?`s: the first can keep it, the second cannot
    # (it keeps `t`, which holds it now). `r` borrows a local: never kept.
    text = failed(*run(kc, textwrap.dedent("""\
        let b = vec![1, 2];
        let r = &b;
        let first = r.len();
        let bad: u8 = "300".parse()?;
        let t = b;
        """)))
    assert "Kept from before the error: b, first" in text, text
    assert value(kc, "(b.clone(), first)") == "([1, 2], 2)"
    text = failed(*run(kc, textwrap.dedent("""\
        let b2 = vec![3];
        let ok: u8 = "3".parse()?;
        let t2 = b2;
        let bad: u8 = "300".parse()?;
        """)))
    assert "Kept from before the error: ok, t2" in text, text
    assert value(kc, "(t2.clone(), ok)") == "([3], 3)"
    reply, outputs = run(kc, "b2")
    assert reply["content"]["status"] == "error"


def test_a_loop_variable_is_not_taken_for_the_cells_variable(kc):
    ok(*run(kc, "let total = 100;\nfn check(x: i32) -> Result<i32, String> { if x < 2 { Ok(x) } else { Err(format!(\"{x} too big\")) } }"))
    text = failed(*run(kc, "let kept = 5;\nlet total = total + 1;\nfor total in 0..3 { check(total)?; }"))
    assert "2 too big" in text
    # At the `?`, `total` is the loop's: the cell's own cannot be kept there, so the
    # variable keeps its value from before the cell (never the loop's 2).
    assert "Kept from before the error: kept" in text, text
    assert value(kc, "(total, kept)") == "(100, 5)"


def test_the_same_failing_cell_run_twice_agrees_with_itself(kc):
    # The cell moves `s` away, so a panic loses it; the second run takes the built
    # library from the cache and must say the same, not claim `s` was kept.
    cell = 'let s = s + "!";\npanic!("stop");'
    for _ in range(2):
        ok(*run(kc, 'let s = String::from("a");\nlet other = 1;'))
        text = failed(*run(kc, cell), ename="Panic")
        assert "Variables lost with the cell: s" in text, text
        reply, outputs = run(kc, "s.len()")
        assert "cannot find value `s`" in error_text(of_type(outputs, "error")[0])
        assert value(kc, "other") == "1"


def test_a_panic_while_showing_the_value_restores_a_rebound_variable(kc):
    ok(*run(kc, textwrap.dedent("""\
        struct Bad;
        impl std::fmt::Debug for Bad {
            fn fmt(&self, _: &mut std::fmt::Formatter) -> std::fmt::Result { panic!("no Debug today") }
        }
        let v = 1;
        """)))
    failed(*run(kc, 'let v = String::from("new");\nlet _n: i32 = "1".parse()?;\nBad'), ename="Panic")
    assert value(kc, "v + 1") == "2"


def test_a_type_error_on_the_value_of_a_question_mark_says_where(kc):
    reply, outputs = run(kc, 'let x = 1;\nlet n: i32 = "5".parse::<u8>()?;')
    text = error_text(of_type(outputs, "error")[0])
    assert "mismatched types" in text and "cell:2:31" in text, text


def test_question_marks_on_options_nested_and_in_the_value(kc):
    ok(*run(kc, 'fn f(x: i32) -> Result<i32, String> { if x > 0 { Ok(x) } else { Err(format!("bad {x}")) } }'))
    text = failed(*run(kc, "let p = f(1)? + f(2)?;\nlet w = f(f(0)?)?;"))
    assert "bad 0" in text and "Kept from before the error: p" in text, text
    assert value(kc, "p") == "3"
    text = failed(*run(kc, "let q: Option<i32> = None;\nlet z = q?;"))
    assert "`?` met `None`" in text and "Kept from before the error: q" in text, text
    assert value(kc, "Some(5)? + f(p)?") == "8"
    # A rebinding before the error keeps the new value, as the cell left it.
    ok(*run(kc, "let level = 1;"))
    failed(*run(kc, 'let level = level * 100;\n"y".parse::<f64>()?;'))
    assert value(kc, "level") == "100"
