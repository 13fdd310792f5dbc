"""The Jupyter protocol as clients use it: kernel_info, IOPub welcome, the
execute_request flags, the other shell requests, comms, shutdown and restart."""

from __future__ import annotations

import time
import uuid

import zmq

import kernel_helpers as kh
from kernel_helpers import of_type, ok, run, run_all, request, wait


def check_kernel_info(reply: dict) -> None:
    assert reply["msg_type"] == "kernel_info_reply"
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.5"
    assert content["implementation"] == "ferrocell"
    assert isinstance(content["implementation_version"], str)
    assert isinstance(content["banner"], str) and content["banner"]
    info = content["language_info"]
    assert info["name"] == "rust"
    assert info["file_extension"] == ".rs"
    assert info["pygments_lexer"] == "rust"
    assert info["codemirror_mode"] == "rust"
    assert info["mimetype"] == "text/rust"
    for link in content.get("help_links", []):
        assert set(link) >= {"text", "url"}


# --- kernel_info, welcome, heartbeat -------------------------------------------------


def test_kernel_info_on_shell(kc):
    msg_id = kc.kernel_info()
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 10)
    check_kernel_info(reply)
    assert reply["header"]["version"].startswith("5.")


def test_kernel_info_on_control(kc):
    check_kernel_info(request(kc, "kernel_info_request", channel="control"))


def test_kernel_info_publishes_busy_and_idle(kc):
    msg = kc.session.msg("kernel_info_request", {})
    kc.shell_channel.send(msg)
    msgs = kh.collect_iopub(kc, msg["header"]["msg_id"], time.monotonic() + 10)
    states = [m["content"]["execution_state"] for m in msgs if m["msg_type"] == "status"]
    assert states == ["busy", "idle"]


def test_every_message_has_a_fresh_id_and_the_kernel_session(kc):
    reply, msgs = run_all(kc, 'println!("x"); 1')
    everything = msgs + [reply]
    ids = [m["header"]["msg_id"] for m in everything]
    assert len(ids) == len(set(ids))
    sessions = {m["header"]["session"] for m in everything}
    assert len(sessions) == 1
    assert sessions != {kc.session.session}, "the kernel must use its own session id"


def iopub_socket(km, context):
    info = km.get_connection_info()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return sock


def test_iopub_welcome_on_every_subscription(kernel):
    km, _ = kernel
    session = km.session
    context = zmq.Context()
    try:
        for _ in range(2):  # each new subscriber gets its own welcome
            sock = iopub_socket(km, context)
            assert sock.poll(5000), "no iopub_welcome within 5 s"
            frames = sock.recv_multipart()
            _, frames = session.feed_identities(frames)
            msg = session.deserialize(frames)
            assert msg["msg_type"] == "iopub_welcome"
            assert msg["content"]["subscription"] == ""
            assert not msg["parent_header"]
            sock.close()
    finally:
        context.term()


def test_heartbeat_echoes(kernel):
    km, _ = kernel
    info = km.get_connection_info()
    context = zmq.Context()
    try:
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://{info['ip']}:{info['hb_port']}")
        for payload in (b"ping", uuid.uuid4().bytes, b"x" * 1000):
            sock.send(payload)
            assert sock.poll(2000), "heartbeat did not answer within 2 s"
            assert sock.recv() == payload
        sock.close()
    finally:
        context.term()


# --- execute_request flags ---------------------------------------------------------


def test_execute_order_busy_input_outputs_idle(kc):
    reply, msgs = run_all(kc, 'println!("out"); 7')
    types = [m["msg_type"] for m in msgs]
    assert types[0] == "status" and msgs[0]["content"]["execution_state"] == "busy"
    assert types[1] == "execute_input"
    assert msgs[1]["content"]["code"] == 'println!("out"); 7'
    assert msgs[1]["content"]["execution_count"] == reply["content"]["execution_count"]
    assert types[-1] == "status" and msgs[-1]["content"]["execution_state"] == "idle"
    assert "stream" in types and "execute_result" in types
    assert types.index("stream") < types.index("execute_result")
    result = of_type(msgs, "execute_result")[0]
    assert result["content"]["execution_count"] == reply["content"]["execution_count"]
    assert reply["content"]["user_expressions"] == {}
    assert reply["content"]["payload"] == []


def test_execution_count_increments(kc):
    counts = [run(kc, f"{i} + 1")[0]["content"]["execution_count"] for i in range(3)]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]


def test_silent(kc):
    first = run(kc, "1")[0]["content"]["execution_count"]
    reply, msgs = run_all(kc, 'println!("quiet"); 41 + 1', silent=True)
    assert reply["content"]["status"] == "ok"
    assert [m["msg_type"] for m in msgs] == ["status", "status"], msgs
    after = run(kc, "2")[0]["content"]["execution_count"]
    assert after == first + 1, "a silent request must not increment the counter"


