//! The cluster's message decoder (controller, engines and kernels run it on every
//! message): as sent, then re-signed with the cluster key so that the envelope,
//! addressing, sequence and payload digest checks are reached; each at both ends of
//! the link (the controller's ROUTER, and an engine's or kernel's DEALER).
#![no_main]

#[path = "common.rs"]
mod common;

use ferrocell::cluster::link::{Link, Side};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for side in [Side::Router, Side::Dealer] {
        decode(Link::with_session(common::KEY, common::SESSION, side), data);
    }
});

fn decode(link: Link, data: &[u8]) {
    let mut frames = common::frames(data);
    if frames.is_empty() {
        return;
    }
    if let Ok(raw) = zeromq::ZmqMessage::try_from(frames.clone()) {
        let _ = link.decode(raw);
    }
    common::resign(&mut frames);
    if let Ok(raw) = zeromq::ZmqMessage::try_from(frames) {
        let _ = link.decode(raw);
    }
}
