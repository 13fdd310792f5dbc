//! Frames on the wire: `[identities…, "<IDS|MSG>", hmac, header, parent, metadata,
//! content, buffers…]`, signed with HMAC-SHA256 over the four dicts.
//!
//! Decoding verifies the signature (in constant time) before any JSON is parsed, and
//! refuses a signature it has already seen, so a captured message cannot be replayed.

use super::header::Header;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

const DELIMITER: &[u8] = b"<IDS|MSG>";
/// How many recent signatures are remembered for replay detection.
const REPLAY_MEMORY: usize = 1 << 16;

/// Why an incoming message was dropped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter")]
    NoDelimiter,
    #[error("{0} frames after the delimiter, at least 5 needed")]
    Truncated(usize),
    #[error("message is not signed")]
    Unsigned,
    #[error("signature does not match")]
    BadSignature,
    #[error("signature already seen (replay)")]
    Replayed,
    #[error("malformed {part}: {reason}")]
    Malformed { part: &'static str, reason: String },
}

/// Signs outgoing and verifies incoming messages with the connection key.
pub struct Signer {
    key: Option<Hmac<Sha256>>,
    seen: Mutex<SeenSignatures>,
}

#[derive(Default)]
struct SeenSignatures {
    set: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl Signer {
    /// An empty key disables signing, as the protocol specifies.
    pub fn new(key: &str) -> Self {
        let key = (!key.is_empty())
            .then(|| Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length"));
        Signer {
            key,
            seen: Mutex::default(),
        }
    }

    /// The lowercase hex signature of the four dict frames.
    pub fn sign(&self, parts: [&[u8]; 4]) -> String {
        match &self.key {
            None => String::new(),
            Some(mac) => {
                let mut mac = mac.clone();
                for p in parts {
                    mac.update(p);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> Result<(), WireError> {
        let Some(mac) = &self.key else { return Ok(()) };
        if signature.is_empty() {
            return Err(WireError::Unsigned);
        }
        let raw = hex::decode(signature).map_err(|_| WireError::BadSignature)?;
        let mut mac = mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(&raw)
            .map_err(|_| WireError::BadSignature)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.set.insert(raw.clone()) {
            return Err(WireError::Replayed);
        }
        seen.order.push_back(raw);
        if seen.order.len() > REPLAY_MEMORY {
            if let Some(old) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        Ok(())
    }

    /// Verifies and parses one multipart message. Nothing but the frame count and the
    /// signature is looked at before the signature checks out.
    pub fn decode(&self, frames: Vec<Bytes>) -> Result<Message, WireError> {
        let pos = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let rest = &frames[pos + 1..];
        if rest.len() < 5 {
            return Err(WireError::Truncated(rest.len()));
        }
        let parts = [&rest[1][..], &rest[2][..], &rest[3][..], &rest[4][..]];
        self.verify(&rest[0], parts)?;
        let header: Header = parse("header", &rest[1])?;
        let parent: serde_json::Value = parse("parent_header", &rest[2])?;
        let parent = match parent {
            serde_json::Value::Object(ref m) if m.is_empty() => None,
            other => Some(
                serde_json::from_value(other).map_err(|e| WireError::Malformed {
                    part: "parent_header",
                    reason: e.to_string(),
                })?,
            ),
        };
        let metadata = parse("metadata", &rest[3])?;
        // Content that is not JSON still gets its request an error reply: the
        // header, which says what to reply, is fine.
        let (content, malformed) = match parse("content", &rest[4]) {
            Ok(c) => (c, None),
            Err(WireError::Malformed { reason, .. }) => (serde_json::Value::Null, Some(reason)),
            Err(e) => return Err(e),
        };
        Ok(Message {
            malformed,
            identities: frames[..pos].to_vec(),
            header,
            parent,
            metadata,
            content,
            buffers: rest[5..].to_vec(),
        })
    }

    /// Serializes and signs a message into frames.
    pub fn encode(
        &self,
        identities: &[Bytes],
        header: &Header,
        parent: Option<&Header>,
        content: &impl Serialize,
    ) -> Vec<Bytes> {
        self.encode_with_buffers(identities, header, parent, content, &[])
    }

    /// [`Signer::encode`] with binary buffers after the content. The signature does
    /// not cover buffers (as in Jupyter): a protocol that relies on them puts their
    /// digest in the content.
    pub fn encode_with_buffers(
        &self,
        identities: &[Bytes],
        header: &Header,
        parent: Option<&Header>,
        content: &impl Serialize,
        buffers: &[Bytes],
    ) -> Vec<Bytes> {
        let header = serde_json::to_vec(header).expect("header serializes");
        let parent = match parent {
            Some(p) => serde_json::to_vec(p).expect("header serializes"),
            None => b"{}".to_vec(),
        };
        let metadata = b"{}".to_vec();
        let content = serde_json::to_vec(content).expect("content serializes");
        let signature = self.sign([&header, &parent, &metadata, &content]);
        let mut frames: Vec<Bytes> = identities.to_vec();
        frames.push(Bytes::from_static(DELIMITER));
        frames.push(Bytes::from(signature));
        frames.push(Bytes::from(header));
        frames.push(Bytes::from(parent));
        frames.push(Bytes::from(metadata));
        frames.push(Bytes::from(content));
        frames.extend(buffers.iter().cloned());
        frames
    }
}

fn parse<T: serde::de::DeserializeOwned>(part: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(&without_lone_surrogates(bytes)).map_err(|e| WireError::Malformed {
        part,
        reason: e.to_string(),
    })
}

/// JSON text with each lone UTF-16 surrogate escape (`\ud800` without its pair)
/// replaced by `\ufffd`. Python's json (ipykernel's clients) writes them from broken
/// strings; serde_json refuses the whole message for one.
fn without_lone_surrogates(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let hex = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u32> {
        (bytes.get(at) == Some(&b'\\') && bytes.get(at + 1) == Some(&b'u'))
            .then(|| hex(at + 2))
            .flatten()
    };
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(code) = escape_at(i) else {
            i += 2; // any other escape, `\\` included
            continue;
        };
        let paired = (0xD800..0xDC00).contains(&code)
            && escape_at(i + 6).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        if paired {
            i += 12;
        } else if (0xD800..0xE000).contains(&code) {
            let o = out.get_or_insert_with(|| bytes.to_vec());
            o[i + 2..i + 6].copy_from_slice(b"fffd");
            i += 6;
        } else {
            i += 6;
        }
    }
    match out {
        Some(o) => std::borrow::Cow::Owned(o),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// A verified incoming message. The content stays JSON until the handler for its
/// `msg_type` turns it into a typed request.
#[derive(Debug, Clone)]
pub struct Message {
    pub identities: Vec<Bytes>,
    pub header: Header,
    pub parent: Option<Header>,
    pub metadata: serde_json::Value,
    pub content: serde_json::Value,
    pub buffers: Vec<Bytes>,
    /// Why the content frame was not JSON (`content` is then null).
    pub malformed: Option<String>,
}

impl Message {
    /// The typed content of this request, or a description of what is wrong with it.
    pub fn content_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, WireError> {
        if let Some(reason) = &self.malformed {
            return Err(WireError::Malformed {
                part: "content",
                reason: reason.clone(),
            });
        }
        serde_json::from_value(self.content.clone()).map_err(|e| WireError::Malformed {
            part: "content",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let fixed = |s: &str| {
            String::from_utf8(without_lone_surrogates(s.as_bytes()).into_owned()).unwrap()
        };
        assert_eq!(fixed(r#"{"code":"a\ud800b"}"#), r#"{"code":"a\ufffdb"}"#);
        assert_eq!(fixed(r#""\udc00""#), r#""\ufffd""#);
        // A pair, an escaped backslash before `u`, and plain text stay.
        assert_eq!(fixed(r#""\ud83d\ude00""#), r#""\ud83d\ude00""#);
        assert_eq!(fixed(r#""\\ud800""#), r#""\\ud800""#);
        let v: serde_json::Value = parse("content", br#"{"code":"x\ud800"}"#).unwrap();
        assert_eq!(v["code"], "x\u{fffd}");
    }

    use super::*;
    use proptest::prelude::*;

    fn sample(signer: &Signer) -> Vec<Bytes> {
        let h = Header::new("kernel_info_request", "s");
        signer.encode(
            &[Bytes::from_static(b"id")],
            &h,
            None,
            &serde_json::json!({}),
        )
    }

    #[test]
    fn round_trip() {
        let s = Signer::new("secret");
        let m = s.decode(sample(&s)).unwrap();
        assert_eq!(m.header.msg_type, "kernel_info_request");
        assert_eq!(m.identities, vec![Bytes::from_static(b"id")]);
        assert!(m.parent.is_none());
    }

    #[test]
    fn rejects_wrong_key_unsigned_replay_and_truncation() {
        let other = Signer::new("other");
        let s = Signer::new("secret");
        assert_eq!(
            s.decode(sample(&other)).unwrap_err(),
            WireError::BadSignature
        );
        let mut unsigned = sample(&s);
        unsigned[2] = Bytes::new();
        assert_eq!(s.decode(unsigned).unwrap_err(), WireError::Unsigned);
        let good = sample(&s);
        s.decode(good.clone()).unwrap();
        assert_eq!(s.decode(good.clone()).unwrap_err(), WireError::Replayed);
        assert_eq!(
            s.decode(good[..5].to_vec()).unwrap_err(),
            WireError::Truncated(3)
        );
        assert_eq!(
            s.decode(vec![Bytes::from_static(b"x")]).unwrap_err(),
            WireError::NoDelimiter
        );
    }

    #[test]
    fn tampered_content_is_rejected() {
        let s = Signer::new("secret");
        let mut m = sample(&s);
        m[6] = Bytes::from_static(b"{\"evil\":1}");
        assert_eq!(s.decode(m).unwrap_err(), WireError::BadSignature);
    }

    proptest! {
        #[test]
        fn random_frames_never_panic(frames in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..10),
            delim_at in proptest::option::of(0usize..10)) {
            let mut frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
            if let Some(i) = delim_at {
                let i = i.min(frames.len());
                frames.insert(i, Bytes::from_static(DELIMITER));
            }
            let signed = Signer::new("k");
            let _ = signed.decode(frames.clone());
            let unsigned = Signer::new("");
            let _ = unsigned.decode(frames);
        }

        #[test]
        fn signed_garbage_dicts_never_panic(parts in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..48), 4)) {
            let s = Signer::new("k");
            let sig = s.sign([&parts[0], &parts[1], &parts[2], &parts[3]]);
            let mut frames = vec![Bytes::from_static(DELIMITER), Bytes::from(sig)];
            frames.extend(parts.into_iter().map(Bytes::from));
            let _ = s.decode(frames);
        }
    }
}
