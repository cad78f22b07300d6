//! Sharding by `event_id`: the stable shard function, and the out-of-core run
//! built on it.
//!
//! Every record of one `event_id` lands in the same shard, so dedup inside a
//! shard is exact, and the daily sums of the shards add up to the sums of the
//! whole input. A run that does not fit its memory limit writes its valid
//! records into shard spill files ([`spill`]), then deduplicates, classifies
//! and sums one shard at a time ([`reduce`]) and merges the partial sums
//! ([`merge`]). The output is byte-identical to the in-memory run's, whatever
//! the shard count.
//!
//! # The shard function (shard format version 1)
//!
//! `shard(event_id, N) = (xxh3_64(event_id, seed) * N) >> 64`, computed in
//! 128-bit unsigned arithmetic, where `xxh3_64` is XXH3's 64-bit hash (from
//! the xxHash family, as specified at <https://github.com/Cyan4973/xxHash>)
//! of the `event_id`'s UTF-8 bytes with [`SHARD_SEED`] as its seed, and `N` is
//! the shard count (1 to [`MAX_SHARDS`]). It is the same on every machine and in
//! every Tally version that declares the same [`SHARD_FORMAT_VERSION`].

pub mod memory;
pub mod merge;
pub mod reduce;
pub mod spill;

use crate::commit::{self, Quarantine};
use crate::ingest::{self, InputFile, ReadOptions};
use crate::pipeline::{Computed, Found, RunError};
use crate::progress::Progress;
use crate::report::{Counts, Timings};
use crate::rule::Rule;
pub use spill::SpillError;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The version of the shard function and of the spill and work-directory
/// formats. Bumped whenever any of them changes.
pub const SHARD_FORMAT_VERSION: u32 = 1;

/// The seed of the shard hash: the bytes `TALLYSHD`, big-endian.
pub const SHARD_SEED: u64 = u64::from_be_bytes(*b"TALLYSHD");

/// The most shards a run may have.
pub const MAX_SHARDS: u32 = 65_536;

/// How a run uses memory: its limit, and where it spills when the input does
/// not fit.
#[derive(Debug, Clone, Default)]
pub struct SpillOptions {
    /// The memory limit in bytes (default: [`memory::default_limit`]).
    pub memory_limit: Option<u64>,
    /// Split the run into exactly this many shards, spilling even when the
    /// input would fit.
    pub shards: Option<u32>,
    /// The directory spill files are written under (default: the system's
    /// temporary directory; `tally run` puts them beside its output).
    pub work_dir: Option<PathBuf>,
}

impl SpillOptions {
    /// The memory limit in bytes.
    pub fn limit(&self) -> u64 {
        self.memory_limit.unwrap_or_else(memory::default_limit)
    }

    /// The shards a run over `files` is split into: 1 when it fits in memory.
    pub fn shards_for(&self, files: &[InputFile]) -> u32 {
        match self.shards {
            Some(n) => n.clamp(1, MAX_SHARDS),
            None => memory::shards_for(memory::estimate_records(files), self.limit()),
        }
    }
}

/// A directory of spill files, removed with everything in it when dropped
/// (after success and after failure alike). While it exists, its run holds an
/// exclusive lock on its `.lock` file, so that a spill directory whose lock is
/// free was left by a run that was killed, and can be removed.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Holds the exclusive lock on `.lock` until the run ends.
    _lock: std::fs::File,
}

/// The prefix of spill directories' names.
const SPILL_PREFIX: &str = ".tally-spill-";

