//! Rich output: `display_data`, `update_display_data` and `clear_output`.

use crate::channel::{self, tag};
use crate::json;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Names one display so that later cells or later lines can replace it in place with
/// [`update_display`]. As a cell's last value it shows nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayId(pub String);

impl DisplayId {
    pub(crate) fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        DisplayId(format!("fc-{}-{n}", std::process::id()))
    }

    /// The display id (the `transient.display_id` of the message).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A display's handle is not itself worth showing: as a trailing value it is silent.
    pub fn evcxr_display(&self) {}
}

/// `data_json` is the bundle's one entry as JSON text (a string literal or, for JSON,
/// an object).
fn send(id: &DisplayId, update: bool, mime: &str, data_json: &str) {
    send_bundle(id, update, &[(mime, data_json)]);
}

/// Sends a display with several MIME types; each entry's data is JSON text.
pub(crate) fn send_bundle(id: &DisplayId, update: bool, bundle: &[(&str, &str)]) {
    let mut msg = String::with_capacity(bundle.iter().map(|(_, d)| d.len()).sum::<usize>() + 64);
    msg.push_str("{\"id\":");
    json::push_str(&mut msg, &id.0);
    msg.push_str(if update {
        ",\"update\":true"
    } else {
        ",\"update\":false"
    });
    msg.push_str(",\"data\":{");
    for (i, (mime, data_json)) in bundle.iter().enumerate() {
        if i > 0 {
            msg.push(',');
        }
        json::push_str(&mut msg, mime);
        msg.push(':');
        msg.push_str(data_json);
    }
    msg.push_str("}}");
    // Output written before this display must reach the notebook before it.
    let _ = std::io::stdout().flush();
    if !channel::send(tag::DISPLAY, msg.as_bytes()) {
        for (mime, data_json) in bundle {
            println!("[{mime}] {data_json}");
        }
    }
}

fn show(mime: &str, data_json: &str) -> DisplayId {
    let id = DisplayId::fresh();
    send(&id, false, mime, data_json);
    id
}

/// Shows `data` under any MIME type (binary types such as `image/png` as base64 text).
pub fn display_mime(mime: &str, data: impl AsRef<str>) -> DisplayId {
    show(mime, &json::string(data.as_ref()))
}

/// Shows HTML.
pub fn display_html(html: impl AsRef<str>) -> DisplayId {
    display_mime("text/html", html)
}

/// Shows Markdown.
pub fn display_markdown(markdown: impl AsRef<str>) -> DisplayId {
    display_mime("text/markdown", markdown)
}

/// Shows an SVG image.
pub fn display_svg(svg: impl AsRef<str>) -> DisplayId {
    display_mime("image/svg+xml", svg)
}

/// Shows plain text as a display (not as stdout).
pub fn display_text(text: impl AsRef<str>) -> DisplayId {
    display_mime("text/plain", text)
}

/// Shows a PNG image from its bytes.
pub fn display_png(png: impl AsRef<[u8]>) -> DisplayId {
    show("image/png", &json::string(&json::base64(png.as_ref())))
}

/// Shows JSON, given as JSON text (for example from `serde_json::to_string`). The
/// kernel checks it and reports text that does not parse.
pub fn display_json(json_text: impl AsRef<str>) -> DisplayId {
    show("application/json", json_text.as_ref())
}

/// Replaces the content of an earlier display, wherever it is in the notebook.
pub fn update_display(id: &DisplayId, mime: &str, data: impl AsRef<str>) {
    let data = if mime == "application/json" {
        data.as_ref().to_string()
    } else {
        json::string(data.as_ref())
    };
    send(id, true, mime, &data);
}

/// Clears the cell's output; with `wait`, only when the next output arrives (no flicker).
pub fn clear_output(wait: bool) {
    let _ = std::io::stdout().flush();
    channel::send(tag::CLEAR_OUTPUT, &[wait as u8]);
}
