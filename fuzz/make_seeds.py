#!/usr/bin/env python3
"""Writes the fuzz targets' seeds (fuzz/seeds/TARGET/*) from real messages:
Jupyter requests signed by jupyter_client, cluster messages as ferrocell's
controller and engines send them, cells of the project's notebooks, and runner
frames of each kind. Run with the project's .venv/bin/python; the seeds are
committed, so this is needed only when the protocols change."""

import hashlib
import json
import struct
from pathlib import Path

from jupyter_client.session import Session

ROOT = Path(__file__).resolve().parent
KEY = b"fuzz"  # the targets sign with it too (fuzz_targets/common.rs)
SESSION = "fuzzsession"  # the cluster target's link session (the same file)


def framed(frames):
    return b"".join(struct.pack("<H", len(f)) + f for f in frames)


def write(target, name, data):
    d = ROOT / "seeds" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    s = Session(key=KEY, signature_scheme="hmac-sha256")
    requests = {
        "execute": ("execute_request", {"code": "let x = 1;\nx + 1", "silent": False,
                                        "store_history": True, "user_expressions": {},
                                        "allow_stdin": True, "stop_on_error": True}),
        "complete": ("complete_request", {"code": "vec![1].it", "cursor_pos": 10}),
        "inspect": ("inspect_request", {"code": "String::new", "cursor_pos": 5,
                                        "detail_level": 0}),
        "is_complete": ("is_complete_request", {"code": "fn f() {"}),
        "kernel_info": ("kernel_info_request", {}),
        "history": ("history_request", {"output": False, "raw": True,
                                        "hist_access_type": "tail", "n": 10}),
        "comm_info": ("comm_info_request", {"target_name": "x"}),
        "input_reply": ("input_reply", {"value": "typed"}),
        "shutdown": ("shutdown_request", {"restart": False}),
    }
    for name, (kind, content) in requests.items():
        msg = s.msg(kind, content)
        write("wire_decode", name, framed(s.serialize(msg, ident=[b"client-id"])))

    payload = b"/tmp/lib.so\0entry"
    cluster = {
        "register": ({"kind": "register", "host": "h", "pid": 1, "mpi_rank": None,
                      "versions": {"ferrocell": "0.1.0", "rustc": "rustc 1.95.0",
                                   "target": "x86_64-unknown-linux-gnu"},
                      "to": "", "seq": 1, "digest": ""}, []),
        "status": ({"kind": "status", "to": "", "seq": 1, "digest": ""}, []),
        "to_worker": ({"kind": "to_worker", "tag": 101, "to": SESSION, "seq": 2,
                       "digest": hashlib.sha256(payload).hexdigest()}, [payload]),
        "heartbeat": ({"kind": "heartbeat", "to": SESSION, "seq": 3, "digest": ""}, []),
        "lost": ({"kind": "lost", "engine": 3, "why": "gone", "engine_gone": True,
                  "to": SESSION, "seq": 4, "digest": ""}, []),
    }
    for name, (content, buffers) in cluster.items():
        frames = s.serialize(s.msg("cluster", content), ident=[b"engine-id"]) + buffers
        write("cluster_decode", name, framed(frames))

    cells = []
    for nb in sorted((ROOT.parent / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                cells.append("".join(cell["source"]))
    cells += ["%%parallel threads 4 --each\nprintln!(\"{rank}\");",
              "%cluster start -n 2 --launcher mpi", "%%parallel cluster --targets 0-3,7\n1",
              ":dep serde_json = { version = \"1\", features = [\"raw_value\"] }\n1",
              "%timeit -n 10 (0..100).sum::<u64>()", "let v: Vec<Vec<u8>> = vec![vec![((1))]];"]
    for i, cell in enumerate(cells):
        write("magic_parse", f"cell-{i:03}", cell.encode())

    def frame(tag, payload):
        return bytes([tag]) + struct.pack("<I", len(payload)) + payload

    display = json.dumps({"id": "d1", "update": False,
                          "data": {"text/html": "<b>x</b>", "text/plain": "x"}}).encode()
    runs = {
        "output": frame(1, b"hello\n") + frame(2, b"warn\xff\n") + frame(7, b""),
        "display": frame(3, display) + frame(4, b"\x01") + frame(5, b'{"text/plain":"42"}'),
        "block": frame(1, b"EVCXR_BEGIN_CONTENT text/html\n<p>x</p>\nEVCXR_END_CONTENT\n"),
        "panic": frame(6, b'{"message":"boom","file":"cell.rs","line":3,"column":1,"thread":"cell"}'),
        "error": frame(11, b'{"message":"bad","kept":["x"]}') + frame(9, b"no such lib"),
        "input": frame(8, b'{"prompt":"name? ","password":false}'),
        "engine": frame(13, struct.pack("<I", 2) + bytes([5]) + b'{"text/plain":"1"}'),
    }
    for name, data in runs.items():
        write("runner_frames", name, data)


if __name__ == "__main__":
    main()
