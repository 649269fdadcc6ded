//! Artifact digests in Flux's `<algorithm>:<hex>` form (sha256, the canonical algorithm).

use sha2::{Digest as _, Sha256};
use std::io::{self, Write};

/// Prefix of sha256 digests.
pub const SHA256_PREFIX: &str = "sha256:";

/// Formats a finished hasher as `sha256:<hex>`.
pub fn format(hasher: Sha256) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(hasher.finalize()))
}

/// `sha256:<hex>` of a byte string.
pub fn of_bytes(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format(h)
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, format(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_prefixed_hex_sha256() {
        assert_eq!(
            of_bytes(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (buf, digest, n) = w.finish();
        assert_eq!((buf.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(digest, of_bytes(b"abc"));
    }
}
