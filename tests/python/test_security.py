"""Message signing: every message on shell and control must carry a valid
HMAC-SHA256 signature. Unsigned, wrongly signed, truncated, garbled and
replayed messages are dropped without a reply, and the kernel keeps answering
properly signed requests. Raw pyzmq sockets are used so that nothing in
jupyter_client helps."""

from __future__ import annotations

import json
import os
import time

import pytest
import zmq
from jupyter_client.session import Session

import kernel_helpers as kh

DELIM = b"<IDS|MSG>"
QUIET_S = 0.5


@pytest.fixture
def raw(kernel):
    """(connection info, context) for raw sockets to a fresh kernel."""
    km, _ = kernel
    info = km.get_connection_info()
    context = zmq.Context()
    yield info, context
    context.destroy(linger=0)


def dealer(info, context, channel):
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, os.urandom(8).hex().encode())
    sock.connect(f"tcp://{info['ip']}:{info[channel + '_port']}")
    return sock


def session_for(info, key=None):
    key = info["key"] if key is None else key
    if isinstance(key, str):
        key = key.encode()
    return Session(key=key, signature_scheme=info["signature_scheme"], username="tester")


def signed_frames(session, msg_type="kernel_info_request", content=None):
    msg = session.msg(msg_type, content or {})
    return msg, session.serialize(msg)


