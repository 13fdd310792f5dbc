//! Turning a cell's raw stdout/stderr bytes into notebook output.
//!
//! Bytes are decoded as UTF-8 incrementally (a character split across two writes is
//! kept until it is whole). On stdout, evcxr's convention for rich output is read:
//! a block `EVCXR_BEGIN_CONTENT mime/type` … `EVCXR_END_CONTENT` becomes a display.

/// A piece of decoded output.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Display { mime: String, data: String },
}

const BEGIN: &str = "EVCXR_BEGIN_CONTENT";
const END: &str = "EVCXR_END_CONTENT";

/// The most a display block may hold before it is shown as text.
const MAX_BLOCK: usize = 64 << 20;

/// Incremental UTF-8 decoding.
#[derive(Default)]
pub struct Utf8 {
    pending: Vec<u8>,
}

impl Utf8 {
    /// Decodes what is complete; invalid bytes become U+FFFD. Linear in the bytes:
    /// the pending buffer is cut once, however many invalid bytes it holds.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.pending.len());
        let mut at = 0;
        loop {
            match std::str::from_utf8(&self.pending[at..]) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    let valid = &self.pending[at..at + good];
                    out.push_str(std::str::from_utf8(valid).expect("valid prefix"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            at += good + bad;
                        }
                        None => {
                            // A character cut at the end of the write: kept for later.
                            self.pending.drain(..at + good);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of a cell.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Stdout decoding with evcxr content blocks.
#[derive(Default)]
pub struct Stdout {
    utf8: Utf8,
    /// Text not yet sent: only ever a partial line that could start a block.
    held: String,
    /// Bytes at the start of `held` already known to hold no newline.
    scanned: usize,
    block: Option<(String, String)>,
}

impl Stdout {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let text = self.utf8.feed(bytes);
        self.held.push_str(&text);
        self.drain(false)
    }

    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = self.utf8.finish();
        self.held.push_str(&rest);
        let mut out = self.drain(true);
        if let Some((mime, data)) = self.block.take() {
            out.push(Piece::Text(format!("{BEGIN} {mime}\n{data}")));
        }
        if !self.held.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut self.held)));
        }
        self.scanned = 0;
        out
    }

    fn drain(&mut self, at_end: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut text = String::new();
        // Whole lines, by position; the buffer is cut once at the end (linear in the
        // output, however many lines one write holds).
        let held = std::mem::take(&mut self.held);
        let mut used = 0;
        let mut from = self.scanned.min(held.len());
        while let Some(nl) = held[from..].find('\n') {
            let nl = from - used + nl;
            from = used + nl + 1;
            let line = &held[used..used + nl + 1];
            used += nl + 1;
            let bare = line.trim_end_matches(['\n', '\r']);
            match &mut self.block {
                Some((_, data)) => {
                    if bare == END {
                        let (mime, data) = self.block.take().expect("in block");
                        if !text.is_empty() {
                            out.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        out.push(Piece::Display {
                            mime,
                            data: data.strip_suffix('\n').unwrap_or(&data).to_string(),
                        });
                    } else {
                        data.push_str(line);
                        // A block that never ends is text after all, not memory kept.
                        if data.len() > MAX_BLOCK {
                            let (mime, data) = self.block.take().expect("in block");
                            text.push_str(&format!("{BEGIN} {mime}\n{data}"));
                        }
                    }
                }
                None => match bare.strip_prefix(BEGIN) {
                    Some(mime) if mime.starts_with(' ') => {
                        self.block = Some((mime.trim().to_string(), String::new()));
                    }
                    _ => text.push_str(line),
                },
            }
        }
        // The rest is a partial line: kept as it is when nothing was taken (no copy
        // per write of a long line), and not scanned again.
        self.held = if used == 0 {
            held
        } else {
            held[used..].to_string()
        };
        self.scanned = self.held.len();
        // A partial line streams at once unless it may be the start of a block (a
        // block's first line is short: a long one is text).
        if self.block.is_none() && !at_end {
            let could_begin = BEGIN.starts_with(self.held.as_str())
                || self.held.starts_with(BEGIN) && self.held.len() <= BEGIN.len() + 256;
            if !could_begin {
                text.push_str(&std::mem::take(&mut self.held));
                self.scanned = 0;
            }
        }
        // A block that never ends, even within one long line, is text after all.
        if let Some((_, data)) = &self.block {
            if data.len() + self.held.len() > MAX_BLOCK {
                let (mime, data) = self.block.take().expect("in block");
                text.push_str(&format!("{BEGIN} {mime}\n{data}"));
                text.push_str(&std::mem::take(&mut self.held));
                self.scanned = 0;
            }
        }
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_writes() {
        let mut d = Utf8::default();
        let bytes = "é".as_bytes();
        assert_eq!(d.feed(&bytes[..1]), "");
        assert_eq!(d.feed(&bytes[1..]), "é");
        assert_eq!(d.feed(&[0xff, b'a']), "\u{FFFD}a");
    }

    #[test]
    fn long_lines_in_small_writes_are_linear_and_blocks_are_bounded() {
        let mut s = Stdout::default();
        let mut out = s.feed(b"EVCXR_BEGIN_CONTENT image/png\n");
        let chunk = vec![b'A'; 16 * 1024];
        // 80 MiB on one line, in 16 KiB writes: over the block limit, so it becomes
        // text (quadratic decoding would take minutes here).
        for _ in 0..(80 << 20) / chunk.len() {
            out.extend(s.feed(&chunk));
        }
        out.extend(s.feed(b"\nEVCXR_END_CONTENT\n"));
        let text: usize = out
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Display { .. } => 0,
            })
            .sum();
        assert!(text >= 80 << 20, "{text}");
        assert!(!out.iter().any(|p| matches!(p, Piece::Display { .. })));
    }

    #[test]
    fn partial_lines_stream_and_blocks_become_displays() {
        let mut s = Stdout::default();
        assert_eq!(s.feed(b"50%\r"), vec![Piece::Text("50%\r".into())]);
        assert_eq!(s.feed(b"EVCXR_BEGIN"), vec![]);
        let out = s.feed(b"_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\nafter\n");
        assert_eq!(
            out,
            vec![
                Piece::Display {
                    mime: "text/html".into(),
                    data: "<b>x</b>".into()
                },
                Piece::Text("after\n".into())
            ]
        );
        assert_eq!(s.feed(b"EVC"), vec![]);
        assert_eq!(s.finish(), vec![Piece::Text("EVC".into())]);
    }
}
