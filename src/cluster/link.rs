//! A link: how one process of the cluster signs, addresses and splits what it sends,
//! and verifies what it receives.
//!
//! Every message names its recipient's link session and carries the sender's
//! sequence number, both signed, so a captured message cannot be replayed to another
//! engine, to a restarted one or to the same one; a payload over a few MiB travels
//! in parts, so that no message nears the sockets' limit and liveness is never stuck
//! behind a large transfer.

use super::messages::Msg;
use crate::protocol::{Header, Signer};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use zeromq::ZmqMessage;

/// How old (or how far ahead, for clocks that differ) an unaddressed greeting may be.
const GREETING_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(flatten)]
    msg: Msg,
    /// SHA-256 of the payload, hex; empty when there is none.
    #[serde(default)]
    digest: String,
    /// The recipient's link session; empty only in a greeting.
    #[serde(default)]
    to: String,
    /// The sender's count of messages, from 1: each receiver takes a sender's
    /// numbers only in increasing order.
    #[serde(default)]
    seq: u64,
    /// Which part of a large message this is (see [`Link::encode_parts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part: Option<Part>,
}

/// One part of a message whose payload was split: the payload travels in parts of
/// [`part_bytes`], each signed on its own, so that no one message is large (the
/// sockets' size limit) and the peer hears something at least every part (liveness
/// is never stuck behind a large transfer).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Part {
    /// The sender's sequence number of the first part: one transfer's parts share it.
    transfer: u64,
    index: u32,
    count: u32,
}

/// The payload bytes of one part: 4 MiB, or half the socket limit if that is lower.
fn part_bytes() -> usize {
    (4usize << 20)
        .min(crate::sockets::max_message_bytes() / 2)
        .max(1)
}

/// The largest payload a link puts back together: 16 times the socket limit
/// (4 GiB by default).
fn max_transfer() -> usize {
    crate::sockets::max_message_bytes().saturating_mul(16)
}

/// A payload being put back together from its parts.
struct Assembly {
    transfer: u64,
    next: u32,
    count: u32,
    bytes: Vec<u8>,
    /// When its last part came: a transfer whose sender went quiet is dropped.
    last: std::time::Instant,
}

/// How long a transfer may wait for its next part before it is dropped.
const PART_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a payload of `len` bytes can be sent: at most [`max_transfer`].
pub fn fits(len: usize) -> bool {
    len <= max_transfer()
}

/// Why a message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Wire(#[from] crate::protocol::WireError),
    #[error("the payload does not match its signed digest")]
    BadPayload,
    #[error("unknown message: {0}")]
    Unknown(String),
    #[error("addressed to another process (another engine, or an earlier run of this one)")]
    Misdirected,
    #[error("sequence number {seq} from {from} after {last} (a replay)")]
    Replayed { from: String, seq: u64, last: u64 },
    #[error(
        "an unaddressed {0} that is not fresh (sent more than 5 minutes ago, or the clocks differ)"
    )]
    Stale(&'static str),
    #[error("a part out of order, or a transfer over {0} bytes")]
    BadPart(usize),
    #[error("from a process other than the one this link speaks with")]
    Stranger,
}

/// Signs and verifies the cluster's messages with its key, and addresses them:
/// every message names its recipient's link session and carries the sender's
/// sequence number, both signed, so a captured message cannot be replayed to
/// another engine, to a restarted one, or to the same one again.
pub struct Link {
    signer: Signer,
    session: String,
    side: Side,
    next_seq: std::sync::atomic::AtomicU64,
    peers: std::sync::Mutex<Peers>,
}

/// Which end of the cluster's sockets a link serves: fixed when it is made, never
/// read from a message's (unsigned) identity frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// The controller's ROUTER: many peers, each message behind its identity;
    /// greetings come here.
    Router,
    /// An engine's or a kernel's DEALER: one peer, the first that answered.
    Dealer,
}

/// What a link learnt from the messages it verified.
#[derive(Default)]
struct Peers {
    /// The sender's session by ROUTER identity (the controller's side).
    by_identity: HashMap<Bytes, String>,
    /// The session of the one peer of a DEALER (an engine's or a kernel's side).
    peer: Option<String>,
    /// The last sequence number taken from each sender session.
    last_seq: HashMap<String, u64>,
    /// Each sender's transfer in progress (one at a time: parts come in order).
    assembling: HashMap<String, Assembly>,
}

