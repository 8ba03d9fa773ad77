//! Deterministic generated bodies: `/gen/<len>/<seed>`.
//!
//! The byte at offset `i` depends only on `seed` and `i`: a body of length `L` is a prefix of the
//! body of any longer length with the same seed (this is what `fault=long:N` serves past `L`).
//! Every 64-byte block is produced by a SplitMix64 stream keyed by the seed and the block index, so
//! any offset is cheap to compute without producing what comes before it.

use sha2::{Digest, Sha256};

/// Bytes per independently computed block.
const BLOCK: usize = 64;

/// One step of SplitMix64 (Steele, Lea, Flood 2014): a fast, well-mixed 64-bit generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64 bytes of block `block` of the stream of `seed`.
fn block_bytes(seed_key: u64, block: u64) -> [u8; BLOCK] {
    let mut state = seed_key ^ block.wrapping_mul(0xA24B_AED4_963E_E407);
    let mut out = [0u8; BLOCK];
    for word in out.chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out
}

/// Mixes the seed once so that neighbouring seeds give unrelated streams.
fn seed_key(seed: u64) -> u64 {
    let mut state = seed ^ 0x5851_F42D_4C95_7F2D;
    splitmix64(&mut state)
}

/// Fills `buf` with the bytes at `offset..offset + buf.len()` of the generated body `(len, seed)`.
///
/// The bytes do not depend on `len` (a shorter body is a prefix of a longer one), so positions at or
/// past `len` are the continuation of the same stream rather than an error.
///
/// # Example
/// ```
/// use xtask::cdn::generated_bytes;
/// let mut whole = [0u8; 200];
/// generated_bytes(200, 7, 0, &mut whole);
/// let mut part = [0u8; 50];
/// generated_bytes(200, 7, 100, &mut part);
/// assert_eq!(&whole[100..150], &part[..]);
/// ```
pub fn generated_bytes(len: u64, seed: u64, offset: u64, buf: &mut [u8]) {
    let _ = len; // the stream is independent of the length by design (see above)
    let key = seed_key(seed);
    let mut written = 0usize;
    while written < buf.len() {
        let position = offset + written as u64;
        let block = position / BLOCK as u64;
        let within = (position % BLOCK as u64) as usize;
        let bytes = block_bytes(key, block);
        let take = (BLOCK - within).min(buf.len() - written);
        buf[written..written + take].copy_from_slice(&bytes[within..within + take]);
        written += take;
    }
}

/// Lowercase hex SHA-256 of the generated body `(len, seed)`, streamed in 1 MiB pieces.
///
/// # Example
/// ```
/// use sha2::{Digest, Sha256};
/// use xtask::cdn::{generated_bytes, generated_sha256};
/// let mut body = vec![0u8; 1000];
/// generated_bytes(1000, 3, 0, &mut body);
/// let expected: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
/// assert_eq!(generated_sha256(1000, 3), expected);
/// ```
pub fn generated_sha256(len: u64, seed: u64) -> String {
    const PIECE: u64 = 1 << 20;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; PIECE as usize];
    let mut offset = 0u64;
    while offset < len {
        let n = PIECE.min(len - offset) as usize;
        generated_bytes(len, seed, offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex(&hasher.finalize())
}

/// The generated body's chunk digests as the declaration's `chunks` JSON,
/// `{"size":<chunk>,"sha256":["<hex>",...]}`: one SHA-256 per `chunk` bytes, the last chunk
/// possibly shorter (`chunk` is at least 1).
pub fn generated_chunk_digests(len: u64, seed: u64, chunk: u64) -> String {
    let chunk = chunk.max(1);
    let mut digests = Vec::new();
    let mut buf = vec![0u8; chunk.min(len).max(1) as usize];
    let mut offset = 0u64;
    while offset < len {
        let n = chunk.min(len - offset) as usize;
        generated_bytes(len, seed, offset, &mut buf[..n]);
        digests.push(hex(&Sha256::digest(&buf[..n])));
        offset += n as u64;
    }
    serde_json::json!({ "size": chunk, "sha256": digests }).to_string()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_zero_and_seeds_differ() {
        let mut a = [0u8; 256];
        let mut b = [0u8; 256];
        generated_bytes(256, 1, 0, &mut a);
        generated_bytes(256, 2, 0, &mut b);
        assert!(a.iter().any(|&x| x != 0));
        assert_ne!(a, b);
    }

    #[test]
    fn chunk_digests_hash_each_chunk_of_the_body() {
        let mut whole = vec![0u8; 2500];
        generated_bytes(2500, 4, 0, &mut whole);
        let json: serde_json::Value =
            serde_json::from_str(&generated_chunk_digests(2500, 4, 1000)).unwrap();
        assert_eq!(json["size"], 1000);
        let expected: Vec<String> = whole
            .chunks(1000)
            .map(|c| hex(&Sha256::digest(c)))
            .collect();
        assert_eq!(json["sha256"], serde_json::json!(expected));
        let empty: serde_json::Value =
            serde_json::from_str(&generated_chunk_digests(0, 4, 1000)).unwrap();
        assert_eq!(empty["sha256"], serde_json::json!([]));
    }

    #[test]
    fn unaligned_reads_match_the_whole() {
        let mut whole = vec![0u8; 1000];
        generated_bytes(1000, 9, 0, &mut whole);
        for (offset, n) in [(0, 1), (1, 63), (63, 2), (64, 64), (100, 333), (999, 1)] {
            let mut part = vec![0u8; n];
            generated_bytes(1000, 9, offset as u64, &mut part);
            assert_eq!(part, whole[offset..offset + n], "offset {offset} len {n}");
        }
    }
}
