"""What a cell does: items that persist, the trailing value, live output,
rich displays, the evcxr display convention and the compile cache."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest

import kernel_helpers as kh
from kernel_helpers import of_type, ok, result_text, run, streams, value


# --- values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, shown",
    [
        ("1 + 2", "3"),
        ("vec![1, 4, 9]", "[1, 4, 9]"),
        ('"hi"', '"hi"'),
        ("String::from(\"a\") + \"b\"", '"ab"'),
        ("Some(1.5)", "Some(1.5)"),
        ("(1, 'c', true)", "(1, 'c', true)"),
        ("let x = 5;\nx * 2", "10"),
        ("let v: Vec<u64> = (1..=4).collect();\nv.iter().sum::<u64>()", "10"),
        ("// a comment first\n2u8.pow(3)", "8"),
        ("{\n    let a = 2;\n    a * a\n}", "4"),
    ],
)
def test_trailing_value(kc, code, shown):
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    results = of_type(outputs, "execute_result")
    assert len(results) == 1
    assert results[0]["content"]["data"]["text/plain"] == shown
    assert results[0]["content"]["execution_count"] == reply["content"]["execution_count"]


@pytest.mark.parametrize("code", ["()", "let x = 1;", "1 + 1;", "fn f() {}", "println!(\"x\");",
                                  'display_html("<b>x</b>")'])
def test_no_value_shows_nothing(kc, code):
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert of_type(outputs, "execute_result") == []


def test_debug_struct_value(kc):
    ok(*run(kc, "#[derive(Debug)]\nstruct Point { x: i32, y: i32 }"))
    assert value(kc, "Point { x: 1, y: -2 }") == "Point { x: 1, y: -2 }"


# --- items ---------------------------------------------------------------------------


def test_items_persist_and_can_be_redefined(kc):
    ok(*run(kc, 'fn greet() -> &\'static str { "v1" }'))
    assert value(kc, "greet()") == '"v1"'
    ok(*run(kc, 'fn greet() -> &\'static str { "v2" }'))
    assert value(kc, "greet()") == '"v2"'


def test_every_kind_of_item_persists(kc):
    cells = [
        "struct Point { x: i32, y: i32 }",
        "impl Point { fn sum(&self) -> i32 { self.x + self.y } }",
        "#[derive(Debug, Clone, Copy)]\nenum Shape { Circle(f64), Square(f64) }",
        "trait Area { fn area(&self) -> f64; }",
        "impl Area for Shape {\n    fn area(&self) -> f64 {\n        match *self {\n"
        "            Shape::Circle(r) => 3.0 * r * r,\n            Shape::Square(s) => s * s,\n"
        "        }\n    }\n}",
        "const LIMIT: u32 = 10;",
        'static NAME: &str = "fe";',
        "macro_rules! twice { ($e:expr) => { $e * 2 }; }",
        "mod geometry { pub fn unit() -> i32 { 1 } }",
        "use std::collections::HashMap;",
    ]
    for cell in cells:
        ok(*run(kc, cell))
    shown = value(kc, "(Point { x: 1, y: 2 }.sum(), Shape::Square(2.0).area(), LIMIT, NAME, "
                      "twice!(21), geometry::unit(), HashMap::<i32, i32>::new().len())")
    assert shown == '(3, 4.0, 10, "fe", 42, 1, 0)'


def test_items_and_statements_in_one_cell(kc):
    code = "fn square(x: i32) -> i32 { x * x }\nlet n = square(7);\nprintln!(\"{n}\");\nn + 1"
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "49\n"
    assert result_text(outputs) == "50"
    assert value(kc, "square(3)") == "9"


def test_redefine_struct_with_other_fields(kc):
    ok(*run(kc, "#[derive(Debug)]\nstruct Config { a: i32 }"))
    assert value(kc, "Config { a: 1 }") == "Config { a: 1 }"
    ok(*run(kc, "#[derive(Debug)]\nstruct Config { a: i32, b: bool }"))
    assert value(kc, "Config { a: 1, b: true }") == "Config { a: 1, b: true }"


def test_fn_using_an_earlier_fn_survives_redefinition_of_the_other(kc):
    ok(*run(kc, "fn base() -> i32 { 1 }"))
    ok(*run(kc, "fn derived() -> i32 { base() + 10 }"))
    assert value(kc, "derived()") == "11"
    ok(*run(kc, "fn base() -> i32 { 2 }"))
    assert value(kc, "derived()") == "12"


# --- live output ---------------------------------------------------------------------


def test_output_is_streamed_while_the_cell_runs(kc):
    code = ('println!("first");\n'
            "std::thread::sleep(std::time::Duration::from_millis(1500));\n"
            'println!("second");')
    msg_id = kc.execute(code)
    deadline = time.monotonic() + kh.CELL_TIMEOUT
    stream_msgs = []
    reply_seen_before_first = None
    while True:
        msg = kh.next_iopub(kc, msg_id, deadline)
        if msg["msg_type"] == "stream":
            if not stream_msgs:
                reply_seen_before_first = kc.shell_channel.msg_ready()
            stream_msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kh.shell_reply(kc, msg_id, deadline)
    ok(reply)
    assert "".join(m["content"]["text"] for m in stream_msgs) == "first\nsecond\n"
    assert len(stream_msgs) >= 2, "both lines arrived in one message: output was not live"
    assert reply_seen_before_first is False, "the first line arrived only after the reply"
    first, last = stream_msgs[0], stream_msgs[-1]
    assert "first" in first["content"]["text"] and "second" in last["content"]["text"]
    sent_gap = (last["header"]["date"] - first["header"]["date"]).total_seconds()
    received_gap = last["_received"] - first["_received"]
    assert sent_gap >= 1.0, f"header dates only {sent_gap:.3f} s apart"
    assert received_gap >= 1.0, f"received only {received_gap:.3f} s apart"
    assert first["_received"] < reply["_received"]


def test_print_without_newline(kc):
    reply, outputs = run(kc, 'print!("no newline");')
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "no newline"


def test_print_without_newline_is_streamed_after_flush(kc):
    code = ('use std::io::Write;\nprint!("tick ");\nstd::io::stdout().flush().unwrap();\n'
            "std::thread::sleep(std::time::Duration::from_millis(1200));\nprint!(\"tock\");")
    msg_id = kc.execute(code)
    deadline = time.monotonic() + kh.CELL_TIMEOUT
    while True:
        msg = kh.next_iopub(kc, msg_id, deadline)
        if msg["msg_type"] == "stream":
            break
    assert msg["content"]["text"] == "tick "
    assert not kc.shell_channel.msg_ready(), "print! output arrived only with the reply"
    reply, outputs = kh.wait(kc, msg_id)
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "tock"


def test_stdout_and_stderr_keep_their_order(kc):
    for attempt in range(3):
        reply, outputs = run(kc, 'println!("a"); eprintln!("b"); println!("c");')
        ok(reply, outputs)
        assert streams(outputs) == [("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n")], (
            f"attempt {attempt}")


def test_interleaved_streams_many_lines(kc):
    code = ("for i in 0..20 {\n    if i % 2 == 0 { println!(\"out {i}\"); }"
            " else { eprintln!(\"err {i}\"); }\n}")
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    expected = [("stdout" if i % 2 == 0 else "stderr", f"{'out' if i % 2 == 0 else 'err'} {i}\n")
                for i in range(20)]
    assert streams(outputs) == expected


def test_carriage_return_progress(kc):
    code = ("use std::io::Write;\nfor i in 0..=4 {\n"
            "    print!(\"\\rprogress {i}/4\");\n"
            "    std::io::stdout().flush().unwrap();\n"
            "    std::thread::sleep(std::time::Duration::from_millis(250));\n}\nprintln!();")
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "".join(f"\rprogress {i}/4" for i in range(5)) + "\n"
    assert len(of_type(outputs, "stream")) >= 3, "progress updates were not streamed"


def test_large_output_arrives_whole(kc):
    code = 'for i in 0..20000 { println!("line {i}"); }'
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "".join(f"line {i}\n" for i in range(20000))


def test_unicode_output(kc):
    reply, outputs = run(kc, 'println!("héllo wörld ✓ 🦀"); "ü"')
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "héllo wörld ✓ 🦀\n"
    assert result_text(outputs) == '"ü"'


# --- rich display --------------------------------------------------------------------


def only_display(outputs, mime):
    displays = of_type(outputs, "display_data")
    assert len(displays) == 1, outputs
    assert mime in displays[0]["content"]["data"]
    return displays[0]


def test_display_html(kc):
    reply, outputs = run(kc, 'display_html("<b>x</b>");')
    ok(reply, outputs)
    assert only_display(outputs, "text/html")["content"]["data"]["text/html"] == "<b>x</b>"


@pytest.mark.parametrize(
    "call, mime, expected",
    [
        ('display_markdown("# Title")', "text/markdown", "# Title"),
        ('display_svg("<svg xmlns=\\"http://www.w3.org/2000/svg\\"/>")', "image/svg+xml",
         '<svg xmlns="http://www.w3.org/2000/svg"/>'),
        ('display_text("plain words")', "text/plain", "plain words"),
        ('display_mime("text/csv", "a,b\\n1,2")', "text/csv", "a,b\n1,2"),
        ('display_html(format!("<i>{}</i>", 6 * 7))', "text/html", "<i>42</i>"),
    ],
)
def test_display_functions(kc, call, mime, expected):
    reply, outputs = run(kc, call + ";")
    ok(reply, outputs)
    assert only_display(outputs, mime)["content"]["data"][mime] == expected


def test_display_png(kc):
    png = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 1, 2, 255])
    code = f"display_png(vec!{list(png)});"
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    data = only_display(outputs, "image/png")["content"]["data"]["image/png"]
    assert base64.b64decode(data) == png


def test_display_json(kc):
    reply, outputs = run(kc, 'display_json(r#"{"a": 1, "b": [true, null]}"#);')
    ok(reply, outputs)
    data = only_display(outputs, "application/json")["content"]["data"]["application/json"]
    assert data == {"a": 1, "b": [True, None]}


def test_displays_keep_order_with_stdout(kc):
    code = 'println!("before");\ndisplay_html("<hr>");\nprintln!("after");'
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    kinds = [(m["msg_type"], m["content"].get("text") or m["content"].get("data", {}).get(
        "text/html")) for m in outputs]
    assert kinds == [("stream", "before\n"), ("display_data", "<hr>"), ("stream", "after\n")]


def test_update_display(kc):
    code = ('let id = display_html("<i>one</i>");\n'
            'update_display(&id, "text/html", "<i>two</i>");')
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    shown = only_display(outputs, "text/html")
    display_id = shown["content"]["transient"]["display_id"]
    assert isinstance(display_id, str) and display_id
    updates = of_type(outputs, "update_display_data")
    assert len(updates) == 1
    assert updates[0]["content"]["transient"]["display_id"] == display_id
    assert updates[0]["content"]["data"]["text/html"] == "<i>two</i>"


def test_display_ids_are_distinct(kc):
    reply, outputs = run(kc, 'display_text("a");\ndisplay_text("b");')
    ok(reply, outputs)
    ids = [m["content"]["transient"]["display_id"] for m in of_type(outputs, "display_data")]
    assert len(ids) == 2 and ids[0] != ids[1]
    reply, outputs = run(kc, 'display_text("c");')
    assert of_type(outputs, "display_data")[0]["content"]["transient"]["display_id"] not in ids


@pytest.mark.parametrize("wait", [False, True])
def test_clear_output(kc, wait):
    code = f'println!("gone");\nclear_output({str(wait).lower()});\nprintln!("kept");'
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    kinds = [m["msg_type"] for m in outputs]
    assert kinds == ["stream", "clear_output", "stream"]
    assert outputs[1]["content"]["wait"] is wait


# --- the evcxr convention ------------------------------------------------------------


def test_evcxr_content_block_becomes_display(kc):
    code = ('println!("before");\n'
            'println!("EVCXR_BEGIN_CONTENT text/html\\n<b>x</b>\\nEVCXR_END_CONTENT");\n'
            'println!("after");')
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert [m["msg_type"] for m in outputs] == ["stream", "display_data", "stream"]
    assert outputs[0]["content"]["text"] == "before\n"
    assert outputs[1]["content"]["data"]["text/html"].strip() == "<b>x</b>"
    assert outputs[2]["content"]["text"] == "after\n"
    assert "EVCXR" not in kh.stream_text(outputs)


def test_evcxr_display_method_on_trailing_value(kc):
    ok(*run(kc, "struct Html(String);\n"
                "impl Html {\n    fn evcxr_display(&self) {\n"
                "        println!(\"EVCXR_BEGIN_CONTENT text/html\\n{}\\nEVCXR_END_CONTENT\", "
                "self.0);\n    }\n}"))
    reply, outputs = run(kc, 'Html("<i>hey</i>".to_string())')
    ok(reply, outputs)
    rich = [m for m in outputs if m["msg_type"] in ("display_data", "execute_result")
            and "text/html" in m["content"]["data"]]
    assert len(rich) == 1, outputs
    assert rich[0]["content"]["data"]["text/html"].strip() == "<i>hey</i>"
    assert "EVCXR" not in kh.stream_text(outputs)


# --- cache ---------------------------------------------------------------------------


def timed(kc, code):
    start = time.monotonic()
    reply, outputs = run(kc, code)
    elapsed = time.monotonic() - start
    ok(reply, outputs)
    return elapsed, outputs


def test_rerunning_an_unchanged_cell_is_much_faster(kc):
    n = random.randrange(10**6, 10**9)
    code = (f"use std::collections::HashMap;\nlet mut m: HashMap<u64, String> = HashMap::new();\n"
            f"for i in 0..10u64 {{ m.insert(i, format!(\"{{}}\", i * {n})); }}\nm.len()")
    first, outputs = timed(kc, code)
    assert result_text(outputs) == "10"
    reruns = []
    for _ in range(3):
        elapsed, outputs = timed(kc, code)
        assert result_text(outputs) == "10"
        reruns.append(elapsed)
    assert min(reruns) < first / 2, f"first {first:.3f} s, reruns {reruns}"


def test_values_are_computed_fresh_on_rerun(kc):
    code = ("use std::time::{SystemTime, UNIX_EPOCH};\n"
            "SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()")
    first = value(kc, code)
    second = value(kc, code)
    assert first != second, "a cached cell must still run again"
    json.loads(first)


def test_two_kernels_share_a_fresh_cache(start_kernel, tmp_path):
    """Two notebooks opened at once on an empty cache both build what they need."""
    cache = tmp_path / "cache"
    cache.mkdir()
    kernels = [start_kernel(env={"FERROCELL_CACHE": str(cache)}) for _ in range(2)]
    ids = [k.kc.execute(f"{i} + 40") for i, k in enumerate(kernels)]
    for i, (kernel, msg_id) in enumerate(zip(kernels, ids, strict=True)):
        reply, outputs = kh.wait(kernel.kc, msg_id, timeout=kh.FIRST_CELL_TIMEOUT)
        ok(reply, outputs)
        assert result_text(outputs) == str(40 + i)
        # Building the prelude is a wait a person sees: one line, updated in place,
        # and replaced by what it ended in.
        shown = kh.progress_texts(outputs)
        assert shown and shown[0].startswith("preparing Rust: building ferrocell's prelude"), shown
        assert shown[-1].startswith("Rust is ready: ferrocell's prelude and runner were built in"), shown
    for kernel in kernels:
        assert value(kernel.kc, "fn shared() -> u8 { 1 }\nshared()") == "1"
