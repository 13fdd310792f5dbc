"""Papermill support for ferrocell, the Jupyter kernel for Rust.

Installing this package is all it takes for papermill to parameterize ferrocell
notebooks: `papermill in.ipynb out.ipynb -p n 4 -p label "x"` adds, after the cell
tagged `parameters`, a cell of Rust

    // Parameters
    let n = 4;
    let label = String::from("x");

that ferrocell runs like any other, so the later cells see the new values.
`ferrocell_papermill.translator` says how each type of value is written;
`ferrocell_papermill.engine` says how papermill finds the translator (through the
`papermill.engine` entry point `ferrocell`, since papermill has no entry points for
translators). The translator is registered for the kernel name `ferrocell` and, if
no other package has claimed it, for the language `rust`.
"""

from .translator import (  # noqa: F401  (importing it registers the translator)
    KERNEL_NAME,
    LANGUAGE,
    RustTranslationError,
    RustTranslator,
    register,
)

__all__ = ["KERNEL_NAME", "LANGUAGE", "RustTranslationError", "RustTranslator", "register"]
__version__ = "0.1.0"
