"""Completion on any expression (its type from rustc, its members from std's docs and
the session's items) and inspection of the expression under the cursor."""

from __future__ import annotations

import textwrap

from kernel_helpers import ok, run


def complete(kc, code, cursor_pos=None) -> dict:
    content = kc.complete(code, cursor_pos, reply=True, timeout=60)["content"]
    assert content["status"] == "ok", content
    return content


def matches(kc, code, cursor_pos=None) -> list[str]:
    return complete(kc, code, cursor_pos)["matches"]


def inspect_text(kc, code, cursor_pos=None) -> str | None:
    content = kc.inspect(code, cursor_pos, reply=True, timeout=60)["content"]
    assert content["status"] == "ok", content
    return content["data"].get("text/plain") if content["found"] else None


def test_methods_of_calls_macros_and_chains(kc):
    ok(*run(kc, textwrap.dedent("""\
        fn names() -> Vec<String> { vec!["a".into()] }
        let text = String::from("hello");
        """)))
    got = matches(kc, "names().res")
    assert "reserve" in got and "resize" in got and all(m.startswith("res") for m in got), got
    got = matches(kc, "vec![1, 2].it")
    assert "iter" in got and "iter_mut" in got, got
    # A chain: the iterator's adapters, from the Iterator docs.
    got = matches(kc, "names().iter().ma")
    assert "map" in got and "max" in got, got
    # A variable of a std type: String's own methods and those of str (Deref).
    got = matches(kc, "text.to_")
    assert "to_uppercase" in got and "to_string" in got, got
    # Inside an unfinished call, on a value the code before binds.
    got = matches(kc, "let n = 3u64;\nprintln!(\"{}\", n.pow")
    assert "pow" in got, got


def test_fields_and_methods_of_session_types(kc):
    ok(*run(kc, textwrap.dedent("""\
        pub struct Point { pub x: i32, pub y: i32 }
        impl Point {
            pub fn norm1(&self) -> i32 { self.x.abs() + self.y.abs() }
            pub fn origin() -> Point { Point { x: 0, y: 0 } }
        }
        fn far() -> Point { Point { x: 3, y: -4 } }
        """)))
    got = matches(kc, "far().")
    assert {"x", "y", "norm1"} <= set(got) and "origin" not in got, got
    got = matches(kc, "Point::")
    assert "origin" in got and "norm1" in got and "x" not in got, got
    # Typed completions say what each is.
    content = complete(kc, "far().no")
    types = {t["text"]: t["type"] for t in content["metadata"]["_jupyter_types_experimental"]}
    assert types.get("norm1") == "function", types


def test_paths_of_session_modules_and_std(kc):
    ok(*run(kc, textwrap.dedent("""\
        mod shapes {
            pub struct Circle { pub r: f64 }
            impl Circle { pub fn unit() -> Circle { Circle { r: 1.0 } } }
            pub fn area(c: &Circle) -> f64 { 3.14 * c.r * c.r }
        }
        """)))
    got = matches(kc, "use shapes::")
    assert "Circle" in got and "area" in got, got
    got = matches(kc, "shapes::Circle::")
    assert "unit" in got, got
    got = matches(kc, "std::collections::Hash")
    assert "HashMap" in got and "HashSet" in got, got
    got = matches(kc, "String::with")
    assert "with_capacity" in got, got


def test_magics_and_commands_complete(kc):
    assert ":dep" in matches(kc, ":de")
    assert "%timeit" in matches(kc, "%timei")


def test_nothing_to_complete_is_an_empty_answer_and_the_kernel_goes_on(kc):
    assert matches(kc, "foo_that_does_not_exist().res") == []
    # Inside a string there is no expression to complete.
    assert matches(kc, 'let s = "abc.le') == []
    ok(*run(kc, "let kept = 1;"))
    assert "kept" in matches(kc, "ke")


def test_inspect_shows_types_and_std_docs(kc):
    ok(*run(kc, "fn names() -> Vec<String> { vec![] }\nlet count = 3usize;"))
    text = inspect_text(kc, "names()", len("names()"))
    assert text and "Vec<String>" in text, text
    code = "let _v: Vec<i32> = Vec::with_capacity(3);"
    text = inspect_text(kc, code, code.index("with_capacity") + 4)
    assert text and "with_capacity" in text and "capacity" in text.lower(), text
    code = "names().len()"
    text = inspect_text(kc, code, code.index("len") + 1)
    assert text and "fn len(&self) -> usize" in text, text
    text = inspect_text(kc, "count", 2)
    assert text and "count: usize" in text, text