/// Takes the exclusive lock on `dir/.lock` without waiting.
fn try_lock(dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl WorkDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates and locks a work directory for the run `run_id` in `parent`,
    /// first removing those killed runs left there.
    pub fn create(parent: &Path, run_id: &str) -> Result<WorkDir, SpillError> {
        remove_abandoned(parent);
        let path = parent.join(format!("{SPILL_PREFIX}{run_id}"));
        let fail = |e: std::io::Error| SpillError::Io {
            path: path.clone(),
            message: format!("cannot create the spill directory: {e}"),
        };
        // Made and locked under a name other runs do not clean up, then
        // renamed: a spill directory is never seen unlocked while it is used.
        let staging = parent.join(format!(".tally-new-spill-{run_id}"));
        std::fs::create_dir_all(&staging).map_err(fail)?;
        let lock = try_lock(&staging)
            .map_err(fail)?
            .ok_or_else(|| fail(std::io::Error::other("another run holds it")))?;
        std::fs::rename(&staging, &path).map_err(fail)?;
        Ok(WorkDir { path, _lock: lock })
    }
}

/// Removes the spill directories in `parent` that no running Tally holds:
/// those of runs that were killed. Best effort: what cannot be removed stays.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_spill = entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPILL_PREFIX);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_spill && is_dir && matches!(try_lock(&entry.path()), Ok(Some(_))) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Rows buffered per shard before they are written as one batch, so that all
/// buffers together take about an eighth of the memory limit.
pub fn buffer_rows(limit: u64, shards: u32) -> usize {
    let buffers = u64::from(shards.max(1)) * rayon::current_num_threads().max(1) as u64;
    let per_shard = limit / 8 / buffers / memory::BYTES_PER_RECORD;
    per_shard.clamp(1_024, 65_536) as usize
}

/// The input of a run spilled by shard: the map phase of an out-of-core run.
pub struct Spilled {
    /// The spill directory, removed when this is dropped.
    pub work: WorkDir,
    /// What each shard received.
    pub written: Vec<spill::Written>,
    /// Records, valid and quarantined records.
    pub counts: Counts,
    /// The quarantined records, rendered into the spill directory.
    pub quarantine: Quarantine,
}

impl Spilled {
    /// Gives back the disk space of shard `shard` (done with). The string
    /// tables are shared by every shard and stay to the end.
    pub fn release(&self, shard: u32) {
        for file in &self.written[shard as usize].files {
            let _ = std::fs::remove_file(&file.path);
        }
    }
}

/// Reads and validates every input, writing each valid record to its shard's
/// spill files in a directory of their own under `spill`'s work directory.
pub fn spill_inputs(
    found: &Found,
    read: &ReadOptions,
    progress: bool,
    spill: &SpillOptions,
    shards: u32,
) -> Result<Spilled, RunError> {
    let parent = spill.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&parent, &found.run_id)?;
    let writers =
        spill::ShardWriters::new(&work.path, "", shards, buffer_rows(spill.limit(), shards));
    // The quarantine is rendered as it is read, into one file, each chunk's
    // lines in one piece; the pieces are put in input order at commit.
    let sources = commit::sources(&found.files);
    let quarantine_path = work.path.join("quarantine.jsonl");
    let quarantine_file = std::fs::File::create(&quarantine_path).map_err(|e| SpillError::Io {
        path: quarantine_path.clone(),
        message: e.to_string(),
    })?;
    let rendered = std::sync::Mutex::new((std::io::BufWriter::new(quarantine_file), 0u64));
    let bar = Progress::start("ingest", None, progress);
    let (summaries, _) =
        ingest::read_each(&found.files, read, &|n| bar.set(n), &|chunk, strings| {
            writers.write(&chunk.events, strings, chunk.interner)?;
            let mut by_reason: Vec<(String, u64)> = Vec::new();
            let mut lines = String::new();
            for q in &chunk.quarantine {
                lines.push_str(&commit::quarantine_line(q, &sources));
                lines.push('\n');
                let reason = q.reason.to_string();
                match by_reason.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => by_reason.push((reason, 1)),
                }
            }
            let range = if lines.is_empty() {
                None
            } else {
                let mut file = rendered.lock().unwrap_or_else(|e| e.into_inner());
                std::io::Write::write_all(&mut file.0, lines.as_bytes()).map_err(|e| {
                    SpillError::Io {
                        path: quarantine_path.clone(),
                        message: e.to_string(),
                    }
                })?;
                let at = file.1;
                file.1 += lines.len() as u64;
                Some((at, lines.len() as u64))
            };
            Ok::<_, RunError>((chunk.records, chunk.events.len() as u64, by_reason, range))
        })?;
    ingest::check_unchanged(&found.files)?;
    bar.finish();
    let written = writers.finish()?;
    let (file, _) = rendered.into_inner().unwrap_or_else(|e| e.into_inner());
    file.into_inner().map_err(|e| SpillError::Io {
        path: quarantine_path.clone(),
        message: e.error().to_string(),
    })?;
    let mut counts = Counts::default();
    let mut ranges = Vec::new();
    for (records, valid, by_reason, range) in summaries {
        counts.records += records;
        counts.valid += valid;
        for (reason, n) in by_reason {
            counts.quarantined += n;
            *counts.quarantined_by_reason.entry(reason).or_default() += n;
        }
        if let Some((at, len)) = range {
            ranges.push((quarantine_path.clone(), at, len));
        }
    }
    let quarantine = Quarantine::Rendered(ranges);
    let spilled: u64 = written.iter().map(|w| w.rows).sum();
    if spilled != counts.valid {
        return Err(RunError::Invariant(format!(
            "valid records = records spilled: {} = {spilled}",
            counts.valid
        )));
    }
    Ok(Spilled {
        work,
        written,
        counts,
        quarantine,
    })
}

