//! Incremental SHA-256 whose state survives a checkpoint.
//!
//! A download may be stopped at any chunk boundary (a service worker is killed, a tab closes) and
//! continued by another context. To verify the *whole* file at the end without re-reading what
//! is already stored, the hash state is saved with every chunk's checkpoint and restored by the
//! next context. `sha2` 0.10 does not expose its internal state, so [`Sha256Stream`] keeps its own
//! eight state words, 64-byte block buffer and length, and runs the `sha2` crate's (maintained,
//! SIMD-accelerated) compression function [`sha2::compress256`] on full blocks; padding and
//! finalisation follow FIPS 180-4 §5.1.1. Tests compare it with `sha2::Sha256` on many lengths
//! and split points.
//!
//! # Example
//! ```
//! use background_assets::core::integrity::{HashState, Sha256Stream};
//!
//! let mut first_context = Sha256Stream::new();
//! first_context.update(b"hello ");
//! let saved: HashState = first_context.save();               // goes into the checkpoint
//! let json = serde_json::to_string(&saved).unwrap();          // ... stored, worker killed ...
//!
//! let restored: HashState = serde_json::from_str(&json).unwrap();
//! let mut next_context = Sha256Stream::restore(&restored).unwrap();
//! next_context.update(b"world");
//! assert_eq!(
//!     background_assets::core::error::hex(&next_context.finalize()),
//!     "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
//! );
//! ```

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

use crate::core::error::{hex, Error};

/// SHA-256 block size in bytes.
const BLOCK: usize = 64;

