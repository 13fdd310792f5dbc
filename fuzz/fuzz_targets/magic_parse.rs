//! What the kernel parses of a cell before compiling it: the magic line (and the
//! arguments of `%%parallel` and `%cluster`), the `:dep` lines, and the Rust code
//! itself (with its nesting limits, on the parse stack the kernel uses).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(code) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ferrocell::magics::parse(code);
    let _ = ferrocell::magics::split_deps(code);
    let first = code.lines().next().unwrap_or("");
    let _ = ferrocell::magics::parallel::parse(first);
    let args: Vec<&str> = first.split_whitespace().collect();
    let _ = ferrocell::magics::cluster::parse(&args);
    let _ = ferrocell::magics::cluster::parse_targets(first);
    let owned = code.to_string();
    let _ = ferrocell::compile::cell::on_parse_stack(move || {
        let _ = ferrocell::compile::cell::parse(&owned);
    });
});
