//! Input layout shared by the targets: a sequence of `[len u16 LE][bytes]` frames.

/// Splits the fuzzer's bytes into frames.
pub fn frames(mut data: &[u8]) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 64 {
        let len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        out.push(bytes::Bytes::copy_from_slice(&data[2..2 + len]));
        data = &data[2 + len..];
    }
    out
}

/// The key the targets sign with (the seeds are signed with it too).
pub const KEY: &str = "fuzz";

/// The cluster target's link session (its seeds are addressed to it).
#[allow(dead_code)]
pub const SESSION: &str = "fuzzsession";

/// Re-signs frames laid out as `[ids…, <IDS|MSG>, hmac, header, parent, metadata,
/// content, buffers…]` with [`KEY`], so that the fuzzer also reaches what follows
/// the signature check.
pub fn resign(frames: &mut [bytes::Bytes]) {
    let Some(pos) = frames.iter().position(|f| f.as_ref() == b"<IDS|MSG>") else {
        return;
    };
    if frames.len() < pos + 6 {
        return;
    }
    let signer = ferrocell::protocol::Signer::new(KEY);
    let parts = [
        &frames[pos + 2][..],
        &frames[pos + 3][..],
        &frames[pos + 4][..],
        &frames[pos + 5][..],
    ];
    let sig = signer.sign(parts);
    frames[pos + 1] = bytes::Bytes::from(sig.into_bytes());
}
