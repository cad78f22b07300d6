//! Ingest: finds the input files and reads them, in parallel, into validated chunks.
//!
//! This module owns file discovery, format detection (JSONL, plain or `.gz`/`.zst`,
//! and Parquet), the split of the input into independent units of work, and the
//! input fingerprint. Each unit becomes a [`Chunk`]: its valid events as columns
//! and its quarantined records. It does not deduplicate or classify.
//!
//! Only regular files are read: anything else (a FIFO, a device, a socket, or a
//! symbolic link to one) is refused when it is found, before anything is opened,
//! since reading it could block or never end. JSON lines longer than
//! [`ReadOptions::max_line_bytes`] are quarantined without being held in memory.

mod jsonl;
mod parquet;

use crate::intern::Interner;
use crate::validate::{EventColumns, Quarantined};
use rayon::prelude::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How an input file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Newline-delimited JSON, uncompressed.
    Jsonl,
    /// Newline-delimited JSON, gzip-compressed.
    JsonlGz,
    /// Newline-delimited JSON, zstd-compressed.
    JsonlZst,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The name recorded in manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JsonlGz => "jsonl.gz",
            Format::JsonlZst => "jsonl.zst",
            Format::Parquet => "parquet",
        }
    }

    /// The format with this [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Format> {
        [
            Format::Jsonl,
            Format::JsonlGz,
            Format::JsonlZst,
            Format::Parquet,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// The longest JSON line read by default, in bytes: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// How input files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The longest JSON line, in bytes (without its line end), that is parsed;
    /// a longer one is quarantined as `line-too-long` and skipped without
    /// being held in memory.
    pub max_line_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// One input file of a run.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as found.
    pub path: PathBuf,
    /// How it is encoded.
    pub format: Format,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified, if the file system says.
    pub modified: Option<std::time::SystemTime>,
}

impl InputFile {
    fn new(path: PathBuf, format: Format, meta: &std::fs::Metadata) -> Self {
        InputFile {
            path,
            format,
            size: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The valid events and quarantined records of one unit of input.
pub struct Chunk {
    /// Index of the source file.
    pub source: u32,
    /// Order of this chunk within its file.
    pub seq: u32,
    /// Records read (blank lines excluded).
    pub records: u64,
    /// Index of the interner (returned by [`read_all`]) its string ids point into.
    pub interner: usize,
    /// The valid ones.
    pub events: EventColumns,
    /// The others.
    pub quarantine: Vec<Quarantined>,
}

/// What can go wrong while reading input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// An input path does not exist or cannot be listed.
    #[error("cannot open input {path}")]
    Open { path: PathBuf, source: io::Error },
    /// An input file has an extension Tally does not read.
    #[error(
        "input {path}: unknown format (expected .jsonl, .ndjson or .json, optionally .gz or .zst, or .parquet)"
    )]
    UnknownFormat { path: PathBuf },
    /// No input files were given or found.
    #[error("no input files found in {0}")]
    NoInputs(String),
    /// Reading or decompressing failed part way (for example a truncated file).
    #[error("reading input {path} failed (is the file truncated or corrupt?)")]
    Read { path: PathBuf, source: io::Error },
    /// A file was written to between being found and being read to the end,
    /// so its fingerprint and its events may not describe the same contents.
    #[error(
        "input {path} changed while it was being read (its size or modification time is not what it was when the run started); nothing was written: rerun once the file is complete"
    )]
    Changed { path: PathBuf },
    /// A Parquet file could not be decoded (including a page whose checksum
    /// does not match its contents).
    #[error("input {path}: not a readable Parquet file: {message}")]
    Parquet { path: PathBuf, message: String },
    /// An input is not a regular file: reading a FIFO, a device or a socket
    /// could block or never end.
    #[error("input {path}{target} is {kind}, not a regular file: Tally reads only regular files")]
    NotRegular {
        path: PathBuf,
        /// ` (a link to /dev/zero)` for a symbolic link, else empty.
        target: String,
        kind: &'static str,
    },
    /// An input is, contains or lies inside the output directory, so the run
    /// would read its own output.
    #[error(
        "input {input} {relation} the output directory {out}: a run must not read its own output; give an --input and an --out apart from each other"
    )]
    InputOverlapsOutput {
        input: PathBuf,
        out: PathBuf,
        /// `is`, `contains` or `is inside`.
        relation: &'static str,
    },
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, compressed) = if let Some(stem) = name.strip_suffix(".gz") {
        (stem, Some(Format::JsonlGz))
    } else if let Some(stem) = name.strip_suffix(".zst") {
        (stem, Some(Format::JsonlZst))
    } else {
        (name.as_str(), None)
    };
    if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|ext| stem.ends_with(ext))
    {
        return Some(compressed.unwrap_or(Format::Jsonl));
    }
    (compressed.is_none() && stem.ends_with(".parquet")).then_some(Format::Parquet)
}

