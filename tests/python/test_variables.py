"""Variables that live across cells: no annotations, the types rustc infers, and a
clear note for what cannot be kept."""

from __future__ import annotations

import textwrap
import time

import pytest

from kernel_helpers import error_text, ok, result_text, run, stream_text, value


def test_a_vec_defined_in_one_cell_is_used_in_the_next(kc):
    ok(*run(kc, "let v = vec![1, 2, 3];"))
    assert value(kc, "v.len()") == "3"
    assert value(kc, "v") == "[1, 2, 3]"
    # Showing a variable does not move it out of the session.
    assert value(kc, "v.iter().sum::<i32>()") == "6"


def test_let_mut_is_mutated_by_later_cells(kc):
    ok(*run(kc, "let mut n = 5;"))
    ok(*run(kc, "n += 1;"))
    ok(*run(kc, "n *= 10;"))
    assert value(kc, "n") == "60"


def test_shadowing_replaces_the_variable_and_its_type(kc):
    ok(*run(kc, "let x = 1;"))
    ok(*run(kc, 'let x = format!("{}!", x + 1);'))
    assert value(kc, "x") == '"2!"'


def test_tuples_and_destructuring(kc):
    ok(*run(kc, 'let (a, mut b) = (1u8, String::from("two"));'))
    ok(*run(kc, 'b.push_str("!");'))
    assert value(kc, 'format!("{a} {b}")') == '"1 two!"'


def test_struct_defined_earlier_and_generics(kc):
    ok(*run(kc, "#[derive(Debug, Clone)]\nstruct Point { x: f64, y: f64 }"))
    ok(*run(kc, "let p = Point { x: 3.0, y: 4.0 };"))
    assert value(kc, "(p.x * p.x + p.y * p.y).sqrt()") == "5.0"
    ok(*run(kc, "use std::collections::HashMap;\n"
                "let mut m: HashMap<String, Vec<f64>> = HashMap::new();\n"
                'm.insert("a".into(), vec![p.x, p.y]);'))
    assert value(kc, 'm["a"].len()') == "2"
    assert value(kc, "p") == "Point { x: 3.0, y: 4.0 }"


def test_box_dyn_arc_mutex_and_collected_iterators(kc):
    ok(*run(kc, "let add: Box<dyn Fn(i32) -> i32> = Box::new(|x| x + 1);"))
    assert value(kc, "add(41)") == "42"
    ok(*run(kc, "let counter = std::sync::Arc::new(std::sync::Mutex::new(0u32));"))
    ok(*run(kc, "*counter.lock().unwrap() += 2;"))
    assert value(kc, "*counter.lock().unwrap()") == "2"
    ok(*run(kc, "let squares: Vec<u64> = (1..=5).map(|i| i * i).collect();"))
    assert value(kc, "squares.iter().sum::<u64>()") == "55"


def test_a_closure_is_not_kept_and_says_why_while_the_rest_is(kc):
    reply, outputs = run(kc, "let keep = 7;\nlet f = |x: i32| x + keep;\nf(1)")
    ok(reply, outputs)
    assert result_text(outputs) == "8"
    note = stream_text(outputs, "stderr")
    assert "`f`" in note and "closure" in note
    assert value(kc, "keep") == "7"


def test_a_borrow_is_not_kept_but_what_it_borrows_is(kc):
    ok(*run(kc, "let owned = vec![1, 2];"))
    reply, outputs = run(kc, "let r = &owned;\nr.len()")
    ok(reply, outputs)
    assert "`r`" in stream_text(outputs, "stderr")
    assert "borrows" in stream_text(outputs, "stderr")
    assert value(kc, "owned.len()") == "2"


def test_a_moved_variable_is_gone_with_a_note(kc):
    ok(*run(kc, "let s = String::from(\"moved\");"))
    reply, outputs = run(kc, "let t = s;")
    ok(reply, outputs)
    assert "`s` was moved" in stream_text(outputs, "stderr")
    assert value(kc, "t.len()") == "5"
    reply, _ = run(kc, "s.len()")
    assert reply["content"]["status"] == "error"


def test_variables_survive_a_panic_with_the_changes_made_before_it(kc):
    ok(*run(kc, "let kept = 1;\nlet mut used = 2;\nlet names = vec![String::from(\"a\")];"))
    reply, _ = run(kc, 'used += 1;\nif names.len() == 1 { panic!("no") }')
    assert reply["content"]["ename"] == "Panic"
    assert "Variables lost" not in error_text(reply["content"])
    assert value(kc, "used") == "3"
    assert value(kc, "names") == '["a"]'
    # A variable bound again before the panic keeps its old value.
    reply, _ = run(kc, 'let used = "shadowed";\npanic!("again")')
    assert reply["content"]["ename"] == "Panic"
    assert value(kc, "used") == "3"
    assert value(kc, "kept") == "1"


