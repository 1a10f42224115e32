//! Request-body compression (`compression = "gzip" | "zstd"`): the whole body, a single
//! message or a batch's JSON array, becomes one compressed buffer, sent with
//! `Content-Encoding`.

use std::io::Write;

use bytes::Bytes;

use crate::config::Compression;

/// gzip level: zlib's default, the usual size/CPU trade-off.
const GZIP_LEVEL: u32 = 6;
/// zstd level: the library's default; gzip-6's ratio for a fraction of its CPU.
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 3;

/// Bodies at least this large are compressed on the blocking pool, so that a batch
/// does not hold up the reactor thread: gzip-6 takes 7-20 µs per KiB of seed-shaped
/// JSON on x86 (more per KiB for larger bodies; several times that on a small ARM
/// core), zstd-3 2-4 µs (BENCHMARKS.md). A single message (a few KiB, well under
/// 0.5 ms) is cheaper to compress in place than to hand over.
const OFF_REACTOR: usize = 32 * 1024;

/// `parts` as the body to send: unchanged for [`Compression::None`], else joined and
/// compressed into one buffer.
pub(super) async fn encode(codec: Compression, parts: Vec<Bytes>) -> std::io::Result<Vec<Bytes>> {
    if codec == Compression::None {
        return Ok(parts);
    }
    let len: usize = parts.iter().map(Bytes::len).sum();
    let body = if len >= OFF_REACTOR {
        tokio::task::spawn_blocking(move || compress(codec, &parts))
            .await
            .map_err(std::io::Error::other)??
    } else {
        compress(codec, &parts)?
    };
    Ok(vec![body])
}

/// `parts`, concatenated, compressed with `codec`.
pub(super) fn compress(codec: Compression, parts: &[Bytes]) -> std::io::Result<Bytes> {
    let len: usize = parts.iter().map(Bytes::len).sum();
    // JSON events compress 5-10x; start with room for a poor ratio.
    let out = Vec::with_capacity(len / 3 + 64);
    let out = match codec {
        Compression::None => {
            let mut out = out;
            parts.iter().for_each(|p| out.extend_from_slice(p));
            out
        }
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            write_all(&mut e, parts)?;
            e.finish()?
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            // The size in the frame header lets zstd size its tables to the body.
            e.set_pledged_src_size(Some(len as u64))?;
            e.include_contentsize(true)?;
            write_all(&mut e, parts)?;
            e.finish()?
        }
        // The config refuses `zstd` in a build without it.
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => {
            return Err(std::io::Error::other(
                "zstd is not in this build of outpost",
            ))
        }
    };
    Ok(Bytes::from(out))
}

fn write_all(w: &mut impl Write, parts: &[Bytes]) -> std::io::Result<()> {
    parts.iter().try_for_each(|p| w.write_all(p))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn parts() -> Vec<Bytes> {
        let event = Bytes::from_static(br#"{"type":"face","score":0.97,"camera":"cam-01"}"#);
        let mut parts = vec![Bytes::from_static(b"[")];
        for i in 0..200 {
            if i > 0 {
                parts.push(Bytes::from_static(b","));
            }
            parts.push(event.clone());
        }
        parts.push(Bytes::from_static(b"]"));
        parts
    }

    fn joined(parts: &[Bytes]) -> Vec<u8> {
        parts.concat()
    }

    /// The codecs this build has.
    const CODECS: &[Compression] = &[
        Compression::Gzip,
        #[cfg(feature = "zstd")]
        Compression::Zstd,
    ];

    fn decode(codec: Compression, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match codec {
            Compression::None => out.extend_from_slice(body),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => out = zstd::stream::decode_all(body).unwrap(),
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => unreachable!("not in this build"),
        }
        out
    }

    #[test]
    fn each_codec_round_trips_and_shrinks_json() {
        let parts = parts();
        let plain = joined(&parts);
        for &codec in CODECS {
            let body = compress(codec, &parts).unwrap();
            assert_eq!(decode(codec, &body), plain, "{codec:?}");
            assert!(
                body.len() * 5 < plain.len(),
                "{codec:?}: {} of {}",
                body.len(),
                plain.len()
            );
        }
    }

    #[tokio::test]
    async fn large_bodies_are_compressed_off_the_reactor_with_the_same_result() {
        let big: Vec<Bytes> = (0..1000)
            .map(|i| Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200))))
            .collect();
        assert!(joined(&big).len() >= OFF_REACTOR);
        for &codec in CODECS {
            let sent = encode(codec, big.clone()).await.unwrap();
            assert_eq!(sent.len(), 1, "{codec:?}");
            assert_eq!(decode(codec, &sent[0]), joined(&big), "{codec:?}");
        }
        let none = encode(Compression::None, big.clone()).await.unwrap();
        assert_eq!(none, big, "no compression leaves the parts alone");
    }
}
