//! Opening NDJSON inputs: files and stdin, plain or gzip (detected from the first bytes, so a
//! `.log` that is really gzip still works).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use crate::error::PipelineError;

/// An NDJSON input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

impl Input {
    /// The input a command-line argument names: a file, or stdin for `-` (as for `cat`).
    pub fn from_arg(path: PathBuf) -> Self {
        if path.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(path)
        }
    }

    /// The inputs a command's file arguments name: stdin when there are none; patterns
    /// expanded as [`Input::expand`] does (a quoted `'logs/*.ndjson'`).
    pub fn from_args(paths: &[PathBuf]) -> Result<Vec<Self>, PipelineError> {
        if paths.is_empty() {
            Ok(vec![Input::Stdin])
        } else {
            Self::expand(paths)
        }
    }

    /// The inputs a pipeline's file source lists: a path with `*`, `?` or `[` that names no
    /// file itself is a glob pattern, its files in name order (`/var/log/app/*.ndjson`), and
    /// one that matches no file is an error, as a missing file is.
    pub fn expand(paths: &[PathBuf]) -> Result<Vec<Self>, PipelineError> {
        let mut out = Vec::new();
        for p in paths {
            let text = p.to_string_lossy();
            if !text.contains(['*', '?', '[']) || p.exists() {
                out.push(Input::from_arg(p.clone()));
                continue;
            }
            let not_found = |what: String| PipelineError::Input {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, what),
            };
            let matches =
                glob::glob(&text).map_err(|e| not_found(format!("not a glob pattern: {e}")))?;
            let mut files: Vec<PathBuf> = matches
                .filter_map(Result::ok)
                .filter(|f| f.is_file())
                .collect();
            if files.is_empty() {
                return Err(not_found("no file matches the pattern".into()));
            }
            files.sort();
            out.extend(files.into_iter().map(Input::File));
        }
        Ok(out)
    }

    /// The name used in dead letters and messages: the path, or `-` for stdin.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".into(),
        }
    }

    /// Size in bytes on disk, if known (for progress).
    pub fn file_size(&self) -> Option<u64> {
        match self {
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        }
    }

    /// Opens the input, decompressing gzip transparently.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, PipelineError> {
        let path = PathBuf::from(self.name());
        let err = |source| PipelineError::Input {
            path: path.clone(),
            source,
        };
        let reader: Box<dyn Read + Send> = match self {
            Input::File(p) => {
                if p.is_dir() {
                    return Err(err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "is a directory",
                    )));
                }
                Box::new(File::open(p).map_err(err)?)
            }
            Input::Stdin => Box::new(io::stdin()),
        };
        maybe_gunzip(reader).and_then(skip_bom).map_err(err)
    }

    /// A regular file that is not gzip, where its text starts (after a byte order mark, if
    /// any) and its length: one that decoders can each read a part of at their own offsets.
    /// `None` for stdin, gzip, or a file that cannot be opened (reading it the usual way then
    /// says why).
    pub fn plain_file(&self) -> Option<(PathBuf, u64, u64)> {
        let Input::File(p) = self else {
            return None;
        };
        let file = File::open(p).ok()?;
        let meta = file.metadata().ok()?;
        let mut head = [0u8; 3];
        let n = FileExt::read_at(&file, &mut head, 0).ok()?;
        let gzip = head[..n].starts_with(&GZIP_MAGIC);
        let start = if head[..n] == BOM {
            BOM.len() as u64
        } else {
            0
        };
        (meta.is_file() && !gzip).then(|| (p.clone(), start, meta.len()))
    }
}

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// UTF-8's byte order mark. JSON texts must not carry one, but a parser may ignore it (RFC
/// 8259, 8.1), and editors and shells on Windows write it: at the start of an input it is not
/// part of the first record.
const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// Tells gzip from plain text by the first two bytes. Plain text is then read straight from
/// the source (those two bytes handed out first), not through a buffer: a reader's large reads
/// land in its own buffer with one copy, from the kernel.
fn maybe_gunzip(mut r: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let head = first_bytes(&mut r, GZIP_MAGIC.len())?;
    let gzip = head == GZIP_MAGIC;
    let rest = io::Cursor::new(head).chain(r);
    if gzip {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            rest,
        ))))
    } else {
        Ok(Box::new(rest))
    }
}

/// The text without a leading byte order mark.
fn skip_bom(mut r: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let head = first_bytes(&mut r, BOM.len())?;
    if head == BOM {
        Ok(r)
    } else {
        Ok(Box::new(io::Cursor::new(head).chain(r)))
    }
}

