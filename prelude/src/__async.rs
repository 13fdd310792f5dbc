//! Top-level `.await` in cells.
//!
//! A cell that awaits runs its body as an async block, driven to its end by
//! [`block_on`]: a small executor that parks the cell's thread until the future's
//! waker unparks it, for futures that need no runtime. With tokio among the
//! session's crates, the cell uses one multi-thread runtime kept in [`shared`], so
//! tasks spawned in one cell go on running and later cells await their handles.
//! Either way an interrupt stops the wait and unwinds the cell, which keeps its
//! variables as after a panic.

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

/// The waker of the future a cell is awaiting, woken when the user interrupts.
static AWAITING: Mutex<Option<Waker>> = Mutex::new(None);

/// Values kept for the runner's life, one per type (a tokio runtime).
static SHARED: Mutex<Vec<(TypeId, &'static (dyn Any + Send + Sync))>> = Mutex::new(Vec::new());

/// What an interrupted wait unwinds with (no panic message: the kernel reports the
/// interrupt).
struct Interrupted;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to its end on this thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(Interruptible(future));
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// The session's value of type `T`, made by `make` the first time.
pub fn shared<T: Any + Send + Sync>(make: impl FnOnce() -> T) -> &'static T {
    let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let id = TypeId::of::<T>();
    let found = all.iter().find(|(t, _)| *t == id).map(|(_, v)| *v);
    let value = found.unwrap_or_else(|| {
        let made: &'static T = Box::leak(Box::new(make()));
        all.push((id, made));
        made
    });
    value.downcast_ref().expect("the type id matched")
}

/// The future, stopped by an interrupt (for another runtime's `block_on`).
pub fn interruptible<F: Future>(future: F) -> impl Future<Output = F::Output> {
    Interruptible(future)
}

/// Wakes the awaited future after an interrupt, so that its next poll unwinds.
pub(crate) fn interrupt() {
    let waker = AWAITING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(w) = waker {
        w.wake();
    }
}

/// A future that unwinds when the user interrupts the cell.
struct Interruptible<F>(F);

impl<F: Future> Future for Interruptible<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if crate::interrupted() {
            AWAITING.lock().unwrap_or_else(|e| e.into_inner()).take();
            std::panic::resume_unwind(Box::new(Interrupted));
        }
        // SAFETY: the inner future is never moved out of the pinned wrapper.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match inner.poll(cx) {
            Poll::Ready(v) => {
                AWAITING.lock().unwrap_or_else(|e| e.into_inner()).take();
                Poll::Ready(v)
            }
            Poll::Pending => {
                *AWAITING.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                // An interrupt that came before the waker was stored.
                if crate::interrupted() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}