/// The out-of-core run: ingests and validates every input into `shards`
/// spill files, then deduplicates, classifies and sums one shard at a time
/// and merges the sums. Gives the same [`Computed`] rows, counts and
/// quarantine as the in-memory run and, with `index`, the same survivor
/// index, written shard after shard (each covers a range of the index's
/// keys, in order).
#[allow(clippy::too_many_arguments)]
pub fn compute(
    found: Found,
    read: &ReadOptions,
    rule: Rule,
    batch_size: usize,
    days: Option<(i32, i32)>,
    progress: bool,
    spill: &SpillOptions,
    shards: u32,
    index: bool,
    scope: Option<&crate::scope::CreatorScope>,
) -> Result<Computed, RunError> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let spilled = spill_inputs(&found, read, progress, spill, shards)?;
    timings.ingest = t.elapsed().as_secs_f64();

    // Reduce each shard, then merge.
    let bar = Progress::counting("shards", Some(u64::from(shards)), "shards", progress);
    let index_dir = spilled.work.path.join("index");
    let mut writer = match index {
        true => Some(crate::survivors::IndexWriter::create(
            &index_dir,
            spilled.counts.valid,
        )?),
        false => None,
    };
    // A shard's sums are merged and its spill files removed (the kernel
    // frees their cached pages then, which takes a while) on a thread of
    // their own while the next shard is reduced: its records are in the
    // index by then, so what that thread holds is the shard's rows alone.
    let mut reduce_shard = |w: &spill::Written| -> Result<reduce::Partial, RunError> {
        let mut partial = reduce::reduce(
            &w.files,
            w.shard,
            shards,
            &rule,
            batch_size,
            days,
            scope,
            false,
            &mut timings,
        )?;
        if partial.counts.valid != w.rows {
            return Err(RunError::Invariant(format!(
                "shard {}: records read back = records spilled: {} = {}",
                w.shard, partial.counts.valid, w.rows
            )));
        }
        if let (Some(writer), Some(part)) = (writer.as_mut(), partial.index.take()) {
            let t = Instant::now();
            part.write(writer)?;
            timings.dedup += t.elapsed().as_secs_f64();
        }
        Ok(partial)
    };
    let merger = std::thread::scope(|threads| -> Result<merge::Merger, RunError> {
        let mut merging = Merging::Idle(Box::default());
        for w in &spilled.written {
            let partial = match reduce_shard(w) {
                Ok(partial) => partial,
                Err(e) => {
                    merging.wait()?;
                    return Err(e);
                }
            };
            let mut merger = merging.wait()?;
            let (spilled, bar) = (&spilled, &bar);
            merging = Merging::Busy(threads.spawn(move || {
                merger.add(partial)?;
                spilled.release(w.shard);
                bar.set(u64::from(w.shard) + 1);
                Ok(merger)
            }));
        }
        merging.wait()
    })?;
    bar.finish();
    let t = Instant::now();
    let (strings, aggregate, counts, checks) = merger.finish(&rule, spilled.counts.clone())?;
    timings.aggregate += t.elapsed().as_secs_f64();
    let quarantine = spilled.quarantine.clone();
    let index = match writer {
        Some(writer) => Some(crate::pipeline::finish_index(
            writer,
            index_dir,
            &found.files,
            counts.unique,
        )?),
        None => None,
    };
    Ok(Computed {
        read: *read,
        run_id: found.run_id,
        rule,
        files: found.files,
        inputs: found.inputs,
        fingerprint: found.fingerprint,
        strings,
        aggregate,
        quarantine,
        counts,
        checks,
        timings,
        work: Some(spilled.work),
        shards,
        index,
        increment: None,
    })
}