/// A verified message: who sent it (the ROUTER identity, if any), what, and its
/// payload.
pub struct Received {
    pub identities: Vec<Bytes>,
    pub msg: Msg,
    pub payload: Bytes,
}

impl Link {
    pub fn new(key: &str, side: Side) -> Link {
        Link {
            signer: Signer::new(key),
            session: uuid::Uuid::new_v4().simple().to_string(),
            side,
            next_seq: std::sync::atomic::AtomicU64::new(1),
            peers: Default::default(),
        }
    }

    /// A link with a given session, for the fuzz target (its seeds are addressed
    /// to it); everything else uses [`Link::new`].
    #[doc(hidden)]
    pub fn with_session(key: &str, session: &str, side: Side) -> Link {
        Link {
            session: session.to_string(),
            ..Link::new(key, side)
        }
    }

    /// Signs `msg` for the peer behind `identities` (a ROUTER's) or for the one peer
    /// (a DEALER's); until that peer has spoken, only a greeting can be sent.
    pub fn encode(&self, identities: &[Bytes], msg: Msg, payload: Option<Bytes>) -> ZmqMessage {
        self.encode_part(identities, msg, payload, None)
    }

    /// Like [`Link::encode`], for a payload of any size: one message, or the parts
    /// of one (see [`Part`]), each to be sent in turn.
    pub fn encode_parts(
        &self,
        identities: &[Bytes],
        msg: Msg,
        payload: Option<Bytes>,
    ) -> Vec<ZmqMessage> {
        let size = part_bytes();
        let bytes = match payload {
            Some(p) if p.len() > size => p,
            other => return vec![self.encode(identities, msg, other)],
        };
        let count = bytes.len().div_ceil(size) as u32;
        let transfer = self.next_seq.load(std::sync::atomic::Ordering::Relaxed);
        (0..count)
            .map(|index| {
                let start = index as usize * size;
                let piece = bytes.slice(start..(start + size).min(bytes.len()));
                let part = Part {
                    transfer,
                    index,
                    count,
                };
                self.encode_part(identities, msg.clone(), Some(piece), Some(part))
            })
            .collect()
    }

    fn encode_part(
        &self,
        identities: &[Bytes],
        msg: Msg,
        payload: Option<Bytes>,
        part: Option<Part>,
    ) -> ZmqMessage {
        let digest = payload
            .as_ref()
            .map(|p| hex::encode(Sha256::digest(p)))
            .unwrap_or_default();
        let to = {
            let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            match identities.first() {
                Some(id) => peers.by_identity.get(id).cloned(),
                None => peers.peer.clone(),
            }
            .unwrap_or_default()
        };
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = Header::new("cluster", &self.session);
        let buffers: Vec<Bytes> = payload.into_iter().collect();
        let frames = self.signer.encode_with_buffers(
            identities,
            &header,
            None,
            &Envelope {
                msg,
                digest,
                to,
                seq,
                part,
            },
            &buffers,
        );
        ZmqMessage::try_from(frames).expect("a message has frames")
    }

