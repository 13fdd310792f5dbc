"""%%opencl cells (PyOpenCL's %%cl_kernel) on a real OpenCL device: pocl's CPU
device in CI, NVIDIA's where present. Each __kernel becomes a typed handle that
later Rust cells run on vectors or on buffers kept on the device; a build error
comes with its log on the cell's lines."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from kernel_helpers import all_text, error_text, ok, run, stream_text, value

pytestmark = pytest.mark.skipif(shutil.which("clinfo") is None,
                                reason="no OpenCL here (.ci/run installs pocl and clinfo)")

# The first %%opencl of a machine builds the support crate (opencl3) with cargo.
FIRST = 600

VADD = textwrap.dedent("""\
    %%opencl
    __kernel void vadd(__global const float* a, __global const float* b, __global float* c) {
        int i = get_global_id(0);
        c[i] = a[i] + b[i];
    }
    __kernel void accumulate(__global const float* x, __global float* total, float k) {
        int i = get_global_id(0);
        total[i] += k * x[i];
    }
    """)


def test_devices_are_listed(kc):
    reply, outputs = run(kc, "%opencl devices", timeout=FIRST)
    ok(reply, outputs)
    text = stream_text(outputs)
    assert text.startswith("0: ") and ("CPU" in text or "GPU" in text), text


def test_a_kernel_runs_on_vectors_and_on_a_buffer_kept_on_the_device(kc):
    ok(*run(kc, VADD, timeout=FIRST))
    ok(*run(kc, "let a = vec![1.0f32; 1000];\nlet b: Vec<f32> = (0..1000).map(|i| i as f32).collect();"))
    assert value(kc, "let mut c = vec![0.0f32; 1000];\nvadd.run(1000, &a, &b, &mut c).unwrap();\n(c[0], c[999])") \
        == "(1.0, 1000.0)"
    # A buffer on the device, written by two runs, read back once.
    ok(*run(kc, "let total = ferrocell_opencl::Buffer::<f32>::new(1000).unwrap();"))
    ok(*run(kc, "accumulate.run(1000, &b, &total, 1.0).unwrap();\naccumulate.run(1000, &b, &total, 2.0).unwrap();"))
    assert value(kc, "let back = total.read().unwrap();\n(back[1], back[999])") == "(3.0, 2997.0)"
    # More work items than a buffer has elements is refused, not run past its end.
    assert value(kc, "vadd.run(2000, &a, &b, &mut c).unwrap_err().to_string().contains(\"2000 work items\")") \
        == "true"
    # Arguments are typed: a Vec<f64> where the kernel takes floats does not compile.
    reply, _ = run(kc, "let d = vec![1.0f64; 4]; let mut e = vec![0.0f32; 4];\nvadd.run(4, &d, &b, &mut e).unwrap();")
    assert reply["content"]["ename"] == "CompileError"


def test_a_build_error_shows_its_log_on_the_cells_lines(kc):
    reply, outputs = run(kc, "%%opencl\n__kernel void broken(__global float* y) {\n    y[0] = undeclared;\n}",
                         timeout=FIRST)
    assert reply["content"]["status"] == "error"
    text = all_text(outputs) + error_text(reply["content"])
    assert "did not build" in text and "undeclared" in text, text
    assert "cell:3:" in text, text
    assert value(kc, "1 + 1") == "2"


def test_bad_options_are_a_clear_error(kc):
    reply, _ = run(kc, "%%opencl --device x\n__kernel void k() {}")
    assert reply["content"]["ename"] == "MagicError"
