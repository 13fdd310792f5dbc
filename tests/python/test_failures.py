"""Failures in a cell and around it: compile errors, panics, a dying runner,
and a missing or broken rustc. Each is one `error` output and an error reply,
and the kernel goes on working afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import time
import uuid

import pytest

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, request, run, value


def single_error(reply, outputs):
    """The cell failed with exactly one error output and nothing else: return it."""
    assert reply["content"]["status"] == "error", reply["content"]
    assert [m["msg_type"] for m in outputs] == ["error"], outputs
    error = outputs[0]["content"]
    assert reply["content"]["ename"] == error["ename"]
    assert isinstance(reply["content"]["execution_count"], int)
    assert all(isinstance(line, str) for line in error["traceback"])
    return error


# --- compile errors ------------------------------------------------------------------


def test_compile_error_is_one_error_with_cell_line_numbers(kc):
    code = 'let a = 1;\nlet b = 2;\nlet c: i32 = "three";\nprintln!("{}", a + b + c);'
    error = single_error(*run(kc, code))
    assert error["ename"] == "CompileError"
    text = error_text(error)
    assert "mismatched types" in text
    assert "cell:3:" in text, text
    assert "cell:1:" not in text and "cell:2:" not in text


def test_compile_error_column(kc):
    error = single_error(*run(kc, "let ok = 1;\n    let x: u8 = undefined_name;"))
    text = error_text(error)
    assert "cannot find value `undefined_name`" in text
    assert "cell:2:17" in text, text


def test_compile_error_in_an_item(kc):
    code = "fn good() -> i32 { 1 }\n\nfn bad() -> i32 {\n    \"not an int\"\n}"
    error = single_error(*run(kc, code))
    assert error["ename"] == "CompileError"
    assert "cell:4:" in error_text(error)


def test_syntax_error(kc):
    error = single_error(*run(kc, "let x = ;"))
    assert error["ename"] == "CompileError"
    assert "cell:1:" in error_text(error)


def test_several_compile_errors_in_one_output(kc):
    code = 'let a: i32 = "x";\nlet b: bool = 5;'
    text = error_text(single_error(*run(kc, code)))
    assert "cell:1:" in text and "cell:2:" in text


def test_compile_error_does_not_define_items(kc):
    single_error(*run(kc, 'fn half_done() -> i32 { 1 }\nlet x: i32 = "no";'))
    reply, outputs = run(kc, "half_done()")
    assert reply["content"]["status"] == "error"


def test_kernel_works_after_compile_error(kc):
    ok(*run(kc, "fn still_here() -> i32 { 5 }"))
    single_error(*run(kc, "let x: i32 = \"nope\";"))
    assert value(kc, "still_here() + 1") == "6"


def test_deny_by_default_lints_are_errors(kc):
    """rustc's deny-by-default lints stay errors, as in any Rust program."""
    for code, message in [("let x: u8 = 300;", "literal out of range"),
                          ("let y = i32::MAX + 1;", "overflow")]:
        error = single_error(*run(kc, code))
        assert error["ename"] == "CompileError", code
        assert message in error_text(error), code


def test_warnings_do_not_fail_a_cell(kc):
    reply, outputs = run(kc, "let unused_variable = 1;\n2 + 2")
    ok(reply, outputs)
    assert kh.result_text(outputs) == "4"
    assert not of_type(outputs, "error")


# --- panics --------------------------------------------------------------------------


def test_panic_is_reported_and_state_survives(kc):
    ok(*run(kc, "fn double(x: i32) -> i32 { x * 2 }"))
    code = 'let v: Vec<i32> = Vec::new();\npanic!("boom {}", 40 + 2);'
    error = single_error(*run(kc, code))
    assert error["ename"] == "Panic"
    assert "boom 42" in error["evalue"]
    assert "cell:2" in error_text(error)
    assert value(kc, "double(21)") == "42"


def test_panic_keeps_output_before_it(kc):
    reply, outputs = run(kc, 'println!("got here");\nlet v: Vec<i32> = vec![];\nv[3]')
    assert reply["content"]["status"] == "error"
    assert [m["msg_type"] for m in outputs] == ["stream", "error"]
    assert outputs[0]["content"]["text"] == "got here\n"
    error = outputs[1]["content"]
    assert error["ename"] == "Panic"
    assert "index out of bounds" in error["evalue"]
    assert "cell:3" in error_text(error)


def test_unwrap_on_none_panics(kc):
    error = single_error(*run(kc, "let x: Option<i32> = None;\nx.unwrap()"))
    assert error["ename"] == "Panic"
    assert "None" in error["evalue"]


def test_panic_in_an_item_called_later(kc):
    ok(*run(kc, 'fn explode() -> i32 {\n    panic!("inside explode")\n}'))
    error = single_error(*run(kc, "explode()"))
    assert error["ename"] == "Panic"
    assert "inside explode" in error["evalue"]
    assert value(kc, "1 + 1") == "2"


def test_panic_on_another_thread_is_contained(kc):
    code = ('let h = std::thread::spawn(|| -> i32 { panic!("thread boom") });\n'
            'h.join().is_err()')
    reply, outputs = run(kc, code)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "true"