    pub fn decode(&self, raw: ZmqMessage) -> Result<Received, LinkError> {
        let m = self.signer.decode(raw.into_vec())?;
        let env: Envelope =
            serde_json::from_value(m.content).map_err(|e| LinkError::Unknown(e.to_string()))?;
        let payload = m.buffers.into_iter().next().unwrap_or_default();
        let digest = if payload.is_empty() && env.digest.is_empty() {
            String::new()
        } else {
            hex::encode(Sha256::digest(&payload))
        };
        if digest != env.digest {
            return Err(LinkError::BadPayload);
        }
        // A ROUTER's messages come behind an identity; a DEALER's never do.
        if m.identities.is_empty() == (self.side == Side::Router) {
            return Err(LinkError::Stranger);
        }
        // Greetings go to the controller's ROUTER only.
        if env.to.is_empty() && self.side == Side::Dealer {
            return Err(LinkError::Stale(kind(&env.msg)));
        }
        if env.to.is_empty() {
            let fresh = chrono::DateTime::parse_from_rfc3339(&m.header.date)
                .is_ok_and(|t| (chrono::Utc::now() - t.to_utc()).abs() <= GREETING_WINDOW);
            if !env.msg.is_greeting() || !fresh {
                return Err(LinkError::Stale(kind(&env.msg)));
            }
        } else if env.to != self.session {
            return Err(LinkError::Misdirected);
        }
        let from = m.header.session;
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        // A DEALER's one peer is the first that answered it; nobody else speaks there.
        if self.side == Side::Dealer && peers.peer.as_ref().is_some_and(|p| *p != from) {
            return Err(LinkError::Stranger);
        }
        let last = peers.last_seq.get(&from).copied().unwrap_or(0);
        if env.seq <= last {
            return Err(LinkError::Replayed {
                from,
                seq: env.seq,
                last,
            });
        }
        peers.last_seq.insert(from.clone(), env.seq);
        match m.identities.first() {
            Some(id) => {
                peers.by_identity.insert(id.clone(), from.clone());
            }
            None => peers.peer = Some(from.clone()),
        }
        let (msg, payload) = match env.part {
            None => (env.msg, payload),
            Some(part) => match assemble(&mut peers.assembling, &from, part, &payload)? {
                Some(whole) => (env.msg, whole),
                // A part before the last proves its sender alive, as a heartbeat does.
                None => (Msg::Heartbeat, Bytes::new()),
            },
        };
        Ok(Received {
            identities: m.identities,
            msg,
            payload,
        })
    }
}

/// Adds one verified part to its sender's transfer; the whole payload once the last
/// part is in. A part out of order, or a transfer past [`max_transfer`], drops it.
fn assemble(
    assembling: &mut HashMap<String, Assembly>,
    from: &str,
    part: Part,
    piece: &[u8],
) -> Result<Option<Bytes>, LinkError> {
    let limit = max_transfer();
    // Transfers of senders gone quiet (an engine that died half-way) are freed.
    assembling.retain(|_, a| a.last.elapsed() < PART_PATIENCE);
    if part.index == 0 {
        // The parts' size is the sender's (its limit may differ): the first tells it.
        let announced = (part.count as usize).saturating_mul(piece.len());
        let others: usize = assembling
            .iter()
            .filter(|(k, _)| k.as_str() != from)
            .map(|(_, a)| a.bytes.capacity())
            .sum();
        if part.count < 2 || announced > limit || others.saturating_add(announced) > limit {
            assembling.remove(from);
            return Err(LinkError::BadPart(limit));
        }
        assembling.insert(
            from.to_string(),
            Assembly {
                transfer: part.transfer,
                next: 0,
                count: part.count,
                bytes: Vec::with_capacity(announced),
                last: std::time::Instant::now(),
            },
        );
    }
    let Some(a) = assembling.get_mut(from) else {
        return Err(LinkError::BadPart(limit));
    };
    if a.transfer != part.transfer
        || a.next != part.index
        || a.count != part.count
        || a.bytes.len() + piece.len() > a.bytes.capacity()
    {
        assembling.remove(from);
        return Err(LinkError::BadPart(limit));
    }
    a.bytes.extend_from_slice(piece);
    a.next += 1;
    a.last = std::time::Instant::now();
    if a.next < a.count {
        return Ok(None);
    }
    let whole = assembling.remove(from).map(|a| a.bytes).unwrap_or_default();
    Ok(Some(Bytes::from(whole)))
}

