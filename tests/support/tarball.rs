//! Tars built byte by byte for the tests: crafted layers, and fixtures whose exact bytes a test
//! works out by hand (a header, the content padded to 512 bytes, two zero blocks at the end).

/// A tar written from raw headers, in memory: tar-rs's Builder refuses `..` and the other names
/// a hostile layer needs. Every entry is owned by 0:0 with mtime 1600000000 unless PAX records
/// before it say otherwise; `done` adds the two zero blocks that end a tar.
#[derive(Default)]
pub struct Tar(Vec<u8>);

impl Tar {
    /// One entry; names or link targets longer than a header field go in a PAX header first.
    pub fn raw(mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], mode: u32) -> Tar {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() > 100 {
            pax.push(("path", name));
        }
        if link.len() > 100 {
            pax.push(("linkpath", link));
        }
        if !pax.is_empty() {
            self = self.pax(&pax);
        }
        let mut h = tar::Header::new_gnu();
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.block(data);
        self
    }

    fn block(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
    }

    /// A PAX extended header for the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Tar {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() + rest != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.header_with(b"././@PaxHeader", b'x', &body)
    }

    /// A GNU long-name record for the next entry.
    pub fn gnu_long_name(self, name: &[u8]) -> Tar {
        let mut body = name.to_vec();
        body.push(0);
        self.header_with(b"././@LongLink", b'L', &body)
    }

    fn header_with(mut self, name: &[u8], kind: u8, body: &[u8]) -> Tar {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.block(body);
        self
    }

    /// GNU's old sparse entry (typeflag `S`, as `tar -S --format=gnu` writes it): `data` at
    /// offset 0 of a file `size` bytes long.
    pub fn old_gnu_sparse(mut self, name: &str, data: &[u8], size: u64) -> Tar {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(data.len() as u64);
        let g = h.as_gnu_mut().expect("a GNU header");
        g.set_real_size(size);
        g.sparse[0].set_offset(0);
        g.sparse[0].set_length(data.len() as u64);
        // The hole at the end: an empty segment at the real size.
        g.sparse[1].set_offset(size);
        g.sparse[1].set_length(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.block(data);
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Tar {
        self.raw(name.as_bytes(), b'0', b"", data, 0o644)
    }
    pub fn dir(self, name: &str) -> Tar {
        self.raw(name.as_bytes(), b'5', b"", b"", 0o755)
    }
    pub fn symlink(self, name: &str, target: &str) -> Tar {
        self.raw(name.as_bytes(), b'2', target.as_bytes(), b"", 0o777)
    }
    pub fn hardlink(self, name: &str, target: &str) -> Tar {
        self.raw(name.as_bytes(), b'1', target.as_bytes(), b"", 0o644)
    }
    /// The entries so far, without the two zero blocks that end a tar (to embed in another
    /// entry, or to make a tar that stops short).
    pub fn entries(self) -> Vec<u8> {
        self.0
    }

    pub fn done(mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 1024, 0);
        self.0
    }
}
