//! GNU's PAX sparse files (formats 0.0, 0.1 and 1.0), read as Go's archive/tar reads them, so
//! that a layer means to us what it means to docker and containerd.
//!
//! GNU tar (`tar -S --format=posix`) stores a file with holes as a regular entry whose data is
//! only the file's data segments, back to back, and describes where they go in `GNU.sparse.*`
//! PAX records: the real name and size, and the map of segments (offset, length), either in the
//! records (0.0: repeated `GNU.sparse.offset`/`GNU.sparse.numbytes`; 0.1: `GNU.sparse.map`) or
//! (1.0) as decimal numbers, one a line, at the start of the entry's data, padded to 512 bytes.
//! Without this module such an entry would be read as a plain file of packed data under a
//! made-up name (`GNUSparseFile.NNN/name`).
//!
//! Reading it takes two steps, because the 1.0 map sits in the data:
//! 1. [`from_pax`] with the entry's type, size and PAX records: `None` for an ordinary entry, or
//!    a [`SparseHeader`] giving the real name and size (what the entry model needs).
//! 2. [`SparseHeader::reader`] over the entry's data: reads the 1.0 map if there is one, checks
//!    the map, and returns a [`SparseReader`] that yields the file's full content (zeros for the
//!    holes) or only the data segments with their offsets ([`SparseReader::read_data`], what
//!    writes the file with its holes kept, see `tarread::Content::write_into`).
//!
//! The rules follow Go's `archive/tar` (reader.go: `parsePAX`, `readGNUSparsePAXHeaders`,
//! `readGNUSparseMap0x1`, `readGNUSparseMap1x0`, `handleSparseFile`; common.go:
//! `validateSparseEntries`): the same records select the same format, numbers are parsed as
//! `strconv.ParseInt(s, 10, 64)` parses them, segments must be in order, not overlap and stay
//! within the real size, and the data must hold exactly the segments' bytes. Where Go would
//! quietly read the entry as something else (an unknown format version, sparse records it does
//! not use), we refuse instead, and the map is bounded ([`MAX_SEGMENTS`], [`MAX_MAP_BYTES`]).
//! Errors say what is wrong; the caller adds the entry's name.

use anyhow::{Context, bail};
use std::io::{self, Read};

/// The most data segments one sparse file may have (16 bytes each in memory). GNU tar writes one
/// per run of data; a million runs is far beyond what a file in an image holds.
pub const MAX_SEGMENTS: usize = 1 << 20;

/// The longest format 1.0 map read from an entry's data: [`MAX_SEGMENTS`] pairs and the count,
/// each number written in full (19 digits and a newline), in whole blocks. Only padding with
/// leading zeros could make an acceptable map longer.
pub const MAX_MAP_BYTES: u64 = ((2 * MAX_SEGMENTS as u64 + 1) * 20).next_multiple_of(BLOCK);

const BLOCK: u64 = 512;

/// Sizes and offsets are signed 64-bit numbers in Go (and in `off_t`).
const MAX_OFFSET: u64 = i64::MAX as u64;

/// One run of data of a sparse file: `length` bytes at `offset`. What lies between runs (and
/// after the last, up to the real size) is a hole: zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub length: u64,
}

impl Segment {
    /// Where the run ends (a map is only accepted when this does not overflow).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// The version of GNU's PAX sparse format an entry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` records.
    V0_0,
    /// `GNU.sparse.map=offset,length,…`.
    V0_1,
    /// The map at the start of the entry's data.
    V1_0,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::V0_0 => "0.0",
            Format::V0_1 => "0.1",
            Format::V1_0 => "1.0",
        })
    }
}

/// What an entry's PAX records say about the sparse file it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseHeader {
    format: Format,
    name: Option<Vec<u8>>,
    real_size: u64,
    /// The map, for 0.0 and 0.1 (already checked); `None` for 1.0, where it is in the data.
    map: Option<Vec<Segment>>,
    /// The entry's size in the archive: the packed data (and, for 1.0, the map before it).
    entry_size: u64,
}

impl SparseHeader {
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's real name (`GNU.sparse.name`), when the records give one; otherwise the entry's
    /// own name (PAX `path`, GNU long name or header) is the file's name, as in format 0.0.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// The file's size, holes included: what the entry model's size is.
    pub fn real_size(&self) -> u64 {
        self.real_size
    }