def test_silent_error_publishes_nothing_but_replies_error(kc):
    reply, msgs = run_all(kc, 'let x: i32 = "nope";', silent=True)
    assert reply["content"]["status"] == "error"
    assert [m["msg_type"] for m in msgs] == ["status", "status"], msgs


def test_store_history_false(kc):
    first = run(kc, "10")[0]["content"]["execution_count"]
    marker = f"{uuid.uuid4().int % 100000} * 3"
    reply, outputs = run(kc, marker, store_history=False)
    ok(reply, outputs)
    assert kh.result_text(outputs) is not None
    after = run(kc, "11")[0]["content"]["execution_count"]
    assert after == first + 1
    history = request(kc, "history_request", {
        "output": False, "raw": True, "hist_access_type": "tail", "n": 100})
    inputs = [entry[2] for entry in history["content"]["history"]]
    assert "10" in inputs and "11" in inputs
    assert marker not in inputs


def test_user_expressions(kc):
    ok(*run(kc, "fn triple(x: i32) -> i32 { x * 3 }"))
    reply, _ = run(kc, "let y = 1;", user_expressions={
        "a": "1 + 1", "t": "triple(5)", "s": '"fe"', "bad": "nope_undefined"})
    content = ok(reply)
    exprs = content["user_expressions"]
    assert exprs["a"] == {"status": "ok", "data": {"text/plain": "2"}, "metadata": {}}
    assert exprs["t"]["status"] == "ok" and exprs["t"]["data"]["text/plain"] == "15"
    assert exprs["s"]["data"]["text/plain"] == '"fe"'
    bad = exprs["bad"]
    assert bad["status"] == "error"
    assert bad["ename"] == "CompileError"
    assert isinstance(bad["evalue"], str)
    assert isinstance(bad["traceback"], list)


def test_user_expressions_do_not_publish(kc):
    reply, outputs = run(kc, "()", user_expressions={"a": "40 + 2"})
    assert ok(reply)["user_expressions"]["a"]["data"]["text/plain"] == "42"
    assert outputs == []


def test_stop_on_error_aborts_queued_requests(kc):
    failing = kc.execute('panic!("first fails");')
    queued = [kc.execute('println!("should not run");'), kc.execute("1 + 1")]
    deadline = time.monotonic() + 60
    first = kh.shell_reply(kc, failing, deadline)
    assert first["content"]["status"] == "error"
    for msg_id in queued:
        reply = kh.shell_reply(kc, msg_id, deadline)
        assert reply["content"]["status"] == "aborted"
        msgs = kh.collect_iopub(kc, msg_id, deadline)
        assert not of_type(msgs, "stream") and not of_type(msgs, "execute_result")
    # Requests sent after the abort run normally.
    time.sleep(0.2)
    assert kh.value(kc, "2 + 2") == "4"


def test_stop_on_error_after_compile_error(kc):
    # A type error (found by rustc, not by a parse): the queued request is surely in.
    failing = kc.execute('let x: i32 = "three";')
    queued = kc.execute("3 + 3")
    deadline = time.monotonic() + 60
    assert kh.shell_reply(kc, failing, deadline)["content"]["status"] == "error"
    assert kh.shell_reply(kc, queued, deadline)["content"]["status"] == "aborted"


def test_stop_on_error_false_runs_queued_requests(kc):
    failing = kc.execute('panic!("first fails");', stop_on_error=False)
    queued = kc.execute("1 + 1")
    deadline = time.monotonic() + 60
    assert kh.shell_reply(kc, failing, deadline)["content"]["status"] == "error"
    reply, outputs = wait(kc, queued)
    ok(reply, outputs)
    assert kh.result_text(outputs) == "2"


# --- other shell requests ------------------------------------------------------------


def complete(kc, code, cursor_pos=None):
    msg_id = kc.complete(code, cursor_pos)
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 10)
    content = reply["content"]
    assert content["status"] == "ok"
    assert set(content) >= {"matches", "cursor_start", "cursor_end", "metadata"}
    return content


def completions_applied(code, content):
    """The texts the frontend would show after picking each match."""
    start, end = content["cursor_start"], content["cursor_end"]
    return [code[:start] + match + code[end:] for match in content["matches"]]


def test_complete_prelude_name_exactly(kc):
    content = complete(kc, "display_ht")
    assert content["matches"] == ["display_html"]
    assert content["cursor_start"] == 0 and content["cursor_end"] == len("display_ht")