/// Expands the given files and directories (recursively) into a sorted list of
/// input files. Inside directories, hidden entries, files of other formats and
/// Tally output directories are skipped; a file named explicitly must be of a
/// known format.
pub fn discover(inputs: &[PathBuf]) -> Result<Vec<InputFile>, IngestError> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| IngestError::Open {
            path: input.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(input, &mut files)?;
        } else {
            ensure_regular(input, &meta)?;
            let format = format_of(input).ok_or_else(|| IngestError::UnknownFormat {
                path: input.clone(),
            })?;
            files.push(InputFile::new(input.clone(), format, &meta));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    if files.is_empty() {
        let names: Vec<_> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(IngestError::NoInputs(names.join(", ")));
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<InputFile>) -> Result<(), IngestError> {
    let open = |source| IngestError::Open {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(open)? {
        let entry = entry.map_err(open)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|source| IngestError::Open {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            // A Tally output directory (say `--out` inside the input) is
            // output, not input.
            if !crate::layout::is_output(&path) {
                walk(&path, files)?;
            }
        } else if let Some(format) = format_of(&path) {
            // Only entries of an input format would be read; the others are
            // skipped without being opened, whatever they are.
            ensure_regular(&path, &meta)?;
            files.push(InputFile::new(path, format, &meta));
        }
    }
    Ok(())
}

/// Refuses what is not a regular file, from its metadata (symbolic links
/// followed): it is never opened, as opening a FIFO blocks.
fn ensure_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), IngestError> {
    use std::os::unix::fs::FileTypeExt;
    if meta.is_file() {
        return Ok(());
    }
    let kind = meta.file_type();
    let kind = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "neither a file nor a directory"
    };
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = match std::fs::canonicalize(path) {
        Ok(target) if is_link => format!(" (a link to {})", target.display()),
        _ => String::new(),
    };
    Err(IngestError::NotRegular {
        path: path.to_path_buf(),
        target,
        kind,
    })
}

/// Refuses inputs that are, contain or lie inside the output directory `out`
/// (compared once symbolic links, `.` and `..` are resolved): the run would
/// read its own output. `out` need not exist yet. Inputs that do not exist are
/// left to [`discover`] to report.
pub fn check_inputs_apart_from_output(inputs: &[PathBuf], out: &Path) -> Result<(), IngestError> {
    // An output path that cannot be resolved at all (under a file, say) cannot
    // be written either: the commit says why.
    let Ok(resolved_out) = resolve(out) else {
        return Ok(());
    };
    for input in inputs {
        let Ok(resolved) = std::fs::canonicalize(input) else {
            continue;
        };
        let relation = if resolved == resolved_out {
            "is"
        } else if resolved_out.starts_with(&resolved) {
            "contains"
        } else if resolved.starts_with(&resolved_out) {
            "is inside"
        } else {
            continue;
        };
        return Err(IngestError::InputOverlapsOutput {
            input: input.clone(),
            out: out.to_path_buf(),
            relation,
        });
    }
    Ok(())
}

/// The canonical form of `path`, which may not exist yet: its nearest existing
/// ancestor, canonicalized, followed by the rest of the path.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    let mut resolved = loop {
        match std::fs::canonicalize(existing) {
            Ok(resolved) => break resolved,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.extend(existing.components().next_back());
                existing = existing.parent().ok_or(e)?;
            }
            Err(e) => return Err(e),
        }
    };
    for component in missing.into_iter().rev() {
        match component {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::Normal(name) => resolved.push(name),
            _ => {}
        }
    }
    Ok(resolved)
}