/// FIPS 180-4 initial hash value for SHA-256.
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// An incremental SHA-256 whose progress can be saved as a [`HashState`] and restored later,
/// possibly in another process.
///
/// # Example
/// ```
/// use background_assets::core::integrity::Sha256Stream;
/// use sha2::{Digest, Sha256};
///
/// let mut stream = Sha256Stream::new();
/// stream.update(b"abc");
/// stream.update(b"def");
/// assert_eq!(stream.bytes_hashed(), 6);
/// assert_eq!(stream.finalize(), <[u8; 32]>::from(Sha256::digest(b"abcdef")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256Stream {
    state: [u32; 8],
    block: [u8; BLOCK],
    /// Bytes waiting in `block` (always `< 64` between calls).
    pending: usize,
    /// Total bytes hashed so far.
    length: u64,
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256Stream {
    /// A hash of zero bytes.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::Sha256Stream;
    /// assert_eq!(Sha256Stream::new().bytes_hashed(), 0);
    /// ```
    pub fn new() -> Self {
        Sha256Stream {
            state: INITIAL_STATE,
            block: [0; BLOCK],
            pending: 0,
            length: 0,
        }
    }

    /// Feeds more bytes.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::Sha256Stream;
    /// let mut s = Sha256Stream::new();
    /// s.update(&[7u8; 100]);
    /// assert_eq!(s.bytes_hashed(), 100);
    /// ```
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.pending > 0 {
            let take = (BLOCK - self.pending).min(data.len());
            self.block[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < BLOCK {
                return;
            }
            sha2::compress256(&mut self.state, &[GenericArray::from(self.block)]);
            self.pending = 0;
        }
        let full = data.len() / BLOCK * BLOCK;
        // Each block is compressed where it lies (no copy): this crate is size-optimised, and
        // copying the blocks into a batch first (opt-level "z") cost as long as hashing them.
        for block in data[..full].chunks_exact(BLOCK) {
            sha2::compress256(
                &mut self.state,
                std::slice::from_ref(GenericArray::from_slice(block)),
            );
        }
        let rest = &data[full..];
        self.block[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    /// How many bytes have been hashed so far (across every restore).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::Sha256Stream;
    /// let mut s = Sha256Stream::new();
    /// s.update(b"12345");
    /// assert_eq!(s.bytes_hashed(), 5);
    /// ```
    pub fn bytes_hashed(&self) -> u64 {
        self.length
    }

    /// Pads and returns the digest of everything fed so far. Takes `&self` so a stream can be
    /// checked and still continued.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::{error::hex, integrity::Sha256Stream};
    /// assert_eq!(
    ///     hex(&Sha256Stream::new().finalize()),
    ///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// );
    /// ```
    pub fn finalize(&self) -> [u8; 32] {
        let mut state = self.state;
        let mut block = [0u8; BLOCK];
        block[..self.pending].copy_from_slice(&self.block[..self.pending]);
        block[self.pending] = 0x80;
        if self.pending + 1 > BLOCK - 8 {
            sha2::compress256(&mut state, &[GenericArray::from(block)]);
            block = [0u8; BLOCK];
        }
        let bit_length = self.length.wrapping_mul(8);
        block[BLOCK - 8..].copy_from_slice(&bit_length.to_be_bytes());
        sha2::compress256(&mut state, &[GenericArray::from(block)]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Saves the state, to be stored with a checkpoint.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::Sha256Stream;
    /// let mut s = Sha256Stream::new();
    /// s.update(&[1u8; 70]);
    /// let saved = s.save();
    /// assert_eq!(saved.length(), 70);
    /// ```
    pub fn save(&self) -> HashState {
        HashState {
            words: self.state,
            length: self.length,
            tail: self.block[..self.pending].to_vec(),
        }
    }

    /// Restores a saved state. Fails with [`Error::Storage`] when the state is inconsistent
    /// (a tail that is not `length % 64` bytes long), which means the checkpoint was corrupted.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::Sha256Stream;
    /// let mut a = Sha256Stream::new();
    /// a.update(b"part one, ");
    /// let mut b = Sha256Stream::restore(&a.save()).unwrap();
    /// a.update(b"part two");
    /// b.update(b"part two");
    /// assert_eq!(a.finalize(), b.finalize());
    /// ```
    pub fn restore(saved: &HashState) -> Result<Self, Error> {
        saved.check()?;
        let mut block = [0u8; BLOCK];
        block[..saved.tail.len()].copy_from_slice(&saved.tail);
        Ok(Sha256Stream {
            state: saved.words,
            block,
            pending: saved.tail.len(),
            length: saved.length,
        })
    }
}

/// The saved progress of a [`Sha256Stream`]: the eight state words, the number of bytes hashed
/// and the bytes of the last incomplete block (`length % 64` of them). It serializes compactly as
/// `{"h":"<64 hex>","n":<length>,"t":"<hex tail>"}` (at most ~230 bytes of JSON).
///
/// # Example
/// ```
/// use background_assets::core::integrity::{HashState, Sha256Stream};
/// let mut s = Sha256Stream::new();
/// s.update(b"abc");
/// let json = serde_json::to_string(&s.save()).unwrap();
/// assert!(json.contains("\"n\":3") && json.contains("\"t\":\"616263\""));
/// let back: HashState = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, s.save());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HashStateJson", into = "HashStateJson")]
pub struct HashState {
    words: [u32; 8],
    length: u64,
    tail: Vec<u8>,
}

impl Default for HashState {
    fn default() -> Self {
        Sha256Stream::new().save()
    }
}

impl HashState {
    /// The number of bytes this state has hashed.
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::HashState;
    /// assert_eq!(HashState::default().length(), 0);
    /// ```
    pub fn length(&self) -> u64 {
        self.length
    }

    fn check(&self) -> Result<(), Error> {
        if self.tail.len() as u64 != self.length % BLOCK as u64 {
            return Err(Error::Storage {
                message: format!(
                    "corrupt hash state: {} tail bytes for length {} (expected {})",
                    self.tail.len(),
                    self.length,
                    self.length % BLOCK as u64
                ),
            });
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct HashStateJson {
    h: String,
    n: u64,
    t: String,
}

impl From<HashState> for HashStateJson {
    fn from(s: HashState) -> Self {
        let mut words = [0u8; 32];
        for (chunk, word) in words.chunks_exact_mut(4).zip(s.words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        HashStateJson {
            h: hex(&words),
            n: s.length,
            t: hex(&s.tail),
        }
    }
}

impl TryFrom<HashStateJson> for HashState {
    type Error = Error;

    fn try_from(j: HashStateJson) -> Result<Self, Error> {
        let bad = |what: &str| Error::Storage {
            message: format!("corrupt hash state: {what}"),
        };
        let words_bytes = unhex(&j.h).ok_or_else(|| bad("`h` is not hex"))?;
        if words_bytes.len() != 32 {
            return Err(bad("`h` is not 32 bytes"));
        }
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(words_bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        let tail = unhex(&j.t).ok_or_else(|| bad("`t` is not hex"))?;
        let state = HashState {
            words,
            length: j.n,
            tail,
        };
        state.check()?;
        Ok(state)
    }
}

/// The declared SHA-256 of each consecutive `chunk_size` bytes of a file, the last chunk
/// possibly shorter: the file's chunk list, declared beside its whole-file SHA-256.
///
/// With it a download verifies each chunk before storing it, with the browser's
/// `crypto.subtle.digest` (native code, off the worker's thread) instead of hashing every byte
/// in wasm on the thread that reads the body; a corrupt chunk is refused before it is stored and
/// the verified chunks before it are kept. The list is as trustworthy as the declaration it came
/// in, like the whole-file digest beside it.
///
/// In JSON (the declaration's `chunks`): `{"size": <chunk bytes>, "sha256": ["<64 hex>", ...]}`.
///
/// # Example
/// ```
/// use background_assets::core::integrity::ChunkDigests;
/// let file = vec![7u8; 10];
/// let digests = ChunkDigests::of(&file, 4);
/// assert_eq!(digests.sha256.len(), 3); // 4 + 4 + 2 bytes
/// assert!(digests.check(10).is_ok());
/// assert!(digests.check(13).unwrap_err().contains("4 expected"));
/// let json = serde_json::to_string(&digests).unwrap();
/// assert!(json.starts_with(r#"{"size":4,"sha256":[""#));
/// assert_eq!(serde_json::from_str::<ChunkDigests>(&json).unwrap(), digests);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ChunkDigestsJson", into = "ChunkDigestsJson")]
pub struct ChunkDigests {
    /// Bytes per chunk (the last one may be shorter); at least 1.
    pub chunk_size: u32,
    /// One SHA-256 per chunk, in file order.
    pub sha256: Vec<[u8; 32]>,
}

impl ChunkDigests {
    /// The digests of `data` cut into `chunk_size` chunks (a tool's or a test's side: the
    /// download verifies, it does not compute the list).
    pub fn of(data: &[u8], chunk_size: u32) -> ChunkDigests {
        use sha2::Digest;
        let sha256 = data
            .chunks(chunk_size.max(1) as usize)
            .map(|c| sha2::Sha256::digest(c).into())
            .collect();
        ChunkDigests { chunk_size, sha256 }
    }

    /// Whether the list fits a file of `size` bytes: a chunk size of at least 1 and one digest
    /// per chunk. The error says what is wrong, for the caller to name where.
    pub fn check(&self, size: u64) -> Result<(), String> {
        Self::check_count(self.chunk_size, self.sha256.len(), size)
    }

    /// Whether `given` digests of `chunk_size`-byte chunks fit a file of `size` bytes (what
    /// [`check`](Self::check) asks, for a list not read yet).
    ///
    /// # Example
    /// ```
    /// use background_assets::core::integrity::ChunkDigests;
    /// assert!(ChunkDigests::check_count(4, 3, 10).is_ok());
    /// assert!(ChunkDigests::check_count(4, 2, 10).unwrap_err().contains("3 expected"));
    /// assert!(ChunkDigests::check_count(0, 0, 0).is_err());
    /// ```
    pub fn check_count(chunk_size: u32, given: usize, size: u64) -> Result<(), String> {
        if chunk_size == 0 {
            return Err("the chunk size must be at least 1".into());
        }
        let needed = size.div_ceil(u64::from(chunk_size));
        if given as u64 != needed {
            return Err(format!(
                "{given} chunk digests given, {needed} expected for {size} bytes in chunks of {chunk_size}"
            ));
        }
        Ok(())
    }

    /// The declared digest of the chunk starting at `offset`, if `offset` starts one.
    pub fn at(&self, offset: u64) -> Option<[u8; 32]> {
        let size = u64::from(self.chunk_size);
        if size == 0 || offset % size != 0 {
            return None;
        }
        self.sha256
            .get(usize::try_from(offset / size).ok()?)
            .copied()
    }
}

#[derive(Serialize, Deserialize)]
struct ChunkDigestsJson {
    size: u32,
    sha256: Vec<String>,
}

impl From<ChunkDigests> for ChunkDigestsJson {
    fn from(d: ChunkDigests) -> Self {
        ChunkDigestsJson {
            size: d.chunk_size,
            sha256: d.sha256.iter().map(|s| hex(s)).collect(),
        }
    }
}

impl TryFrom<ChunkDigestsJson> for ChunkDigests {
    type Error = String;

    fn try_from(j: ChunkDigestsJson) -> Result<Self, String> {
        let sha256 = j
            .sha256
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_sha256(s).ok_or_else(|| format!("sha256[{i}] is not 64 hex digits"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ChunkDigests {
            chunk_size: j.size,
            sha256,
        })
    }
}

/// A SHA-256 written as 64 hex digits (either case).
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}

/// Decodes lowercase or uppercase hex; `None` on odd length or a non-hex character.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn matches_sha2_on_every_length_around_block_edges() {
        for len in 0..300 {
            let d = data(len);
            let mut s = Sha256Stream::new();
            s.update(&d);
            assert_eq!(s.finalize(), reference(&d), "length {len}");
        }
    }

    #[test]
    fn matches_sha2_on_large_input_in_odd_pieces() {
        let d = data(1 << 20 | 12345);
        let mut s = Sha256Stream::new();
        for piece in d.chunks(65_537) {
            s.update(piece);
        }
        assert_eq!(s.finalize(), reference(&d));
    }

    #[test]
    fn save_restore_through_json_continues_exactly() {
        let d = data(1000);
        for split in [0, 1, 55, 56, 63, 64, 65, 127, 128, 999, 1000] {
            let mut a = Sha256Stream::new();
            a.update(&d[..split]);
            let json = serde_json::to_string(&a.save()).unwrap();
            let mut b = Sha256Stream::restore(&serde_json::from_str(&json).unwrap()).unwrap();
            b.update(&d[split..]);
            assert_eq!(b.finalize(), reference(&d), "split {split}");
        }
    }

    #[test]
    fn corrupt_states_are_refused_with_a_reason() {
        let mut s = Sha256Stream::new();
        s.update(b"abc");
        let mut saved = s.save();
        saved.length = 4;
        let err = Sha256Stream::restore(&saved).unwrap_err();
        assert!(matches!(err, Error::Storage { ref message } if message.contains("tail")));

        let bad_hex = r#"{"h":"zz","n":0,"t":""}"#;
        let err = serde_json::from_str::<HashState>(bad_hex).unwrap_err();
        assert!(err.to_string().contains("not hex"), "{err}");
        let short = r#"{"h":"00","n":0,"t":""}"#;
        assert!(serde_json::from_str::<HashState>(short).is_err());
        let wrong_tail = format!(
            r#"{{"h":"{}","n":2,"t":"61"}}"#,
            HashStateJson::from(HashState::default()).h
        );
        let err = serde_json::from_str::<HashState>(&wrong_tail).unwrap_err();
        assert!(err.to_string().contains("tail"), "{err}");
    }

    #[test]
    fn finalize_does_not_consume() {
        let mut s = Sha256Stream::new();
        s.update(b"ab");
        let _ = s.finalize();
        s.update(b"c");
        assert_eq!(s.finalize(), reference(b"abc"));
    }
}
