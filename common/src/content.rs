//! File content for the tar writer: from disk for [`Source::Fs`], and for [`Source::Layer`]
//! from a spool that one more pass over the needed layers fills (or that the first pass fills,
//! for a tar that cannot be read twice).

use crate::layout::Layout;
use crate::manifest::Image;
use crate::tarread::Content;
use crate::tree::{Node, Source};
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// File content for the tar writer.
#[derive(Default)]
pub struct Contents {
    spool: Option<Spool>,
}

/// Layer content kept for the writer: one unnamed temporary file that entries are appended to
/// (a file per entry costs a create and an unlink each, more than the copy on most file
/// systems), and where each entry landed.
struct Spool {
    file: Arc<File>,
    end: u64,
    at: HashMap<(usize, u64), (u64, u64)>,
    buf: Vec<u8>,
}

impl Contents {
    /// Content from disk only (trees read with [`crate::tree::Tree::from_dir`]).
    pub fn new() -> Contents {
        Contents::default()
    }

    fn spool(&mut self) -> crate::Result<&mut Spool> {
        if self.spool.is_none() {
            let file = tempfile::tempfile().context("creating a spool file")?;
            self.spool = Some(Spool {
                file: Arc::new(file),
                end: 0,
                at: HashMap::new(),
                buf: vec![0; 256 << 10],
            });
        }
        Ok(self.spool.as_mut().expect("just set"))
    }

    /// The layers (and entries in them) the content of `nodes` is in.
    pub fn wanted<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeMap<usize, HashSet<u64>> {
        let mut want: BTreeMap<usize, HashSet<u64>> = BTreeMap::new();
        for n in nodes {
            if let Source::Layer { layer, index } = n.source {
                want.entry(layer as usize).or_default().insert(index);
            }
        }
        want
    }

    /// Copies the `wanted` entries of layer `layer` (its uncompressed tar) to the spool.
    pub fn spool_layer(
        &mut self,
        layer: usize,
        reader: impl Read,
        wanted: &HashSet<u64>,
    ) -> crate::Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        crate::tarread::for_each_entry(reader, |index, _, content| {
            if wanted.contains(&index) {
                self.spool_entry(layer, index, content)?;
            }
            Ok(())
        })
    }

    /// Copies one entry's content to the spool, for a tar that cannot be read twice (stdin):
    /// call it from [`crate::tree::Tree::apply_layer_with`]. A sparse file's holes stay holes
    /// in the spool: it costs the file's data on disk, not its real size.
    pub fn spool_entry(&mut self, layer: usize, index: u64, content: &mut Content<'_>) -> crate::Result<()> {
        let spool = self.spool()?;
        let start = spool.end;
        let len = content
            .write_into(&spool.file, start, &mut spool.buf)
            .context("copying the content to the spool file")?;
        spool.end = start + len;
        spool.at.insert((layer, index), (start, spool.end));
        Ok(())
    }

    /// Spools the content of `nodes` from the layers of `image` (each verified as it is read).
    pub fn spool_image<'a>(
        &mut self,
        layout: &Layout,
        image: &Image,
        nodes: impl IntoIterator<Item = &'a Node>,
    ) -> crate::Result<()> {
        for (layer, wanted) in Self::wanted(nodes) {
            let Some(desc) = image.manifest.layers.get(layer) else {
                bail!("layer {layer} is not in image {}", image.descriptor.digest);
            };
            let mut stream = crate::layer::LayerStream::open(layout, desc, None)?;
            self.spool_layer(layer, &mut stream, &wanted)
                .with_context(|| format!("layer {}", desc.digest))?;
            stream.finish()?;
        }
        Ok(())
    }

    /// The content of a regular file.
    pub fn open(&self, path: &[u8], node: &Node) -> crate::Result<Box<dyn Read>> {
        let shown = || crate::path::display(path);
        match &node.source {
            Source::Fs(p) => Ok(Box::new(
                File::open(p).with_context(|| format!("{}: opening", p.display()))?,
            )),
            Source::Layer { layer, index } => {
                let Some((spool, &(start, end))) = self
                    .spool
                    .as_ref()
                    .and_then(|s| Some((s, s.at.get(&(*layer as usize, *index))?)))
                else {
                    bail!("{}: content of layer {layer} was not spooled", shown());
                };
                Ok(Box::new(Spooled {
                    file: spool.file.clone(),
                    pos: start,
                    end,
                }))
            }
            Source::None => bail!("{}: no content source", shown()),
        }
    }
}

/// One entry's content in the spool file.
struct Spooled {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Spooled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Kind, Meta};
    use crate::tarread::tests::{member, pax, tar};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn spools_a_sparse_file_with_its_holes() {
        // 4 MiB: "head" at 0, "tail" at the end (PAX sparse format 0.1).
        let size = 4u64 << 20;
        let map = format!("0,4,{},4", size - 4);
        let layer = tar(&[
            pax(&[
                ("GNU.sparse.major", b"0"),
                ("GNU.sparse.minor", b"1"),
                ("GNU.sparse.name", b"img"),
                ("GNU.sparse.size", size.to_string().as_bytes()),
                ("GNU.sparse.numblocks", b"2"),
                ("GNU.sparse.map", map.as_bytes()),
            ]),
            member(b"GNUSparseFile.0/img", b'0', b"", b"headtail"),
        ]);

        let mut contents = Contents::new();
        contents.spool_layer(0, &layer[..], &HashSet::from([0])).unwrap();
        let spool = contents.spool.as_ref().unwrap();
        let blocks = spool.file.metadata().unwrap().blocks();
        assert!(blocks * 512 <= 2 * 65536, "the spool holds {blocks} blocks");
        let node = Node {
            meta: Meta::new(Kind::File, 0o644),
            ino: 0,
            source: Source::Layer { layer: 0, index: 0 },
            written: 0,
        };
        let mut content = Vec::new();
        contents
            .open(b"img", &node)
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content.len() as u64, size);
        assert_eq!(
            (&content[..4], &content[content.len() - 4..]),
            (&b"head"[..], &b"tail"[..])
        );
        assert!(content[4..content.len() - 4].iter().all(|b| *b == 0));
    }
}