/// Checks that no file changed (in size or modification time) since it was
/// found: run after reading, so that the input fingerprint, taken first,
/// describes exactly the contents that were read.
pub fn check_unchanged(files: &[InputFile]) -> Result<(), IngestError> {
    for file in files {
        let meta = std::fs::metadata(&file.path).map_err(|source| IngestError::Open {
            path: file.path.clone(),
            source,
        })?;
        if meta.len() != file.size || meta.modified().ok() != file.modified {
            return Err(IngestError::Changed {
                path: file.path.clone(),
            });
        }
    }
    Ok(())
}

/// The blake3 hash of each file's contents, computed in parallel.
pub fn hash_files(files: &[InputFile]) -> Result<Vec<blake3::Hash>, IngestError> {
    hash_files_counted(files, &|| {})
}

/// [`hash_files`], calling `hashed` as each file is done (for a progress
/// line over the files).
pub fn hash_files_counted(
    files: &[InputFile],
    hashed: &(dyn Fn() + Sync),
) -> Result<Vec<blake3::Hash>, IngestError> {
    files
        .par_iter()
        .map(|file| {
            let mut hasher = blake3::Hasher::new();
            hasher
                .update_mmap(&file.path)
                .map_err(|source| IngestError::Read {
                    path: file.path.clone(),
                    source,
                })?;
            hashed();
            Ok(hasher.finalize())
        })
        .collect()
}

/// The input fingerprint: blake3 over the sorted (content hash, size) pairs of the
/// input files, so it depends on what was read, not on paths or order.
pub fn fingerprint(files: &[InputFile], hashes: &[blake3::Hash]) -> blake3::Hash {
    let mut pairs: Vec<([u8; 32], u64)> = hashes
        .iter()
        .zip(files)
        .map(|(h, f)| (*h.as_bytes(), f.size))
        .collect();
    pairs.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tally input fingerprint v1\n");
    for (hash, size) in pairs {
        hasher.update(&hash);
        hasher.update(&size.to_le_bytes());
    }
    hasher.finalize()
}

/// A unit of work handed to the thread pool.
enum Work {
    Json(jsonl::Block),
    RowGroup(parquet::RowGroup),
    Failed(IngestError),
}

/// Interners lent to workers, one at a time each, so that chunks read by the
/// same worker share their strings and merging them later is cheap.
struct Interners {
    idle: Mutex<Vec<(usize, Interner)>>,
    made: std::sync::atomic::AtomicUsize,
}

impl Interners {
    fn take(&self) -> (usize, Interner) {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        idle.unwrap_or_else(|| (self.made.fetch_add(1, Ordering::Relaxed), Interner::new()))
    }

    fn give(&self, interner: (usize, Interner)) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(interner);
    }

    fn into_vec(self) -> Vec<Interner> {
        let mut all = self.idle.into_inner().unwrap_or_else(|e| e.into_inner());
        all.sort_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, interner)| interner).collect()
    }
}

/// Reads and validates every file into chunks, in parallel, in a deterministic
/// order (by file, then position), with the interners their string ids point
/// into. `progress` receives the number of records read so far.
pub fn read_all(
    files: &[InputFile],
    options: &ReadOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<Chunk>, Vec<Interner>), IngestError> {
    read_each(files, options, progress, &|chunk, _| {
        Ok::<_, IngestError>(chunk)
    })
}

/// Whether `file` reads differently with a `--max-line-bytes` of `a` and of
/// `b`: a JSON lines file holding a line longer than one and not longer than
/// the other. Parquet files read alike whatever the limit.
pub fn reads_differently(file: &InputFile, a: usize, b: usize) -> Result<bool, IngestError> {
    if file.format == Format::Parquet || a == b {
        return Ok(false);
    }
    jsonl::has_line_between(file, a.min(b) as u64, a.max(b) as u64)
}