def replies(sock, session, timeout=QUIET_S, first=False):
    """Every message that arrives within `timeout` seconds, deserialized (with
    first=True: return as soon as one has arrived)."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000)):
            return got
        frames = sock.recv_multipart()
        _, frames = session.feed_identities(frames)
        got.append(session.deserialize(frames))
        if first:
            return got


def assert_answers(sock, session):
    """A properly signed kernel_info_request is answered (and its reply is signed)."""
    msg, frames = signed_frames(session)
    sock.send_multipart(frames)
    got = replies(sock, session, timeout=10, first=True)
    assert got, "no reply to a properly signed kernel_info_request"
    assert got[0]["msg_type"] == "kernel_info_reply"
    assert got[0]["parent_header"]["msg_id"] == msg["header"]["msg_id"]


def assert_dropped(sock, session, frames):
    sock.send_multipart(frames)
    got = replies(sock, session)
    assert got == [], f"the kernel answered a bad message: {got}"


def forged(session, info):
    """(name, frames) of every kind of bad message, all kernel_info_requests."""
    _, good = signed_frames(session)
    delim, sig, header, parent, metadata, content = good
    wrong = session_for(info, key=b"not-the-key")
    _, wrongly_signed = signed_frames(wrong)

    # A valid signature over bytes that are not JSON.
    bad_json = [b"\xff\xfe not json", b"{}", b"{}", b"{}"]
    hmac = session.auth.copy()
    for part in bad_json:
        hmac.update(part)
    signed_garbage = [DELIM, hmac.hexdigest().encode()] + bad_json

    # A valid signature over a header that lacks msg_type and msg_id.
    thin = [json.dumps({"session": "x", "username": "y"}).encode(), b"{}", b"{}", b"{}"]
    hmac = session.auth.copy()
    for part in thin:
        hmac.update(part)
    signed_thin = [DELIM, hmac.hexdigest().encode()] + thin

    # Tampered content after signing.
    tampered = [delim, sig, header, parent, metadata, b'{"extra": 1}']

    return [
        ("unsigned", [delim, b"", header, parent, metadata, content]),
        ("wrong-key", wrongly_signed),
        ("bad-hex", [delim, b"zz" * 32, header, parent, metadata, content]),
        ("tampered", tampered),
        ("truncated-4", [delim, sig, header, parent, metadata]),
        ("truncated-2", [delim, sig, header]),
        ("delimiter-only", [delim]),
        ("no-delimiter", [os.urandom(16), os.urandom(200)]),
        ("random-after-delimiter", [delim] + [os.urandom(40) for _ in range(5)]),
        ("signed-non-json", signed_garbage),
        ("signed-incomplete-header", signed_thin),
    ]


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_forged_messages_are_dropped(raw, channel):
    info, context = raw
    session = session_for(info)
    sock = dealer(info, context, channel)
    assert_answers(sock, session)
    for name, frames in forged(session, info):
        try:
            assert_dropped(sock, session, frames)
        except AssertionError as err:
            raise AssertionError(f"{channel}/{name}: {err}") from None
        assert_answers(sock, session)


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_replayed_message_is_dropped(raw, channel):
    info, context = raw
    session = session_for(info)
    sock = dealer(info, context, channel)
    _, frames = signed_frames(session)
    sock.send_multipart(frames)
    assert len(replies(sock, session, timeout=10, first=True)) == 1
    assert_dropped(sock, session, frames)
    # The same message from another connection is a replay too.
    other = dealer(info, context, channel)
    assert_dropped(other, session, frames)
    assert_answers(sock, session)


def test_forged_execute_request_does_not_run(raw, kernel, tmp_path):
    """A wrongly signed execute_request must not run its code."""
    info, context = raw
    marker = tmp_path / "ran"
    code = f'std::fs::write("{marker}", "x").unwrap();'
    wrong = session_for(info, key=b"not-the-key")
    sock = dealer(info, context, "shell")
    _, frames = signed_frames(wrong, "execute_request", {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True})
    sock.send_multipart(frames)
    time.sleep(3)
    assert not marker.exists(), "a forged execute_request ran"
    # The same request properly signed does run (so the check above means something).
    session = session_for(info)
    _, frames = signed_frames(session, "execute_request", {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True})
    sock.send_multipart(frames)
    got = replies(sock, session, timeout=60, first=True)
    assert got and got[0]["content"]["status"] == "ok", got
    assert marker.exists()


def test_replies_are_signed_with_the_key(raw):
    info, context = raw
    session = session_for(info)
    sock = dealer(info, context, "shell")
    _, frames = signed_frames(session)
    sock.send_multipart(frames)
    assert sock.poll(10000)
    reply = sock.recv_multipart()
    idx = reply.index(DELIM)
    sig, parts = reply[idx + 1], reply[idx + 2: idx + 6]
    hmac = session.auth.copy()
    for part in parts:
        hmac.update(part)
    assert sig == hmac.hexdigest().encode()
    # The wrong key does not verify it.
    wrong = session_for(info, key=b"not-the-key").auth.copy()
    for part in parts:
        wrong.update(part)
    assert sig != wrong.hexdigest().encode()


def test_stdin_reply_must_be_signed(kernel):
    """A forged input_reply is ignored; the genuine one is used."""
    km, kc = kernel
    msg_id = kc.execute('input("q: ")', allow_stdin=True)
    request = kc.get_stdin_msg(timeout=60)
    assert request["msg_type"] == "input_request"
    wrong = session_for(km.get_connection_info(), key=b"not-the-key")
    msg = wrong.msg("input_reply", {"value": "forged"}, parent=request["header"])
    # Sent on the client's own stdin socket, so that it is routed like the genuine one.
    kc.stdin_channel.socket.send_multipart(wrong.serialize(msg))
    time.sleep(0.5)
    kc.input("genuine")
    reply, outputs = kh.wait(kc, msg_id)
    kh.ok(reply, outputs)
    assert kh.result_text(outputs) == '"genuine"'


def test_dropped_messages_are_logged(start_kernel, tmp_path):
    """What the kernel drops it says so in its log (RUST_LOG), and goes on."""
    log_path = tmp_path / "kernel.log"
    with open(log_path, "w") as log:
        km, kc = start_kernel(env={"RUST_LOG": "debug"}, stderr=log)
        info = km.get_connection_info()
        context = zmq.Context()
        try:
            session = session_for(info)
            sock = dealer(info, context, "shell")
            wrong = session_for(info, key=b"not-the-key")
            _, frames = signed_frames(wrong)
            assert_dropped(sock, session, frames)
            assert_answers(sock, session)
        finally:
            context.destroy(linger=0)
    text = log_path.read_text().lower()
    assert any(word in text for word in ("signature", "hmac")), text[-2000:]
