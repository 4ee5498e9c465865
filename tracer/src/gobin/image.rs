//! The file image: either bytes handed to us, or a file read lazily in chunks.
//!
//! Reading a 90 MB Go binary into memory costs ~100 ms on our hosts and keeps
//! the memory for as long as the tracer runs, while answering `open` plus a few
//! lookups touches only the headers, `.symtab`/`.strtab` and bits of the
//! pclntab. So a file is split into fixed chunks, each read on first use and
//! kept (`OnceLock`, no `unsafe`, no mmap). Chunks overlap by [`WINDOW`] bytes,
//! so any read of up to `WINDOW` bytes is one borrowed slice of one chunk;
//! longer reads that straddle a boundary fall back to loading the whole file
//! (only [`Image::full`] users such as a DWARF reader need that).

use std::{fs::File, ops::Range, os::unix::fs::FileExt, sync::OnceLock};

/// Chunk size for file-backed images.
const CHUNK: usize = 1 << 20;
/// Overlap between consecutive chunks: the longest read always served from one chunk.
pub(crate) const WINDOW: usize = 1 << 16;

type Chunk = OnceLock<Option<Box<[u8]>>>;

enum Source {
    Owned(Vec<u8>),
    File {
        file: File,
        chunk: usize,
        chunks: Box<[Chunk]>,
        full: OnceLock<Option<Box<[u8]>>>,
    },
}

/// Random-access, bounds-checked view of the file bytes.
pub(crate) struct Image {
    len: usize,
    src: Source,
}

impl Image {
    pub(crate) fn from_vec(data: Vec<u8>) -> Image {
        Image {
            len: data.len(),
            src: Source::Owned(data),
        }
    }

    pub(crate) fn from_file(file: File, len: usize) -> Image {
        Self::from_file_chunked(file, len, CHUNK)
    }

    /// `chunk` is a parameter so tests can force many chunk boundaries.
    pub(crate) fn from_file_chunked(file: File, len: usize, chunk: usize) -> Image {
        let n = len.div_ceil(chunk.max(1));
        Image {
            len,
            src: Source::File {
                file,
                chunk: chunk.max(1),
                chunks: (0..n).map(|_| OnceLock::new()).collect(),
                full: OnceLock::new(),
            },
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn chunk(&self, index: usize) -> Option<&[u8]> {
        let Source::File {
            file,
            chunk,
            chunks,
            ..
        } = &self.src
        else {
            return None;
        };
        chunks
            .get(index)?
            .get_or_init(|| {
                let start = index.checked_mul(*chunk)?;
                let end = start.checked_add(chunk + WINDOW)?.min(self.len);
                let mut buf = vec![0u8; end.checked_sub(start)?].into_boxed_slice();
                file.read_exact_at(&mut buf, start as u64).ok()?;
                Some(buf)
            })
            .as_deref()
    }

    /// The whole file. For a file-backed image this reads it all, once.
    pub(crate) fn full(&self) -> Option<&[u8]> {
        match &self.src {
            Source::Owned(v) => Some(v),
            Source::File { file, full, .. } => full
                .get_or_init(|| {
                    let mut buf = vec![0u8; self.len].into_boxed_slice();
                    file.read_exact_at(&mut buf, 0).ok()?;
                    Some(buf)
                })
                .as_deref(),
        }
    }

    /// `len` bytes at file offset `start`.
    pub(crate) fn get(&self, start: usize, len: usize) -> Option<&[u8]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        match &self.src {
            Source::Owned(v) => v.get(start..end),
            Source::File { chunk, .. } => {
                let index = start / chunk;
                let bytes = self.chunk(index)?;
                let off = start - index * chunk;
                match bytes.get(off..off.checked_add(len)?) {
                    Some(s) => Some(s),
                    None => self.full()?.get(start..end),
                }
            }
        }
    }

    /// Up to `max` (at most [`WINDOW`]) bytes from `start`, stopping at `limit`:
    /// for readers that do not know their length in advance (names, varints).
    pub(crate) fn window(&self, start: usize, limit: usize, max: usize) -> Option<&[u8]> {
        let end = start.checked_add(max.min(WINDOW))?.min(limit).min(self.len);
        self.get(start, end.checked_sub(start)?)
    }

    /// An owned copy of `len` bytes at `start`, assembled across chunks without
    /// loading the whole file (for long strings such as the modinfo).
    pub(crate) fn read_vec(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        let mut pos = start;
        while pos < end {
            let piece = self.window(pos, end, WINDOW)?;
            if piece.is_empty() {
                return None;
            }
            out.extend_from_slice(piece);
            pos += piece.len();
        }
        Some(out)
    }

    /// Little-endian u32 at `off`, if `off + 4 <= limit`.
    pub(crate) fn u32_at(&self, off: usize, limit: usize) -> Option<u32> {
        if off.checked_add(4)? > limit {
            return None;
        }
        Some(u32::from_le_bytes(self.get(off, 4)?.try_into().ok()?))
    }

    /// Little-endian u64 at `off`, if `off + 8 <= limit`.
    pub(crate) fn u64_at(&self, off: usize, limit: usize) -> Option<u64> {
        if off.checked_add(8)? > limit {
            return None;
        }
        Some(u64::from_le_bytes(self.get(off, 8)?.try_into().ok()?))
    }

    /// Cover `range` with slices for pattern scans: yields `(offset, bytes, own)`
    /// where `bytes` starts at file offset `offset` and a match is reported by
    /// the piece whose first `own` bytes contain its start. Pieces overlap by up
    /// to [`WINDOW`] bytes, so patterns of up to `WINDOW` bytes are never split.
    pub(crate) fn pieces(&self, range: Range<usize>) -> Pieces<'_> {
        Pieces {
            img: self,
            pos: range.start,
            end: range.end.min(self.len),
        }
    }
}

