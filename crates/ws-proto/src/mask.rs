//! Payload masking (RFC 6455 section 5.3) and the sources of masking keys.

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// XORs `buf` with the masking key, as if `buf` started at byte 0 of the
/// payload. Masking and unmasking are the same operation.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_at(buf, key, 0);
}

/// XORs `buf` with the masking key, where `buf` starts `offset` bytes into the
/// payload. This lets a payload be unmasked piece by piece as it arrives.
///
/// RFC 6455 section 5.3: "Octet i of the transformed data
/// ("transformed-octet-i") is the XOR of octet i of the original data
/// ("original-octet-i") with octet at index i modulo 4 of the masking key".
///
/// Works 32 bytes at a time on a repeated key, a loop the compiler turns into
/// vector instructions, then finishes the tail byte by byte.
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if buf.len() < 8 {
        // A short payload (a typical chat or game message): the wide key's
        // setup would cost more than the bytes themselves.
        for (byte, mask) in buf.iter_mut().zip(key.iter().cycle()) {
            *byte ^= mask;
        }
        return;
    }
    let wide: [u8; 32] = std::array::from_fn(|i| key[i & 3]);
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for (byte, mask) in chunk.iter_mut().zip(wide) {
            *byte ^= mask;
        }
    }
    for (byte, mask) in chunks.into_remainder().iter_mut().zip(wide) {
        *byte ^= mask;
    }
}

/// The byte-at-a-time reference for [`apply_mask_at`], kept for tests and
/// benchmarks (feature `test-support`; not part of the public API).
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) % 4];
    }
}

/// The key as seen from `offset` bytes into the payload.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    // Big-endian puts key[0] in the top byte, so a left rotation of the
    // word is a left rotation of the bytes.
    let bits = 8 * (offset % 4) as u32;
    u32::from_be_bytes(key).rotate_left(bits).to_be_bytes()
}

/// Where a client connection gets the masking key for each frame it sends.
///
/// RFC 6455 section 5.3: "The masking key needs to be unpredictable; thus,
/// the masking key MUST be derived from a strong source of entropy". The
/// default, [`RandomMaskKeys`], is one. Supplying another source is for tests
/// that need deterministic bytes on the wire.
pub trait MaskKeySource: Send {
    /// The masking key for the next frame.
    fn next_key(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4] + Send> MaskKeySource for F {
    fn next_key(&mut self) -> [u8; 4] {
        self()
    }
}

/// Masking keys from ChaCha12, a cryptographically secure generator seeded
/// once from the operating system. Drawing a key is a few nanoseconds; there
/// is no system call per frame and no state shared between connections.
pub struct RandomMaskKeys {
    rng: ChaCha12Rng,
}

impl RandomMaskKeys {
    /// A generator seeded from the operating system's entropy source.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide entropy, which on supported
    /// platforms does not happen once the system has booted.
    pub fn new() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system provides entropy");
        Self {
            rng: ChaCha12Rng::from_seed(seed),
        }
    }
}

impl Default for RandomMaskKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RandomMaskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomMaskKeys")
    }
}

impl MaskKeySource for RandomMaskKeys {
    fn next_key(&mut self) -> [u8; 4] {
        self.rng.next_u32().to_ne_bytes()
    }
}
