"""The community conformance suite, jupyter_kernel_test, against ferrocell.

Its per-cell timeout is 15 s, so the prelude is built first (in a throwaway
kernel) and each class gets a history directory of its own, so that the
history search sees only the cells this suite runs."""

from __future__ import annotations

import os
import tempfile
import unittest

import jupyter_kernel_test as jkt

import kernel_helpers as kh


class _PrivateHistory:
    """Start the class's kernel on a warm cache with its own FERROCELL_DATA_DIR."""

    @classmethod
    def setUpClass(cls) -> None:
        kh.ensure_environment()
        kh.warm_cache()
        cls._history = tempfile.TemporaryDirectory(prefix="ferrocell-jkt-history-")
        saved = os.environ.get("FERROCELL_DATA_DIR")
        os.environ["FERROCELL_DATA_DIR"] = cls._history.name
        try:
            super().setUpClass()  # starts the kernel, which inherits the environment
        finally:
            if saved is None:
                os.environ.pop("FERROCELL_DATA_DIR", None)
            else:
                os.environ["FERROCELL_DATA_DIR"] = saved

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            cls._history.cleanup()


class FerrocellKernelTests(_PrivateHistory, jkt.KernelTests):
    kernel_name = "ferrocell"
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("oops");'

    completion_samples = [{"text": "display_ht", "matches": {"display_html"}}]

    complete_code_samples = ["1", "let a = 5;", "fn f() {}"]
    incomplete_code_samples = ["fn f() {", 'let s = "abc', "1 +"]
    invalid_code_samples = ["let = 7q;"]

    code_page_something = ":help"

    code_generate_error = 'let x: i32 = "nope";'

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": "vec![1, 4, 9]", "result": "[1, 4, 9]"},
    ]

    code_display_data = [
        {"code": 'display_html("<b>x</b>");', "mime": "text/html"},
        {"code": 'display_svg("<svg xmlns=\\"http://www.w3.org/2000/svg\\"/>");',
         "mime": "image/svg+xml"},
    ]

    supported_history_operations = ("tail", "range", "search")
    # Of all the code this suite runs, only "1 + 2" matches.
    code_history_pattern = "1 ?*"

    code_inspect_sample = "display_html"

    code_clear_output = "clear_output(false);"


class FerrocellIopubWelcomeTests(_PrivateHistory, jkt.IopubWelcomeTests):
    kernel_name = "ferrocell"
    support_iopub_welcome = True


def test_history_pattern_matches_exactly_one_code():
    """The pattern above must single out one of the codes the suite executes."""
    import fnmatch

    cls = FerrocellKernelTests
    executed = {cls.code_hello_world, cls.code_stderr, cls.code_page_something,
                cls.code_generate_error, cls.code_clear_output}
    executed |= {s["code"] for s in cls.code_execute_result}
    executed |= {s["code"] for s in cls.code_display_data}
    matching = [c for c in executed if fnmatch.fnmatchcase(c, cls.code_history_pattern)]
    assert matching == ["1 + 2"]


if __name__ == "__main__":
    unittest.main()