    /// Opens the sparse file over the entry's data (positioned at its start, as the tar reader
    /// hands it out): reads the 1.0 map from it, checks the map against the real size and the
    /// data size, and returns the reader of the file's content.
    pub fn reader<R: Read>(self, mut data: R) -> crate::Result<SparseReader<R>> {
        let (segments, data_size) = match self.map {
            Some(map) => (map, self.entry_size),
            None => {
                let (map, consumed) = read_map_1_0(&mut data, self.entry_size)?;
                check_segments(&map, self.real_size).context("sparse map (format 1.0)")?;
                (map, self.entry_size - consumed)
            }
        };
        let total: u64 = segments.iter().map(|s| s.length).sum();
        if total != data_size {
            bail!(
                "sparse file (format {}): its map has {total} bytes of data, the entry holds {data_size}",
                self.format
            );
        }
        Ok(SparseReader {
            data,
            segments,
            real_size: self.real_size,
            pos: 0,
            next: 0,
        })
    }
}

/// Reads an entry's `GNU.sparse.*` PAX records (given in archive order, as `(key, value)`), as
/// Go's archive/tar does. `Ok(None)`: the entry is not a sparse file (it has no such records).
/// `entry_type` and `entry_size` are the entry's (after PAX `size`): only a regular file may be
/// sparse, and a sparse entry without a size record keeps its entry size, as in Go.
///
/// Refused: an unknown format version, an unknown `GNU.sparse.*` record, sparse records on
/// anything but a regular file or without a map, a 0.x map that is malformed, out of order,
/// overlapping, past the real size, longer than [`MAX_SEGMENTS`], or whose segments do not add
/// up to the entry's size.
pub fn from_pax<'a>(
    entry_type: tar::EntryType,
    entry_size: u64,
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> crate::Result<Option<SparseHeader>> {
    let r = Records::gather(records)?;
    let format = match (r.major, r.minor) {
        (Some(b"0"), Some(b"0")) => Format::V0_0,
        (Some(b"0"), Some(b"1")) => Format::V0_1,
        (Some(b"1"), Some(b"0")) => Format::V1_0,
        // 0.0 and 0.1 wrote no version: Go tells them by their map (0.0's pairs become one).
        (None, None) if r.pairs.is_some() => Format::V0_0,
        (None, None) if r.map.is_some() => Format::V0_1,
        (None, None) => match r.first_key {
            None => return Ok(None),
            // Go would read the entry as a plain file; GNU tar might not.
            Some(key) => bail!("PAX record {} without a sparse map or format version", text(key)),
        },
        (major, minor) => bail!(
            "unknown GNU sparse format version {}.{} (GNU.sparse.major and GNU.sparse.minor)",
            major.map_or("(none)".into(), text),
            minor.map_or("(none)".into(), text)
        ),
    };
    if !matches!(entry_type, tar::EntryType::Regular | tar::EntryType::Continuous) {
        bail!(
            "GNU.sparse records on an entry of type {:?}, which has no data",
            entry_type.as_byte() as char
        );
    }
    let real_size = match r.size.or(r.realsize) {
        Some((key, value)) => decimal(value).with_context(|| key.to_string())?,
        None => entry_size,
    };
    let map = match format {
        Format::V1_0 => {
            if r.map.is_some() || r.pairs.is_some() {
                bail!(
                    "a sparse map in the PAX records of a format 1.0 sparse file, whose map is in its data"
                );
            }
            None
        }
        Format::V0_0 | Format::V0_1 => {
            let map = map_0_x(&r).with_context(|| format!("sparse map (format {format})"))?;
            Some(map)
        }
    };
    let header = SparseHeader {
        format,
        name: r.name.map(<[u8]>::to_vec),
        real_size,
        map,
        entry_size,
    };
    if let Some(map) = &header.map {
        check_segments(map, real_size).with_context(|| format!("sparse map (format {format})"))?;
    }
    Ok(Some(header))
}

/// The `GNU.sparse.*` records of one entry. A record given twice counts once, the last one, as
/// in Go's map of records; an empty value counts as absent, as Go's lookups see it.
#[derive(Default)]
struct Records<'a> {
    major: Option<&'a [u8]>,
    minor: Option<&'a [u8]>,
    name: Option<&'a [u8]>,
    size: Option<(&'static str, &'a [u8])>,
    realsize: Option<(&'static str, &'a [u8])>,
    numblocks: Option<&'a [u8]>,
    map: Option<&'a [u8]>,
    /// 0.0's `GNU.sparse.offset` and `GNU.sparse.numbytes` values, alternating, in order.
    pairs: Option<Vec<&'a [u8]>>,
    first_key: Option<&'a [u8]>,
}

