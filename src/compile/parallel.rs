//! A `%%parallel` cell as Rust: what a parallel run is ([`Parallel`], read from
//! the magic line by `kernel::execute::magics::parallel`), the ordinary cell code its body becomes,
//! and hints for the compile errors of that code.

/// Where a parallel cell runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// OS threads in the runner.
    Threads,
    /// A warm pool of worker processes, kept by the runner.
    Processes,
    /// The engines of a cluster (`%cluster`).
    Cluster,
}

/// A parsed `%%parallel` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parallel {
    pub backend: Backend,
    /// How many workers; the number of cores when not given.
    pub workers: Option<usize>,
    /// `--each EXPR`: one run per item.
    pub each: Option<String>,
    /// `--out NAME`: keep the values as a session variable.
    pub out: Option<String>,
    /// `--group`: each rank's output grouped at the end instead of streamed.
    pub group: bool,
    /// `--scaling 1,2,4`: run at each worker count and chart the speed-up.
    pub scaling: Option<Vec<usize>>,
    /// `--targets 0,2-3`: the cluster engines to run on (all when not given).
    pub targets: Option<Vec<u32>>,
    /// `--persist`: what the body binds stays on each engine for later
    /// `--persist` cells (the body runs there as a cell of its own).
    pub persist: bool,
    /// `--noblock`: the cell returns at once and the run goes on in the
    /// background (`%wait`, `%pending`).
    pub noblock: bool,
    /// `--scatter VAR`: in the body, the session's `Vec` `VAR` is this rank's part.
    pub scatter: Option<String>,
}

impl Parallel {
    /// A run on `backend` with nothing else asked: as many workers as cores, once
    /// each, output streamed, values shown.
    pub fn on(backend: Backend) -> Parallel {
        Parallel {
            backend,
            workers: None,
            each: None,
            out: None,
            group: false,
            scaling: None,
            targets: None,
            persist: false,
            noblock: false,
            scatter: None,
        }
    }
}

/// The body of a `--persist` cell as a cell of its own, for the engines: `rank` and
/// `size` come from the run it serves, on the first line, where the magic line was.
pub fn persist_body(body: &str) -> String {
    format!(
        "let rank: usize = ::ferrocell::__processes::worker_rank(); \
         let size: usize = ::ferrocell::__processes::worker_size();\n{body}"
    )
}

/// The cell the kernel's runner runs for a `--persist` cell: it has each engine run
/// the body's library and shows what they gave back.
pub fn persist_code(p: &Parallel) -> String {
    format!(
        "::ferrocell::__processes::persist(::ferrocell::__parallel::Options {{ group: {} }}).show();",
        p.group
    )
}

/// What a gathering body binds its value to on the engines (its type, which rustc
/// names, is the type the kernel reads the values back as).
pub const GATHERED: &str = "__fc_gathered";

/// A `--persist --out` body: its value is bound to [`GATHERED`] and sent, serialised,
/// to the kernel. The value keeps its line; the lines before it are as written.
pub fn gather_body(body: &str) -> Result<String, String> {
    let parsed = crate::compile::cell::parse(body).map_err(|e| e.message)?;
    let Some(value) = &parsed.value else {
        return Err("--out gathers the body's value, and this body has none (end it with an expression, without `;`)".into());
    };
    // Where the value starts: its line and (character) column.
    let start: usize = body
        .split_inclusive('\n')
        .take(value.line - 1)
        .map(str::len)
        .sum::<usize>()
        + body
            .split_inclusive('\n')
            .nth(value.line - 1)
            .unwrap_or("")
            .char_indices()
            .nth(value.column)
            .map_or(0, |(i, _)| i);
    let (before, expr) = body.split_at(start);
    Ok(format!(
        "{before}let {GATHERED} = {expr}\n;{}",
        send_value(GATHERED)
    ))
}

/// A `--persist` body that sends the engine's `var`, serialised (`%cluster pull`).
pub fn send_value(var: &str) -> String {
    format!(
        "::ferrocell::__processes::gathered(::__fc_bincode::serialize(&{var}).map_err(|e| e.to_string()));"
    )
}

