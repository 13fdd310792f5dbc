//! The session's variables, kept in the runner between cells.
//!
//! A cell takes out the variables it uses (by value, with the type the kernel learnt
//! from rustc) and puts back what it still owns at the end, so inside the cell they
//! are ordinary local variables. The values themselves are in `crate::store`.

use crate::store::{Erased, with};
use std::alloc::Layout;
use std::any::{Any, TypeId};

// The generic entry points below are instantiated in every cell that uses a
// variable, so they stay tiny: the work is in these non-generic functions, compiled
// once into the prelude.

/// Moves a variable's value out of the store: the address of its block (to read
/// once, then free with [`free_block`]).
#[inline(never)]
pub fn take_raw(name: &str, type_id: TypeId, wanted: &'static str) -> *mut u8 {
    // The cell may change it: a snapshot still being written is stale.
    crate::snapshot::cancel(name);
    let Some(e) = with(|m| m.remove(name)) else {
        panic!("ferrocell: the session variable `{name}` is gone (the runner restarted)")
    };
    if e.type_id != type_id {
        with(|m| m.insert(name.to_string(), e));
        panic!("ferrocell: the session variable `{name}` is not a {wanted}")
    }
    let ptr = e.ptr;
    std::mem::forget(e);
    ptr
}

/// A block for a value of `layout`, to write and hand to [`put_raw`].
#[inline(never)]
pub fn alloc_block(layout: Layout) -> *mut u8 {
    if layout.size() == 0 {
        return layout.align() as *mut u8;
    }
    // SAFETY: the size is not zero.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p
}

/// Frees a block whose value was moved out.
///
/// # Safety
/// `ptr` came from [`alloc_block`] (or the store) with this layout, and is not used
/// again.
#[inline(never)]
pub unsafe fn free_block(ptr: *mut u8, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: the caller's promise: allocated with this layout, used no more.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// Puts a value, written at `ptr` (from [`alloc_block`]), into the store.
///
/// # Safety
/// `ptr` holds a live value of the type `type_id` names, and `drop` drops that type.
#[inline(never)]
pub unsafe fn put_raw(
    name: &str,
    ptr: *mut u8,
    layout: Layout,
    type_id: TypeId,
    drop: unsafe fn(*mut u8),
) {
    let e = Erased {
        ptr,
        layout,
        type_id,
        drop,
    };
    with(|m| m.insert(name.to_string(), e));
}

/// Takes a variable out of the store for the running cell.
#[inline(always)]
pub fn take<T: 'static>(name: &str) -> T {
    let ptr = take_raw(name, TypeId::of::<T>(), std::any::type_name::<T>()) as *mut T;
    // SAFETY: the type id matched, so the block holds a `T`; it is read once and freed.
    unsafe {
        let value = ptr.read();
        free_block(ptr as *mut u8, Layout::new::<T>());
        value
    }
}

/// Puts a variable back (or in, for the first time) at the end of a cell.
#[inline(always)]
pub fn put<T: 'static>(name: &str, value: T) {
    let layout = Layout::new::<T>();
    let ptr = alloc_block(layout) as *mut T;
    // SAFETY: a fresh block of `T`'s layout; `drop_in_place::<T>` drops what it holds.
    unsafe {
        ptr.write(value);
        let drop: unsafe fn(*mut T) = std::ptr::drop_in_place::<T>;
        put_raw(
            name,
            ptr as *mut u8,
            layout,
            TypeId::of::<T>(),
            std::mem::transmute::<unsafe fn(*mut T), unsafe fn(*mut u8)>(drop),
        );
    }
}

/// Runs a cell's code and catches a panic, so that the cell can put its variables
/// back before the panic goes on. Not generic, so cells do not each instantiate
/// `catch_unwind`.
pub fn guarded<'a>(body: Box<dyn FnOnce() + 'a>) -> Option<Box<dyn Any + Send>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).err()
}

/// Forgets a variable (for `%reset` and redefinitions), and its snapshot.
pub fn remove(name: &str) {
    with(|m| m.remove(name));
    crate::snapshot::remove(name);
}

/// Forgets every variable.
pub fn clear() {
    let names = names();
    with(|m| m.clear());
    for n in names {
        crate::snapshot::remove(&n);
    }
}

/// Saves the named variables' snapshots in the background (see [`crate::snapshot`]);
/// a saver cell calls it with its names and its per-type code.
pub fn save_snapshots(names: &[String], wait: bool, each: &mut dyn FnMut(&str)) {
    crate::snapshot::save(names, wait, each);
}

/// Writes one variable's snapshot from a saver (`None`: its type has no serde).
pub fn write_snapshot(name: &str, serialise: Option<crate::snapshot::Serialiser<'_>>) {
    crate::snapshot::write(name, serialise);
}

/// The snapshot of a variable, read as a stream, for restoring it in a new runner
/// (a worker reads the bytes its coordinator sent).
pub fn snapshot_reader(name: &str) -> Option<Box<dyn std::io::Read>> {
    if crate::process::is_worker() {
        return Some(Box::new(std::io::Cursor::new(
            crate::worker::take_received(name)?,
        )));
    }
    let file = std::fs::File::open(crate::snapshot::dir()?.join(name)).ok()?;
    Some(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
}

/// The bytes of a variable's snapshot (a coordinator sends them to its workers).
pub fn snapshot_bytes(name: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut snapshot_reader(name)?, &mut bytes).ok()?;
    Some(bytes)
}

/// Whether the store holds a variable of that name.
pub fn has(name: &str) -> bool {
    with(|m| m.contains_key(name))
}

/// The names of the variables the store holds.
pub fn names() -> Vec<String> {
    with(|m| m.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_put_and_type_check() {
        put("v", vec![1u8, 2]);
        let mut v: Vec<u8> = take("v");
        v.push(3);
        put("v", v);
        assert_eq!(take::<Vec<u8>>("v"), vec![1, 2, 3]);
        put("n", 5i32);
        assert!(std::panic::catch_unwind(|| take::<u64>("n")).is_err());
        assert_eq!(take::<i32>("n"), 5);
        assert!(names().is_empty());
    }
}