/// Reads and validates every file, in parallel, handing each chunk as it is
/// read to `each` with the interner its string ids point into (still lent to
/// the worker, so `each` may resolve them). Returns what `each` returned, in a
/// deterministic order (by file, then position), and the interners.
/// `progress` receives the number of records read so far.
pub fn read_each<T, E>(
    files: &[InputFile],
    options: &ReadOptions,
    progress: &(dyn Fn(u64) + Sync),
    each: &(dyn Fn(Chunk, &Interner) -> Result<T, E> + Sync),
) -> Result<(Vec<T>, Vec<Interner>), E>
where
    T: Send,
    E: From<IngestError> + Send,
{
    let mut row_groups = Vec::new();
    for (source, file) in files.iter().enumerate() {
        if file.format == Format::Parquet {
            row_groups.extend(parquet::row_groups(source as u32, &file.path)?);
        }
    }
    // Enough units for every thread, when the files have few row groups.
    let row_groups = parquet::slice(row_groups, rayon::current_num_threads() * 4);
    let buffers = std::sync::Arc::new(jsonl::Buffers::default());
    let json_blocks = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.format != Format::Parquet)
        .flat_map(|(source, file)| {
            jsonl::blocks(source as u32, file, options.max_line_bytes, buffers.clone())
        })
        .map(|block| block.map_or_else(Work::Failed, Work::Json));
    let work = row_groups
        .into_iter()
        .map(Work::RowGroup)
        .chain(json_blocks);

    let records = AtomicU64::new(0);
    let interners = Interners {
        idle: Mutex::new(Vec::new()),
        made: Default::default(),
    };
    let mut results = work
        .par_bridge()
        .map(|work| {
            let (id, mut strings) = interners.take();
            let chunk = match work {
                Work::Json(block) => {
                    let chunk = jsonl::parse(&block, &mut strings);
                    buffers.give(block.into_buffer());
                    Ok(chunk)
                }
                Work::RowGroup(rg) => {
                    parquet::read(&files[rg.source as usize].path, rg, &mut strings)
                }
                Work::Failed(err) => Err(err),
            };
            let result = chunk.map_err(E::from).and_then(|mut chunk| {
                chunk.interner = id;
                let (key, read) = ((chunk.source, chunk.seq), chunk.records);
                let done = each(chunk, &strings)?;
                progress(records.fetch_add(read, Ordering::Relaxed) + read);
                Ok((key, done))
            });
            interners.give((id, strings));
            result
        })
        .collect::<Result<Vec<_>, E>>()?;
    results.sort_by_key(|(key, _)| *key);
    Ok((
        results.into_iter().map(|(_, t)| t).collect(),
        interners.into_vec(),
    ))
}

/// Validates one JSON line that another reader split off (Spark's text source,
/// say) as a file's lines are validated: `line` without its `\n` (a `\r` before
/// it is dropped here), from the input file `source`, at line `line_no`
/// (1-based; what the quarantine records). Appends it to `events` or
/// `quarantine`; returns whether it is a record (blank lines are not).
pub fn validate_line(
    line: &[u8],
    source: u32,
    line_no: u64,
    options: &ReadOptions,
    events: &mut EventColumns,
    quarantine: &mut Vec<Quarantined>,
    strings: &mut Interner,
) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let at = (source, line_no);
    jsonl::parse_line(
        line,
        at,
        options.max_line_bytes,
        events,
        quarantine,
        strings,
    )
}

