//! The kernel's side of the runner channel: `[tag u8][len u32 LE][payload]` frames
//! (the prelude's `channel` module is the other side; the tags must match).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frame tags: the prelude's own file, so that both sides agree.
#[path = "../../prelude/src/tags.rs"]
pub mod tag;

/// Frames bigger than this are a broken runner, not output.
const MAX_FRAME: usize = 1 << 30;

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "runner frame of {len} bytes"
        )));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// Writes one frame.
pub async fn write(
    w: &mut (impl AsyncWrite + Unpin),
    tag: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(tag);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn round_trip_and_eof() {
        let (mut a, mut b) = tokio::io::duplex(64);
        super::write(&mut a, 7, b"hello").await.unwrap();
        drop(a);
        assert_eq!(
            super::read(&mut b).await.unwrap(),
            Some((7, b"hello".to_vec()))
        );
        assert_eq!(super::read(&mut b).await.unwrap(), None);
    }
}
