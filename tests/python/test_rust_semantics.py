"""Cells behave as one block of Rust: bindings keep the mutability they were declared
with, every form of `use` persists, and compile errors point at the user's code even
when rustc's span lies inside a macro's expansion."""

from __future__ import annotations

import textwrap

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, value


def compile_error(reply, outputs):
    assert reply["content"]["status"] == "error", reply["content"]
    errors = of_type(outputs, "error")
    assert len(errors) == 1 and errors[0]["content"]["ename"] == "CompileError", outputs
    return error_text(errors[0])


# --- mutability as written --------------------------------------------------------


def test_an_immutable_binding_stays_immutable(kc):
    ok(*run(kc, "let frozen = 5;\nlet v = vec![1];"))
    text = compile_error(*run(kc, "let a = 1;\nfrozen += 1;"))
    assert "E0594" in text or "E0384" in text, text
    assert "cell:2:1" in text, text
    assert "frozen += 1;" in text
    assert "let mut frozen = frozen;" in text  # the hint names what to write
    text = compile_error(*run(kc, "v.push(2);"))
    assert "E0596" in text and "cell:1:1" in text, text
    assert value(kc, "(frozen, v.clone())") == "(5, [1])"


def test_let_mut_stays_mutable_and_rebinding_makes_mutable(kc):
    ok(*run(kc, "let mut thawed = 1;\nlet fixed = vec![1];"))
    ok(*run(kc, "thawed += 1;"))
    ok(*run(kc, "thawed *= 10;"))
    assert value(kc, "thawed") == "20"
    ok(*run(kc, "let mut fixed = fixed;\nfixed.push(2);"))
    ok(*run(kc, "fixed.push(3);"))
    assert value(kc, "fixed") == "[1, 2, 3]"
    # And back: a rebinding without mut freezes it again.
    ok(*run(kc, "let fixed = fixed;"))
    compile_error(*run(kc, "fixed.push(4);"))
    # Patterns: each name as declared.
    ok(*run(kc, "let (mut a, b) = (1, 2);"))
    ok(*run(kc, "a += b;"))
    compile_error(*run(kc, "b += 1;"))
    assert value(kc, "(a, b)") == "(3, 2)"


def test_mutability_survives_a_failed_cell(kc):
    ok(*run(kc, "let mut n = 1;\nlet k = 2;"))
    reply, _ = run(kc, 'n += k;\npanic!("stop");')
    assert reply["content"]["ename"] == "Panic"
    ok(*run(kc, "n += 1;"))
    compile_error(*run(kc, "k += 1;"))
    assert value(kc, "(n, k)") == "(4, 2)"


# --- use, in every form ---------------------------------------------------------


def test_a_trait_imported_as_underscore_in_the_cell_of_its_module(kc):
    ok(*run(kc, textwrap.dedent("""\
        use foo::Foo as _;
        mod foo {
            pub trait Foo { fn do_foo(&self) -> i32; }
            pub struct Bar;
            impl Bar { pub fn new() -> Bar { Bar } }
            impl Foo for Bar { fn do_foo(&self) -> i32 { 7 } }
        }
        use foo::Bar;
        """)))
    assert value(kc, "Bar::new().do_foo()") == "7"
    # Two `as _` imports in later cells do not replace each other.
    ok(*run(kc, "use std::fmt::Write as _;"))
    ok(*run(kc, "use std::io::Write as _;"))
    ok(*run(kc, "struct Later;\nimpl Later { fn f(&self) -> i32 { 1 } }"))
    assert value(kc, textwrap.dedent("""\
        let mut s = String::new();
        write!(s, "{}", Bar::new().do_foo()).unwrap();
        let mut out: Vec<u8> = Vec::new();
        write!(out, "x").unwrap();
        (s, out, Later.f())""")) == '("7", [120], 1)'


