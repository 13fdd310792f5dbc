"""%%c and %%cpp cells (Cython's C/C++ inclusion): the cell is built by the system
compiler into a library, and its C functions are Rust functions of later cells,
called in `unsafe { }`: with flags, errors on the cell's lines, printf in order,
a segfault survived, redefinition, and from %%parallel ranks."""

from __future__ import annotations

import textwrap

from kernel_helpers import error_text, ok, result_text, run, stream_text, tables, value

ADD = "%%c\nint add_ints(int a, int b) { return a + b; }"


def test_a_c_function_is_called_from_a_later_rust_cell(kc):
    ok(*run(kc, ADD))
    assert value(kc, "unsafe { add_ints(40, 2) }") == "42"
    # Types the cell defines come along.
    ok(*run(kc, textwrap.dedent("""\
        %%c
        typedef struct { double x, y; } point;
        double norm2(point p) { return p.x * p.x + p.y * p.y; }
        """)))
    assert value(kc, "unsafe { norm2(point { x: 3.0, y: 4.0 }) }") == "25.0"
    # A C name that is a Rust keyword gets a `_`; it still calls that function.
    ok(*run(kc, "%%c\nint match(int x) { return x + 1; }"))
    assert value(kc, "unsafe { match_(1) }") == "2"


def test_flags_as_cython_takes_them(kc):
    ok(*run(kc, textwrap.dedent("""\
        %%c -O3 -lm -D SCALE=2
        #include <math.h>
        double hyp(double a, double b) { return SCALE * sqrt(a * a + b * b); }
        """)))
    assert value(kc, "unsafe { hyp(3.0, 4.0) }") == "10.0"
    reply, _ = run(kc, "%%c --frobnicate\nint f(void) { return 1; }")
    assert reply["content"]["ename"] == "MagicError"


def test_cpp_extern_c_functions_join_and_others_are_named(kc):
    reply, outputs = run(kc, textwrap.dedent("""\
        %%cpp -O2
        #include <numeric>
        #include <vector>
        extern "C" double mean(const double* xs, int n) {
            std::vector<double> v(xs, xs + n);
            return std::accumulate(v.begin(), v.end(), 0.0) / n;
        }
        int mangled(int x) { return x; }
        struct Acc { double sum; void add(double x); };
        void Acc::add(double x) { sum += x; }
        extern "C" double twice(double x) { Acc a{0}; a.add(x); a.add(x); return a.sum; }
        """))
    ok(reply, outputs)
    assert "`mangled` has C++ linkage" in stream_text(outputs, "stderr")
    assert value(kc, "let xs = vec![1.0, 2.0, 6.0]; unsafe { mean(xs.as_ptr(), xs.len() as i32) }") == "3.0"
    # A class's methods stay C++; an extern "C" function that uses them joins.
    assert value(kc, "unsafe { twice(1.5) }") == "3.0"


def test_a_compile_error_is_one_error_on_the_cells_lines(kc):
    reply, _ = run(kc, "%%c\nint f(void) {\n    return undeclared_thing;\n}")
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "CompileError"
    assert "undeclared_thing" in content["evalue"]
    assert "cell:3:" in error_text(content), error_text(content)
    # The kernel goes on.
    assert value(kc, "1 + 1") == "2"


def test_printf_comes_out_in_order_with_rust_output(kc):
    ok(*run(kc, '%%c\n#include <stdio.h>\nvoid hello(int n) { printf("C says %d\\n", n); }'))
    reply, outputs = run(kc, 'for i in 0..50 { println!("Rust says {i}"); unsafe { hello(i) }; }')
    ok(reply, outputs)
    assert stream_text(outputs) == "".join(f"Rust says {i}\nC says {i}\n" for i in range(50))


def test_a_segfault_in_c_is_survived_and_the_functions_stay(kc):
    ok(*run(kc, ADD))
    ok(*run(kc, "%%c\nvoid crash(void) { volatile int *p = 0; *p = 1; }"))
    ok(*run(kc, "let kept = vec![1, 2, 3];"))
    reply, _ = run(kc, "unsafe { crash() }")
    assert reply["content"]["ename"] == "RunnerDied"
    assert value(kc, "kept") == "[1, 2, 3]"
    assert value(kc, "unsafe { add_ints(1, 2) }") == "3"


def test_a_c_cell_run_again_with_new_code_replaces_its_functions(kc):
    ok(*run(kc, "%%c\nint version(void) { return 1; }"))
    assert value(kc, "unsafe { version() }") == "1"
    ok(*run(kc, "%%c\nint version(void) { return 2; }"))
    assert value(kc, "unsafe { version() }") == "2"


def test_c_functions_work_from_parallel_ranks(kc):
    ok(*run(kc, ADD))
    for backend in ("threads", "processes"):
        reply, outputs = run(kc, f"%%parallel {backend} 2 --out sums\nunsafe {{ add_ints(rank as i32, 100) }}",
                             timeout=120)
        ok(reply, outputs)
        assert f"2 ranks on 2 {backend}" in tables(outputs)[0]["text/plain"]
        assert value(kc, "sums") == "[100, 101]"
    assert result_text(run(kc, "unsafe { add_ints(2, 2) }")[1]) == "4"


def test_c_functions_work_on_cluster_engines(kc):
    """The engines are sent the C library with the layers and load it there."""
    ok(*run(kc, ADD))
    ok(*run(kc, "%cluster start -n 2", timeout=180))
    try:
        reply, outputs = run(kc, "%%parallel cluster --out sums\nunsafe { add_ints(rank as i32, 1000) }",
                             timeout=120)
        ok(reply, outputs)
        assert value(kc, "sums") == "[1000, 1001]"
    finally:
        ok(*run(kc, "%cluster stop", timeout=60))


def test_a_changed_header_builds_the_cell_again(kc, tmp_path):
    """The cache key holds the headers a cell includes, not only its own text."""
    header = tmp_path / "k.h"
    header.write_text("#define K 1\n")
    cell = f'%%c -I {tmp_path}\n#include "k.h"\nint k_value(void) {{ return K; }}'
    ok(*run(kc, cell))
    assert value(kc, "unsafe { k_value() }") == "1"
    header.write_text("#define K 2\n")
    ok(*run(kc, cell))
    assert value(kc, "unsafe { k_value() }") == "2"