/// The kernel's cell for a gathering `--persist` run: the engines' values, read
/// back as `ty`, bound to `name` in rank order and shown as a table.
pub fn gather_code(p: &Parallel, name: &str, ty: &str) -> String {
    format!(
        "let {name} = ::ferrocell::__processes::persist_gather::<{ty}>(\
         ::ferrocell::__parallel::Options {{ group: {} }}, {REPR}, \
         |__fc_b| ::__fc_bincode::deserialize(__fc_b).map_err(|e| e.to_string())).show();",
        p.group
    )
}

/// How a value is shown in the table: its `Debug`, or its type's name.
const REPR: &str = "|__fc_v| { use ::ferrocell::__value::{ViaDebug as _, ViaTypeName as _}; \
                    (&::ferrocell::__value::Wrap(__fc_v)).__fc_repr() }";

/// The cell code that runs `body` as the magic says: one ordinary Rust cell, so it is
/// compiled once and session variables are captured by shared reference. The call
/// takes the first line, where the magic line was, so rustc's lines are the cell's.
///
/// For processes the same library also runs on each worker, where the call serves
/// the units it is sent; items and values travel with bincode (the session's serde
/// build), so the cell passes its own encoders.
pub fn cell_code(p: &Parallel, body: &str) -> String {
    // A body without a value (`loop { … }` last) is worth `()`: in edition 2024 a
    // diverging block's type falls back to `!`, which has no serde support.
    let unit = crate::compile::cell::parse(body).is_ok_and(|c| c.value.is_none());
    let body = if unit {
        format!("{body}\n;()")
    } else {
        body.to_string()
    };
    let workers = match (&p.scaling, p.workers) {
        (Some(_), _) => "::std::option::Option::Some(__fc_n)".to_string(),
        (None, Some(n)) => format!("::std::option::Option::Some({n})"),
        (None, None) => "::std::option::Option::None".into(),
    };
    let opts = format!("::ferrocell::__parallel::Options {{ group: {} }}", p.group);
    let (module, items, codec) = match p.backend {
        Backend::Threads => ("__parallel", "", String::new()),
        Backend::Processes | Backend::Cluster => ("__processes", "|| ", format!(", {CODEC}")),
    };
    let (call, params) = match &p.each {
        Some(expr) => (
            format!("{module}::each({workers}, {opts}, {items}{expr}, "),
            "|item, rank: usize, size: usize|",
        ),
        None => (
            match p.backend {
                Backend::Threads => format!("{module}::threads({workers}, {opts}, "),
                Backend::Processes | Backend::Cluster => {
                    format!("{module}::ranks({workers}, {opts}, ")
                }
            },
            "|rank: usize, size: usize|",
        ),
    };
    let bind = match &p.out {
        Some(name) => format!("let {name} = "),
        None => String::new(),
    };
    let repr = REPR;
    // On the body's first line, where the magic line was.
    let part = match &p.scatter {
        Some(var) => {
            format!(" let {var} = ::ferrocell::__processes::part(&{var}, rank, size);")
        }
        None => String::new(),
    };
    match &p.scaling {
        None => {
            format!(
                "{bind}::ferrocell::{call}{params} {{{part}\n{body}\n}}, {repr}{codec}).show();"
            )
        }
        // The body is one closure, run at each worker count.
        Some(counts) => {
            let counts: Vec<String> = counts.iter().map(|n| n.to_string()).collect();
            format!(
                "{bind}{{ let __fc_body = {params} {{{part}\n{body}\n}}; \
                 ::ferrocell::__parallel::scaling(&[{}], |__fc_n| \
                 ::ferrocell::{call}&__fc_body, {repr}{codec})) }}.show();",
                counts.join(", ")
            )
        }
    }
}

/// Items out and values back, with the session's bincode (see `compile::deps`).
const CODEC: &str = "::ferrocell::__processes::Codec { \
    ser_item: |__fc_x| ::__fc_bincode::serialize(__fc_x).map_err(|e| e.to_string()), \
    de_item: |__fc_b| ::__fc_bincode::deserialize(__fc_b).map_err(|e| e.to_string()), \
    ser_value: |__fc_x| ::__fc_bincode::serialize(__fc_x).map_err(|e| e.to_string()), \
    de_value: |__fc_b| ::__fc_bincode::deserialize(__fc_b).map_err(|e| e.to_string()) }";