/// The merger of an out-of-core run: waiting for the next shard's sums, or
/// adding a shard's sums on a thread of its own.
enum Merging<'scope> {
    Idle(Box<merge::Merger>),
    Busy(std::thread::ScopedJoinHandle<'scope, Result<merge::Merger, RunError>>),
}

impl Merging<'_> {
    /// The merger, once it has added what it was given.
    fn wait(self) -> Result<merge::Merger, RunError> {
        match self {
            Merging::Idle(merger) => Ok(*merger),
            Merging::Busy(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        }
    }
}

/// The shard (`0..shards`) of an `event_id`. `shards` must be at least 1.
#[inline]
pub fn shard_of(event_id: &[u8], shards: u32) -> u32 {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(event_id, SHARD_SEED);
    ((u128::from(hash) * u128::from(shards.max(1))) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values: a change here is a new shard format version.
    #[test]
    fn the_shard_function_is_stable() {
        let ids: [&[u8]; 4] = [
            b"",
            b"e-1",
            b"0f8fad5b-d9cb-469f-a165-70867728950e",
            "é".as_bytes(),
        ];
        let got: Vec<u64> = ids
            .iter()
            .map(|id| xxhash_rust::xxh3::xxh3_64_with_seed(id, SHARD_SEED))
            .collect();
        let shards: Vec<u32> = ids.iter().map(|id| shard_of(id, 1000)).collect();
        assert_eq!(got, PINNED_HASHES, "hashes changed: {got:#x?}");
        assert_eq!(shards, PINNED_SHARDS, "shards changed: {shards:?}");
    }

    /// From the Python `xxhash` package (`xxh3_64_intdigest(id, seed)`), an
    /// implementation independent of the one Tally uses.
    const PINNED_HASHES: [u64; 4] = [
        0x8e26_cfca_6cac_4c29,
        0xe1a3_132c_a7cf_793d,
        0xb8eb_0965_8ea0_5fd2,
        0x17e7_9eda_ff19_ca36,
    ];
    const PINNED_SHARDS: [u32; 4] = [555, 881, 722, 93];

    #[test]
    fn every_shard_is_used_and_in_range() {
        for n in [1u32, 2, 3, 7, 64] {
            let mut seen = vec![0u32; n as usize];
            for i in 0..100_000 {
                let k = shard_of(format!("event-{i}").as_bytes(), n);
                assert!(k < n);
                seen[k as usize] += 1;
            }
            // Roughly even: every shard within 10% of its share.
            let share = 100_000 / n;
            for (k, &count) in seen.iter().enumerate() {
                assert!(
                    count.abs_diff(share) * 10 <= share,
                    "shard {k} of {n}: {count}"
                );
            }
        }
        assert_eq!(shard_of(b"x", 0), 0, "zero shards is taken as one");
    }
}
