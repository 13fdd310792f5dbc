//! The store of session variables: values of any type, by name, kept in the runner
//! between cells. A leaf, so that both the cells' entry points ([`crate::__vars`])
//! and the background snapshots ([`crate::snapshot`], which fork while holding the
//! store) reach it without importing each other.

use std::alloc::Layout;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Mutex;

/// A value of any type, kept by address. Cells build and unpack it with a few
/// constants (layout, type id, drop function) instead of a `Box<dyn Any>`, whose
/// vtable and downcast each cell would otherwise compile for each variable's type.
pub(crate) struct Erased {
    pub(crate) ptr: *mut u8,
    pub(crate) layout: Layout,
    pub(crate) type_id: TypeId,
    pub(crate) drop: unsafe fn(*mut u8),
}

impl Drop for Erased {
    fn drop(&mut self) {
        // SAFETY: `ptr` holds a live value of the type `drop` was made for, in a block
        // of `layout` from `alloc` (or no block for a zero-sized type).
        unsafe {
            (self.drop)(self.ptr);
            if self.layout.size() != 0 {
                std::alloc::dealloc(self.ptr, self.layout);
            }
        }
    }
}

/// Values of any type. Only one cell runs at a time and the store is only touched
/// from that cell's thread, so the values never actually cross threads.
struct Store(HashMap<String, Erased>);
// SAFETY: see above; access is serialised by the mutex and by cells running one at a time.
unsafe impl Send for Store {}

/// The stores by namespace, and the one cells use now. A runner has one namespace;
/// a cluster engine's worker one for each kernel that shares the engine, so that
/// their `--persist` variables stay apart.
struct Stores {
    current: u32,
    by_namespace: HashMap<u32, Store>,
}

static STORE: Mutex<Option<Stores>> = Mutex::new(None);

fn stores(guard: &mut Option<Stores>) -> &mut Stores {
    guard.get_or_insert_with(|| Stores {
        current: 0,
        by_namespace: HashMap::new(),
    })
}

/// Runs `f` on the variables of the current namespace, with the store locked.
pub(crate) fn with<R>(f: impl FnOnce(&mut HashMap<String, Erased>) -> R) -> R {
    let mut guard = STORE.lock().unwrap_or_else(|e| e.into_inner());
    let stores = stores(&mut guard);
    let current = stores.current;
    let store = stores
        .by_namespace
        .entry(current)
        .or_insert_with(|| Store(HashMap::new()));
    f(&mut store.0)
}

/// Makes `namespace` the one later cells use (a worker, between cells).
pub(crate) fn switch(namespace: u32) {
    let mut guard = STORE.lock().unwrap_or_else(|e| e.into_inner());
    stores(&mut guard).current = namespace;
}

/// Drops a namespace's variables (its kernel is gone), unless it is the current
/// one, which a cell may still be using. Dropped outside the lock: a value's
/// `Drop` may be anything; no cell of a namespace that is not current runs.
pub(crate) fn drop_namespace(namespace: u32) {
    let gone = {
        let mut guard = STORE.lock().unwrap_or_else(|e| e.into_inner());
        let stores = stores(&mut guard);
        if stores.current == namespace {
            return;
        }
        stores.by_namespace.remove(&namespace)
    };
    drop(gone);
}

/// The store, locked (a saver forks while holding it).
pub(crate) fn lock_store() -> impl Drop {
    STORE.lock().unwrap_or_else(|e| e.into_inner())
}
