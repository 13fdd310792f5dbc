//! How a cell's trailing value is shown. The generated code calls these through
//! method resolution, so that a type's own `evcxr_display` method wins, then `Debug`,
//! then the bare type name; no trait bound is needed on the value.

use std::fmt::Debug;

/// Wraps a reference to the value for the `Debug`-or-not choice.
pub struct Wrap<'a, T: ?Sized>(pub &'a T);

/// Chosen when the value implements `Debug`.
pub trait ViaDebug {
    fn __fc_repr(&self) -> String;
}
impl<T: ?Sized + Debug> ViaDebug for Wrap<'_, T> {
    fn __fc_repr(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// Chosen otherwise: names the type.
pub trait ViaTypeName {
    fn __fc_repr(&self) -> String;
}
impl<T: ?Sized> ViaTypeName for &Wrap<'_, T> {
    fn __fc_repr(&self) -> String {
        format!("<{}>", std::any::type_name::<T>())
    }
}

/// What the fallback `evcxr_display` returns: "not shown by the type itself".
pub struct NotShown;

/// Gives every type an `evcxr_display`; a type's inherent method of that name wins.
pub trait FallbackEvcxrDisplay {
    fn evcxr_display(&self) -> NotShown {
        NotShown
    }
}
impl<T: ?Sized> FallbackEvcxrDisplay for T {}

/// Whether the value displayed itself (inherent `evcxr_display` returns `()`).
pub struct Shown(pub bool);
impl From<()> for Shown {
    fn from(_: ()) -> Self {
        Shown(true)
    }
}
impl From<NotShown> for Shown {
    fn from(_: NotShown) -> Self {
        Shown(false)
    }
}

/// Sends the value's text to the kernel as the cell's result. `()` shows nothing.
pub fn emit(text: String) {
    if text != "()" {
        crate::__runner::send_result(&text);
    }
}

#[cfg(test)]
// The explicit borrows and unit values are what the generated code does.
#[allow(clippy::needless_borrow, clippy::unit_arg, dead_code)]
mod tests {
    use super::*;

    struct Opaque;
    #[derive(Debug)]
    struct Plain(u8);
    struct Custom;
    impl Custom {
        fn evcxr_display(&self) {}
    }

    #[test]
    fn picks_debug_then_type_name() {
        assert_eq!((&Wrap(&Plain(3))).__fc_repr(), "Plain(3)");
        assert!((&Wrap(&Opaque)).__fc_repr().contains("Opaque"));
    }

    #[test]
    fn inherent_evcxr_display_wins() {
        let a: Shown = Custom.evcxr_display().into();
        let b: Shown = Plain(1).evcxr_display().into();
        assert!(a.0 && !b.0);
    }
}
