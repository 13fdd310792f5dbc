"""evcxr's integration tests (evcxr/tests/integration_tests.rs), restated as what a
Jupyter user sees through jupyter_client: execute replies, results, streams, errors,
complete_reply and inspect_reply. Each test is named after the evcxr test it ports.

evcxr looks at its own internals where a notebook user cannot (variables_and_types,
defined_item_names, check, completions, hover_at); here the same questions are asked
through `:vars`, a later cell, a complete_request or an inspect_request. evcxr-only
commands are replaced by what ferrocell offers for the same need (`:types` and
`:doc`: Shift+Tab; `:show_deps`: `:dep` alone; `:preserve_vars_on_panic`: ferrocell
always keeps variables after a panic).

Where ferrocell does better than evcxr the tests assert ferrocell's behaviour:
variables survive a panic and an abort, bindings made before a failing `?` are kept,
closures and `impl Trait` values are kept for later cells.

Left out:
- shorten_type_name: calls evcxr_shorten_type, a helper evcxr defines inside its
  child process; the short type names a user sees are checked in test_display_type.
- (the context pool of new_context / ContextHolder is test machinery, not a test.)
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, stream_text, value

DEP_TIMEOUT = 300  # a `:dep` of a local crate builds it with cargo


# --- helpers -----------------------------------------------------------------------


def failed(reply, outputs, ename=None) -> str:
    """The cell failed with exactly one error (of `ename`, if given): its text."""
    assert reply["content"]["status"] == "error", (reply["content"], kh.all_text(outputs))
    errors = of_type(outputs, "error")
    assert len(errors) == 1, outputs
    if ename is not None:
        assert errors[0]["content"]["ename"] == ename, errors[0]["content"]
    return error_text(errors[0])


def compile_error(reply, outputs) -> str:
    return failed(reply, outputs, "CompileError")


def short(ty: str) -> str:
    """A type without its std paths: `std::vec::Vec<i32>` -> `Vec<i32>`."""
    return re.sub(r"\b(?:std|core|alloc)::(?:\w+::)*", "", ty)


def session_vars(kc) -> dict[str, str]:
    """`:vars` as {name: type}: the variables a later cell can use. The types are compared
    without std paths (ferrocell's `:vars` writes them in full; test_display_type asks
    for the short form)."""
    reply, outputs = run(kc, ":vars")
    ok(reply, outputs)
    text = stream_text(outputs)
    if text.strip() == "No variables.":
        return {}
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Variable"), text
    column = lines[0].index("Type")
    return {line.split()[0]: short(line[column:].strip()) for line in lines[1:]}


def complete(kc, code, cursor_pos=None) -> dict:
    content = kc.complete(code, cursor_pos, reply=True, timeout=30)["content"]
    assert content["status"] == "ok", content
    return content


def inspect(kc, code, cursor_pos=None) -> dict:
    content = kc.inspect(code, cursor_pos, reply=True, timeout=30)["content"]
    assert content["status"] == "ok", content
    return content


def local_crate(root: Path, name: str, src: str, version: str = "0.0.1") -> Path:
    """A crate on disk, as evcxr's TmpCrate writes it."""
    path = root / name
    (path / "src").mkdir(parents=True)
    (path / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2018"\n')
    (path / "src" / "lib.rs").write_text(src)
    return path


# --- cells, values and variables ------------------------------------------------


def test_single_statement(kc):
    """A cell holding one assert_eq! statement runs without error."""
    reply, outputs = run(kc, "assert_eq!(40i32 + 2, 42)")
    ok(reply, outputs)
    assert not of_type(outputs, "error")


def test_save_and_restore_variables(kc):
    """Variables carry over between cells, keep their mutability, and `?` cells bind them."""
    ok(*run(kc, "let mut a = 34; let b = 8;"))
    ok(*run(kc, "a = a + b;"))
    assert value(kc, "a") == "42"
    text = compile_error(*run(kc, "b = 2;"))
    assert "E0594" in text or "E0384" in text, text
    ok(*run(kc, textwrap.dedent("""\
        pub mod foo {
            pub mod bar {
                pub struct Baz {}
                impl Baz {
                    pub fn r42(&self) -> i32 { 42 }
                }
            }
        }
        fn create_baz() -> Result<Option<foo::bar::Baz>, i32> {
            Ok(Some(foo::bar::Baz {}))
        }
        """)))
    ok(*run(kc, "let v1 = create_baz()?;"))
    ok(*run(kc, "let v2 = create_baz()?;"))
    assert value(kc, "v1.unwrap().r42() + v2.unwrap().r42()") == "84"


def test_missing_semicolon_on_let_stmt(kc):
    """A last `let` without its semicolon is a compile error that asks for the `;`."""
    ok(*run(kc, "mod foo { pub mod bar { pub struct Baz {} } }"))
    text = compile_error(*run(kc, "let v1 = foo::bar::Baz {}"))
    assert "`;`" in text, text


def test_printing(kc):
    """println! and eprintln! lines arrive on stdout and stderr, each stream in order."""
    reply, outputs = run(kc, textwrap.dedent("""\
        println!("This is stdout");
        eprintln!("This is stderr");
        println!("Another stdout line");
        eprintln!("Another stderr line");
        """))
    ok(reply, outputs)
    assert stream_text(outputs, "stdout") == "This is stdout\nAnother stdout line\n"
    assert stream_text(outputs, "stderr") == "This is stderr\nAnother stderr line\n"


def test_rc_refcell_etc(kc):
    """An Rc<RefCell<String>> and its clone stay shared across cells."""
    ok(*run(kc, textwrap.dedent("""\
        use std::cell::RefCell; use std::rc::Rc;
        let r: Rc<RefCell<String>> = Rc::new(RefCell::new(String::new()));
        let r2: Rc<RefCell<String>> = Rc::clone(&r);
        """)))
    ok(*run(kc, 'r.borrow_mut().push_str("f");\nlet s = "oo";'))
    ok(*run(kc, 'r.borrow_mut().push_str(s);\nassert!(*r.borrow() == "foo");'))
    # The clone sees the same string: the Rc was not copied apart between cells.
    assert value(kc, "(r2.borrow().clone(), Rc::strong_count(&r))") == '("foo", 2)'


def test_define_then_call_function(kc):
    """A function calls one from an earlier cell; both are then known to the session."""
    ok(*run(kc, "pub fn bar() -> i32 {\n    42\n}"))
    ok(*run(kc, "pub fn foo() -> i32 {\n    bar()\n}\nassert_eq!(foo(), 42);"))
    for name in ("bar", "foo"):
        content = inspect(kc, name)
        assert content["found"] is True, (name, content)
        assert f"fn {name}() -> i32" in content["data"]["text/plain"], content
    assert value(kc, "foo() + bar()") == "84"


def test_function_panics_with_variable_preserving(kc):
    """After a panic that uses `b`, both `a` (a Vec) and `b` still hold their values."""
    ok(*run(kc, "let a = vec![1, 2, 3];\nlet b = 42;"))
    text = failed(*run(kc, 'panic!("Intentional panic {}", b);'), "Panic")
    assert "Intentional panic 42" in text, text
    assert value(kc, 'format!("{:?}, {}", a, b)') == '"[1, 2, 3], 42"'


def test_function_panics_without_variable_preserving(kc):
    """Ferrocell always keeps variables after a panic, and a later compile error keeps them too."""
    ok(*run(kc, "let a = vec![1, 2, 3];\nlet b = 42;"))
    failed(*run(kc, 'panic!("Intentional panic {}", b);'), "Panic")
    assert session_vars(kc) == {"a": "Vec<i32>", "b": "i32"}
    compile_error(*run(kc, "This will not compile"))
    assert session_vars(kc) == {"a": "Vec<i32>", "b": "i32"}
    assert value(kc, 'format!("{:?} {}", a, b)') == '"[1, 2, 3] 42"'


def test_tls_implementing_drop(kc):
    """A thread_local! whose type implements Drop, defined with other items, can be used."""
    ok(*run(kc, textwrap.dedent("""\
        pub struct Foo {}
        impl Drop for Foo {
            fn drop(&mut self) {
                println!("Dropping Foo");
            }
        }
        pub fn init_foo() {
            thread_local! {
                pub static FOO: Foo = Foo {};
            }
            FOO.with(|f| ())
        }
        """)))
    ok(*run(kc, "init_foo();"))
    ok(*run(kc, "init_foo();"))
    assert value(kc, "1 + 1") == "2"


def test_moved_value(kc):
    """A variable that a cell moves out of is gone from the session afterwards."""
    ok(*run(kc, 'let a = Some("foo".to_owned());'))
    assert session_vars(kc) == {"a": "Option<String>"}
    assert value(kc, "a.unwrap()") == '"foo"'
    assert session_vars(kc) == {}
    reply, outputs = run(kc, "a")
    assert reply["content"]["status"] == "error"
    assert "`a`" in error_text(of_type(outputs, "error")[0])


# --- crates from :dep ---------------------------------------------------------------


def test_crate_deps(kc, tmp_path):
    """Bad :dep lines fail and are forgotten; two local crates then work, and a static
    set through one keeps its value in a later cell."""
    reply, outputs = run(kc, ':dep bad = { path = "this_path_does_not_exist" }\n40',
                         timeout=DEP_TIMEOUT)
    failed(reply, outputs, "DepError")
    crate1 = local_crate(tmp_path, "crate1", textwrap.dedent("""\
        use std::sync::atomic::AtomicU32;

        static FOO: AtomicU32 = AtomicU32::new(0);

        pub fn r20() -> i32 { 20 }

        pub fn set_value(v: u32) {
            FOO.store(v, std::sync::atomic::Ordering::SeqCst);
        }

        pub fn get_value() -> u32 {
            FOO.load(std::sync::atomic::Ordering::SeqCst)
        }
        """))
    reply, outputs = run(
        kc, f':dep crate1 = {{ path = "{crate1}", features = ["no_such_feature"] }}',
        timeout=DEP_TIMEOUT)
    assert "no_such_feature" in failed(reply, outputs, "DepError")
    crate2 = local_crate(tmp_path, "crate2", "pub fn r22() -> i32 { 22 }\n")
    reply, outputs = run(kc, textwrap.dedent(f"""\
        :dep crate1 = {{ path = "{crate1}" }}
        :dep crate2 = {{ path = "{crate2}" }}
        crate1::set_value(765);
        crate1::r20() + crate2::r22()"""), timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "42"
    assert value(kc, "crate1::get_value()") == "765"


def test_crate_name_with_hyphens(kc, tmp_path):
    """A local crate whose name has hyphens is used with underscores."""
    path = local_crate(tmp_path, "crate-name-with-hyphens", "pub fn r42() -> i32 { 42 }\n")
    reply, outputs = run(kc, textwrap.dedent(f"""\
        :dep crate-name-with-hyphens = {{ path = "{path}" }}
        use crate_name_with_hyphens;
        crate_name_with_hyphens::r42()"""), timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "42"


def test_crate_show_deps(kc, tmp_path):
    """`:dep` alone lists the crates added so far: none of the user's at first, then the
    local crate added with options and the one added by its bare path."""

    def listed() -> set[str]:
        reply, outputs = run(kc, ":dep", timeout=DEP_TIMEOUT)
        ok(reply, outputs)
        text = stream_text(outputs)
        if text.strip() == "No crates.":
            return set()
        names = {line.split()[0] for line in text.splitlines() if line.strip()}
        # serde (and its derive) come with every session: ferrocell's snapshots use them.
        return names - {"serde", "serde_derive"}

    assert listed() == set()
    crate1 = local_crate(tmp_path, "crate1", "")
    ok(*run(kc, f':dep crate1 = {{ path = "{crate1}", version = "0.0.1" }}',
            timeout=DEP_TIMEOUT))
    assert listed() == {"crate1"}
    crate2 = local_crate(tmp_path, "crate2", "")
    # evcxr also takes a bare path: the crate is named by its Cargo.toml.
    ok(*run(kc, f":dep {crate2}", timeout=DEP_TIMEOUT))
    assert listed() == {"crate1", "crate2"}


# --- compile errors and recovery ----------------------------------------------------


def test_invalid_code(kc):
    """`use crate;` is a compile error, and the kernel goes on."""
    compile_error(*run(kc, "use crate;"))
    assert value(kc, "40 + 2") == "42"


def test_struct_type_inference(kc):
    """A struct's value shows without being moved, destructures in a later cell, and the
    struct is the one item the session defines."""
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        pub struct Point {
            pub x: i32,
            pub y: i32,
        }
        """)))
    ok(*run(kc, "let p1 = Point {x: 3, y: 8};"))
    assert value(kc, "p1") == "Point { x: 3, y: 8 }"
    ok(*run(kc, "let Point {x, y: y2} = p1;"))
    ok(*run(kc, "assert_eq!(x, 3);\nassert_eq!(y2, 8);"))
    # The i32 fields were copied out, so p1 is still there too.
    assert session_vars(kc) == {"p1": "Point", "x": "i32", "y2": "i32"}
    content = inspect(kc, "Point")
    assert content["found"] is True and "pub struct Point" in content["data"]["text/plain"]


def test_non_concrete_types(kc):
    """A tuple of an integer and a float literal is kept as (i32, f64)."""
    ok(*run(kc, "let a = (42, 3.14);"))
    assert session_vars(kc) == {"a": "(i32, f64)"}


def test_statement_and_expression(kc):
    """A cell with a `let` and then the variable shows the variable's value."""
    assert value(kc, 'let a = "foo".to_owned() + "bar"; a') == '"foobar"'


def test_continue_execution_after_bad_use_statement(kc):
    """`use foobar;` is one E0432 error, and the next cell runs."""
    text = compile_error(*run(kc, "use foobar;"))
    assert text.count("error[") == 1 and "error[E0432]" in text, text
    assert value(kc, '"f".to_string() + "oo"') == '"foo"'


def test_error_from_macro_expansion(kc):
    """A type error inside format!'s expansion is reported once, on the user's own line."""
    cell = 'let mut s = String::new(); s.push_str(format!(""));'
    text = compile_error(*run(kc, cell))
    assert "E0308" in text, text
    assert text.count("error[") == 1, text
    assert cell in text, text
    # Every location given is in the cell, on its only line.
    locations = [part.split()[0] for part in text.split("cell:")[1:]]
    assert locations and all(loc.startswith("1:") for loc in locations), text


def test_multiple_identical_use_statements(kc):
    """The same `use` in two cells is fine."""
    ok(*run(kc, "use std::collections::HashMap;"))
    ok(*run(kc, "use std::collections::HashMap;"))
    assert value(kc, "HashMap::<u8, u8>::new().len()") == "0"


def test_redefine_type_with_existing_var(kc):
    """Redefining a struct drops the variables of its old definition and keeps the new one's."""
    ok(*run(kc, "struct Foo {x: i32}\nlet f1 = Foo {x: 42};\nlet f2 = Foo {x: 42};"))
    assert session_vars(kc) == {"f1": "Foo", "f2": "Foo"}
    ok(*run(kc, "struct Foo { x: i32, y: i32 }\nlet f3 = Foo {x: 42, y: 43};"))
    assert session_vars(kc) == {"f3": "Foo"}
    ok(*run(kc, "assert_eq!(f3.x, 42);"))


def test_abort_and_restart(kc):
    """std::process::abort() is reported as the runner's death by SIGABRT; items and the
    variable are still there afterwards, and :clear removes them."""
    ok(*run(kc, "pub fn foo() -> i32 {\n    42\n}\nlet a = 42i32;"))
    text = failed(*run(kc, "std::process::abort();"), "RunnerDied")
    assert "SIGABRT" in text, text
    ok(*run(kc, "assert_eq!(foo(), 42)"))
    # Ferrocell restores the variable from its snapshot (evcxr loses it).
    assert value(kc, "a") == "42"
    ok(*run(kc, ":clear"))
    ok(*run(kc, "assert_eq!(40 + 2, 42);"))
    text = compile_error(*run(kc, "foo()"))
    assert "cannot find function `foo`" in text, text
    assert session_vars(kc) == {}


def test_variable_assignment_compile_fail_then_use_statement(kc):
    """After a `let` that fails to compile, a `use` and a value still work."""
    compile_error(*run(kc, "let v = foo();"))
    ok(*run(kc, "use std::collections::HashMap;"))
    assert value(kc, "42") == "42"


def test_int_array(kc):
    """An array made with [value; n] is usable in a later cell."""
    ok(*run(kc, "let v = [42; 5];"))
    ok(*run(kc, "assert_eq!(v[4], 42)"))


def test_const_generics_with_explicit_type(kc):
    """A variable of a const-generic struct, typed explicitly, is usable in a later cell."""
    ok(*run(kc, textwrap.dedent("""\
        struct Foo<const I: usize> {
            data: [u8; I],
        }
        let foo: Foo<3> = Foo::<3> { data: [41, 42, 43] };
        """)))
    ok(*run(kc, "assert_eq!(foo.data[1], 42)"))


def test_reserved_words(kc):
    """A variable whose type lives in `mod r#async` is kept."""
    ok(*run(kc, "mod r#async { pub struct Foo {} }\nlet v = r#async::Foo {};"))
    assert value(kc, "std::mem::size_of_val(&v)") == "0"


def test_unnamable_type_closure(kc):
    """A closure bound with `let` is kept and can be called from a later cell."""
    ok(*run(kc, "let f = |x: i32| x + 1;"))
    assert value(kc, "f(41)") == "42"
    ok(*run(kc, "let v = || {42};"))
    assert value(kc, "v()") == "42"


def test_unnamable_type_impl_trait(kc):
    """A value returned as `impl Trait` is kept, and a later cell calls the trait on it."""
    ok(*run(kc, textwrap.dedent("""\
        pub trait Bar { fn get(&self) -> i32; }
        impl Bar for i32 { fn get(&self) -> i32 { *self } }
        pub fn foo() -> impl Bar { 42 }
        let v = foo();
        """)))
    assert value(kc, "v.get()") == "42"


def test_partially_inferred_variable_type(kc):
    """A `Vec<_>` whose element type rustc infers is kept."""
    ok(*run(kc, "let v : Vec<_> = (1..10).collect();"))
    ok(*run(kc, "assert_eq!(v.len(), 9);"))


def test_print_then_assign_variable(kc):
    """A cell that only prints, then a cell that binds a variable."""
    reply, outputs = run(kc, 'println!("Hello, world!");')
    ok(reply, outputs)
    assert stream_text(outputs) == "Hello, world!\n"
    ok(*run(kc, "let x = 42;"))
    assert value(kc, "x") == "42"


def test_display_type(kc):
    """A value shows plainly; its type, in short form, is what Shift+Tab on its variable shows."""
    assert value(kc, "42") == "42"
    assert value(kc, 'Some("hello".to_string())') == 'Some("hello")'
    ok(*run(kc, 'let n = 42;\nlet greeting = Some("hello".to_string());'))
    assert "n: i32" in inspect(kc, "n")["data"]["text/plain"]
    text = inspect(kc, "greeting")["data"]["text/plain"]
    assert "greeting: Option<String>" in text, text


def test_question_mark_operator(kc):
    """`?` works without variables, :efmt picks the error's format, and a failing `?`
    keeps what the cell changed and bound before it."""
    text = failed(*run(kc, 'std::fs::read_to_string("/does/not/exist")?;'))
    assert "No such file or directory" in text, text
    failed(*run(kc, ":efmt x"), "MagicError")
    ok(*run(kc, ":efmt {:?}"))
    ok(*run(kc, textwrap.dedent("""\
        let owned = "owned".to_string();
        let copy = 40;
        let mut owned_mut = "owned_mut".to_string();
        let mut copy_mut = 41;
        """)))
    text = failed(*run(kc, textwrap.dedent("""\
        use std::io::Result;
        owned_mut.push_str("42");
        copy_mut += 1;
        let copy = 42;
        let copy2 = 42;
        std::fs::read_to_string("/does/not/exist")?;
        owned_mut.push_str("------");
        copy_mut += 10;
        """)))
    assert "NotFound" in text, text  # the Debug form, as :efmt {:?} asked
    ok(*run(kc, textwrap.dedent("""\
        assert_eq!(owned, "owned");
        assert_eq!(owned_mut, "owned_mut42");
        assert_eq!(copy_mut, 42);
        """)))
    # Better than evcxr, which drops `copy` and `copy2`: bindings before the `?` are kept.
    assert value(kc, "(copy, copy2)") == "(42, 42)"


def test_format(kc):
    """format! with a width and hex shows as a padded string."""
    assert value(kc, 'format!("{:2x}", 2)') == '" 2"'


def test_non_semi_statements(kc):
    """Only the final expression of a cell is its value, not earlier `for` loops."""
    reply, outputs = run(kc, "for a in 1..5 {}\nfor b in 1..5 {}\n42")
    ok(reply, outputs)
    assert kh.result_text(outputs) == "42"


def test_partial_destructuring(kc):
    """`let (x, ..) = tuple` keeps x for later cells."""
    ok(*run(kc, "let _ = 1;\nlet (x, ..) = (42, 43, 44);"))
    assert value(kc, "x") == "42"


def test_define_then_call_macro(kc):
    """A macro_rules! macro defined in one cell expands in the next."""
    ok(*run(kc, "macro_rules! foo {\n    ($a:expr) => {\n        40 + $a\n    };\n}"))
    assert value(kc, "foo!(2)") == "42"


def test_repeated_use_statements(kc):
    """Many kinds of `use` persist; a failing `use` does not disturb later cells."""
    ok(*run(kc, textwrap.dedent("""\
        mod foo {
            pub struct Bar {}
            impl Bar {
                pub fn result() -> i32 {
                    42
                }
                pub fn new() -> Bar { Bar {} }
            }
            pub struct Baz {}
            pub trait Foo {
                fn do_foo(&self) -> i32 { 42 }
            }
            impl Foo for Bar {}
            pub mod s1 {
                pub fn f1() {}
            }
            pub mod s2 {
                pub fn f2() {}
            }
        }
        use std::iter::Iterator as _;
        use foo::Foo as _;
        use foo::s1::*;
        use foo::s2::*;
        use foo::Bar;""")))
    compile_error(*run(kc, "use this::will::fail;"))
    assert value(kc, "use foo::Bar as _; Bar::result()") == "42"
    assert value(kc, "use foo::{Bar, Baz}; f1(); f2(); Bar::new().do_foo()") == "42"


# --- checking code: errors at execute, inspect ------------------------------------


def location(code: str, line: int, snippet: str, nth: int = 0) -> str:
    """`cell:LINE:COL` of `snippet` on 1-based `line` of `code`, COL counted in chars."""
    text = code.splitlines()[line - 1]
    col = -1
    for _ in range(nth + 1):
        col = text.index(snippet, col + 1)
    return f"cell:{line}:{col + 1}"


def test_check_for_errors(kc):
    """Compile errors point at the right line and column (counted in characters), warnings
    do not fail a cell, and bad :dep lines and commands are reported."""
    code = textwrap.dedent("""\
        let a = 10;
        let s2 = "さび  äää"; let s2: String = 42; fn foo() -> i32 {
            println!("さび  äää"); (
            )
        }
        """)
    text = compile_error(*run(kc, code))
    assert location(code, 2, "42") in text, text  # evcxr: 2:41
    assert location(code, 3, "(", 1) in text, text  # evcxr: 3:29
    # An unused variable in the cell itself: no error, no warning.
    reply, outputs = run(kc, "let mut s = String::new();")
    ok(reply, outputs)
    assert "warning" not in kh.all_text(outputs)
    # An unused variable inside a function: a warning, and still no error.
    reply, outputs = run(kc, "fn foo() {let mut s = String::new();}")
    ok(reply, outputs)
    # A `use` executed before is no duplicate when it comes again.
    assert value(kc, "use std::fmt::Debug; 42") == "42"
    assert value(kc, "use std::fmt::Debug; 42") == "42"
    text = compile_error(*run(kc, "use std::foo::Bar;"))
    assert "cell:1:10" in text, text
    # An error from a macro's expansion (write! without fmt::Write in scope).
    text = compile_error(*run(kc, 'let mut s = String::new(); write!(s, "foo").unwrap();'))
    assert "cell:1:28" in text or "cell:1:35" in text, text
    reply, outputs = run(kc, ':dep foo = { path = "/this/path/does/not/exist" }',
                         timeout=DEP_TIMEOUT)
    assert "/this/path/does/not/exist" in failed(reply, outputs, "DepError")
    failed(*run(kc, ":an_invalid_command"), "UnknownMagic")
    # A variable holding a borrow of a local cannot outlive its cell. evcxr refuses the
    # cell; ferrocell runs it and says that `v` is not kept.
    reply, outputs = run(kc, "let s1 = String::new(); let v = &s1;")
    ok(reply, outputs)
    note = stream_text(outputs, "stderr")
    assert "`v` is not kept" in note, note
    assert "cannot find value `v`" in compile_error(*run(kc, "v.len()"))
    # A variable moved away by the cell is no error.
    ok(*run(kc, "let s1 = String::new(); std::mem::drop(s1);"))
    # An unclosed parenthesis: rustc's "unclosed delimiter", at the `(`.
    text = compile_error(*run(kc, "std::mem::drop(42); std::mem::drop("))
    assert "cell:1:35" in text and "unclosed delimiter" in text, text


def test_check_for_doc(kc):
    """Shift+Tab on a struct of the session shows its definition and doc comment."""
    ok(*run(kc, "///this is my struct\nstruct MyStruct(usize);"))
    content = inspect(kc, "MyStruct")
    assert content["found"] is True, content
    text = content["data"]["text/plain"]
    assert "struct MyStruct(usize)" in text and "this is my struct" in text, text


def test_hover_at_returns_content(kc):
    """Shift+Tab just after `Vec::new` shows what it is."""
    code = "let _v: Vec<i32> = Vec::new()"
    content = inspect(kc, code, code.index("Vec::new") + len("Vec::new"))
    assert content["found"] is True, content
    text = content["data"]["text/plain"]
    assert text.strip() and "Vec" in text, text


def test_hover_at_unknown_symbol_returns_fallback(kc):
    """Shift+Tab on a name nothing defines answers `not found`, and the kernel goes on."""
    code = "totally_unknown_function_xyz()"
    content = inspect(kc, code, len(code))
    assert content["found"] is False, content
    assert value(kc, "1 + 1") == "2"


# --- completion ---------------------------------------------------------------------


def test_code_completion(kc):
    """Tab completes commands, session variables (but no kernel internals), methods of an
    expression's type, paths in `use` and associated functions of a session type."""
    ok(*run(kc, textwrap.dedent("""\
        mod bar {
            pub struct Baz {}
            impl Baz {
                pub fn fff5() {}
            }
        }
        let var1 = 42;
        let var2 = String::new();""")))
    content = complete(kc, ":de", 3)
    assert content["matches"] == [":dep"], content
    assert (content["cursor_start"], content["cursor_end"]) == (0, 3)

    code = "fn foo() -> Vec<String> {\n    vec![]\n}\nfoo().res"
    assert complete(kc, code.replace("res", "asdfasdf"))["matches"] == []

    matches = complete(kc, "let _ = v")["matches"]
    assert "var1" in matches and "var2" in matches, matches
    for prefix in ("v", "e", "f", "_"):
        for m in complete(kc, f"let _ = {prefix}")["matches"]:
            assert "ferrocell" not in m and not m.startswith("__") and not m.startswith("fc_"), m

    content = complete(kc, code)
    matches = content["matches"]
    assert any(m.startswith("reserve") for m in matches), content
    assert all(m.startswith("res") for m in matches), content
    assert content["cursor_start"] == len(code) - len("res")
    assert content["cursor_end"] == len(code)

    assert "Baz" in complete(kc, "use bar::")["matches"]
    matches = complete(kc, "use bar::Baz; Baz::")["matches"]
    assert any(m.startswith("fff5") for m in matches), matches


def test_completion_fields_populated(kc):
    """Every completion of `foo().res` is a non-empty text, and `reserve` is a function."""
    ok(*run(kc, "fn foo() -> Vec<String> {\n    vec![]\n}"))
    code = "foo().res"
    content = complete(kc, code)
    assert content["matches"], content
    assert all(m for m in content["matches"]), content
    assert any(m.startswith("reserve") for m in content["matches"]), content
    # Jupyter's form of evcxr's `kind`: JupyterLab's experimental typed completions.
    types = content["metadata"].get("_jupyter_types_experimental")
    if types is not None:
        reserve = [t for t in types if t["text"].startswith("reserve")]
        assert reserve and reserve[0]["type"] == "function", types


def test_command_completion_fields(kc):
    """Completing `:de` offers exactly `:dep`, replacing the whole command."""
    content = complete(kc, ":de", 3)
    assert ":dep" in content["matches"], content
    assert (content["cursor_start"], content["cursor_end"]) == (0, 3)
    types = content["metadata"].get("_jupyter_types_experimental")
    if types is not None:
        dep = [t for t in types if t["text"] == ":dep"]
        assert dep and dep[0]["type"] == "magic", types
