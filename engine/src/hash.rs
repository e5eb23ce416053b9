//! Content hashes: blake3 digests that name files, nodes and their outputs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 32-byte blake3 digest. Equal hashes mean equal content; every key and
/// output in the engine is one of these.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of a byte string.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, for people to read.
    pub fn short(&self) -> String {
        let mut hex = self.to_hex();
        hex.truncate(12);
        hex
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl FromStr for ContentHash {
    type Err = blake3::HexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ContentHash(*blake3::Hash::from_hex(s)?.as_bytes()))
    }
}

/// Builds a [`ContentHash`] from a sequence of fields. Every field is framed
/// with its length, so `("ab", "c")` and `("a", "bc")` hash differently.
#[derive(Default, Clone)]
pub struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    /// A hasher whose output is specific to `domain`, so that keys of
    /// different kinds of nodes never collide.
    pub fn new(domain: &str) -> Self {
        let mut hasher = KeyHasher(blake3::Hasher::new());
        hasher.field(domain.as_bytes());
        hasher
    }

    /// Adds one length-framed field.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a string field.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.field(s.as_bytes())
    }

    /// Adds a hash field.
    pub fn hash(&mut self, h: &ContentHash) -> &mut Self {
        self.field(&h.0)
    }

    /// Adds an integer field.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.field(&n.to_le_bytes())
    }

    /// The digest of every field added so far.
    pub fn finish(&self) -> ContentHash {
        ContentHash(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_framed() {
        let a = KeyHasher::new("t").str("ab").str("c").finish();
        let b = KeyHasher::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn domains_separate_keys() {
        let a = KeyHasher::new("scan").str("x").finish();
        let b = KeyHasher::new("compose").str("x").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn hex_round_trips() {
        let h = ContentHash::of(b"hello");
        assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
        assert_eq!(h.short().len(), 12);
    }
}