/// Validates every row of a batch of contract columns that another reader
/// decoded (Spark's Parquet source, say) as a Parquet row group's rows are:
/// row `i` is row `position(i)` of the input file `source`. The batch should
/// hold the contract's columns only: a quarantined row is rendered from all of
/// them.
pub fn validate_rows(
    batch: &arrow::array::RecordBatch,
    source: u32,
    position: &dyn Fn(usize) -> u64,
    events: &mut EventColumns,
    quarantine: &mut Vec<Quarantined>,
    strings: &mut Interner,
) {
    parquet::validate_batch(batch, source, position, events, quarantine, strings);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_to_after_it_was_found_is_caught() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{}\n").unwrap();
        let files = discover(std::slice::from_ref(&path)).unwrap();
        check_unchanged(&files).unwrap();

        // Same size, newer modification time.
        let later = files[0].modified.unwrap() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let message = check_unchanged(&files).unwrap_err().to_string();
        assert!(
            message.contains("changed while it was being read"),
            "{message}"
        );

        // Grown.
        let files = discover(std::slice::from_ref(&path)).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{}\n")
            .unwrap();
        assert!(matches!(
            check_unchanged(&files),
            Err(IngestError::Changed { .. })
        ));

        // Gone.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            check_unchanged(&files),
            Err(IngestError::Open { .. })
        ));
    }

    #[test]
    fn directories_skip_hidden_entries_other_formats_and_tally_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "a.jsonl",
            "b/c.parquet",
            "b/notes.md",
            ".hidden/d.jsonl",
            "out/day=2026-05-01/part-0.parquet",
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        std::fs::write(root.join("out/_manifest.json"), b"{}").unwrap();
        std::fs::create_dir(root.join("out/_log")).unwrap();
        let found: Vec<_> = discover(&[root.to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a.jsonl", "b/c.parquet"]);
    }

    #[test]
    fn inputs_must_lie_apart_from_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("in/sub")).unwrap();
        std::fs::create_dir_all(root.join("out/daily")).unwrap();
        std::os::unix::fs::symlink(root.join("out"), root.join("link")).unwrap();
        let relation = |inputs: &[&str], out: &str| {
            let inputs: Vec<PathBuf> = inputs.iter().map(|i| root.join(i)).collect();
            match check_inputs_apart_from_output(&inputs, &root.join(out)) {
                Ok(()) => None,
                Err(IngestError::InputOverlapsOutput { relation, .. }) => Some(relation),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(relation(&["in"], "out"), None);
        assert_eq!(relation(&["in"], "in2"), None);
        assert_eq!(relation(&["in", "missing"], "new/out"), None);
        assert_eq!(relation(&["out"], "out"), Some("is"));
        assert_eq!(relation(&["link"], "out/"), Some("is"));
        assert_eq!(relation(&["in/../out"], "link"), Some("is"));
        assert_eq!(relation(&["in", "out/daily"], "out"), Some("is inside"));
        assert_eq!(relation(&["link/daily"], "out"), Some("is inside"));
        assert_eq!(relation(&["in"], "in/sub"), Some("contains"));
        // An output that does not exist yet.
        assert_eq!(relation(&["in"], "in/new/deeper"), Some("contains"));
        assert_eq!(relation(&["in"], "in/sub/../../in"), Some("is"));
        assert_eq!(relation(&["in"], "in/./new/.."), Some("is"));

        let message = check_inputs_apart_from_output(&[root.join("out")], &root.join("out"))
            .unwrap_err()
            .to_string();
        let out = root.join("out").display().to_string();
        assert!(
            message.contains(&format!("input {out} is the output directory {out}")),
            "{message}"
        );
    }

    #[test]
    fn only_regular_files_are_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("in")).unwrap();
        std::fs::write(root.join("in/a.jsonl"), b"{}\n").unwrap();
        let link = root.join("null.jsonl");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let message = discover(std::slice::from_ref(&link))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!(
                "input {} (a link to /dev/null) is a character device, not a regular file: Tally reads only regular files",
                link.display()
            )
        );
        let inner = root.join("in/null.ndjson");
        std::os::unix::fs::symlink("/dev/null", &inner).unwrap();
        assert!(matches!(
            discover(&[root.join("in")]),
            Err(IngestError::NotRegular { path, .. }) if path == inner
        ));
        // Entries no input format reads are skipped, whatever they are.
        std::fs::remove_file(&inner).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("in/null")).unwrap();
        assert_eq!(discover(&[root.join("in")]).unwrap().len(), 1);
    }

    #[test]
    fn formats_come_from_extensions() {
        let f = |name: &str| format_of(Path::new(name));
        assert_eq!(f("a.jsonl"), Some(Format::Jsonl));
        assert_eq!(f("a.JSON"), Some(Format::Jsonl));
        assert_eq!(f("a.ndjson.gz"), Some(Format::JsonlGz));
        assert_eq!(f("a.jsonl.zst"), Some(Format::JsonlZst));
        assert_eq!(f("a.parquet"), Some(Format::Parquet));
        assert_eq!(f("a.parquet.gz"), None);
        assert_eq!(f("README.md"), None);
    }
}
