//! What `%%opencl` cells call, on the `opencl3` crate (which loads libOpenCL when
//! first used, so a session without OpenCL never needs it).
//!
//! The kernel writes each `%%opencl` cell as Rust: the program's source and build
//! options, a build on the chosen device when the cell runs (its log on the cell's
//! lines), and a typed handle per `__kernel` whose `run` takes a global size and
//! the kernel's arguments:
//!
//! - `const __global T*` (or `__constant`): `&[T]` or `&Vec<T>`, copied to the
//!   device, or a [`Buffer<T>`] already there;
//! - `__global T*`: `&mut [T]` or `&mut Vec<T>`, copied there and back after the
//!   run, or a [`Buffer<T>`] (which stays on the device across calls);
//! - scalars: `i32`, `u32`, `f32`, `f64`, ... as the kernel declares them.
//!
//! Each process (the runner, a worker, an engine) builds a program once per device
//! and keeps it, with one context and queue per device.

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU};
use opencl3::kernel::Kernel;
use opencl3::memory::{ClMem, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::CL_BLOCKING;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Why an OpenCL call failed, in words for the cell's error.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn err(what: &str) -> impl Fn(opencl3::error_codes::ClError) -> Error + '_ {
    move |e| Error(format!("{what}: {e}"))
}

/// One device, as `%opencl devices` lists it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub index: usize,
    pub name: String,
    pub kind: &'static str,
    pub platform: String,
    pub version: String,
}

/// Every device of every platform, numbered in that order (`--device N`).
fn all_devices() -> Result<Vec<(DeviceInfo, Device)>> {
    let platforms = opencl3::platform::get_platforms().map_err(|e| {
        Error(format!(
            "no OpenCL platform (is an ICD such as pocl installed?): {e}"
        ))
    })?;
    let mut out = Vec::new();
    for p in platforms {
        let pname = p.name().unwrap_or_default();
        for id in p.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_default() {
            let d = Device::new(id);
            let t = d.dev_type().unwrap_or(0);
            let kind = if t & CL_DEVICE_TYPE_GPU != 0 {
                "GPU"
            } else if t & CL_DEVICE_TYPE_CPU != 0 {
                "CPU"
            } else {
                "other"
            };
            let info = DeviceInfo {
                index: out.len(),
                name: d.name().unwrap_or_default(),
                kind,
                platform: pname.clone(),
                version: d.version().unwrap_or_default(),
            };
            out.push((info, d));
        }
    }
    Ok(out)
}

/// The devices, for `%opencl devices`.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    Ok(all_devices()?.into_iter().map(|(i, _)| i).collect())
}

/// Prints the devices as `%opencl devices` shows them.
pub fn show_devices() {
    match devices() {
        Ok(ds) if ds.is_empty() => println!("No OpenCL devices."),
        Ok(ds) => {
            for d in ds {
                println!(
                    "{}: {} ({}, {}; {})",
                    d.index, d.name, d.kind, d.platform, d.version
                );
            }
        }
        Err(e) => println!("{e}"),
    }
}

/// A device's context and queue, made once per process.
struct Place {
    context: Context,
    queue: CommandQueue,
}

fn place(device: usize) -> Result<Arc<Place>> {
    static PLACES: OnceLock<Mutex<HashMap<usize, Arc<Place>>>> = OnceLock::new();
    let mut places = PLACES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = places.get(&device) {
        return Ok(p.clone());
    }
    let (_, d) = all_devices()?.into_iter().nth(device).ok_or_else(|| {
        Error(format!(
            "there is no OpenCL device {device} (%opencl devices lists them)"
        ))
    })?;
    let context = Context::from_device(&d).map_err(err("an OpenCL context"))?;
    #[allow(deprecated)]
    let queue = CommandQueue::create_default(&context, 0).map_err(err("an OpenCL queue"))?;
    let p = Arc::new(Place { context, queue });
    places.insert(device, p.clone());
    Ok(p)
}

/// The device that buffers made without one go to: that of the last program built
/// or kernel run in this process.
static CURRENT: Mutex<usize> = Mutex::new(0);

/// A built program on its device.
pub struct Built {
    place: Arc<Place>,
    program: Program,
    device: usize,
}

/// Builds `source` for `device` with `options`, once per process; the build log
/// is the error when it fails.
pub fn program(device: usize, source: &'static str, options: &'static str) -> Result<Arc<Built>> {
    // By content: a program's source is a constant, which each cell that calls a
    // kernel may have its own copy of.
    type Key = (usize, &'static str, &'static str);
    static BUILT: OnceLock<Mutex<HashMap<Key, Arc<Built>>>> = OnceLock::new();
    let key = (device, source, options);
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Buffers made without a device go where the last kernel ran.
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = device;
    if let Some(b) = built.get(&key) {
        return Ok(b.clone());
    }
    let place = place(device)?;
    let program =
        Program::create_and_build_from_source(&place.context, source, options).map_err(|log| {
            Error(format!(
                "the OpenCL program did not build:\n{}",
                log.trim_end()
            ))
        })?;
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = device;
    let b = Arc::new(Built {
        place,
        program,
        device,
    });
    built.insert(key, b.clone());
    Ok(b)
}