def test_complete_prelude_names(kc):
    content = complete(kc, "display_")
    assert {"display_html", "display_svg", "display_markdown", "display_png"} <= set(
        content["matches"])


def test_complete_keyword(kc):
    assert "let x = 0; while" in completions_applied("let x = 0; whi",
                                                     complete(kc, "let x = 0; whi"))


def test_complete_session_items(kc):
    ok(*run(kc, "fn my_helper_fn() -> u8 { 1 }\nstruct MyHelperStruct;"))
    applied = completions_applied("my_hel", complete(kc, "my_hel"))
    assert "my_helper_fn" in applied
    applied = completions_applied("let s = MyHel", complete(kc, "let s = MyHel"))
    assert "let s = MyHelperStruct" in applied


def test_complete_magics(kc):
    assert "%lsmagic" in completions_applied("%lsm", complete(kc, "%lsm"))


def test_complete_mid_code(kc):
    code = "display_ht(\"x\");\nlet y = 2;"
    content = complete(kc, code, cursor_pos=len("display_ht"))
    assert content["matches"] == ["display_html"]
    assert content["cursor_start"] == 0 and content["cursor_end"] == len("display_ht")


def inspect(kc, code, cursor_pos=None):
    msg_id = kc.inspect(code, cursor_pos)
    content = kh.shell_reply(kc, msg_id, time.monotonic() + 10)["content"]
    assert content["status"] == "ok"
    return content


def test_inspect_prelude_function(kc):
    content = inspect(kc, "display_html")
    assert content["found"] is True
    assert "display_html" in content["data"]["text/plain"]
    assert isinstance(content["metadata"], dict)


def test_inspect_session_item(kc):
    ok(*run(kc, "/// A point on the plane.\nstruct Point { x: i32, y: i32 }"))
    content = inspect(kc, "let p = Point")
    assert content["found"] is True
    assert "struct Point" in content["data"]["text/plain"]


def test_inspect_unknown_name(kc):
    content = inspect(kc, "zz_not_defined_anywhere")
    assert content["found"] is False


def is_complete(kc, code):
    msg_id = kc.is_complete(code)
    return kh.shell_reply(kc, msg_id, time.monotonic() + 1.0)["content"]


def test_is_complete(kc):
    for code in ["1", "let x = 1;", "fn f() {}", "struct S { a: i32 }", "let s = \"a\\\"b\";"]:
        assert is_complete(kc, code)["status"] == "complete", code
    for code in ["fn f() {", 'let s = "abc', "1 +", "let v = vec![1,", "/* open comment"]:
        reply = is_complete(kc, code)
        assert reply["status"] == "incomplete", code
        assert isinstance(reply.get("indent"), str)
    for code in ["let = 7q;", "fn f() { ) }"]:
        assert is_complete(kc, code)["status"] == "invalid", code


def history(kc, **kw):
    content = {"output": False, "raw": True, "hist_access_type": "tail", "n": 10}
    content.update(kw)
    reply = request(kc, "history_request", content)
    assert reply["content"]["status"] == "ok"
    return reply["content"]["history"]


def test_history_tail_range_search(kc):
    codes = ["40 + 2", "let a = 1;", 'println!("h");', "40 + 2", "41 + 2"]
    for code in codes:
        run(kc, code)
    tail = history(kc, n=len(codes))
    assert [h[2] for h in tail] == codes
    assert all(len(h) == 3 for h in tail)
    session, line = tail[0][0], tail[0][1]
    assert [h[1] for h in tail] == list(range(line, line + len(codes)))

    with_output = history(kc, n=1, output=True)
    assert with_output[0][2][0] == "41 + 2"
    assert len(with_output[0][2]) == 2

    ranged = history(kc, hist_access_type="range", session=session, start=line + 1,
                     stop=line + 3)
    assert [h[2] for h in ranged] == codes[1:3]

    found = history(kc, hist_access_type="search", pattern="4? + 2", n=100)
    assert [h[2] for h in found] == ["40 + 2", "40 + 2", "41 + 2"]
    unique = history(kc, hist_access_type="search", pattern="4? + 2", unique=True, n=100)
    assert sorted(h[2] for h in unique) == ["40 + 2", "41 + 2"]
    limited = history(kc, hist_access_type="search", pattern="*", n=2)
    assert [h[2] for h in limited] == codes[-2:]
    assert history(kc, hist_access_type="search", pattern="println*") [0][2] == codes[2]


