//! The kernel_info reply, answered on shell and control alike.

use crate::protocol::messages::{HelpLink, KernelInfoReply, LanguageInfo, ReplyStatus};
use std::sync::OnceLock;

/// The rustc version, once the toolchain has been found.
pub static RUST_VERSION: OnceLock<String> = OnceLock::new();

pub fn kernel_info() -> KernelInfoReply {
    let version = RUST_VERSION.get().cloned().unwrap_or_default();
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: "5.5",
        implementation: "ferrocell",
        implementation_version: env!("CARGO_PKG_VERSION"),
        language_info: LanguageInfo {
            name: "rust",
            version: version.clone(),
            mimetype: "text/rust",
            file_extension: ".rs",
            pygments_lexer: "rust",
            codemirror_mode: "rust",
            nbconvert_exporter: "script",
        },
        banner: format!(
            "ferrocell {} — Rust cells compiled to native code{}. %help for help.",
            env!("CARGO_PKG_VERSION"),
            if version.is_empty() {
                String::new()
            } else {
                format!(" ({version})")
            }
        ),
        help_links: vec![
            HelpLink {
                text: "The Rust standard library".into(),
                url: "https://doc.rust-lang.org/std/".into(),
            },
            HelpLink {
                text: "The Rust book".into(),
                url: "https://doc.rust-lang.org/book/".into(),
            },
        ],
        debugger: false,
        supported_features: vec![],
    }
}