impl<'a> Records<'a> {
    fn gather(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> crate::Result<Records<'a>> {
        let mut r = Records::default();
        for (key, value) in records {
            if !key.starts_with(b"GNU.sparse.") {
                continue;
            }
            r.first_key.get_or_insert(key);
            let set = (!value.is_empty()).then_some(value);
            match key {
                b"GNU.sparse.major" => r.major = set,
                b"GNU.sparse.minor" => r.minor = set,
                b"GNU.sparse.name" => r.name = set,
                b"GNU.sparse.size" => r.size = set.map(|v| ("GNU.sparse.size", v)),
                b"GNU.sparse.realsize" => r.realsize = set.map(|v| ("GNU.sparse.realsize", v)),
                b"GNU.sparse.numblocks" => r.numblocks = set,
                b"GNU.sparse.map" => r.map = set,
                b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                    // Go's parsePAX: the pairs come in order, offset first, and hold no comma
                    // (they are joined into a 0.1 map).
                    let pairs = r.pairs.get_or_insert_with(Vec::new);
                    let expected: &[u8] = if pairs.len().is_multiple_of(2) {
                        b"GNU.sparse.offset"
                    } else {
                        b"GNU.sparse.numbytes"
                    };
                    if key != expected {
                        bail!("PAX record {} where {} was expected", text(key), text(expected));
                    }
                    if value.contains(&b',') {
                        bail!("PAX record {}={:?}: not a number", text(key), text(value));
                    }
                    if pairs.len() >= 2 * MAX_SEGMENTS {
                        bail!("sparse map (format 0.0): more than {MAX_SEGMENTS} segments");
                    }
                    pairs.push(value);
                }
                _ => bail!(
                    "unknown PAX record {}: it may change how the entry must be read",
                    text(key)
                ),
            }
        }
        Ok(r)
    }
}

/// The 0.0 or 0.1 map: `GNU.sparse.numblocks` pairs of numbers, from 0.0's pairs of records
/// (which win, as in Go) or from `GNU.sparse.map`.
fn map_0_x(r: &Records<'_>) -> crate::Result<Vec<Segment>> {
    let count = count(r.numblocks.context("no GNU.sparse.numblocks")?).context("GNU.sparse.numblocks")?;
    // Counted before anything is allocated for them.
    let (n, what) = match (&r.pairs, r.map) {
        (Some(pairs), _) => (pairs.len(), "GNU.sparse.offset/numbytes records"),
        (None, Some(map)) => (map.iter().filter(|b| **b == b',').count() + 1, "GNU.sparse.map"),
        (None, None) => (0, "GNU.sparse.map"),
    };
    if n != 2 * count {
        bail!("{n} numbers in {what}, GNU.sparse.numblocks says {count} pairs");
    }
    let numbers: Vec<&[u8]> = match (&r.pairs, r.map) {
        (Some(pairs), _) => pairs.clone(),
        (None, Some(map)) => map.split(|b| *b == b',').collect(),
        (None, None) => Vec::new(),
    };
    numbers
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| {
            Ok(Segment {
                offset: decimal(pair[0]).with_context(|| format!("segment {}'s offset", i + 1))?,
                length: decimal(pair[1]).with_context(|| format!("segment {}'s length", i + 1))?,
            })
        })
        .collect()
}

/// Reads the 1.0 map at the start of an entry's data: the number of segments, then each
/// segment's offset and length, every number ending in a newline, the whole padded to a
/// multiple of 512 bytes. Reads whole blocks, and no block past the one holding the last
/// newline, as Go does. Returns the map and the bytes it took.
fn read_map_1_0(data: &mut impl Read, entry_size: u64) -> crate::Result<(Vec<Segment>, u64)> {
    let mut block = [0u8; BLOCK as usize];
    let mut consumed = 0u64;
    let mut token = Token::default();
    let mut count: Option<usize> = None;
    let mut numbers: Vec<u64> = Vec::new();
    loop {
        if consumed >= MAX_MAP_BYTES {
            bail!("sparse map (format 1.0) longer than {MAX_MAP_BYTES} bytes");
        }
        if consumed + BLOCK > entry_size {
            bail!("sparse map (format 1.0) cut short: the entry's {entry_size} bytes end inside it");
        }
        data.read_exact(&mut block).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                anyhow::anyhow!("sparse map (format 1.0) cut short: the data ends inside it")
            } else {
                anyhow::Error::new(e).context("reading the sparse map (format 1.0)")
            }
        })?;
        consumed += BLOCK;
        for &b in &block {
            if b != b'\n' {
                token.push(b);
                continue;
            }
            let what = || match count {
                None => "the number of segments".to_string(),
                Some(_) => {
                    let i = numbers.len() / 2 + 1;
                    format!(
                        "segment {i}'s {}",
                        if numbers.len().is_multiple_of(2) {
                            "offset"
                        } else {
                            "length"
                        }
                    )
                }
            };
            let value = std::mem::take(&mut token)
                .value()
                .with_context(|| format!("sparse map (format 1.0): {}", what()))?;
            match count {
                None => {
                    let n = usize::try_from(value).ok().filter(|n| *n <= MAX_SEGMENTS).with_context(|| {
                        format!("sparse map (format 1.0): {value} segments, more than the {MAX_SEGMENTS} accepted")
                    })?;
                    count = Some(n);
                }
                Some(_) => numbers.push(value),
            }
            if count.is_some_and(|n| numbers.len() == 2 * n) {
                let map = numbers
                    .chunks_exact(2)
                    .map(|p| Segment {
                        offset: p[0],
                        length: p[1],
                    })
                    .collect();
                return Ok((map, consumed));
            }
        }
    }
}

