//! sha256 digests: strict parsing (a digest becomes a file name), hashing readers and writers.

use crate::error::Error;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A `sha256:<64 lowercase hex>` digest. Other algorithms are refused: a digest string is
/// attacker-controlled and ends up in a path (`blobs/sha256/<hex>`), so only this exact shape
/// is accepted (containers/image CVE-2024-3727).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as docker shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The digest of a byte string.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_raw(Sha256::digest(bytes).as_slice())
    }

    fn from_raw(raw: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(raw),
        }
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest, Error> {
        let hex = s
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| Error::InvalidDigest(s.to_string()))?;
        Ok(Digest { hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A running sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_raw(self.sha.finalize().as_slice()), self.len)
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.hasher.len()
    }
    pub fn finish(self) -> (R, Digest, u64) {
        let (d, n) = self.hasher.finish();
        (self.inner, d, n)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        let (d, n) = self.hasher.finish();
        (self.inner, d, n)
    }
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a blob and fails at its end unless it had exactly the expected digest and size.
/// The check happens while streaming: a short or long blob fails as soon as that is known.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    expected: Digest,
    size: Option<u64>,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner),
            expected,
            size,
            verified: false,
        }
    }

    /// Reads whatever is left, so that the digest check runs even if the consumer stopped early.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never read past the declared size: trailing bytes would be hashed but not checked.
        let want = match self.size {
            Some(s) => buf
                .len()
                .min((s + 1).saturating_sub(self.inner.position()) as usize),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        let pos = self.inner.position();
        let at_end = n == 0 && want > 0;
        if let Some(size) = self.size
            && (pos > size || (at_end && pos != size))
        {
            let e = Error::SizeMismatch {
                digest: self.expected.clone(),
                expected: size,
                actual: pos,
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if at_end && !self.verified {
            let actual = self.inner.hasher.clone().finish().0;
            if actual != self.expected {
                let e = Error::DigestMismatch {
                    expected: self.expected.clone(),
                    actual,
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_strictly() {
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), Digest::of(b""));
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn verifying_reader_refuses_wrong_bytes_and_sizes() {
        let good = Digest::of(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], good.clone(), Some(5));
        assert!(ok.drain().is_ok());
        let mut bad = VerifyingReader::new(&b"hellO"[..], good.clone(), Some(5));
        assert!(bad.drain().unwrap_err().to_string().contains("digest mismatch"));
        let mut long = VerifyingReader::new(&b"hello!"[..], good.clone(), Some(5));
        assert!(long.drain().unwrap_err().to_string().contains("size mismatch"));
        let mut short = VerifyingReader::new(&b"hell"[..], good, Some(5));
        assert!(short.drain().unwrap_err().to_string().contains("size mismatch"));
    }
}
