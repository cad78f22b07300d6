//! The memory limit: its default, how much memory a run's input needs in
//! memory, and how many shards make it fit.

use crate::ingest::{Format, InputFile};

/// Bytes an in-memory run holds per valid record until dedup has seen them
/// all (measured on `tally gen` data: about 113), with headroom.
pub const BYTES_PER_RECORD: u64 = 160;

/// What a run holds apart from its records: the rule's instances, read
/// buffers, the output rows being written.
pub const BASE_BYTES: u64 = 256 << 20;

/// The smallest limit accepted.
pub const MIN_LIMIT: u64 = 64 << 20;

/// Shards the limit alone may ask for (each spill writer holds an open file).
pub const MAX_AUTO_SHARDS: u32 = 512;

/// The default memory limit: half of the machine's memory, or of the
/// control group's limit when that is lower; 4 GiB when neither can be read.
pub fn default_limit() -> u64 {
    let total = machine_memory();
    let cgroup = cgroup_limit();
    let available = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(t), None) => t,
        (None, Some(c)) => c,
        (None, None) => 8 << 30,
    };
    (available / 2).max(MIN_LIMIT)
}

/// `MemTotal` from `/proc/meminfo`.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The cgroup v2 (`memory.max`) or v1 (`memory.limit_in_bytes`) limit.
fn cgroup_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    // v1 reports "no limit" as a huge number.
    .filter(|&n| n < (1 << 60))
}

/// Parses a size such as `2GiB`, `512MiB`, `1.5G` or a number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a size like 2GiB or 512MiB: {e}"))?;
    Ok(size.as_u64())
}

/// Parses a memory limit: a size ([`parse_bytes`]) of at least [`MIN_LIMIT`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if bytes < MIN_LIMIT {
        return Err(format!(
            "{text} is below the smallest memory limit, {}",
            bytesize::ByteSize::b(MIN_LIMIT).display().iec()
        ));
    }
    Ok(bytes)
}

/// About how many records the input files hold: exact for Parquet (from the
/// footer), from the size for JSON (about 250 bytes a line, about 8 times
/// that compressed).
pub fn estimate_records(files: &[InputFile]) -> u64 {
    files
        .iter()
        .map(|f| match f.format {
            Format::Parquet => parquet_rows(&f.path).unwrap_or(f.size / 40),
            Format::Jsonl => f.size / 250,
            _ => f.size.saturating_mul(8) / 250,
        })
        .sum()
}

fn parquet_rows(path: &std::path::Path) -> Option<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).ok()?;
    let reader = SerializedFileReader::new(file).ok()?;
    u64::try_from(reader.metadata().file_metadata().num_rows()).ok()
}

/// The shards a run needs so that one shard's records fit in half of `limit`
/// (the other half is for reading, the spill buffers and the output rows);
/// 1 means the run fits in memory as a whole.
pub fn shards_for(records: u64, limit: u64) -> u32 {
    let need = records.saturating_mul(BYTES_PER_RECORD);
    let room = limit.saturating_sub(BASE_BYTES).max(MIN_LIMIT / 2);
    if need <= room {
        return 1;
    }
    let per_shard = (room / 2).max(1);
    need.div_ceil(per_shard)
        .clamp(2, u64::from(MAX_AUTO_SHARDS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1000000000"), Ok(1_000_000_000));
        assert!(parse_size("1KiB").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(default_limit() >= MIN_LIMIT);
    }

    #[test]
    fn shard_counts() {
        let gib = 1u64 << 30;
        assert_eq!(shards_for(1_000_000, 2 * gib), 1);
        // 100 M records need about 15 GiB: 2 GiB gives shards of under 1 GiB.
        let n = shards_for(100_000_000, 2 * gib);
        assert!((16..=40).contains(&n), "{n}");
        assert_eq!(shards_for(u64::MAX / 2, MIN_LIMIT), MAX_AUTO_SHARDS);
    }
}