# --- a dying runner ------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, signal_name",
    [
        ("std::process::abort();", "SIGABRT"),
        ("unsafe { std::ptr::write_volatile(16usize as *mut i32, 1); }", "SIGSEGV"),
    ],
    ids=["abort", "segfault"],
)
def test_runner_death_is_reported_and_recovered(kc, code, signal_name):
    ok(*run(kc, "fn survivor() -> i32 { 7 }\n#[derive(Debug)]\nstruct Kept { n: i32 }"))
    assert value(kc, "survivor()") == "7"
    reply, outputs = run(kc, 'println!("about to die");\n' + code)
    assert kh.stream_text(outputs) == "about to die\n"
    error = single_error(reply, [m for m in outputs if m["msg_type"] != "stream"])
    assert error["ename"] == "RunnerDied"
    assert signal_name in error["evalue"], error["evalue"]
    assert value(kc, "survivor() * 6") == "42"
    assert value(kc, "Kept { n: survivor() }") == "Kept { n: 7 }"


def test_process_exit_is_reported(kc):
    ok(*run(kc, "fn survivor() -> i32 { 7 }"))
    error = single_error(*run(kc, "std::process::exit(3);"))
    assert error["ename"] == "RunnerDied"
    assert "3" in error["evalue"]
    assert value(kc, "survivor()") == "7"


def test_runner_killed_from_outside(kernel):
    km, kc = kernel
    ok(*run(kc, "fn survivor() -> i32 { 7 }"))
    msg_id = kc.execute('println!("sleeping");\n'
                        "std::thread::sleep(std::time::Duration::from_secs(60));")
    kh.wait_for_output(kc, msg_id)
    runners = kh.descendants(kh.kernel_pid(km))
    assert runners, "no runner process under the kernel"
    for pid in runners:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reply, outputs = kh.wait(kc, msg_id, timeout=30)
    error = single_error(reply, [m for m in outputs if m["msg_type"] != "stream"])
    assert error["ename"] == "RunnerDied"
    assert "SIGKILL" in error["evalue"]
    assert value(kc, "survivor()") == "7"


def test_two_crashes_in_a_row(kc):
    for _ in range(2):
        error = single_error(*run(kc, "std::process::abort();"))
        assert error["ename"] == "RunnerDied"
    assert value(kc, "3 * 3") == "9"


# --- rustc missing or broken ---------------------------------------------------------


def unique_cell():
    """Code that no earlier cell compiled, so the cache cannot answer for rustc."""
    return f"{uuid.uuid4().int % 10**12}u64 + 1"


def fresh_cache(tmp_path, name="cache"):
    path = tmp_path / name
    path.mkdir()
    return str(path)


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def assert_still_answers(kc):
    reply = request(kc, "kernel_info_request")
    assert reply["content"]["status"] == "ok"
    reply = request(kc, "kernel_info_request", channel="control")
    assert reply["content"]["status"] == "ok"


def test_missing_rustc_from_env(start_kernel, tmp_path):
    _, kc = start_kernel(env={"FERROCELL_RUSTC": "/nonexistent/rustc",
                              "FERROCELL_CACHE": fresh_cache(tmp_path)})
    assert_still_answers(kc)
    reply, outputs = run(kc, unique_cell(), timeout=30)
    error = single_error(reply, outputs)
    assert "rustc" in error_text(error)
    assert_still_answers(kc)
    # And again: the kernel does not get stuck after the first failure.
    reply, outputs = run(kc, unique_cell(), timeout=30)
    assert "rustc" in error_text(single_error(reply, outputs))


def test_missing_rustc_on_path(start_kernel, tmp_path):
    path = "/usr/bin:/bin"
    if shutil.which("rustc", path=path):
        pytest.skip("this machine has a rustc in /usr/bin or /bin")
    home = tmp_path / "home"  # no ~/.cargo/bin to fall back on either
    home.mkdir()
    _, kc = start_kernel(env={"FERROCELL_RUSTC": None, "PATH": path, "HOME": str(home),
                              "FERROCELL_CACHE": fresh_cache(tmp_path)})
    assert_still_answers(kc)
    reply, outputs = run(kc, unique_cell(), timeout=30)
    assert "rustc" in error_text(single_error(reply, outputs))
    assert_still_answers(kc)


@pytest.mark.parametrize(
    "body",
    [
        "echo 'garbage out'\necho 'garbage err' >&2\nexit 1",
        "echo 'rustc 0.0.0-nonsense'\necho 'all fine, honest'\nexit 0",
    ],
    ids=["exits-1", "exits-0-without-output"],
)
def test_broken_rustc(start_kernel, tmp_path, body):
    fake = script(tmp_path, "rustc", body)
    _, kc = start_kernel(env={"FERROCELL_RUSTC": fake, "FERROCELL_CACHE": fresh_cache(tmp_path)})
    start = time.monotonic()
    reply, outputs = run(kc, unique_cell(), timeout=30)
    assert time.monotonic() - start < 30
    error = single_error(reply, outputs)
    assert error["ename"], error
    assert_still_answers(kc)


def test_hanging_rustc(start_kernel, tmp_path):
    fake = script(tmp_path, "rustc", "exec sleep 1000")
    _, kc = start_kernel(env={"FERROCELL_RUSTC": fake, "FERROCELL_CACHE": fresh_cache(tmp_path)})
    assert_still_answers(kc)
    start = time.monotonic()
    reply, outputs = run(kc, unique_cell(), timeout=30)
    elapsed = time.monotonic() - start
    assert elapsed < 30, f"took {elapsed:.1f} s"
    # The wait was long enough to show progress: one line, ending in the failure.
    shown = kh.progress_texts(outputs)
    assert shown and shown[0].startswith("preparing Rust"), shown
    assert shown[-1] == "preparing Rust failed: the error follows", shown
    error = single_error(reply, [m for m in outputs if m["msg_type"] == "error"])
    assert "rustc" in error_text(error)
    assert_still_answers(kc)
