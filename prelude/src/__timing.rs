//! `%time` and `%timeit`: measuring a cell where it runs, in the runner.

use std::time::{Duration, Instant};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

/// CPU time used by the whole runner process (all threads).
fn cpu_time() -> Duration {
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Formats a duration in seconds the way IPython does: three significant digits
/// and the unit that fits (s, ms, µs, ns).
pub fn format_seconds(s: f64) -> String {
    let (value, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else if s >= 1e-6 {
        (s * 1e6, "µs")
    } else {
        (s * 1e9, "ns")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

// `is_multiple_of` is newer than some rustc versions that build the prelude.
#[allow(clippy::manual_is_multiple_of)]
fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `%time`: started before the cell's code, reported after it.
pub struct Timer {
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    pub fn start() -> Timer {
        Timer {
            cpu: cpu_time(),
            wall: Instant::now(),
        }
    }

    /// Prints CPU and wall time since [`Timer::start`].
    pub fn report(self) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = cpu_time().saturating_sub(self.cpu).as_secs_f64();
        println!(
            "CPU time: {}\nWall time: {}",
            format_seconds(cpu),
            format_seconds(wall)
        );
    }
}

/// How long one measured run should take at least when the loop count is chosen
/// automatically (IPython aims at 0.2 s).
const TARGET: f64 = 0.2;

/// The mean and standard deviation of `per_loop` seconds.
pub fn mean_std(per_loop: &[f64]) -> (f64, f64) {
    let n = per_loop.len() as f64;
    let mean = per_loop.iter().sum::<f64>() / n;
    let var = per_loop.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `%timeit`: runs `body` `loops` times per run (chosen like IPython when `None`, so
/// that a run takes at least 0.2 s), `runs` times, and prints the result in
/// IPython's words.
pub fn timeit(body: &mut dyn FnMut(), loops: Option<u64>, runs: u32) {
    let time = |body: &mut dyn FnMut(), n: u64| {
        let t = Instant::now();
        for _ in 0..n {
            body();
        }
        t.elapsed().as_secs_f64()
    };
    // Like Python's `timeit.Timer.autorange`: 1, 2, 5, 10, 20, 50, … loops until one
    // run takes long enough.
    let loops = loops.unwrap_or_else(|| {
        let mut base = 1u64;
        loop {
            for n in [base, 2 * base, 5 * base] {
                if time(body, n) >= TARGET || n >= 1_000_000_000 || crate::interrupted() {
                    return n;
                }
            }
            base *= 10;
        }
    });
    let runs = runs.max(1);
    let mut per_loop = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        if crate::interrupted() {
            break;
        }
        per_loop.push(time(body, loops) / loops as f64);
    }
    let (mean, std) = mean_std(&per_loop);
    println!(
        "{} ± {} per loop (mean ± std. dev. of {} run{}, {} loop{} each)",
        format_seconds(mean),
        format_seconds(std),
        per_loop.len(),
        if per_loop.len() == 1 { "" } else { "s" },
        with_commas(loops),
        if loops == 1 { "" } else { "s" },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_ipython() {
        assert_eq!(format_seconds(1.5), "1.50 s");
        assert_eq!(format_seconds(0.0123), "12.3 ms");
        assert_eq!(format_seconds(0.000_456_7), "457 µs");
        assert_eq!(format_seconds(3.2e-8), "32.0 ns");
        assert_eq!(with_commas(1_000_000), "1,000,000");
        assert_eq!(with_commas(100), "100");
    }

    #[test]
    fn mean_and_std() {
        let (m, s) = mean_std(&[1.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
    }

    #[test]
    fn timeit_runs_the_body() {
        let mut calls = 0u64;
        timeit(&mut || calls += 1, Some(10), 3);
        assert_eq!(calls, 30);
    }
}
