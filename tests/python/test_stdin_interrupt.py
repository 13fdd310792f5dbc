"""Reading from the notebook user (stdin channel) and interrupting a cell."""

from __future__ import annotations

import os
import signal
import time

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, value


def answer_input(kc, msg_id, answer, timeout=60):
    request = kc.get_stdin_msg(timeout=timeout)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input(answer)
    return request["content"]


def test_input_round_trip(kc):
    msg_id = kc.execute('let name = input("name? ");\nprintln!("hi {name}");', allow_stdin=True)
    content = answer_input(kc, msg_id, "ferris")
    assert content["prompt"] == "name? "
    assert not content["password"]
    reply, outputs = kh.wait(kc, msg_id)
    ok(reply, outputs)
    assert kh.stream_text(outputs) == "hi ferris\n"


def test_input_value_is_the_cell_value(kc):
    msg_id = kc.execute('input("number: ").trim().parse::<i32>().unwrap() * 2', allow_stdin=True)
    answer_input(kc, msg_id, "21")
    reply, outputs = kh.wait(kc, msg_id)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "42"


def test_two_inputs_in_one_cell(kc):
    msg_id = kc.execute('let a = input("a: ");\nlet b = input("b: ");\nformat!("{a}+{b}")',
                        allow_stdin=True)
    assert answer_input(kc, msg_id, "one")["prompt"] == "a: "
    assert answer_input(kc, msg_id, "two")["prompt"] == "b: "
    reply, outputs = kh.wait(kc, msg_id)
    ok(reply, outputs)
    assert kh.result_text(outputs) == '"one+two"'


def test_password(kc):
    msg_id = kc.execute('let pw = password("secret: ");\npw.len()', allow_stdin=True)
    content = answer_input(kc, msg_id, "hunter2")
    assert content["prompt"] == "secret: "
    assert content["password"]
    reply, outputs = kh.wait(kc, msg_id)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "7"


def test_input_without_allow_stdin_fails_fast(kc):
    ok(*run(kc, "fn after_input() -> i32 { 3 }"))
    start = time.monotonic()
    reply, outputs = run(kc, 'let name = input("name? ");', allow_stdin=False, timeout=30)
    assert time.monotonic() - start < 30
    assert reply["content"]["status"] == "error"
    errors = of_type(outputs, "error")
    assert len(errors) == 1
    assert "allow_stdin" in error_text(errors[0])
    assert not kc.stdin_channel.msg_ready(), "input_request sent although allow_stdin=false"
    assert value(kc, "after_input()") == "3"


def start_spinning(kc, code='println!("spinning");\nloop {}'):
    msg_id = kc.execute(code)
    deadline = time.monotonic() + 60
    while True:
        msg = kh.next_iopub(kc, msg_id, deadline)
        if msg["msg_type"] == "stream":
            break
    time.sleep(0.3)
    return msg_id


def interrupt_and_wait(km, kc, msg_id):
    start = time.monotonic()
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, start + 30)
    elapsed = time.monotonic() - start
    msgs = kh.collect_iopub(kc, msg_id, start + 30)
    return elapsed, reply, [m for m in msgs if m["msg_type"] not in ("status", "stream")]


def test_interrupt_stops_an_endless_loop(kernel):
    km, kc = kernel
    ok(*run(kc, "fn still_defined() -> i32 { 11 }"))
    msg_id = start_spinning(kc)
    elapsed, reply, outputs = interrupt_and_wait(km, kc, msg_id)
    assert elapsed < 2.0, f"the interrupt took {elapsed:.2f} s"
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    errors = of_type(outputs, "error")
    assert len(errors) == 1 and errors[0]["content"]["ename"] == "KeyboardInterrupt"
    assert value(kc, "still_defined() + 1") == "12"


def test_interrupt_request_reply_on_control(kernel):
    km, kc = kernel
    msg_id = start_spinning(kc)
    reply = kh.request(kc, "interrupt_request", channel="control", timeout=5)
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["content"]["status"] == "ok"
    reply, _ = kh.wait(kc, msg_id, timeout=10)
    assert reply["content"]["status"] == "error"
    assert value(kc, "1 + 1") == "2"


def test_interrupt_a_sleeping_cell(kernel):
    km, kc = kernel
    msg_id = start_spinning(
        kc, 'println!("zzz");\nstd::thread::sleep(std::time::Duration::from_secs(300));')
    elapsed, reply, _ = interrupt_and_wait(km, kc, msg_id)
    assert elapsed < 2.0
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def test_interrupt_when_idle_is_harmless(kernel):
    km, kc = kernel
    ok(*run(kc, "fn kept() -> i32 { 1 }"))
    km.interrupt_kernel()
    time.sleep(0.5)
    assert value(kc, "kept()") == "1"


def test_interrupt_twice(kernel):
    km, kc = kernel
    for _ in range(2):
        msg_id = start_spinning(kc)
        elapsed, reply, _ = interrupt_and_wait(km, kc, msg_id)
        assert elapsed < 2.0
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert value(kc, "2 + 2") == "4"


def test_interrupt_aborts_queued_requests(kernel):
    km, kc = kernel
    msg_id = start_spinning(kc)
    queued = kc.execute("5 + 5")
    elapsed, reply, _ = interrupt_and_wait(km, kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    queued_reply = kh.shell_reply(kc, queued, time.monotonic() + 30)
    assert queued_reply["content"]["status"] == "aborted"
    assert value(kc, "6 + 6") == "12"


def test_interrupt_while_waiting_for_input(kernel):
    km, kc = kernel
    msg_id = kc.execute('let x = input("wait: ");', allow_stdin=True)
    request = kc.get_stdin_msg(timeout=60)
    assert request["msg_type"] == "input_request"
    elapsed, reply, _ = interrupt_and_wait(km, kc, msg_id)
    assert elapsed < 2.0
    assert reply["content"]["status"] == "error"
    assert value(kc, "1 + 2") == "3"


def test_sigint_interrupts_like_the_message(kernel):
    """A client that sends SIGINT anyway (ignoring interrupt_mode) gets the same result."""
    km, kc = kernel
    ok(*run(kc, "fn still_defined() -> i32 { 11 }"))
    msg_id = start_spinning(kc)
    start = time.monotonic()
    os.kill(kh.kernel_pid(km), signal.SIGINT)
    reply = kh.shell_reply(kc, msg_id, start + 30)
    elapsed = time.monotonic() - start
    kh.collect_iopub(kc, msg_id, start + 30)  # up to idle, as a client waits
    assert elapsed < 2.0, f"SIGINT took {elapsed:.2f} s"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert km.is_alive()
    assert value(kc, "still_defined()") == "11"