/// `object`'s ELF parsers read headers, section names and symbols straight from
/// the image. A read longer than [`WINDOW`] across a chunk boundary loads the
/// whole file (see [`Image::get`]), so only small structures are read this way;
/// section contents go through [`Image::read_vec`]. Delimited reads (names) stop
/// after [`WINDOW`] bytes.
impl<'a> object::ReadRef<'a> for &'a Image {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len as u64)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        let offset = usize::try_from(offset).map_err(drop)?;
        self.get(offset, usize::try_from(size).map_err(drop)?)
            .ok_or(())
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        let start = usize::try_from(range.start).map_err(drop)?;
        let limit = usize::try_from(range.end).unwrap_or(usize::MAX);
        let window = self.window(start, limit, WINDOW).ok_or(())?;
        let len = memchr::memchr(delimiter, window).ok_or(())?;
        Ok(&window[..len])
    }
}

/// Iterator returned by [`Image::pieces`].
pub(crate) struct Pieces<'a> {
    img: &'a Image,
    pos: usize,
    end: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = (usize, &'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        let (own, bytes) = match &self.img.src {
            Source::Owned(v) => (self.end - start, v.get(start..self.end)?),
            Source::File { chunk, .. } => {
                let index = start / chunk;
                let off = start - index * chunk;
                let own = (chunk - off).min(self.end - start);
                let avail = (own + WINDOW).min(self.end - start);
                let c = self.img.chunk(index)?;
                (own, c.get(off..off + avail)?)
            }
        };
        self.pos = start + own;
        Some((start, bytes, own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "gobin-image-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn chunked_reads_match_owned() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let owned = Image::from_vec(data.clone());
        let lazy = Image::from_file_chunked(file_with(&data), data.len(), 4096);
        for (start, len) in [
            (0, 10),
            (4090, 20),
            (4096, 4096),
            (8000, WINDOW),
            (299_990, 10),
            (0, 200_000),
        ] {
            assert_eq!(lazy.get(start, len), owned.get(start, len), "{start}+{len}");
            assert_eq!(lazy.get(start, len), Some(&data[start..start + len]));
        }
        assert_eq!(lazy.get(299_990, 11), None);
        assert_eq!(lazy.get(usize::MAX, 2), None);
        assert_eq!(
            lazy.read_vec(1000, 150_000).as_deref(),
            Some(&data[1000..151_000])
        );
        assert_eq!(lazy.u32_at(4094, 5000), owned.u32_at(4094, 5000));
        assert_eq!(lazy.u32_at(4094, 4097), None);
    }

    #[test]
    fn pieces_see_every_pattern_once() {
        let mut data = vec![0u8; 50_000];
        for at in [0usize, 4090, 8192, 12_285, 49_990] {
            data[at..at + 8].copy_from_slice(b"PATTERN!");
        }
        let lazy = Image::from_file_chunked(file_with(&data), data.len(), 4096);
        let owned = Image::from_vec(data.clone());
        for img in [&lazy, &owned] {
            let mut hits = Vec::new();
            for (off, bytes, own) in img.pieces(0..data.len()) {
                for i in memchr::memmem::find_iter(bytes, b"PATTERN!") {
                    if i < own {
                        hits.push(off + i);
                    }
                }
            }
            assert_eq!(hits, [0, 4090, 8192, 12_285, 49_990]);
        }
    }
}