/// A decimal number being read byte by byte, as Go's `strconv.ParseInt(s, 10, 64)` takes it:
/// an optional sign, then at least one digit, nothing else; at most `i64::MAX`. A negative
/// number other than zero is refused here (Go refuses it a step later).
#[derive(Default)]
struct Token {
    value: u64,
    len: usize,
    digits: bool,
    negative: bool,
    bad: bool,
    overflow: bool,
    /// The token's first bytes, for the error message.
    shown: Vec<u8>,
}

impl Token {
    fn push(&mut self, b: u8) {
        if self.shown.len() < 24 {
            self.shown.push(b);
        }
        let first = self.len == 0;
        self.len += 1;
        match b {
            b'+' | b'-' if first => self.negative = b == b'-',
            b'0'..=b'9' => {
                self.digits = true;
                match self
                    .value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                {
                    Some(v) if v <= MAX_OFFSET => self.value = v,
                    _ => self.overflow = true,
                }
            }
            _ => self.bad = true,
        }
    }

    fn value(self) -> crate::Result<u64> {
        let shown = || {
            let more = if self.len > self.shown.len() { "…" } else { "" };
            format!("{:?}{more}", text(&self.shown))
        };
        if self.bad || !self.digits {
            bail!("{} is not a decimal number", shown());
        }
        if self.overflow {
            bail!("{} is out of range (more than {})", shown(), i64::MAX);
        }
        if self.negative && self.value != 0 {
            bail!("{} is negative", shown());
        }
        Ok(self.value)
    }
}

/// A number from a PAX record value, as Go's `strconv.ParseInt(value, 10, 64)` reads it, and not
/// negative.
pub(crate) fn decimal(value: &[u8]) -> crate::Result<u64> {
    let mut t = Token::default();
    for &b in value {
        t.push(b);
    }
    t.value()
}

/// A number of segments, bounded by [`MAX_SEGMENTS`].
fn count(value: &[u8]) -> crate::Result<usize> {
    let n = decimal(value)?;
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SEGMENTS)
        .with_context(|| format!("{n} segments, more than the {MAX_SEGMENTS} accepted"))
}

