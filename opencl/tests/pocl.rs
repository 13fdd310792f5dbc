//! Against a real OpenCL device (pocl's CPU device in CI): a program built, a
//! kernel run on host slices and on a buffer kept on the device, a build error's
//! log.

use ferrocell_opencl::{program, Buffer, Call, Input, Output};

const SOURCE: &str = "__kernel void axpy(float a, __global const float* x, __global float* y) {\n\
    int i = get_global_id(0);\n\
    y[i] += a * x[i];\n\
}\n";

#[test]
fn a_kernel_runs_on_slices_and_on_a_device_buffer() {
    let built = program(0, SOURCE, "").expect("the program builds on device 0");
    let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let mut y = vec![1.0f32; 1000];
    let mut call = Call::new(built.clone(), "axpy").unwrap();
    call.scalar(2.0f32).unwrap();
    call.buffer(x.as_slice().input(&built).unwrap()).unwrap();
    call.buffer(y.as_mut_slice().output(&built).unwrap())
        .unwrap();
    call.run(1000usize).unwrap();
    assert!(y
        .iter()
        .enumerate()
        .all(|(i, v)| *v == 1.0 + 2.0 * i as f32));

    // A buffer stays on the device across two calls.
    let kept = Buffer::from_slice(&vec![0.0f32; 1000]).unwrap();
    for _ in 0..2 {
        let mut call = Call::new(built.clone(), "axpy").unwrap();
        call.scalar(1.0f32).unwrap();
        call.buffer((&x).input(&built).unwrap()).unwrap();
        call.buffer(Output::output(&kept, &built).unwrap()).unwrap();
        call.run(1000usize).unwrap();
    }
    let back = kept.read().unwrap();
    assert!(back.iter().enumerate().all(|(i, v)| *v == 2.0 * i as f32));
}

#[test]
fn a_build_error_comes_with_its_log() {
    let e = program(
        0,
        "__kernel void k(__global float* y) { y[0] = undeclared; }",
        "",
    )
    .err()
    .expect("the build fails");
    assert!(e.0.contains("undeclared"), "{e}");
}