/// The first `n` bytes of `r`, fewer if it ends sooner.
fn first_bytes(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

/// Checks that every file can be opened before anything is ingested, so a typo in the last
/// path does not leave the first files half-ingested.
pub fn check_readable(inputs: &[Input]) -> Result<(), PipelineError> {
    for i in inputs {
        if let Input::File(p) = i {
            open_check(p)?;
        }
    }
    Ok(())
}

fn open_check(p: &Path) -> Result<(), PipelineError> {
    Input::File(p.to_path_buf()).open().map(drop)
}

/// Writes `bytes` gzip-compressed to `path` (tests of gzip inputs).
#[cfg(test)]
pub(super) fn write_gzip(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut enc =
        flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_gzip_alike() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.ndjson");
        std::fs::write(&plain, b"{\"a\":1}\n").unwrap();
        let gz = dir.path().join("a.log");
        write_gzip(&gz, b"{\"a\":1}\n");
        for p in [plain, gz] {
            let mut s = String::new();
            Input::File(p)
                .open()
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "{\"a\":1}\n");
        }
    }

    #[test]
    fn a_glob_names_its_files_in_order_and_one_matching_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.ndjson", "a.ndjson", "c.txt"] {
            std::fs::write(dir.path().join(name), b"{}\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.ndjson")).unwrap();
        let names =
            |inputs: Vec<Input>| -> Vec<String> { inputs.iter().map(Input::name).collect() };
        let at = |p: &str| dir.path().join(p);
        let got = Input::expand(&[at("*.ndjson"), at("c.txt"), PathBuf::from("-")]).unwrap();
        let want: Vec<String> = ["a.ndjson", "b.ndjson", "c.txt"]
            .iter()
            .map(|n| at(n).display().to_string())
            .chain(["-".to_string()])
            .collect();
        // The directory the pattern also matches is not an input.
        assert_eq!(names(got), want);
        let err = Input::expand(&[at("*.gz")]).unwrap_err().to_string();
        assert!(
            err.contains("*.gz") && err.contains("no file matches"),
            "{err}"
        );
        // A pattern that is none says so.
        let missing = Input::expand(&[at("[nope")]).unwrap_err().to_string();
        assert!(missing.contains("not a glob pattern"), "{missing}");
        // A path without a pattern is passed on, to be opened (and said missing) as before;
        // a file whose own name looks like one is that file.
        assert_eq!(names(Input::expand(&[at("x.ndjson")]).unwrap()).len(), 1);
        std::fs::write(at("[1].ndjson"), b"{}\n").unwrap();
        assert_eq!(
            names(Input::expand(&[at("[1].ndjson")]).unwrap()),
            [at("[1].ndjson").display().to_string()]
        );
    }

    #[test]
    fn inputs_no_longer_than_the_gzip_magic_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&b""[..], b"{", b"\x1f", b"\x1f\x8b"] {
            let p = dir.path().join("short");
            std::fs::write(&p, bytes).unwrap();
            let mut read = Vec::new();
            let opened = Input::File(p).open().map(|mut r| r.read_to_end(&mut read));
            if bytes == b"\x1f\x8b" {
                // The magic and nothing after it: a truncated gzip stream, an error to open
                // (its first bytes are read for a byte order mark) or to read.
                assert!(!matches!(opened, Ok(Ok(_))), "{bytes:?}");
            } else {
                assert!(matches!(opened, Ok(Ok(_))), "{bytes:?}");
                assert_eq!(read, bytes);
            }
        }
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_not_part_of_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"{\"a\":1}\n";
        // A whole mark then text, a mark alone, a mark cut short, a mark after the start.
        let cases: [(&[u8], &[u8], u64); 4] = [
            (b"\xef\xbb\xbf{\"a\":1}\n", text, 3),
            (b"\xef\xbb\xbf", b"", 3),
            (b"\xef\xbb", b"\xef\xbb", 0),
            (b"\n\xef\xbb\xbf", b"\n\xef\xbb\xbf", 0),
        ];
        for (i, (bytes, want, start)) in cases.into_iter().enumerate() {
            let plain = dir.path().join(format!("{i}.ndjson"));
            std::fs::write(&plain, bytes).unwrap();
            let (_, from, len) = Input::File(plain.clone()).plain_file().unwrap();
            assert_eq!((from, len), (start, bytes.len() as u64), "{bytes:?}");
            let gz = dir.path().join(format!("{i}.ndjson.gz"));
            write_gzip(&gz, bytes);
            for p in [plain, gz] {
                let mut read = Vec::new();
                Input::File(p)
                    .open()
                    .unwrap()
                    .read_to_end(&mut read)
                    .unwrap();
                assert_eq!(read, want, "{bytes:?}");
            }
        }
    }

    #[test]
    fn missing_file_is_a_user_error() {
        let e = check_readable(&[Input::File("/nonexistent/x.ndjson".into())]).unwrap_err();
        assert_eq!(e.kind(), vigil_core::ErrorKind::User);
        assert!(e.to_string().contains("/nonexistent/x.ndjson"), "{e}");
    }
}