/// Builds the program of a `%%opencl` cell when the cell runs: a failed build
/// stops the cell with its log (on the cell's lines: the source says `#line`).
pub fn build_or_stop(device: usize, source: &'static str, options: &'static str) {
    if let Err(e) = program(device, source, options) {
        eprintln!("{e}");
        let first =
            e.0.lines()
                .find(|l| l.contains("error"))
                .unwrap_or("see the build log above")
                .trim()
                .to_string();
        panic!("the OpenCL program did not build: {first}");
    }
}

/// A global size: `n`, `(x, y)` or `(x, y, z)` work items.
pub trait Global {
    fn sizes(&self) -> Vec<usize>;
}

impl Global for usize {
    fn sizes(&self) -> Vec<usize> {
        vec![*self]
    }
}

impl Global for (usize, usize) {
    fn sizes(&self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

impl Global for (usize, usize, usize) {
    fn sizes(&self) -> Vec<usize> {
        vec![self.0, self.1, self.2]
    }
}

/// A buffer on a device: made from host data, kept there across kernel calls,
/// read back when asked.
pub struct Buffer<T> {
    inner: opencl3::memory::Buffer<T>,
    place: Arc<Place>,
    len: usize,
}

impl<T: Copy + Default> Buffer<T> {
    /// A buffer of `len` default values on the current device (the last
    /// `%%opencl` cell's).
    pub fn new(len: usize) -> Result<Self> {
        Self::from_slice(&vec![T::default(); len])
    }

    /// A copy of `data` on the current device.
    pub fn from_slice(data: &[T]) -> Result<Self> {
        let device = *CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        Self::on(&place(device)?, data, CL_MEM_READ_WRITE)
    }

    fn on(place: &Arc<Place>, data: &[T], flags: u64) -> Result<Self> {
        let len = data.len().max(1);
        // SAFETY: a buffer of `len` elements, written below before any use.
        let mut inner = unsafe {
            opencl3::memory::Buffer::<T>::create(&place.context, flags, len, std::ptr::null_mut())
        }
        .map_err(err("a device buffer"))?;
        if !data.is_empty() {
            // SAFETY: `data` fits the buffer; the write blocks until done.
            unsafe {
                place
                    .queue
                    .enqueue_write_buffer(&mut inner, CL_BLOCKING, 0, data, &[])
            }
            .map_err(err("copying to the device"))?;
        }
        Ok(Buffer {
            inner,
            place: place.clone(),
            len: data.len(),
        })
    }

    /// The buffer's values, copied back from the device.
    pub fn read(&self) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.len];
        self.read_into(&mut out)?;
        Ok(out)
    }

    fn read_into(&self, out: &mut [T]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: `out` is no longer than the buffer; the read blocks until done.
        unsafe {
            self.place
                .queue
                .enqueue_read_buffer(&self.inner, CL_BLOCKING, 0, out, &[])
        }
        .map_err(err("copying from the device"))?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Buffer<{}>({} on the device)",
            std::any::type_name::<T>(),
            self.len
        )
    }
}

/// One argument of a kernel call, set on the kernel before the run; what must be
/// copied back afterwards is kept.
pub enum Bound<'a, T> {
    /// A buffer made for this call, dropped after it.
    Temporary(Buffer<T>),
    /// Made for this call and read back into the host slice after it.
    Back(Buffer<T>, &'a mut [T]),
    /// The caller's device buffer.
    Kept(&'a Buffer<T>),
}

impl<T: Copy + Default> Bound<'_, T> {
    fn buffer(&self) -> &Buffer<T> {
        match self {
            Bound::Temporary(b) | Bound::Back(b, _) => b,
            Bound::Kept(b) => b,
        }
    }
}

/// What a `const __global T*` parameter takes: host data (copied to the device)
/// or a [`Buffer`].
pub trait Input<'a, T> {
    fn input(self, built: &Built) -> Result<Bound<'a, T>>;
}

/// What a `__global T*` parameter takes: a host slice (copied there and back) or
/// a [`Buffer`].
pub trait Output<'a, T> {
    fn output(self, built: &Built) -> Result<Bound<'a, T>>;
}

fn same_place<T>(b: &Buffer<T>, built: &Built) -> Result<()> {
    if Arc::ptr_eq(&b.place, &built.place) {
        Ok(())
    } else {
        Err(Error(format!(
            "the buffer is on another device than the program (device {})",
            built.device
        )))
    }
}

impl<'a, T: Copy + Default> Input<'a, T> for &'a [T] {
    fn input(self, built: &Built) -> Result<Bound<'a, T>> {
        Ok(Bound::Temporary(Buffer::on(
            &built.place,
            self,
            CL_MEM_READ_ONLY,
        )?))
    }
}

impl<'a, T: Copy + Default> Input<'a, T> for &'a Vec<T> {
    fn input(self, built: &Built) -> Result<Bound<'a, T>> {
        self.as_slice().input(built)
    }
}