/// Go's `validateSparseEntries`: each segment ends without overflow, within the real size, and
/// after the previous one (touching is fine, as are empty segments: GNU tar ends a file that
/// ends in a hole with an empty segment at its real size).
fn check_segments(map: &[Segment], real_size: u64) -> crate::Result<()> {
    let mut previous_end = 0u64;
    for (i, s) in map.iter().enumerate() {
        let n = i + 1;
        let end = s
            .offset
            .checked_add(s.length)
            .filter(|e| *e <= MAX_OFFSET)
            .with_context(|| {
                format!(
                    "segment {n} ({}+{}) ends past the largest file size",
                    s.offset, s.length
                )
            })?;
        if end > real_size {
            bail!(
                "segment {n} ({}+{}) ends past the file's size, {real_size}",
                s.offset,
                s.length
            );
        }
        if s.offset < previous_end {
            bail!(
                "segment {n} starts at {}, before the end of the one before it ({previous_end}): out of order or overlapping",
                s.offset
            );
        }
        previous_end = end;
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A sparse file's content, read from the entry's packed data: the data segments where they
/// belong, zeros in the holes, `real_size` bytes in all. Time, not memory, grows with the real
/// size: the holes are made up as they are read.
#[derive(Debug)]
pub struct SparseReader<R> {
    data: R,
    segments: Vec<Segment>,
    real_size: u64,
    /// Position in the file's content.
    pos: u64,
    /// The first segment that does not end at or before `pos`.
    next: usize,
}

impl<R: Read> SparseReader<R> {
    /// The data segments, in order (some may be empty).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn real_size(&self) -> u64 {
        self.real_size
    }

    /// Reads the data segments not read yet, handing each piece to `sink` with its offset in
    /// the file, through `buf`: the holes are skipped, never made up, so time grows with the
    /// data only. Writing the pieces at their offsets (and the file's length to the real size)
    /// gives the file with its holes kept as holes.
    pub fn read_data(
        &mut self,
        buf: &mut [u8],
        mut sink: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        for s in &self.segments[self.next..] {
            let mut at = s.offset.max(self.pos);
            while at < s.end() {
                let want = usize::try_from(s.end() - at).unwrap_or(usize::MAX).min(buf.len());
                let n = match self.data.read(&mut buf[..want]) {
                    Ok(0) => return Err(data_ends_early()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                sink(at, &buf[..n])?;
                at += n as u64;
                self.pos = at;
            }
        }
        self.next = self.segments.len();
        self.pos = self.real_size;
        Ok(())
    }
}

fn data_ends_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the sparse file's data ends before its map says",
    )
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.segments.get(self.next).is_some_and(|s| s.end() <= self.pos) {
            self.next += 1;
        }
        let left = self.real_size - self.pos;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = match self.segments.get(self.next) {
            Some(s) if s.offset <= self.pos => {
                let n = usize::try_from(s.end() - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(want);
                let got = self.data.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(data_ends_early());
                }
                got
            }
            next => {
                let hole_end = next.map_or(self.real_size, |s| s.offset);
                let n = usize::try_from(hole_end - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(want);
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::Path;
    use std::process::Command;

    /// A file entry as read: its name, its sparse header (if any) and its content.
    type ReadEntry = (Vec<u8>, Option<SparseHeader>, Vec<u8>);

    /// Reads the first file entry of a tar as the tar reader will: PAX records, then the data.
    fn read_first(tar: &[u8]) -> crate::Result<ReadEntry> {
        read_all(tar)?.into_iter().next().context("no entry")
    }

    fn read_all(tar: &[u8]) -> crate::Result<Vec<ReadEntry>> {
        let mut out = Vec::new();
        let mut archive = tar::Archive::new(tar);
        for e in archive.entries()? {
            let mut e = e?;
            let records: Vec<(Vec<u8>, Vec<u8>)> = match e.pax_extensions()? {
                Some(pax) => pax
                    .map(|r| r.map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec())))
                    .collect::<io::Result<_>>()?,
                None => Vec::new(),
            };
            let header = from_pax(
                e.header().entry_type(),
                e.size(),
                records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            )?;
            let name = header
                .as_ref()
                .and_then(|h| h.name().map(<[u8]>::to_vec))
                .unwrap_or_else(|| e.path_bytes().into_owned());
            let mut content = Vec::new();
            match header.clone() {
                Some(h) => {
                    let mut r = h.reader(&mut e)?;
                    // Odd-sized reads, to cross segment and hole boundaries mid-buffer.
                    let mut buf = [0u8; 1000];
                    loop {
                        let n = r.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        content.extend_from_slice(&buf[..n]);
                    }
                }
                None => {
                    e.read_to_end(&mut content)?;
                }
            }
            if e.header().entry_type().is_file() {
                out.push((name, header, content));
            }
        }
        Ok(out)
    }

    /// Files with holes, written with seeks (the kernel keeps what is never written as holes).
    fn sparse_files(dir: &Path) -> Vec<&'static str> {
        let pattern =
            |len: usize, seed: u8| -> Vec<u8> { (0..len).map(|i| (i % 251) as u8 ^ seed | 1).collect() };
        let write = |name: &str, runs: &[(u64, Vec<u8>)], size: u64| {
            let mut f = File::create(dir.join(name)).unwrap();
            for (offset, data) in runs {
                f.seek(SeekFrom::Start(*offset)).unwrap();
                io::Write::write_all(&mut f, data).unwrap();
            }
            f.set_len(size).unwrap();
        };
        // Data, hole, data, hole, data: it ends with data.
        write(
            "several",
            &[
                (0, pattern(4096, 1)),
                (200 << 10, pattern(8192, 2)),
                (1 << 20, b"end\n".to_vec()),
            ],
            (1 << 20) + 4,
        );
        write("tailhole", &[(0, pattern(5000, 3))], 3 << 20);
        write("allhole", &[], 2 << 20);
        write("headhole", &[(1 << 20, pattern(10_000, 4))], (1 << 20) + 10_000);
        vec!["several", "tailhole", "allhole", "headhole"]
    }

    fn gnu_tar(args: &[&str], dir: &Path) -> Vec<u8> {
        let out = Command::new("tar")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("GNU tar (Debian's tar package) runs");
        assert!(
            out.status.success(),
            "tar {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("layerkit-sparse-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn reads_gnu_tars_sparse_files_in_every_format() {
        let version = gnu_tar(&["--version"], Path::new("/"));
        assert!(version.starts_with(b"tar (GNU tar)"), "tar is not GNU tar");
        let dir = tempdir();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let names = sparse_files(&src);
        for (version, format) in [
            ("0.0", Format::V0_0),
            ("0.1", Format::V0_1),
            ("1.0", Format::V1_0),
        ] {
            let mut args = vec!["-S", "--sparse-version", version, "--format=posix", "-cf", "-"];
            args.extend(&names);
            let tar = gnu_tar(&args, &src);
            let entries = read_all(&tar).unwrap();
            assert_eq!(entries.len(), names.len(), "format {version}");
            for ((name, header, content), expected) in entries.iter().zip(&names) {
                assert_eq!(name, expected.as_bytes(), "format {version}");
                let header = header
                    .as_ref()
                    .unwrap_or_else(|| panic!("{expected} ({version}) not read as sparse"));
                assert_eq!(header.format(), format, "{expected}");
                let on_disk = std::fs::read(src.join(expected)).unwrap();
                assert_eq!(header.real_size(), on_disk.len() as u64, "{expected} ({version})");
                assert!(
                    content == &on_disk,
                    "{expected} ({version}): content differs from the file"
                );
            }

            // The data written at its offsets: the same content, and no more blocks than GNU tar's own
            // extraction of the same archive takes.
            let tar_x = dir.path().join(format!("x{version}"));
            std::fs::create_dir(&tar_x).unwrap();
            let archive = dir.path().join(format!("{version}.tar"));
            std::fs::write(&archive, &tar).unwrap();
            gnu_tar(&["-xf", archive.to_str().unwrap()], &tar_x);
            let ours = dir.path().join(format!("ours{version}"));
            std::fs::create_dir(&ours).unwrap();
            let mut a = tar::Archive::new(&tar[..]);
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                let records: Vec<(Vec<u8>, Vec<u8>)> = e
                    .pax_extensions()
                    .unwrap()
                    .map(|p| {
                        p.map(|r| r.unwrap())
                            .map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let Some(h) = from_pax(
                    e.header().entry_type(),
                    e.size(),
                    records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                )
                .unwrap() else {
                    continue;
                };
                let name = h
                    .name()
                    .map_or_else(|| e.path_bytes().into_owned(), <[u8]>::to_vec);
                let path = ours.join(String::from_utf8(name).unwrap());
                let file = File::create(&path).unwrap();
                let mut r = h.reader(&mut e).unwrap();
                // Odd-sized pieces, to cross segment boundaries mid-buffer.
                r.read_data(&mut [0; 1000], |offset, data| file.write_all_at(data, offset))
                    .unwrap();
                file.set_len(r.real_size()).unwrap();
            }
            for name in &names {
                let (ours, theirs) = (ours.join(name), tar_x.join(name));
                assert!(
                    std::fs::read(&ours).unwrap() == std::fs::read(src.join(name)).unwrap(),
                    "{name} ({version})"
                );
                let (m, t) = (
                    std::fs::metadata(&ours).unwrap(),
                    std::fs::metadata(&theirs).unwrap(),
                );
                assert_eq!(m.len(), t.len(), "{name} ({version})");
                assert!(
                    m.blocks() <= t.blocks(),
                    "{name} ({version}): {} blocks written, tar -x needs {}",
                    m.blocks(),
                    t.blocks()
                );
            }
        }
        // The whole-hole file takes no data block at all.
        assert_eq!(
            std::fs::metadata(dir.path().join("ours1.0/allhole"))
                .unwrap()
                .blocks(),
            0
        );
    }

    /// A tar of one regular entry with the given PAX records and data.
    fn pax_tar(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        if !records.is_empty() {
            b.append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    /// A format 1.0 entry: the map's lines, padded to a block, then the data.
    fn v1_tar(realsize: &str, map: &str, data: &[u8]) -> Vec<u8> {
        let mut body = map.as_bytes().to_vec();
        body.resize(body.len().next_multiple_of(512), 0);
        body.extend_from_slice(data);
        pax_tar(
            &[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", b"real/name"),
                ("GNU.sparse.realsize", realsize.as_bytes()),
            ],
            "real/GNUSparseFile.0/name",
            &body,
        )
    }

    fn v01_tar(size: &str, numblocks: &str, map: &str, data: &[u8]) -> Vec<u8> {
        pax_tar(
            &[
                ("GNU.sparse.size", size.as_bytes()),
                ("GNU.sparse.numblocks", numblocks.as_bytes()),
                ("GNU.sparse.name", b"real/name"),
                ("GNU.sparse.map", map.as_bytes()),
            ],
            "real/GNUSparseFile.0/name",
            data,
        )
    }

    #[test]
    fn reads_hand_made_maps_go_accepts() {
        // Data only: one segment over the whole file.
        let (name, h, content) = read_first(&v1_tar("5", "1\n0\n5\n", b"hello")).unwrap();
        assert_eq!(
            (name.as_slice(), content.as_slice()),
            (&b"real/name"[..], &b"hello"[..])
        );
        assert_eq!(h.unwrap().format(), Format::V1_0);
        // An empty file: no segment; 1.0 also with a map that is only its count.
        assert_eq!(read_first(&v1_tar("0", "0\n", b"")).unwrap().2, b"");
        let empty_0_1 = pax_tar(
            &[
                ("GNU.sparse.major", b"0"),
                ("GNU.sparse.minor", b"1"),
                ("GNU.sparse.size", b"0"),
                ("GNU.sparse.numblocks", b"0"),
            ],
            "f",
            b"",
        );
        let (_, h, content) = read_first(&empty_0_1).unwrap();
        assert_eq!(
            (h.unwrap().format(), content.as_slice()),
            (Format::V0_1, &b""[..])
        );
        // Touching and empty segments, a '+' sign and leading zeros (Go's ParseInt takes them),
        // the data split around a hole, the file ending in a hole.
        let (_, _, content) = read_first(&v01_tar("12", "3", "0,2,+2,0002,6,1", b"abcde")).unwrap();
        assert_eq!(content, b"abcd\0\0e\0\0\0\0\0");
        let (_, _, content) = read_first(&v1_tar("9", "2\n1\n2\n5\n1\n", b"xyz")).unwrap();
        assert_eq!(content, b"\0xy\0\0z\0\0\0");
        // 0.0: pairs of records; the header's own name is the file's name.
        let tar = pax_tar(
            &[
                ("GNU.sparse.size", b"6"),
                ("GNU.sparse.numblocks", b"2"),
                ("GNU.sparse.offset", b"1"),
                ("GNU.sparse.numbytes", b"1"),
                ("GNU.sparse.offset", b"4"),
                ("GNU.sparse.numbytes", b"2"),
            ],
            "etc/zero",
            b"abc",
        );
        let (name, h, content) = read_first(&tar).unwrap();
        assert_eq!(
            (name.as_slice(), content.as_slice()),
            (&b"etc/zero"[..], &b"\0a\0\0bc"[..])
        );
        assert_eq!(h.unwrap().format(), Format::V0_0);
        // No sparse records: not sparse.
        let (_, h, content) = read_first(&pax_tar(&[("mtime", b"1.5")], "plain", b"data")).unwrap();
        assert_eq!((h, content.as_slice()), (None, &b"data"[..]));
    }

    fn refused(tar: &[u8]) -> String {
        match read_first(tar) {
            Ok((name, _, content)) => panic!(
                "accepted: {} ({} bytes)",
                String::from_utf8_lossy(&name),
                content.len()
            ),
            Err(e) => format!("{e:#}"),
        }
    }

    #[track_caller]
    fn refused_with(tar: &[u8], words: &str) {
        let err = refused(tar);
        assert!(err.contains(words), "error {err:?} should say {words:?}");
    }

    #[test]
    fn refuses_hostile_maps_naming_what_is_wrong() {
        // Out of order, overlapping, past the real size, offset + length overflowing.
        refused_with(
            &v01_tar("200", "2", "100,10,50,10", &[1; 20]),
            "out of order or overlapping",
        );
        refused_with(
            &v01_tar("200", "2", "0,100,50,10", &[1; 110]),
            "out of order or overlapping",
        );
        refused_with(
            &v1_tar("200", "2\n100\n10\n50\n10\n", &[1; 20]),
            "out of order or overlapping",
        );
        refused_with(
            &v01_tar("100", "2", "0,10,95,10", &[1; 20]),
            "past the file's size, 100",
        );
        refused_with(
            &v1_tar("100", "1\n95\n10\n", &[1; 10]),
            "past the file's size, 100",
        );
        refused_with(
            &v01_tar("9223372036854775807", "1", "9223372036854775807,1", &[1]),
            "past the largest file size",
        );
        // Numbers: too large, not decimal, negative, empty.
        refused_with(&v01_tar("99999999999999999999", "1", "0,0", b""), "out of range");
        refused_with(
            &v01_tar("100", "1", "99999999999999999999,1", &[1]),
            "out of range",
        );
        refused_with(
            &v01_tar("100", "1", "0x10,1", &[1]),
            "\"0x10\" is not a decimal number",
        );
        refused_with(&v01_tar("100", "1", "-1,1", &[1]), "negative");
        refused_with(&v01_tar("100", "2", "1,,2,1", &[1; 2]), "segment 1's length");
        refused_with(&v1_tar("100", "1\n 5\n1\n", &[1]), "segment 1's offset");
        refused_with(&v1_tar("100", "1\n5\r\n1\n", &[1]), "not a decimal number");
        refused_with(&v1_tar("100", "one\n", b""), "the number of segments");
        // A map that does not match its count.
        refused_with(&v01_tar("100", "3", "0,1,5,1", &[1; 2]), "numblocks says 3 pairs");
        refused_with(&v01_tar("100", "1", "0,1", &[1; 2]), "the entry holds 2");
        refused_with(
            &v01_tar("100", "1", "0,5", &[1; 2]),
            "5 bytes of data, the entry holds 2",
        );
        refused_with(
            &v1_tar("100", "1\n0\n5\n", &[1; 700]),
            "5 bytes of data, the entry holds 700",
        );
        refused_with(&v01_tar("100", "", "0,1", &[1]), "no GNU.sparse.numblocks");
        // Too many segments: refused from the count, before anything is read or allocated.
        let many = (MAX_SEGMENTS + 1).to_string();
        refused_with(
            &v01_tar("100", &many, "0,1", &[1]),
            "more than the 1048576 accepted",
        );
        refused_with(
            &v1_tar("100", &format!("{many}\n"), b""),
            "more than the 1048576 accepted",
        );
        refused_with(&v1_tar("100", "18446744073709551616\n", b""), "out of range");
        // A count the data does not hold: the map is cut short.
        refused_with(
            &v1_tar("100", &format!("{MAX_SEGMENTS}\n0\n1\n"), b""),
            "cut short",
        );
        // 0.0 records out of order or with a comma (Go's parsePAX).
        let pairs = |records: &[(&str, &[u8])]| {
            let mut all: Vec<(&str, &[u8])> =
                vec![("GNU.sparse.size", b"10"), ("GNU.sparse.numblocks", b"1")];
            all.extend_from_slice(records);
            pax_tar(&all, "f", b"a")
        };
        refused_with(
            &pairs(&[("GNU.sparse.numbytes", b"1"), ("GNU.sparse.offset", b"0")]),
            "GNU.sparse.numbytes where GNU.sparse.offset was expected",
        );
        refused_with(
            &pairs(&[("GNU.sparse.offset", b"0,1"), ("GNU.sparse.numbytes", b"1")]),
            "not a number",
        );
        refused_with(
            &pairs(&[("GNU.sparse.offset", b"0")]),
            "1 numbers in GNU.sparse.offset/numbytes records",
        );
    }

    #[test]
    fn refuses_a_1_0_map_longer_than_the_limit_without_holding_it() {
        // "1", then an offset of endless leading zeros: refused once MAX_MAP_BYTES are read.
        let mut data = b"1\n".chain(io::repeat(b'0'));
        let header = SparseHeader {
            format: Format::V1_0,
            name: None,
            real_size: 10,
            map: None,
            entry_size: u64::MAX,
        };
        let err = format!("{:#}", header.reader(&mut data).unwrap_err());
        assert!(err.contains("longer than"), "{err}");
        // A map cut inside its block (PAX header and records, the entry's header, 100 bytes).
        let tar = v1_tar("100", "1\n0\n1\n", b"x");
        let cut = &tar[..3 * 512 + 100];
        assert!(refused(cut).contains("cut short"), "{}", refused(cut));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let versioned = |major: &[u8], minor: &[u8]| {
            pax_tar(
                &[
                    ("GNU.sparse.major", major),
                    ("GNU.sparse.minor", minor),
                    ("GNU.sparse.realsize", b"1"),
                ],
                "f",
                b"a",
            )
        };
        refused_with(&versioned(b"2", b"0"), "unknown GNU sparse format version 2.0");
        refused_with(&versioned(b"1", b"1"), "unknown GNU sparse format version 1.1");
        refused_with(
            &versioned(b"1", b""),
            "unknown GNU sparse format version 1.(none)",
        );
        refused_with(
            &pax_tar(
                &[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.holes", b"1"),
                ],
                "f",
                b"",
            ),
            "unknown PAX record GNU.sparse.holes",
        );
        // Sparse records that select no format (Go would read a plain file of packed data).
        refused_with(
            &pax_tar(
                &[("GNU.sparse.size", b"100"), ("GNU.sparse.numblocks", b"0")],
                "f",
                b"",
            ),
            "GNU.sparse.size without a sparse map or format version",
        );
        // A 1.0 entry that also carries a 0.x map.
        refused_with(
            &pax_tar(
                &[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.map", b"0,1"),
                ],
                "f",
                b"",
            ),
            "a sparse map in the PAX records of a format 1.0 sparse file",
        );
        // Sparse records on an entry without data.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("GNU.sparse.major", &b"1"[..]), ("GNU.sparse.minor", b"0")])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "l", "target").unwrap();
        refused_with(
            &b.into_inner().unwrap(),
            "GNU.sparse records on an entry of type '2'",
        );
    }

    #[test]
    fn a_reader_over_short_data_fails_instead_of_making_up_content() {
        let h = from_pax(
            tar::EntryType::Regular,
            4,
            [
                (&b"GNU.sparse.size"[..], &b"10"[..]),
                (b"GNU.sparse.numblocks", b"1"),
                (b"GNU.sparse.map", b"6,4"),
            ],
        )
        .unwrap()
        .unwrap();
        // The entry says 4 bytes; the stream behind it (a cut layer) has 2.
        let mut r = h.clone().reader(&b"ab"[..]).unwrap();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut r = h.reader(&b"ab"[..]).unwrap();
        let err = r.read_data(&mut [0; 16], |_, _| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
