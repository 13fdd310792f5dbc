"""evcxr's `:` commands work as its users type them, each the same as the matching
`%` magic: :vars, :clear, :opt, :timing, :help, :explain, :efmt, :edition; an unknown
`:` command is a clear error."""

from __future__ import annotations

import textwrap

import kernel_helpers as kh
from kernel_helpers import error_text, of_type, ok, run, stream_text, value


def only_error(reply, outputs):
    assert reply["content"]["status"] == "error", reply["content"]
    errors = of_type(outputs, "error")
    assert len(errors) == 1, outputs
    return errors[0]["content"]["ename"], error_text(errors[0])


def test_vars_clear_and_opt_as_in_evcxr(kc):
    ok(*run(kc, "let mut counter = 3u32;\nlet name = String::from(\"x\");"))
    reply, outputs = run(kc, ":vars")
    ok(reply, outputs)
    listing = kh.all_text(outputs)
    assert "counter" in listing and "u32" in listing and "name" in listing, listing
    ok(*run(kc, ":opt 2"))
    reply, outputs = run(kc, ":opt")
    assert "opt-level 2" in stream_text(outputs)
    reply, outputs = run(kc, ":clear")
    ok(reply, outputs)
    ename, text = only_error(*run(kc, "counter"))
    assert ename == "CompileError" and "cannot find value `counter`" in text


def test_timing_shows_compile_and_run_time_until_turned_off(kc):
    reply, outputs = run(kc, ":timing")
    assert "timing: on" in stream_text(outputs)
    reply, outputs = run(kc, "std::thread::sleep(std::time::Duration::from_millis(300)); 7")
    ok(reply, outputs)
    text = stream_text(outputs)
    assert text.startswith("Took ") and "compile " in text and "run " in text, text
    run_part = text.split("run ")[1].split(")")[0]
    assert run_part.endswith(" ms") and float(run_part[:-3]) >= 300 or run_part.endswith(" s"), text
    reply, outputs = run(kc, "%timing")
    assert "timing: off" in stream_text(outputs)
    reply, outputs = run(kc, "8")
    assert "Took" not in stream_text(outputs)


def test_explain_the_last_error_or_a_code(kc):
    ename, text = only_error(*run(kc, ":explain"))
    assert ename == "MagicError" and "no error to explain yet" in text
    only_error(*run(kc, 'let x: u8 = "a";'))
    reply, outputs = run(kc, ":explain")
    ok(reply, outputs)
    assert "Expected type did not match the received type" in stream_text(outputs)
    reply, outputs = run(kc, "%explain E0384")
    assert "immutable variable" in stream_text(outputs)
    ename, text = only_error(*run(kc, ":explain E9999"))
    assert ename == "MagicError" and "E9999" in text
    ename, _ = only_error(*run(kc, ":explain everything"))
    assert ename == "MagicError"


def test_efmt_chooses_how_question_mark_errors_show(kc):
    ok(*run(kc, textwrap.dedent("""\
        #[derive(Debug)]
        struct Oops { code: i32 }
        fn g() -> Result<i32, Oops> { Err(Oops { code: 3 }) }
        """)))
    reply, outputs = run(kc, ":efmt")
    assert "shown as {}" in stream_text(outputs)
    # {}: an Error's message; {:?} and {:#?}: the Debug form.
    _, text = only_error(*run(kc, 'let n: i32 = "z".parse()?;'))
    assert "invalid digit found in string" in text and "ParseIntError" not in text
    ok(*run(kc, ":efmt {:?}"))
    _, text = only_error(*run(kc, 'let n: i32 = "z".parse()?;'))
    assert "ParseIntError { kind: InvalidDigit }" in text, text
    ok(*run(kc, ":efmt {:#?}"))
    _, text = only_error(*run(kc, "g()?"))
    assert "Oops {\n    code: 3,\n}" in text, text
    ok(*run(kc, "%efmt {}"))
    _, text = only_error(*run(kc, "g()?"))
    assert "Oops { code: 3 }" in text
    ename, text = only_error(*run(kc, ":efmt {:x}"))
    assert ename == "MagicError" and "{:?}" in text


def test_help_and_unknown_commands(kc):
    reply, _ = run(kc, ":help")
    ok(reply)
    pages = [p for p in reply["content"]["payload"] if p.get("source") == "page"]
    text = pages[0]["data"]["text/plain"]
    for name in ("%explain", "%efmt", "%timing", "%clear", "%edition"):
        assert name in text, name
    ename, text = only_error(*run(kc, ":nonsense"))
    assert ename == "UnknownMagic" and ":nonsense" in text
    reply, outputs = run(kc, "%lsmagic")
    for name in ("clear", "efmt", "explain", "timing", "edition"):
        assert name in stream_text(outputs), name