def test_history_persists_across_kernels(start_kernel, tmp_path):
    data = tmp_path / "shared-history"
    data.mkdir()
    marker = f"{uuid.uuid4().int % 10**9} + 0"
    first = start_kernel(env={"FERROCELL_DATA_DIR": str(data)})
    ok(*run(first.kc, marker))
    old_session = history(first.kc, n=1)[0][0]
    kh.stop_kernel(first.km, first.kc)

    second = start_kernel(env={"FERROCELL_DATA_DIR": str(data)})
    found = history(second.kc, hist_access_type="search", pattern=marker, n=10)
    assert [h[2] for h in found] == [marker]
    assert found[0][0] == old_session
    run(second.kc, "5 + 5")
    latest = history(second.kc, n=1)[0]
    assert latest[2] == "5 + 5" and latest[0] != old_session
    # The earlier session's lines can be read back by session number.
    ranged = history(second.kc, hist_access_type="range", session=old_session, start=1,
                     stop=100)
    assert marker in [h[2] for h in ranged]


def test_comm_info_is_empty(kc):
    reply = request(kc, "comm_info_request", {})
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["comms"] == {}
    reply = request(kc, "comm_info_request", {"target_name": "jupyter.widget"})
    assert reply["content"]["comms"] == {}


def test_comm_open_unknown_target_is_closed(kc):
    comm_id = uuid.uuid4().hex
    msg = kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "no.such.target",
                                       "data": {}})
    kc.shell_channel.send(msg)
    deadline = time.monotonic() + 10
    while True:
        got = kh.next_iopub(kc, msg["header"]["msg_id"], deadline)
        if got["msg_type"] == "comm_close":
            break
    assert got["content"]["comm_id"] == comm_id
    assert kh.value(kc, "1 + 1") == "2"


def test_unknown_request_gets_no_reply_and_kernel_survives(kc):
    msg = kc.session.msg("no_such_request", {})
    kc.shell_channel.send(msg)
    try:
        reply = kh.shell_reply(kc, msg["header"]["msg_id"], time.monotonic() + 0.5)
    except TimeoutError:
        reply = None
    assert reply is None, reply
    assert kh.value(kc, "1 + 1") == "2"


# --- magics --------------------------------------------------------------------------


def test_help_magic_pages(kc):
    for code in (":help", "%help"):
        reply, outputs = run(kc, code)
        content = ok(reply, outputs)
        pages = [p for p in content["payload"] if p["source"] == "page"]
        assert len(content["payload"]) == 1 and len(pages) == 1
        assert "text/plain" in pages[0]["data"]
        assert "magic" in pages[0]["data"]["text/plain"].lower()


def test_lsmagic(kc):
    reply, outputs = run(kc, "%lsmagic")
    ok(reply, outputs)
    text = kh.all_text(outputs)
    for magic in ("%lsmagic", "%help"):
        assert magic in text


# --- shutdown and restart ------------------------------------------------------------


def test_shutdown_request_exits(start_kernel, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    km, kc = start_kernel(env={"TMPDIR": str(tmp)})
    ok(*run(kc, 'println!("runner up");\nlet kept = vec![1, 2, 3];'))
    assert list(tmp.glob("ferrocell-snapshots-*")), list(tmp.iterdir())
    pid = kh.kernel_pid(km)
    children = kh.descendants(pid)
    reply = request(kc, "shutdown_request", {"restart": False}, channel="control")
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["restart"] is False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and km.is_alive():
        time.sleep(0.05)
    assert not km.is_alive(), "the kernel did not exit within 5 s of shutdown_reply"
    while time.monotonic() < deadline and any(kh.alive(c) for c in children):
        time.sleep(0.05)
    assert not [c for c in children if kh.alive(c)], "the runner outlived the kernel"
    # The variables' snapshots go with the kernel.
    assert not list(tmp.glob("ferrocell-snapshots-*")), list(tmp.iterdir())


def test_restart(kernel):
    km, kc = kernel
    ok(*run(kc, "fn before_restart() -> i32 { 1 }"))
    assert kh.value(kc, "before_restart()") == "1"
    old_session = request(kc, "kernel_info_request")["header"]["session"]
    old_pid = kh.kernel_pid(km)

    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)

    reply = request(kc, "kernel_info_request")
    check_kernel_info(reply)
    assert reply["header"]["session"] != old_session
    assert kh.kernel_pid(km) != old_pid
    reply, outputs = run(kc, "before_restart()")
    assert reply["content"]["status"] == "error"
    assert of_type(outputs, "error")[0]["content"]["ename"] == "CompileError"
    assert reply["content"]["execution_count"] == 1, "a new kernel counts from 1"
    assert kh.value(kc, "2 * 21") == "42"
    # History survives the restart (same FERROCELL_DATA_DIR), under the old session.
    found = history(kc, hist_access_type="search", pattern="before_restart()", n=10)
    assert len(found) == 2 and found[0][0] != found[1][0]