impl<'a, T: Copy + Default> Input<'a, T> for &'a Buffer<T> {
    fn input(self, built: &Built) -> Result<Bound<'a, T>> {
        same_place(self, built)?;
        Ok(Bound::Kept(self))
    }
}

impl<'a, T: Copy + Default> Output<'a, T> for &'a mut [T] {
    fn output(self, built: &Built) -> Result<Bound<'a, T>> {
        let b = Buffer::on(&built.place, self, CL_MEM_READ_WRITE)?;
        Ok(Bound::Back(b, self))
    }
}

impl<'a, T: Copy + Default> Output<'a, T> for &'a mut Vec<T> {
    fn output(self, built: &Built) -> Result<Bound<'a, T>> {
        self.as_mut_slice().output(built)
    }
}

impl<'a, T: Copy + Default> Output<'a, T> for &'a Buffer<T> {
    fn output(self, built: &Built) -> Result<Bound<'a, T>> {
        same_place(self, built)?;
        Ok(Bound::Kept(self))
    }
}

/// Anything a call keeps alive until its run.
trait Keep {}
impl<T> Keep for T {}

/// One call of a kernel: its arguments in order, then the run.
pub struct Call<'a> {
    built: Arc<Built>,
    kernel: Kernel,
    index: u32,
    /// The fewest elements a buffer argument has: `run` takes no more work items.
    shortest: Option<usize>,
    backs: Vec<Box<dyn FnOnce() -> Result<()> + 'a>>,
    keep: Vec<Box<dyn Keep + 'a>>,
}

impl<'a> Call<'a> {
    /// A call of the kernel `name` of the program.
    pub fn new(built: Arc<Built>, name: &str) -> Result<Self> {
        let kernel = Kernel::create(&built.program, name).map_err(err(name))?;
        Ok(Call {
            built,
            kernel,
            index: 0,
            shortest: None,
            backs: Vec::new(),
            keep: Vec::new(),
        })
    }

    /// The built program, for the arguments' buffers.
    pub fn built(&self) -> Arc<Built> {
        self.built.clone()
    }

    /// The next argument: a bound buffer.
    pub fn buffer<T: Copy + Default + 'a>(&mut self, bound: Bound<'a, T>) -> Result<&mut Self> {
        // SAFETY: the argument is a cl_mem of the kernel's context.
        unsafe { self.kernel.set_arg(self.index, &bound.buffer().inner.get()) }
            .map_err(err("a kernel argument"))?;
        self.index += 1;
        let len = bound.buffer().len;
        self.shortest = Some(self.shortest.map_or(len, |s| s.min(len)));
        match bound {
            Bound::Back(b, host) => self.backs.push(Box::new(move || b.read_into(host))),
            other => self.keep.push(Box::new(other)),
        }
        Ok(self)
    }

    /// The next argument: a scalar of the kernel's type.
    pub fn scalar<T: Copy>(&mut self, value: T) -> Result<&mut Self> {
        // SAFETY: the kernel declares a scalar of this size at this index.
        unsafe { self.kernel.set_arg(self.index, &value) }.map_err(err("a kernel argument"))?;
        self.index += 1;
        Ok(self)
    }

    /// Runs the kernel on `global` work items, waits for it, and copies back what
    /// must be. There are no more work items than the shortest buffer has
    /// elements (a kernel indexes its buffers by work item, and nothing checks
    /// that on the device); [`Call::run_unchecked`] runs more.
    pub fn run(self, global: impl Global) -> Result<()> {
        let items: usize = global.sizes().iter().product();
        if let Some(shortest) = self.shortest.filter(|s| items > *s) {
            return Err(Error(format!(
                "{items} work items but a buffer of {shortest} elements: a kernel that reads or writes one element per work item would go past its end (run_unchecked runs it anyway)"
            )));
        }
        // SAFETY: no more work items than elements in every buffer.
        unsafe { self.run_unchecked(global) }
    }

    /// Runs the kernel on `global` work items, however long its buffers are.
    ///
    /// # Safety
    /// The kernel must stay within its buffers for that many work items: on a
    /// CPU device (pocl) they may be this process's memory.
    pub unsafe fn run_unchecked(self, global: impl Global) -> Result<()> {
        let sizes = global.sizes();
        let declared = self.kernel.num_args().map_err(err("the kernel"))?;
        if declared != self.index {
            return Err(Error(format!(
                "the kernel takes {declared} arguments, {} were given",
                self.index
            )));
        }
        // SAFETY: every argument was set above; the queue is the program's; the
        // sizes outlive the call.
        unsafe {
            self.built.place.queue.enqueue_nd_range_kernel(
                self.kernel.get(),
                sizes.len() as u32,
                std::ptr::null(),
                sizes.as_ptr(),
                std::ptr::null(),
                &[],
            )
        }
        .map_err(err("running the kernel"))?;
        self.built
            .place
            .queue
            .finish()
            .map_err(err("running the kernel"))?;
        for back in self.backs {
            back()?;
        }
        drop(self.keep);
        Ok(())
    }
}
