//! The Jupyter wire decoder, as every kernel socket runs it on what arrives: first
//! as sent (the signature check must refuse it), then re-signed with the key (what
//! an authenticated client could send: header, parent and content parsing).
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = ferrocell::protocol::Signer::new(common::KEY);
    let mut frames = common::frames(data);
    let _ = signer.decode(frames.clone());
    common::resign(&mut frames);
    if let Ok(m) = signer.decode(frames) {
        // What the shell does with a request's content.
        let _ = serde_json::to_string(&m.content);
    }
});