def test_globs_groups_nested_self_pub_use_and_extern_crate(kc):
    ok(*run(kc, textwrap.dedent("""\
        use std::collections::*;
        use std::{io::{self, Read}, sync::{Arc, atomic::{AtomicU32, Ordering}}};
        pub use std::mem::size_of as sz;
        extern crate std as mystd;
        """)))
    assert value(kc, textwrap.dedent("""\
        let counter = Arc::new(AtomicU32::new(3));
        let mut buf = String::new();
        io::empty().read_to_string(&mut buf).unwrap();
        (HashMap::<u8, u8>::new().len(), BTreeSet::from([2, 1]).len(),
         counter.load(Ordering::SeqCst), sz::<u64>(), mystd::mem::size_of::<u16>(), buf.len())""")) \
        == "(0, 2, 3, 8, 2, 0)"


def test_a_use_before_the_items_it_names_and_a_failing_use(kc):
    ok(*run(kc, "use m::{f, g as h};\nmod m { pub fn f() -> i32 { 1 } pub fn g() -> i32 { 2 } }"))
    assert value(kc, "f() + h()") == "3"
    text = compile_error(*run(kc, "use nope::Thing;"))
    assert "use nope::Thing;" in text and "cell:1:5" in text, text
    assert "pub use" not in text
    # The failed use did not stick: later cells still compile.
    assert value(kc, "f() * 10") == "10"
    ok(*run(kc, "fn later() -> i32 { 4 }"))
    assert value(kc, "later() + h()") == "6"


# --- errors inside macro expansions ------------------------------------------------


def test_an_error_inside_a_std_macro_points_at_the_call(kc):
    text = compile_error(*run(kc, 'let x = 1;\nlet mut s = String::new();\ns.push_str(format!(""));'))
    assert "E0308" in text
    assert "cell:3:12" in text, text
    assert 's.push_str(format!(""));' in text
    assert "^^^^^^^^^^^" in text


def test_an_error_inside_a_user_macro_points_at_the_call(kc):
    ok(*run(kc, "macro_rules! twice { ($e:expr) => { $e * 2u8 } }"))
    text = compile_error(*run(kc, "let x: u32 = 1;\nlet y = twice!(x);"))
    assert "cell:2:9" in text, text
    assert "let y = twice!(x);" in text


def test_an_error_in_an_item_shows_the_users_own_line(kc):
    text = compile_error(*run(kc, "fn bad() -> u8 { \"no\" }"))
    assert "cell:1:18" in text, text
    assert "fn bad() -> u8" in text and "pub fn" not in text


# --- editions ---------------------------------------------------------------------


def test_cells_are_edition_2024_and_edition_switches(kc):
    reply, outputs = run(kc, "%edition")
    ok(reply, outputs)
    assert "edition 2024" in kh.all_text(outputs)
    # 2024: `gen` is reserved and `set_var` is unsafe.
    text = compile_error(*run(kc, "let gen = 1;"))
    assert "gen" in text
    text = compile_error(*run(kc, 'std::env::set_var("FERROCELL_EDITION_TEST", "1");'))
    assert "E0133" in text and "cell:1:1" in text, text
    ok(*run(kc, 'unsafe { std::env::set_var("FERROCELL_EDITION_TEST", "1"); }'))
    # 2021 for older code; items defined there work from 2024 cells.
    ok(*run(kc, "%edition 2021"))
    ok(*run(kc, "fn old_style() -> i32 { let gen = 20; gen + 1 }"))
    ok(*run(kc, 'std::env::set_var("FERROCELL_EDITION_TEST", "2");'))
    reply, outputs = run(kc, ":edition")
    assert "edition 2021" in kh.all_text(outputs)
    ok(*run(kc, ":edition 2024"))
    compile_error(*run(kc, "let gen = 1;"))
    assert value(kc, 'old_style() + std::env::var("FERROCELL_EDITION_TEST").unwrap().len() as i32') == "22"
    reply, outputs = run(kc, "%edition 2027")
    assert reply["content"]["status"] == "error"
    assert "2018, 2021, 2024" in error_text(of_type(outputs, "error")[0])
    # 2018 works too (2015 is refused: its crates need `extern crate`).
    ok(*run(kc, "%edition 2018"))
    assert value(kc, "let async_ = 1; old_style() + async_") == "22"
    assert run(kc, "%edition 2015")[0]["content"]["status"] == "error"