def test_a_variable_moved_before_a_panic_is_reported_lost(kc):
    ok(*run(kc, "let data = vec![1, 2, 3];"))
    reply, _ = run(kc, 'let total: i32 = data.into_iter().sum();\npanic!("after {total}")')
    assert reply["content"]["ename"] == "Panic"
    assert "Variables lost with the cell: data" in error_text(reply["content"])


def test_a_crash_names_what_it_restored_and_what_it_lost(kc):
    ok(*run(kc, "fn still() -> i32 { 3 }\nlet a = std::time::Instant::now();\nlet b = 2;"))
    reply, _ = run(kc, "std::process::abort()")
    assert reply["content"]["ename"] == "RunnerDied"
    text = error_text(reply["content"])
    assert "Variables restored as of the last successful cell: b" in text, text
    assert "Variables lost with the runner: a (`std::time::Instant` has no serde support)" in text, text
    assert value(kc, "still() + b") == "5"


def test_user_expressions_see_variables(kc):
    ok(*run(kc, "let total = 40;"))
    reply, _ = run(kc, "total + 1", user_expressions={"t": "total * 2"})
    content = ok(reply)
    assert content["user_expressions"]["t"]["data"]["text/plain"] == "80"
    assert value(kc, "total") == "40"


def test_rerunning_a_cell_that_defines_a_variable_hits_the_cache(kc):
    code = "let data: Vec<u64> = (0..1000).collect();\ndata.len()"
    t0 = time.monotonic()
    assert value(kc, code) == "1000"
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert value(kc, code) == "1000"
    again = time.monotonic() - t0
    assert again < first / 2, (first, again)


def test_a_first_cell_with_a_variable_in_an_empty_cache(start_kernel, tmp_path):
    """A new user's very first cell may well be a `let`: nothing is built yet."""
    cache = tmp_path / "empty-cache"
    _, kc = start_kernel(env={"FERROCELL_CACHE": str(cache)})
    ok(*run(kc, "let greeting = String::from(\"hi\");", timeout=180))
    assert value(kc, "greeting.len()") == "2"


def test_redefining_a_struct_names_the_variables_it_drops(kc):
    ok(*run(kc, "#[derive(Debug)]\nstruct Shape { w: i32 }"))
    ok(*run(kc, "let sq = Shape { w: 2 };\nlet other = 5;"))
    reply, outputs = run(kc, "#[derive(Debug)]\nstruct Shape { w: i32, h: i32 }")
    ok(reply, outputs)
    note = stream_text(outputs, "stderr")
    assert "`sq` was dropped" in note and "`Shape`" in note
    assert "other" not in note
    assert value(kc, "other") == "5"
    assert value(kc, "Shape { w: 1, h: 2 }") == "Shape { w: 1, h: 2 }"


def test_completion_offers_session_variables(kc):
    ok(*run(kc, "let velocity_kmh = 120;"))
    reply = kc.complete("veloc", reply=True, timeout=10)
    assert "velocity_kmh" in reply["content"]["matches"]


def test_completion_offers_fields_methods_and_variants(kc):
    ok(*run(kc, textwrap.dedent("""\
        struct Point { x: f64, y: f64 }
        impl Point { fn norm(&self) -> f64 { (self.x * self.x + self.y * self.y).sqrt() } }
        enum Mode { Fast, Careful }
        let p = Point { x: 3.0, y: 4.0 };
        """)))
    reply = kc.complete("let n = p.", reply=True, timeout=10)["content"]
    assert {"x", "y", "norm"} <= set(reply["matches"]), reply
    assert reply["cursor_start"] == len("let n = p.")
    reply = kc.complete("p.no", reply=True, timeout=10)["content"]
    assert reply["matches"] == ["norm"]
    reply = kc.complete("Mode::C", reply=True, timeout=10)["content"]
    assert reply["matches"] == ["Careful"]


def test_inspect_shows_a_variables_type_and_definition(kc):
    ok(*run(kc, "#[derive(Debug)]\nstruct Reading { celsius: f32 }\nlet r = Reading { celsius: 21.5 };"))
    msg_id = kc.inspect("r", 1)
    reply = kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    text = reply["content"]["data"]["text/plain"]
    assert reply["content"]["found"] is True
    assert "r: Reading" in text and "struct Reading" in text and "celsius" in text, text
