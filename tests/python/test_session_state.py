"""Session state that outlives a dead runner (snapshots), crates from `:dep`, and a
long session whose cells do not grow."""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, stream_text, value

DEP_TIMEOUT = 600  # a first `:dep` build downloads and compiles crates

SEGFAULT = "unsafe { std::ptr::write_volatile(16usize as *mut i32, 1); }"


def define_state(kc) -> None:
    """Variables of many kinds, some serde can restore and some it cannot."""
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug, Clone, PartialEq)]
        struct Point { x: f64, y: f64 }
        #[derive(Debug)]
        enum Shape { Circle(f64), Poly(Vec<Point>) }
        let v = vec![1, 2, 3];
        let p = Point { x: 1.5, y: -2.0 };
        let shapes = vec![Shape::Circle(0.5), Shape::Poly(vec![Point { x: 0.0, y: 1.0 }])];
        let m: std::collections::HashMap<String, Vec<f64>> =
            [("a".to_string(), vec![0.1, 0.2])].into_iter().collect();
        let shared = std::sync::Arc::new(std::sync::Mutex::new(vec![7u8]));
        let started = std::time::Instant::now();
        let f: Box<dyn Fn(i32) -> i32> = Box::new(|x| x + 1);
        let mut n = 10u64;
        """)))
    ok(*run(kc, "n += 1;"))


def test_variables_survive_a_segfault_from_their_snapshots(kc):
    define_state(kc)
    # The crashing cell changes n first: the snapshot is of the last successful cell.
    reply, outputs = run(kc, f"n += 100;\n{SEGFAULT}")
    assert reply["content"]["status"] == "error"
    [err] = of_type(outputs, "error")
    text = error_text(err)
    assert "SIGSEGV" in text
    restored = next(line for line in text.splitlines() if line.startswith("Variables restored"))
    for name in ("v", "p", "shapes", "m", "shared", "n"):
        assert f" {name}" in restored.replace(",", " ") + " ", (name, restored)
    lost = next(line for line in text.splitlines() if line.startswith("Variables lost"))
    assert "started (`std::time::Instant` has no serde support)" in lost, lost
    assert "f (" in lost, lost
    # The restored values are those of the last successful cell.
    assert value(kc, "n") == "11"
    assert value(kc, "v.iter().sum::<i32>()") == "6"
    assert value(kc, "p.clone()") == "Point { x: 1.5, y: -2.0 }"
    assert value(kc, 'm["a"].clone()') == "[0.1, 0.2]"
    assert value(kc, "shared.lock().unwrap().len()") == "1"
    assert value(kc, "shapes.len()") == "2"
    # Items are kept too; the lost variables are gone, not stale.
    assert value(kc, "Point { x: 0.0, y: 0.0 } == p") == "false"
    reply, outputs = run(kc, "started.elapsed()")
    assert reply["content"]["status"] == "error"
    assert "cannot find value `started`" in error_text(of_type(outputs, "error")[0])


def test_variables_survive_an_abort_and_keep_changing(kc):
    ok(*run(kc, "let mut total = 0u64;\nlet mut log: Vec<String> = Vec::new();"))
    ok(*run(kc, 'total += 5;\nlog.push("five".into());'))
    reply, outputs = run(kc, "std::process::abort();")
    assert "SIGABRT" in error_text(of_type(outputs, "error")[0])
    ok(*run(kc, 'total += 1;\nlog.push("six".into());'))
    assert value(kc, "(total, log.clone())") == '(6, ["five", "six"])'
    # A second crash restores what the cell after the first one made.
    run(kc, SEGFAULT)
    assert value(kc, "(total, log.len())") == "(6, 2)"


def test_a_variable_that_cannot_come_back_costs_the_others_nothing(kc):
    # A `&'static str` is saved, but serde cannot give back a borrowed str: it
    # alone is lost when the runner dies; the String next to it comes back.
    ok(*run(kc, 'let label = "demo";\nlet owned = String::from("own");'))
    reply, outputs = run(kc, "std::process::abort();")
    text = error_text(of_type(outputs, "error")[0])
    assert "label (its snapshot could not be read back)" in text, text
    assert value(kc, "owned.clone()") == '"own"'
    reply, outputs = run(kc, "label")
    assert "cannot find value `label`" in error_text(of_type(outputs, "error")[0])


def test_an_interrupt_that_kills_the_runner_restores_variables(kernel):
    km, kc = kernel
    ok(*run(kc, "let kept = vec![String::from(\"still here\")];"))
    msg_id = kc.execute('println!("spinning");\nloop { std::hint::spin_loop(); }')
    kh.wait_for_output(kc, msg_id)
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 30)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert "kept" in " ".join(reply["content"]["traceback"])
    assert value(kc, "kept[0].clone()") == '"still here"'


BIG = "let big: Vec<u64> = (0..50_000_000).collect();"  # 400 MB: a second or so to save

BAD_SERIALIZE = textwrap.dedent("""\
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused on purpose"))
        }
    }
    """)


def test_a_crash_waits_for_the_snapshot_being_written(kc):
    # Snapshots are written in the background; the crash comes while big's is.
    ok(*run(kc, BIG))
    reply, outputs = run(kc, "std::process::abort();")
    text = error_text(of_type(outputs, "error")[0])
    assert "Variables restored as of the last successful cell: big" in text, text
    assert value(kc, "big[49_999_999]") == "49999999"


def test_an_interrupt_for_a_later_cell_does_not_stop_a_snapshot(kernel):
    km, kc = kernel
    ok(*run(kc, BIG))
    # This cell does not heed the interrupt: the kernel replaces the runner and
    # kills its process group, but the saver of big has its own and finishes.
    msg_id = kc.execute('println!("spinning");\nloop { std::hint::spin_loop(); }')
    kh.wait_for_output(kc, msg_id)
    km.interrupt_kernel()
    reply = kh.shell_reply(kc, msg_id, time.monotonic() + 60)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert value(kc, "big.len()") == "50000000"


def test_a_failed_snapshot_is_told_in_the_next_cell_and_at_a_crash(kc):
    ok(*run(kc, BAD_SERIALIZE + "let b = Bad;\nlet n = 5u8;"))
    # Told by the first cell that runs after the (background) saver ended, once.
    told = []
    for i in range(20):
        reply, outputs = run(kc, f"{i} + 1")
        ok(reply, outputs)
        told.append("the snapshot of b: refused on purpose" in stream_text(outputs, "stderr"))
        if any(told):
            break
        time.sleep(0.1)
    assert told[-1] and told.count(True) == 1, told
    assert "refused" not in kh.all_text(run(kc, "2 + 2")[1])
    reply, outputs = run(kc, "std::process::abort();")
    text = error_text(of_type(outputs, "error")[0])
    assert "b (no snapshot: refused on purpose)" in text, text
    assert value(kc, "n") == "5"


def test_snapshots_can_be_turned_off(start_kernel):
    km, kc = start_kernel(env={"FERROCELL_SNAPSHOTS": "off"})
    ok(*run(kc, "let kept = 1u8;"))
    reply, outputs = run(kc, "std::process::abort();")
    text = error_text(of_type(outputs, "error")[0])
    assert "kept (snapshots are off (FERROCELL_SNAPSHOTS=off))" in text, text


def test_a_struct_whose_fields_have_no_serde_still_works(kc):
    ok(*run(kc, textwrap.dedent("""\
        struct Timer { start: std::time::Instant, label: String }
        let t = Timer { start: std::time::Instant::now(), label: "a".into() };
        let label_len = t.label.len();
        """)))
    assert value(kc, "label_len") == "1"
    reply, outputs = run(kc, SEGFAULT)
    text = error_text(of_type(outputs, "error")[0])
    assert "t (`Timer` has no serde support)" in text, text
    assert value(kc, "label_len") == "1"


def test_a_dep_build_shows_how_far_it_is_in_one_line(kc):
    # Features no other test asks for: this set is built here, by a real cargo.
    reply, outputs = run(kc, ':dep serde_json = { version = "1", features = ["preserve_order"] }',
                         timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert "Compiling indexmap" in stream_text(outputs, "stderr")
    # How far cargo is, as one display updated in place ("k of n done: crates"),
    # replaced by what it ended in.
    shown = kh.progress_texts(outputs)
    counts = [re.match(r"building crates: (\d+) of (\d+) done", t) for t in shown[:-1]]
    assert counts and all(counts), shown
    counts = [(int(m.group(1)), int(m.group(2))) for m in counts]
    assert all(d <= n for d, n in counts), shown
    assert [d for d, _ in counts] == sorted(d for d, _ in counts), shown
    assert re.match(r"ferrocell: serde_json ready \(\d+\.\d s\)", shown[-1]), shown


def test_deps_build_once_show_progress_and_survive_a_restart(start_kernel):
    km, kc = start_kernel()
    reply, outputs = run(kc, ':dep serde_json = "1"\nserde_json::to_string(&vec![1, 2]).unwrap()',
                         timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert kh.result_text(outputs) == '"[1,2]"'
    progress = stream_text(outputs, "stderr")
    assert "serde_json ready" in progress, progress

    # The crate is usable from later cells, and with serde's derive from the user's code.
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        struct Row { id: u32, name: String }
        let rows = vec![Row { id: 1, name: "a".into() }];
        """)))
    assert value(kc, "serde_json::to_string(&rows).unwrap()") == '"[{\\"id\\":1,\\"name\\":\\"a\\"}]"'

    # A new kernel finds the build in the cache: no cargo output, no compiling; it
    # does not even need cargo (or the network), as on a machine that is offline.
    km2, kc2 = start_kernel(env={"FERROCELL_CARGO": "/bin/false"})
    start = time.monotonic()
    reply, outputs = run(kc2, '%dep serde_json = "1"', timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert "Compiling" not in stream_text(outputs, "stderr")
    assert time.monotonic() - start < 30
    assert value(kc2, 'serde_json::json!({"k": [1, 2]}).to_string()') == '"{\\"k\\":[1,2]}"'


def test_dep_needs_no_crates_of_other_platforms_online_or_offline(start_kernel, tmp_path: Path):
    """A cargo home that holds only what a Linux build downloaded (so no Windows-only
    crate), then `:dep` of a crate with Windows-only dependencies (libloading needs
    windows-link on Windows): online, and again offline with the crate built but not
    recorded, as on a machine that lost its network."""
    cargo_home = tmp_path / "cargo-home"
    cargo_home.mkdir()
    cache = tmp_path / "cache"
    env = {"CARGO_HOME": str(cargo_home), "FERROCELL_CACHE": str(cache)}
    _, kc = start_kernel(env=env)
    dep = ':dep libloading = "0.8"'
    ok(*run(kc, dep, timeout=DEP_TIMEOUT))
    assert value(kc, 'libloading::library_filename("m")') == '"libm.so"'
    downloaded = {p.name for p in cargo_home.glob("registry/cache/*/*.crate")}
    assert any(n.startswith("libloading-") for n in downloaded), downloaded
    assert not any(n.startswith("windows") for n in downloaded), downloaded

    # Offline: the record of the built set is gone, so cargo runs again (build and
    # metadata) with no network at all.
    records = list(cache.glob("*/deps/set-*/built.json"))
    assert records
    for record in records:
        record.unlink()
    _, kc2 = start_kernel(env={**env, "CARGO_NET_OFFLINE": "true"})
    reply, outputs = run(kc2, dep, timeout=DEP_TIMEOUT)
    ok(reply, outputs)
    assert value(kc2, 'libloading::library_filename("z")') == '"libz.so"'


def test_dep_with_features_rename_and_path(kc, tmp_path: Path):
    local = tmp_path / "answer"
    (local / "src").mkdir(parents=True)
    (local / "Cargo.toml").write_text(
        '[package]\nname = "answer"\nversion = "0.1.0"\nedition = "2021"\n')
    (local / "src" / "lib.rs").write_text("pub fn answer() -> u32 { 42 }\n")
    code = textwrap.dedent(f"""\
        :dep answer = {{ path = "{local}" }}
        :dep num = {{ package = "itoa", version = "1" }}
        :dep serde = {{ version = "1", features = ["derive"] }}
        #[derive(serde::Serialize)]
        struct Own {{ a: u8 }}
        let mut buf = num::Buffer::new();
        let shown = buf.format(answer::answer()).to_string();
        """)
    ok(*run(kc, code, timeout=DEP_TIMEOUT))
    assert value(kc, "shown") == '"42"'
    # Variables whose types come from the crates live on in later cells.
    assert value(kc, "buf.format(7).to_string()") == '"7"'
    ok(*run(kc, "let own = Own { a: 5 };\nlet text = num::Buffer::new();"))
    assert value(kc, "own.a") == "5"


def test_bad_dep_lines_are_clear_errors_and_lose_nothing(kc):
    ok(*run(kc, "let keep = 3;"))
    reply, outputs = run(kc, ":dep nope = 1")
    assert reply["content"]["ename"] == "DepError"
    assert "version string or a table" in error_text(of_type(outputs, "error")[0])
    reply, outputs = run(kc, ':dep ferrocell_no_such_crate_4711 = "1"', timeout=DEP_TIMEOUT)
    assert reply["content"]["ename"] == "DepError"
    assert "ferrocell_no_such_crate_4711" in error_text(of_type(outputs, "error")[0])
    assert value(kc, "keep + 1") == "4"


def test_a_hundred_cells_with_variables_do_not_grow(kc):
    ok(*run(kc, "let mut acc: Vec<u64> = Vec::new();\nlet x_0 = 0u64;"))
    for i in range(1, 100):
        code = f"let x_{i} = x_{i - 1} + {i};\nacc.push(x_{i});"
        if i % 10 == 0:
            code = f"fn step_{i}(v: u64) -> u64 {{ v + {i} }}\n" + code
        ok(*run(kc, code))
    assert value(kc, "(x_99, acc.len(), step_90(0))") == f"({sum(range(100))}, 99, 90)"
    # Each cell's crate holds only its own code: the 100th is no bigger than the 2nd.
    cells = Path(os.environ["FERROCELL_CACHE"])
    sources = sorted(cells.glob("*/cells/fc_*.rs"), key=lambda p: p.stat().st_mtime)
    by_text = {p.read_text(): p for p in sources}
    second = next(t for t in by_text if "x_2 = x_1 + 2" in t)
    last = next(t for t in by_text if "x_99 = x_98 + 99" in t)
    assert len(last) < 1.5 * len(second), (len(second), len(last))


def test_a_variable_named_like_a_path_in_a_type_is_restored(kc):
    # `string` is also a segment of `std::string::String`, the type the restore names.
    ok(*run(kc, 'let string = String::from("kept");\nlet numbers = vec![1u8, 2];'))
    reply, outputs = run(kc, SEGFAULT)
    text = error_text(of_type(outputs, "error")[0])
    assert "restored as of the last successful cell: numbers, string" in text, text
    assert value(kc, "(string.clone(), numbers.len())") == '("kept", 2)'
