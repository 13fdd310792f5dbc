//! `%%parallel --scaling`: the cell run at several worker counts, and the chart of
//! their speed-ups against the ideal line and Amdahl's law fitted to them.

use crate::display::{self, DisplayId};
use crate::json;
use crate::table::{Run, seconds};

/// `--scaling`: runs the cell once per worker count (one worker first, as the
/// baseline), then shows the speed-up of each against the ideal line and Amdahl's
/// law fitted to the measurements. Returns the run with the most workers.
pub fn scaling<T>(counts: &[usize], mut run: impl FnMut(usize) -> Run<T>) -> Run<T> {
    let mut counts: Vec<usize> = counts.iter().copied().filter(|n| *n > 0).collect();
    counts.push(1);
    counts.sort_unstable();
    counts.dedup();
    // A worker process serves one run per cell it is sent; the coordinator charts.
    if crate::process::is_worker() {
        return run(counts[0]);
    }
    let mut times = Vec::new();
    let mut last = None;
    for &n in &counts {
        let r = run(n);
        let Some(table) = &r.table else { return r };
        times.push((n, table.elapsed));
        let failed = table.rows.iter().any(|row| row.shown.is_err());
        if let Some(id) = &table.progress {
            display::update_display(id, "text/plain", table.summary());
        }
        if failed {
            return r;
        }
        last = Some(r);
    }
    let chart = Scaling::new(times);
    let text = json::string(&chart.text());
    let svg = json::string(&chart.svg());
    display::send_bundle(
        &DisplayId::fresh(),
        false,
        &[
            ("text/plain", text.as_str()),
            ("image/svg+xml", svg.as_str()),
        ],
    );
    last.expect("at least one count")
}

/// Measured speed-ups and the Amdahl fit behind the `--scaling` chart.
struct Scaling {
    /// (workers, seconds), one worker first.
    times: Vec<(usize, f64)>,
    /// The fitted serial fraction f of Amdahl's law, S(n) = 1 / (f + (1 − f) / n).
    serial: f64,
}

impl Scaling {
    fn new(times: Vec<(usize, f64)>) -> Self {
        let t1 = times[0].1.max(1e-9);
        // Least squares on 1/S = 1/n + f (1 − 1/n), over the runs with more than one worker.
        let (mut num, mut den) = (0.0, 0.0);
        for &(n, t) in times.iter().skip(1) {
            let inv_n = 1.0 / n as f64;
            let inv_s = t / t1;
            num += (inv_s - inv_n) * (1.0 - inv_n);
            den += (1.0 - inv_n) * (1.0 - inv_n);
        }
        let serial = if den > 0.0 {
            (num / den).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Scaling { times, serial }
    }

    fn speedup(&self, t: f64) -> f64 {
        self.times[0].1 / t.max(1e-9)
    }

    fn amdahl(&self, n: f64) -> f64 {
        1.0 / (self.serial + (1.0 - self.serial) / n)
    }

    fn text(&self) -> String {
        let mut out = String::from("workers  time      speed-up  efficiency\n");
        for &(n, t) in &self.times {
            let s = self.speedup(t);
            out.push_str(&format!(
                "{n:>7}  {:<8}  {s:>7.2}×  {:>9.0}%\n",
                seconds(t),
                100.0 * s / n as f64
            ));
        }
        out.push_str(&format!(
            "Amdahl's law fitted: serial fraction {:.3} (at most {:.1}× on any number of workers)",
            self.serial,
            if self.serial > 0.0 {
                1.0 / self.serial
            } else {
                f64::INFINITY
            }
        ));
        out
    }

    fn svg(&self) -> String {
        let (w, h, pad) = (480.0, 320.0, 48.0);
        let max_n = self.times.last().map(|t| t.0).unwrap_or(1) as f64;
        let max_s = self
            .times
            .iter()
            .map(|&(_, t)| self.speedup(t))
            .fold(max_n, f64::max);
        let x = |n: f64| pad + (n / max_n) * (w - 2.0 * pad);
        let y = |s: f64| h - pad - (s / max_s) * (h - 2.0 * pad);
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        out.push_str(&format!(
            "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>",
            h - pad, w - pad, h - pad, h - pad
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">speed-up</text>",
            w / 2.0, h - 12.0, h / 2.0, h / 2.0
        ));
        // Ideal: S(n) = n.
        out.push_str(&format!(
            "<line class=\"ideal\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"gray\" stroke-dasharray=\"4 4\"/>",
            x(0.0), y(0.0), x(max_n), y(max_n)
        ));
        // Amdahl's curve.
        let points: Vec<String> = (0..=40)
            .map(|i| {
                let n = 1.0 + (max_n - 1.0) * i as f64 / 40.0;
                format!("{:.1},{:.1}", x(n), y(self.amdahl(n)))
            })
            .collect();
        out.push_str(&format!(
            "<polyline class=\"amdahl\" points=\"{}\" fill=\"none\" stroke=\"#d62728\"/>",
            points.join(" ")
        ));
        for &(n, t) in &self.times {
            let s = self.speedup(t);
            out.push_str(&format!(
                "<circle class=\"measured\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"><title>{n} workers: {s:.2}×</title></circle>\
                 <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
                x(n as f64), y(s), x(n as f64), h - pad + 16.0
            ));
        }
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">measured ● · ideal - - · Amdahl, serial fraction {:.3}</text></svg>",
            pad + 8.0, pad - 16.0, self.serial
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__parallel::{Options, threads};

    #[test]
    fn amdahl_fit_recovers_a_serial_fraction() {
        // f = 0.2: S(2) = 1/0.6, S(4) = 1/0.4.
        let s = Scaling::new(vec![(1, 1.0), (2, 0.6), (4, 0.4)]);
        assert!((s.serial - 0.2).abs() < 1e-9, "{}", s.serial);
        assert!(s.text().contains("serial fraction 0.200"));
        assert!(s.svg().contains("class=\"amdahl\"") && s.svg().matches("<circle").count() == 3);
        let run = scaling(&[2], |n| {
            threads(Some(n), Options::default(), |r, _| r, |v| v.to_string())
        });
        assert_eq!(run.show(), vec![0, 1]);
    }
}