/// What to tell about a compile error of a parallel cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub note: &'static str,
    /// rustc's snippets would show the code the magic generated rather than the
    /// cell's (a trait bound of the call): only the errors' headlines are worth
    /// showing, with the note.
    pub headlines_only: bool,
}

/// What to add to a compile error of a parallel cell whose body changed or moved a
/// session variable, shares one that threads cannot share, or returns (or takes
/// items of) a type that cannot travel to worker processes.
pub fn hint(summary: &str, rendered: &[String]) -> Option<Hint> {
    let all = || std::iter::once(summary).chain(rendered.iter().map(String::as_str));
    if all().any(|t| t.contains("`Fn` closure") || t.contains("captured variable")) {
        return Some(Hint {
            note: "note: %%parallel shares session variables with every rank by reference: \
                   they can be read, not changed or moved; return a value instead (--out NAME keeps them)",
            headlines_only: false,
        });
    }
    if all().any(|t| t.contains("Serialize") || t.contains("Deserialize")) {
        return Some(Hint {
            note: "note: %%parallel on processes and engines sends each item to the workers and each value back with serde: \
                   their types need serde's Serialize and Deserialize (derive them on your types; \
                   items must be owned values, so use .iter().copied() or .cloned() rather than references)",
            headlines_only: true,
        });
    }
    if all().any(|t| {
        t.contains("shared between threads safely") || t.contains("sent between threads safely")
    }) {
        return Some(Hint {
            note: "note: %%parallel threads shares session variables across threads: their types must be Sync \
                   (use Arc instead of Rc, Mutex or atomics instead of Cell/RefCell)",
            headlines_only: true,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(backend: Backend, workers: usize) -> Parallel {
        Parallel {
            workers: Some(workers),
            ..Parallel::on(backend)
        }
    }

    #[test]
    fn the_body_keeps_its_first_line() {
        let p = Parallel {
            out: Some("r".into()),
            ..run(Backend::Threads, 2)
        };
        let code = cell_code(&p, "let x = rank * 2;\nx + size");
        assert!(code.starts_with(
            "let r = ::ferrocell::__parallel::threads(::std::option::Option::Some(2)"
        ));
        assert_eq!(code.lines().nth(1), Some("let x = rank * 2;"));
        assert_eq!(code.lines().nth(2), Some("x + size"));
        let p = Parallel {
            each: Some("0..4".into()),
            ..run(Backend::Processes, 2)
        };
        let code = cell_code(&p, "item * 2");
        assert!(code.starts_with("::ferrocell::__processes::each("));
        assert!(code.contains("|| 0..4, |item, rank: usize, size: usize| {"));
        assert!(code.contains("::__fc_bincode::deserialize"));
        assert_eq!(code.lines().nth(1), Some("item * 2"));
        let p = Parallel {
            scatter: Some("data".into()),
            ..run(Backend::Cluster, 2)
        };
        let code = cell_code(&p, "data.len()");
        assert!(code
            .lines()
            .next()
            .unwrap()
            .ends_with("{ let data = ::ferrocell::__processes::part(&data, rank, size);"));
        assert_eq!(code.lines().nth(1), Some("data.len()"));
    }

    #[test]
    fn a_gathering_body_binds_its_value_on_its_own_line() {
        let g = gather_body("let a = 1;\n  a + rank").unwrap();
        assert!(
            g.starts_with("let a = 1;\n  let __fc_gathered = a + rank\n;"),
            "{g}"
        );
        assert!(g.contains("gathered(::__fc_bincode::serialize(&__fc_gathered)"));
        let g = gather_body("vec![\"é\"; 2]").unwrap();
        assert!(
            g.starts_with("let __fc_gathered = vec![\"é\"; 2]\n;"),
            "{g}"
        );
        assert!(gather_body("let a = 1;").is_err());
    }
}