/// A message's kind, as the wire names it.
fn kind(msg: &Msg) -> &'static str {
    match msg {
        Msg::Register { .. } => "register",
        Msg::Hello => "hello",
        Msg::Status => "status",
        _ => "message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::messages::Versions;

    /// What a ROUTER hands the controller: the sender's identity, then its frames.
    fn via_router(identity: &'static [u8], raw: ZmqMessage) -> ZmqMessage {
        let mut frames = raw.into_vec();
        frames.insert(0, Bytes::from_static(identity));
        ZmqMessage::try_from(frames).unwrap()
    }

    /// A message signed with the key but with a hand-made envelope and date.
    fn forged(link: &Link, msg: Msg, to: &str, seq: u64, date: &str) -> ZmqMessage {
        let mut header = Header::new("cluster", &link.session);
        header.date = date.to_string();
        let env = Envelope {
            msg,
            digest: String::new(),
            to: to.to_string(),
            seq,
            part: None,
        };
        let frames = link
            .signer
            .encode_with_buffers(&[], &header, None, &env, &[]);
        ZmqMessage::try_from(frames).unwrap()
    }

    fn register() -> Msg {
        Msg::Register {
            host: "h".into(),
            pid: 1,
            versions: Versions {
                ferrocell: "0".into(),
                rustc: "r".into(),
                target: "t".into(),
            },
            mpi_rank: None,
        }
    }

    #[test]
    fn messages_name_their_recipient_and_cannot_be_replayed_elsewhere() {
        let controller = Link::new("k", Side::Router);
        let (one, two) = (Link::new("k", Side::Dealer), Link::new("k", Side::Dealer));
        for (id, engine) in [(&b"one"[..], &one), (&b"two"[..], &two)] {
            // An engine's first word is an unaddressed greeting ...
            let got = controller
                .decode(via_router(id, engine.encode(&[], register(), None)))
                .unwrap();
            assert_eq!(got.identities, vec![Bytes::from_static(id)]);
            // ... and the answer teaches it the controller's session.
            let id = Bytes::from_static(id);
            let raw = controller.encode(&[id], Msg::Registered { engine: 0 }, None);
            let raw = ZmqMessage::try_from(raw.into_vec()[1..].to_vec()).unwrap();
            engine.decode(raw).unwrap();
        }
        let run = controller.encode(
            &[Bytes::from_static(b"one")],
            Msg::ToWorker {
                tag: 101,
                kernel: 1,
            },
            Some(Bytes::from_static(b"code")),
        );
        let frames = run.into_vec();
        let to_engine = ZmqMessage::try_from(frames[1..].to_vec()).unwrap();
        assert!(one.decode(to_engine.clone()).is_ok());
        // The same message again, to another engine, or to a restarted one.
        assert!(one.decode(to_engine.clone()).is_err());
        assert!(matches!(
            two.decode(to_engine.clone()),
            Err(LinkError::Misdirected)
        ));
        assert!(matches!(
            Link::new("k", Side::Dealer).decode(to_engine),
            Err(LinkError::Misdirected)
        ));
        // Another process with the key, speaking to an engine that has its controller.
        let intruder = Link::new("k", Side::Router);
        let now = crate::protocol::header::now_iso8601();
        let greeting = forged(&one, register(), "", 1000, &now);
        intruder.decode(via_router(b"one", greeting)).unwrap();
        let raw = intruder.encode(&[Bytes::from_static(b"one")], Msg::KillWorker, None);
        let raw = ZmqMessage::try_from(raw.into_vec()[1..].to_vec()).unwrap();
        assert!(matches!(one.decode(raw), Err(LinkError::Stranger)));
        // Engines answer addressed, in sequence.
        let reply = one.encode(&[], Msg::FromWorker { tag: 7 }, None);
        controller.decode(via_router(b"one", reply)).unwrap();
        // A fresh signature with an old sequence number is a replay.
        let old = forged(&one, Msg::Heartbeat, &controller.session, 1, &now);
        assert!(matches!(
            controller.decode(via_router(b"one", old)),
            Err(LinkError::Replayed { .. })
        ));
        // Only greetings go unaddressed, and only fresh ones.
        let unaddressed = forged(&two, Msg::FromWorker { tag: 7 }, "", 50, &now);
        assert!(matches!(
            controller.decode(via_router(b"two", unaddressed)),
            Err(LinkError::Stale(_))
        ));
        let late = forged(&two, register(), "", 51, "2020-01-01T00:00:00.000000Z");
        assert!(matches!(
            controller.decode(via_router(b"two", late)),
            Err(LinkError::Stale(_))
        ));
        // Identity frames are not signed: each end knows its side and refuses the
        // other side's shape, so a greeting with a made-up identity is no greeting
        // to an engine, and the controller hears nobody without an identity.
        let greeting = forged(&two, register(), "", 52, &now);
        assert!(matches!(
            one.decode(via_router(b"x", greeting.clone())),
            Err(LinkError::Stranger)
        ));
        assert!(matches!(
            controller.decode(greeting),
            Err(LinkError::Stranger)
        ));
    }

    #[test]
    fn large_payloads_travel_in_parts_that_keep_the_peer_alive() {
        let (controller, engine) = (Link::new("k", Side::Router), Link::new("k", Side::Dealer));
        controller
            .decode(via_router(b"e", engine.encode(&[], register(), None)))
            .unwrap();
        let id = Bytes::from_static(b"e");
        let big: Vec<u8> = (0..part_bytes() * 2 + 5).map(|i| (i % 251) as u8).collect();
        let parts = controller.encode_parts(
            std::slice::from_ref(&id),
            Msg::Ship { name: "lib".into() },
            Some(Bytes::from(big.clone())),
        );
        assert_eq!(parts.len(), 3);
        let strip = |raw: ZmqMessage| ZmqMessage::try_from(raw.into_vec()[1..].to_vec()).unwrap();
        let mut got = Vec::new();
        for raw in parts.clone() {
            got.push(engine.decode(strip(raw)).unwrap());
        }
        assert_eq!(got[0].msg, Msg::Heartbeat);
        assert_eq!(got[1].msg, Msg::Heartbeat);
        assert_eq!(got[2].msg, Msg::Ship { name: "lib".into() });
        assert_eq!(&got[2].payload[..], &big[..]);
        // A part on its own, out of order, is dropped.
        let again = controller.encode_parts(
            &[id],
            Msg::Ship { name: "x".into() },
            Some(Bytes::from(big)),
        );
        let mut again = again.into_iter();
        let _first = again.next();
        assert!(matches!(
            engine.decode(strip(again.next().unwrap())),
            Err(LinkError::BadPart(_))
        ));
        // A small payload is one message.
        assert_eq!(
            engine
                .encode_parts(
                    &[],
                    Msg::FromWorker { tag: 1 },
                    Some(Bytes::from_static(b"x"))
                )
                .len(),
            1
        );
    }

    #[test]
    fn signed_messages_round_trip_and_tampering_is_refused() {
        // The kernel's side (a DEALER) greets the controller's (a ROUTER) and is answered.
        let (link, controller) = (Link::new("k", Side::Dealer), Link::new("k", Side::Router));
        controller
            .decode(via_router(b"kernel", link.encode(&[], Msg::Hello, None)))
            .unwrap();
        let answer = controller.encode(&[Bytes::from_static(b"kernel")], Msg::Stopped, None);
        let answer = ZmqMessage::try_from(answer.into_vec()[1..].to_vec()).unwrap();
        link.decode(answer).unwrap();
        let raw = controller.encode(
            &[Bytes::from_static(b"kernel")],
            Msg::Send {
                engine: 2,
                tag: 101,
            },
            Some(Bytes::from_static(b"lib\0sym")),
        );
        let raw = ZmqMessage::try_from(raw.into_vec()[1..].to_vec()).unwrap();
        let got = link.decode(raw.clone()).unwrap();
        assert_eq!(
            got.msg,
            Msg::Send {
                engine: 2,
                tag: 101
            }
        );
        assert_eq!(&got.payload[..], b"lib\0sym");
        // The same message again is a replay.
        assert!(link.decode(raw.clone()).is_err());
        // Another key, or another payload under the same signature, is refused.
        let other = Link::new("not-k", Side::Router);
        let raw = other.encode(&[], Msg::Hello, None);
        assert!(link.decode(raw).is_err());
        let mut frames = controller
            .encode(
                &[],
                Msg::ToWorker {
                    tag: 101,
                    kernel: 1,
                },
                Some(Bytes::from_static(b"a")),
            )
            .into_vec();
        *frames.last_mut().unwrap() = Bytes::from_static(b"b");
        let forged = ZmqMessage::try_from(frames).unwrap();
        assert!(matches!(link.decode(forged), Err(LinkError::BadPayload)));
    }
}
