//! `tally sink postgres` against a real PostgreSQL server (`pg_server.rs`):
//! after runs with creator-pay v1, then v2 on fewer inputs (changed,
//! restamped and zeroed rows), then a `--days` recompute, the table equals
//! the output row by row and a second sink applies nothing; a sink killed
//! with SIGKILL at random moments leaves the table at the chunk boundary its
//! ledger names, and the next sink completes it; two sinks into one table
//! take turns; a bad URL, an unreachable server, wrong credentials and a
//! table with other columns are clear errors that write nothing, and the
//! password is never printed.
//!
//! What the table must hold is computed from the output alone: the daily
//! partitions (`reconcile::stamped_rows`) and each commit's changeset
//! (`reconcile::changeset`), applied in key order.

use crate::common::{self, s};
use crate::model::Totals;
use crate::pg_server::{self, PgServer};
use crate::reconcile::{self, Key};
use crate::support;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const SEED: u64 = 4_242;
/// Events of the histories most tests sink.
const SMALL: u64 = 12_000;
/// Events of the histories killed and raced sinks work through.
const LARGER: u64 = 32_000;
const URL_ENV: &str = "TALLY_POSTGRES_URL";

/// A row of the table: figures, rule hash, the commit that wrote it.
type Row = (Totals, String, i64);

/// An output with three commits: creator-pay v1 over every input file, v2
/// over all but one (changed, restamped and zeroed rows), and v1 again over
/// every file for a window of days.
struct History {
    _dir: TempDir,
    inputs: Vec<PathBuf>,
    out: PathBuf,
}

impl History {
    /// Input of `events` events in four files, and no output yet.
    fn new(events: u64) -> History {
        let dir = TempDir::new().expect("temp dir");
        let (events, _) =
            support::generate(dir.path(), "events", events, SEED, "jsonl", events / 4);
        let inputs: Vec<PathBuf> = support::files_in(&events)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert!(inputs.len() >= 3, "several input files: {inputs:?}");
        let out = dir.path().join("out");
        History {
            _dir: dir,
            inputs,
            out,
        }
    }

    /// Makes commit `n` (1, 2 or 3) of the history.
    fn commit(&self, n: u64) {
        let all: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        let (inputs, rule, extra): (&[&Path], &str, &[&str]) = match n {
            1 => (&all, "creator-pay-v1", &[]),
            2 => (&all[1..], "creator-pay-v2", &[]),
            3 => (
                &all,
                "creator-pay-v1",
                &["--days", "2026-05-08..2026-05-14"],
            ),
            _ => unreachable!("three commits"),
        };
        let report = support::run(inputs, &common::rule(rule), &self.out, extra);
        assert_eq!(report["commit"], n, "{report}");
    }

    /// All three commits over `events` events.
    fn made(events: u64) -> History {
        let h = History::new(events);
        (1..=3).for_each(|n| h.commit(n));
        h
    }
}

/// `tally sink postgres --out OUT --json` plus `extra`, the URL from the
/// environment.
fn sink(url: &str, out: &Path, extra: &[&str]) -> Output {
    sink_command(url, out, extra).output().expect("tally runs")
}

fn sink_command(url: &str, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(common::tally_bin());
    command
        .args(["sink", "postgres", "--out", s(out), "--quiet"])
        .args(extra)
        .env(URL_ENV, url);
    command
}

/// Asserts a sink succeeded without printing the password; returns its
/// JSON report (`--json` is added).
fn sink_ok(url: &str, out: &Path, extra: &[&str]) -> Value {
    let output = sink(url, out, &[extra, &["--json"]].concat());
    let (stdout, stderr) = texts(&output);
    assert!(
        output.status.success(),
        "sink {extra:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_no_password(&[&stdout, &stderr]);
    let report: Value = serde_json::from_str(&stdout).expect("--json prints the report");
    assert_eq!(report["schema_version"], 1, "{report}");
    report
}

/// Runs a sink that must fail with `code`; returns stderr.
fn sink_fails(url: &str, out: &Path, extra: &[&str], code: i32) -> String {
    let output = sink(url, out, extra);
    let (stdout, stderr) = texts(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "sink {extra:?}: want exit status {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert_no_password(&[&stdout, &stderr]);
    stderr
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_no_password(texts: &[&str]) {
    for text in texts {
        assert!(
            !text.contains(pg_server::PASSWORD),
            "the password is printed:\n{text}"
        );
    }
}

/// Every row of `table`.
fn table_rows(client: &mut impl postgres::GenericClient, table: &str) -> BTreeMap<Key, Row> {
    client
        .query(
            &format!(
                "SELECT day::text, creator_id, template_id, events, payable_events, amount_micros, \
                 rule_hash, \"commit\" FROM {table}"
            ),
            &[],
        )
        .expect("the table reads")
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2)),
                (
                    Totals {
                        events: r.get(3),
                        payable_events: r.get(4),
                        amount_micros: r.get(5),
                    },
                    r.get(6),
                    r.get(7),
                ),
            )
        })
        .collect()
}

/// A ledger entry: commit, first row, rows, rows of the commit, complete.
type Entry = (i64, i64, i64, i64, bool);

fn ledger(client: &mut impl postgres::GenericClient, table: &str) -> Vec<Entry> {
    client
        .query(
            &format!(
                "SELECT \"commit\", first_row, chunk_rows, commit_rows, complete FROM {table}_ledger \
                 ORDER BY \"commit\", first_row"
            ),
            &[],
        )
        .expect("the ledger reads")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// What the table holds after commits `1..=applied` and the first `rows`
/// rows of the next one (in key order), each row with the commit that last
/// wrote it.
fn expected(out: &Path, applied: u64, rows: usize) -> BTreeMap<Key, Row> {
    let mut table = BTreeMap::new();
    for commit in 1..=applied + 1 {
        if commit > applied && rows == 0 {
            break;
        }
        let take = if commit <= applied { usize::MAX } else { rows };
        for (key, change) in reconcile::changeset(out, commit).into_iter().take(take) {
            table.insert(key, (change.totals, change.rule_hash, commit as i64));
        }
    }
    table
}

/// Asserts the table holds exactly the output's rows (figures and stamp),
/// each with the last commit whose changeset had it.
fn assert_equals_output(client: &mut postgres::Client, table: &str, out: &Path, commits: u64) {
    let got = table_rows(client, table);
    let published: BTreeMap<Key, (Totals, String)> = reconcile::stamped_rows(out);
    let figures: BTreeMap<Key, (Totals, String)> = got
        .iter()
        .map(|(k, (t, h, _))| (k.clone(), (*t, h.clone())))
        .collect();
    support::assert_maps_eq(&figures, &published, "table vs output");
    support::assert_maps_eq(&got, &expected(out, commits, 0), "table vs changesets");
    let monthly = monthly_of(table);
    support::assert_maps_eq(
        &monthly_rows(client, &monthly),
        &published_months(out),
        "monthly table vs output",
    );
    assert_ledger_complete(client, &monthly, commits);
}

/// The monthly table a sink into `table` (given as `--table`, or the
/// default `tally_daily`) writes.
fn monthly_of(table: &str) -> String {
    if table == "tally_daily" {
        "tally_monthly".to_string()
    } else {
        format!("{table}_monthly")
    }
}

/// A monthly row: (month's first day, creator) -> (events, payable events,
/// amount).
type MonthRows = BTreeMap<(String, String), (i64, i64, i64)>;

fn monthly_rows(client: &mut impl postgres::GenericClient, table: &str) -> MonthRows {
    client
        .query(
            &format!(
                "SELECT month::text, creator_id, events, payable_events, amount_micros FROM {table}"
            ),
            &[],
        )
        .expect("the monthly table reads")
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4))))
        .collect()
}

/// Every row of the output's `monthly/` table, read from its Parquet files.
fn published_months(out: &Path) -> MonthRows {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let mut rows = MonthRows::new();
    let dir = out.join("monthly");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return rows;
    };
    for entry in entries {
        let entry = entry.expect("a monthly partition");
        let name = entry.file_name().to_string_lossy().into_owned();
        let month = name
            .strip_prefix("month=")
            .unwrap_or_else(|| panic!("{name} is not a month partition"));
        let file = std::fs::File::open(entry.path().join("part-0.parquet")).expect("part file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .expect("a Parquet file");
        for batch in reader {
            let batch = batch.expect("a batch");
            let creators = batch.column(0).as_string::<i32>();
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                rows.insert(
                    (format!("{month}-01"), creators.value(row).to_string()),
                    (int(1).value(row), int(2).value(row), int(3).value(row)),
                );
            }
        }
    }
    rows
}

/// Asserts the ledger has each commit `1..=commits` in contiguous chunks,
/// complete once, and returns the number of chunks.
fn assert_ledger_complete(client: &mut postgres::Client, table: &str, commits: u64) -> usize {
    let entries = ledger(client, table);
    let mut at: BTreeMap<i64, i64> = BTreeMap::new();
    for (commit, first, rows, total, complete) in &entries {
        let next = at.entry(*commit).or_insert(0);
        assert_eq!(first, next, "chunks of commit {commit}: {entries:?}");
        *next += rows;
        assert_eq!(*complete, next == total, "{entries:?}");
    }
    assert_eq!(
        at.keys().copied().collect::<Vec<_>>(),
        (1..=commits as i64).collect::<Vec<_>>(),
        "{entries:?}"
    );
    entries.len()
}

fn changeset_rows(out: &Path, commit: u64) -> u64 {
    reconcile::changeset(out, commit).len() as u64
}

#[test]
fn sink_applies_each_commit_once_and_the_table_equals_the_output() {
    let server = PgServer::start();
    let url = server.url();
    let mut client = server.client();
    let h = History::new(SMALL);

    // Commit 1 into a new table: both tables created, every row added.
    h.commit(1);
    let report = sink_ok(&url, &h.out, &[]);
    assert_eq!(
        report["created"],
        serde_json::json!([
            "public.tally_daily",
            "public.tally_daily_ledger",
            "public.tally_monthly",
            "public.tally_monthly_ledger"
        ])
    );
    assert_eq!(report["already_applied"], 0);
    assert_eq!(report["rows"], changeset_rows(&h.out, 1));
    // Every monthly row of commit 1 is added.
    assert_eq!(
        report["monthly"]["rows"],
        published_months(&h.out).len() as u64
    );
    assert_eq!(report["monthly"]["table"], "public.tally_monthly");
    let target = report["target"].as_str().expect("target");
    assert!(
        target.starts_with("postgresql://tally:***@/postgres?host="),
        "{target}"
    );
    assert_equals_output(&mut client, "tally_daily", &h.out, 1);

    // Again: nothing to apply, the ledger as it was.
    let before = ledger(&mut client, "tally_daily");
    let again = sink_ok(&url, &h.out, &[]);
    assert_eq!(
        (
            again["rows"].as_u64(),
            again["applied"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    assert_eq!(ledger(&mut client, "tally_daily"), before);

    // Commit 2, v2 over fewer inputs: changed, restamped and zeroed rows.
    h.commit(2);
    let changes = reconcile::changeset(&h.out, 2);
    for kind in ["changed", "restamped", "zeroed"] {
        assert!(
            changes.values().any(|c| c.change == kind),
            "commit 2 has {kind} rows"
        );
    }
    // A dry run says what it would apply and writes nothing.
    let rows_before = table_rows(&mut client, "tally_daily");
    let dry = sink_ok(&url, &h.out, &["--dry-run", "--chunk-rows", "100"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["applied"][0]["commit"], 2);
    assert_eq!(dry["rows"], changes.len() as u64);
    assert_eq!(dry["chunks"], changes.len().div_ceil(100) as u64);
    assert_eq!(table_rows(&mut client, "tally_daily"), rows_before);
    assert_eq!(ledger(&mut client, "tally_daily"), before);
    let text = sink(&url, &h.out, &["--dry-run"]);
    assert!(text.status.success());
    common::assert_mentions(
        &texts(&text).0,
        &[
            "would apply 1 commit(s)",
            "dry run: nothing was written",
            "commit 2  creator-pay@2.0.0",
        ],
    );

    // Applied in chunks of 100 rows.
    let report = sink_ok(&url, &h.out, &["--chunk-rows", "100"]);
    assert_eq!(report["chunks"], changes.len().div_ceil(100) as u64);
    assert_equals_output(&mut client, "tally_daily", &h.out, 2);
    let zeroed: Vec<&Key> = changes
        .iter()
        .filter(|(_, c)| c.change == "zeroed")
        .map(|(k, _)| k)
        .collect();
    let rows = table_rows(&mut client, "tally_daily");
    assert!(
        zeroed.iter().all(|k| rows[*k].0 == Totals::default()),
        "zeroed rows are zeros"
    );

    // Commit 3, a --days recompute; the human summary.
    h.commit(3);
    let output = sink(&url, &h.out, &[]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_no_password(&[&stdout, &stderr]);
    common::assert_mentions(
        &stdout,
        &[
            "sink postgres:",
            "into public.tally_daily and public.tally_monthly at postgresql://tally:***@/postgres",
            "applied 1 commit(s)",
            "2 commit(s) were applied before",
        ],
    );
    assert_equals_output(&mut client, "tally_daily", &h.out, 3);
    assert_ledger_complete(&mut client, "tally_daily", 3);
    let before = ledger(&mut client, "tally_daily");
    let again = sink_ok(&url, &h.out, &[]);
    assert_eq!(again["rows"], 0);
    assert_eq!(again["already_applied"], 3);
    assert_eq!(ledger(&mut client, "tally_daily"), before);

    // The whole history at once into a new table in another schema, in
    // small chunks and given by --url: the same rows.
    client
        .batch_execute("CREATE SCHEMA serving")
        .expect("a schema");
    let all = sink_ok(
        "",
        &h.out,
        &[
            "--url",
            &url,
            "--table",
            "serving.totals",
            "--chunk-rows",
            "333",
        ],
    );
    let total: u64 = (1..=3).map(|c| changeset_rows(&h.out, c)).sum();
    assert_eq!(all["rows"], total);
    assert_eq!(all["applied"].as_array().map(Vec::len), Some(3));
    assert_equals_output(&mut client, "serving.totals", &h.out, 3);
    let chunks = assert_ledger_complete(&mut client, "serving.totals", 3);
    assert_eq!(
        chunks as u64,
        (1..=3)
            .map(|c| changeset_rows(&h.out, c).div_ceil(333))
            .sum::<u64>()
    );

    // An older commit never overwrites a row a newer one wrote: a row
    // marked as written by commit 1000 keeps its figures when commit 4
    // changes it.
    support::run(
        &h.inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        &common::rule("creator-pay-v2"),
        &h.out,
        &["--days", "2026-05-08..2026-05-14"],
    );
    let four = reconcile::changeset(&h.out, 4);
    let key = four.keys().next().expect("commit 4 changes rows").clone();
    let mut want = table_rows(&mut client, "tally_daily");
    let mut kept = want[&key].clone();
    (kept.0.events, kept.2) = (-1, 1000);
    client
        .execute(
            "UPDATE tally_daily SET events = -1, \"commit\" = 1000 \
             WHERE day = $1::text::date AND creator_id = $2 AND template_id = $3",
            &[&key.0, &key.1, &key.2],
        )
        .expect("an update");
    sink_ok(&url, &h.out, &[]);
    for (k, change) in &four {
        want.insert(k.clone(), (change.totals, change.rule_hash.clone(), 4));
    }
    want.insert(key, kept);
    support::assert_maps_eq(
        &table_rows(&mut client, "tally_daily"),
        &want,
        "table after commit 4",
    );
    support::assert_maps_eq(
        &monthly_rows(&mut client, "tally_monthly"),
        &published_months(&h.out),
        "monthly table after commit 4",
    );

    // A commit that changed nothing (the same run again) is applied as an
    // empty chunk, so that the ledger has it.
    support::run(
        &h.inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        &common::rule("creator-pay-v2"),
        &h.out,
        &["--days", "2026-05-08..2026-05-14"],
    );
    assert!(reconcile::changeset(&h.out, 5).is_empty());
    let empty = sink_ok(&url, &h.out, &[]);
    assert_eq!(
        (
            &empty["applied"][0]["commit"],
            &empty["rows"],
            &empty["chunks"]
        ),
        (&Value::from(5), &Value::from(0), &Value::from(1)),
        "{empty}"
    );
    assert_eq!(
        ledger(&mut client, "tally_daily").last(),
        Some(&(5, 0, 0, 0, true))
    );
    assert_ledger_complete(&mut client, "tally_daily", 5);

    // Another output into the same table is refused, naming both.
    let other = History::new(SMALL);
    other.commit(1);
    let before = ledger(&mut client, "tally_daily");
    let err = sink_fails(&url, &other.out, &[], 1);
    common::assert_mentions(&err, &["holds the rows of another output", s(&h.out)]);
    assert_eq!(ledger(&mut client, "tally_daily"), before);
}

/// A small, fixed-seed pseudo-random sequence (SplitMix64).
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where the ledger says the table is: commits applied, and rows of the
/// next one.
fn position(entries: &[Entry]) -> (u64, usize) {
    let applied = entries.iter().filter(|e| e.4).count() as u64;
    let rows = entries
        .iter()
        .filter(|e| e.0 == applied as i64 + 1)
        .map(|e| e.2)
        .sum::<i64>();
    (applied, rows as usize)
}

#[test]
fn a_sink_killed_at_random_moments_leaves_a_chunk_boundary_and_the_next_completes_it() {
    const KILLS: usize = 40;
    let server = PgServer::start();
    let url = server.url();
    let mut client = server.client();
    let h = History::made(LARGER);
    let total: u64 = (1..=3).map(|c| changeset_rows(&h.out, c)).sum();
    // Every other sink is paced (chunks of 150 rows, a whole sink taking
    // about 8 s), so that it is mostly killed between chunks; the others go
    // as fast as they can in chunks of 1,000 rows, so that they are mostly
    // killed inside a transaction. A sink goes on with other chunks than
    // the one before it had.
    let rate = (total / 8).max(150).to_string();
    let paced = ["--chunk-rows", "150", "--max-rows-per-second", &rate];
    let fast = ["--chunk-rows", "1000"];
    let mut sequence = Sequence(SEED);
    let (mut kills, mut inside_a_commit) = (0, 0);
    let mut last = (0, 0);
    for round in 0..KILLS {
        let (args, window): (&[&str], f64) = if round % 2 == 0 {
            (&paced, 0.6)
        } else {
            (&fast, 0.1)
        };
        let mut child = sink_command(&url, &h.out, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tally starts");
        std::thread::sleep(Duration::from_secs_f64(0.02 + window * sequence.unit()));
        if child.try_wait().expect("status").is_some() {
            break; // it finished first
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        kills += 1;

        // One snapshot of the table and its ledger.
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .expect("a transaction");
        let exists: bool = tx
            .query_one("SELECT to_regclass('tally_daily_ledger') IS NOT NULL", &[])
            .expect("a query")
            .get(0);
        if !exists {
            continue; // killed before it created the tables
        }
        let entries = ledger(&mut tx, "tally_daily");
        let rows = table_rows(&mut tx, "tally_daily");
        tx.commit().expect("commit");
        let (applied, partial) = position(&entries);
        support::assert_maps_eq(
            &rows,
            &expected(&h.out, applied, partial),
            &format!("after kill {kills}: the table at commit {applied} + {partial} row(s)"),
        );
        assert!(
            (applied, partial) >= last,
            "the ledger went back: {entries:?}"
        );
        last = (applied, partial);
        if partial > 0 {
            inside_a_commit += 1;
        }
    }
    // The server saw sinks vanish while it worked on a chunk: in the middle
    // of a COPY or between statements (an open transaction, rolled back), or
    // while it ran the upsert (its answer could not be sent).
    let log = server.log();
    let mid_chunk = log
        .matches("unexpected EOF on client connection with an open transaction")
        .count()
        + log.matches("connection to client lost").count();
    println!(
        "{kills} kills, {inside_a_commit} inside a commit, {mid_chunk} while the server worked on a chunk; {total} rows in all"
    );
    assert!(
        mid_chunk >= 1,
        "no kill landed while the server worked on a chunk"
    );
    assert!(
        kills >= 5,
        "only {kills} kills landed before a sink finished"
    );
    assert!(
        inside_a_commit >= 1,
        "no kill left a commit partly applied in {kills} kills"
    );

    // The next sink completes it, going on where the last one stopped.
    let report = sink_ok(&url, &h.out, &paced[..2]);
    let done: u64 = report["rows"].as_u64().expect("rows");
    assert!(
        done < total || last == (0, 0),
        "it went on, not from the start: {report}"
    );
    assert_equals_output(&mut client, "tally_daily", &h.out, 3);
    assert_ledger_complete(&mut client, "tally_daily", 3);
    let again = sink_ok(&url, &h.out, &[]);
    assert_eq!(again["rows"], 0);
}

#[test]
fn two_sinks_into_one_table_take_turns() {
    let server = PgServer::start();
    let url = server.url();
    let mut client = server.client();
    let h = History::made(LARGER);
    let total: u64 = (1..=3).map(|c| changeset_rows(&h.out, c)).sum();
    let rate = (total / 2).max(1).to_string();
    let children: Vec<_> = (0..2)
        .map(|_| {
            sink_command(
                &url,
                &h.out,
                &[
                    "--chunk-rows",
                    "500",
                    "--max-rows-per-second",
                    &rate,
                    "--json",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tally starts")
        })
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("tally ends");
            assert!(output.status.success(), "{}", texts(&output).1);
            serde_json::from_slice(&output.stdout).expect("a JSON report")
        })
        .collect();
    let mut rows: Vec<u64> = reports
        .iter()
        .map(|r| r["rows"].as_u64().unwrap())
        .collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [0, total],
        "one applied everything, the other nothing: {reports:?}"
    );
    let waited = reports
        .iter()
        .find(|r| r["rows"] == 0)
        .and_then(|r| r["lock_wait_seconds"].as_f64())
        .unwrap();
    assert!(
        waited > 0.5,
        "the second sink waited for the first: {waited} s"
    );
    assert_equals_output(&mut client, "tally_daily", &h.out, 3);
    assert_ledger_complete(&mut client, "tally_daily", 3);
}

#[test]
fn bad_urls_unreachable_servers_wrong_credentials_and_other_columns_write_nothing() {
    let server = PgServer::start();
    let mut client = server.client();
    let h = History::new(SMALL);
    h.commit(1);
    let nothing_written = |client: &mut postgres::Client| {
        let row = client
            .query_one(
                "SELECT to_regclass('tally_daily_ledger') IS NULL, \
                 (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tally%')",
                &[],
            )
            .expect("a query");
        let (no_ledger, tables): (bool, i64) = (row.get(0), row.get(1));
        assert!(no_ledger, "no ledger was created");
        tables
    };

    // Usage errors (exit status 2): no URL, a URL that does not parse, a
    // table name that is not a plain identifier.
    let none = Command::new(common::tally_bin())
        .args(["sink", "postgres", "--out", s(&h.out)])
        .env_remove(URL_ENV)
        .output()
        .expect("tally runs");
    assert_eq!(none.status.code(), Some(2));
    common::assert_mentions(&texts(&none).1, &["no database given", URL_ENV]);
    let bad = format!(
        "postgresql://tally:{}@localhost:notaport/postgres",
        pg_server::PASSWORD
    );
    let err = sink_fails(&bad, &h.out, &[], 2);
    common::assert_mentions(&err, &["invalid PostgreSQL URL", "port"]);
    let err = sink_fails(&server.url(), &h.out, &["--table", "Totals; DROP"], 2);
    common::assert_mentions(&err, &["lower-case letters, digits and _"]);

    // A server that is not there: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let unreachable = format!(
        "postgresql://tally:{}@127.0.0.1:{port}/postgres",
        pg_server::PASSWORD
    );
    let err = sink_fails(&unreachable, &h.out, &[], 1);
    common::assert_mentions(
        &err,
        &[
            &format!("cannot connect to postgresql://tally:***@127.0.0.1:{port}/postgres"),
            "refused",
        ],
    );

    // Wrong credentials: the server's refusal, neither password shown.
    let wrong = server.url_with(pg_server::USER, "not-the-pw-3141");
    let err = sink_fails(&wrong, &h.out, &[], 1);
    common::assert_mentions(&err, &["password authentication failed", "28P01"]);
    assert!(!err.contains("not-the-pw-3141"), "{err}");
    assert_eq!(nothing_written(&mut client), 0);

    // A table with other columns: each difference named, nothing created
    // or written.
    client
        .batch_execute(
            "CREATE TABLE tally_daily (day date NOT NULL, creator_id text NOT NULL, \
             template_id text NOT NULL, events bigint NOT NULL, payable_events bigint, \
             amount_micros numeric NOT NULL, \"commit\" bigint NOT NULL, note text, \
             PRIMARY KEY (day, creator_id))",
        )
        .expect("a table");
    let err = sink_fails(&server.url(), &h.out, &[], 1);
    common::assert_mentions(
        &err,
        &[
            "public.tally_daily does not have the columns a sink writes",
            "no column rule_hash (text)",
            "column amount_micros is numeric, not bigint",
            "column payable_events allows nulls",
            "an unexpected column note (text)",
            "its primary key is (day, creator_id), not (day, creator_id, template_id)",
        ],
    );
    let err = sink_fails(&server.url(), &h.out, &["--dry-run"], 1);
    common::assert_mentions(&err, &["column amount_micros is numeric"]);
    assert_eq!(nothing_written(&mut client), 1);
    assert_eq!(table_rows_count(&mut client, "tally_daily"), 0);

    // The table as a sink makes it, holding rows no sink wrote: refused.
    client
        .batch_execute("DROP TABLE tally_daily")
        .expect("drop");
    client
        .batch_execute(&tally::sink::postgres::ddl())
        .expect("the documented DDL runs");
    client
        .batch_execute("DROP TABLE tally_daily_ledger, tally_monthly, tally_monthly_ledger")
        .expect("drop");
    client
        .batch_execute(
            "INSERT INTO tally_daily VALUES ('2026-05-01', 'cr-x', 'tpl-x', 1, 1, 1, 'h', 1)",
        )
        .expect("a row");
    let err = sink_fails(&server.url(), &h.out, &[], 1);
    common::assert_mentions(
        &err,
        &["holds rows but its ledger public.tally_daily_ledger records none"],
    );
    assert_eq!(nothing_written(&mut client), 1);
    assert_eq!(table_rows_count(&mut client, "tally_daily"), 1);
    // A view in the table's place.
    client
        .batch_execute("CREATE VIEW tally_view AS SELECT 1 AS x")
        .expect("a view");
    let err = sink_fails(&server.url(), &h.out, &["--table", "tally_view"], 1);
    common::assert_mentions(&err, &["public.tally_view is a view, not a table"]);
    let ledger_made: bool = client
        .query_one("SELECT to_regclass('tally_view_ledger') IS NOT NULL", &[])
        .expect("a query")
        .get(0);
    assert!(!ledger_made, "no ledger beside the view");
}

fn table_rows_count(client: &mut postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .expect("a count")
        .get(0)
}

#[test]
fn help_ends_with_examples_and_names_the_url_variable() {
    for command in [&["sink", "--help"][..], &["sink", "postgres", "--help"]] {
        let help = common::tally_ok(command);
        let examples = help
            .rfind("Examples:")
            .unwrap_or_else(|| panic!("tally {command:?} has no examples:\n{help}"));
        assert!(
            help[examples..].contains("tally sink postgres --out out/"),
            "{help}"
        );
        assert!(help.contains(URL_ENV), "{help}");
    }
}

#[test]
fn a_url_without_a_password_takes_it_from_pgpassword_or_the_password_file_as_psql_does() {
    use std::os::unix::fs::PermissionsExt;
    let server = PgServer::start();
    let h = History::new(SMALL);
    h.commit(1);
    let home = TempDir::new().expect("temp dir");
    let passfile = home.path().join("pgpass");
    let url = server.url_without_password();
    // The sink with only the given password variables set, and a home
    // directory of its own (so no ~/.pgpass of the machine is read).
    let sink_with = |vars: &[(&str, &str)]| {
        let mut command = sink_command(&url, &h.out, &["--json"]);
        command
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .env("HOME", home.path());
        for (name, value) in vars {
            command.env(name, value);
        }
        let output = command.output().expect("tally runs");
        let (stdout, stderr) = texts(&output);
        assert_no_password(&[&stdout, &stderr]);
        (output.status.code(), stdout, stderr)
    };

    // Nowhere to find it: the server refuses, and nothing is written.
    let (code, _, stderr) = sink_with(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    common::assert_mentions(&stderr, &["cannot connect", "password"]);

    // A wrong PGPASSWORD: refused, and the message says where it came from.
    let (code, _, stderr) = sink_with(&[("PGPASSWORD", "not-the-pw-2718")]);
    assert_eq!(code, Some(1), "{stderr}");
    common::assert_mentions(
        &stderr,
        &[
            "password authentication failed",
            "(password from PGPASSWORD)",
        ],
    );
    assert!(!stderr.contains("not-the-pw-2718"), "{stderr}");

    // The right PGPASSWORD: the commit is applied.
    let (code, stdout, stderr) = sink_with(&[("PGPASSWORD", pg_server::PASSWORD)]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("the JSON report");
    assert_eq!(report["schema_version"], 1, "{report}");

    // A password file others may read is ignored, with a warning, as libpq
    // does; the first line that matches wins once it is private.
    let text = format!(
        "# serving databases\nlocalhost:1:*:*:wrong-port\n{}\n*:*:*:*:wrong-fallback\n",
        server.passfile_line()
    );
    std::fs::write(&passfile, text).expect("password file");
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let file = passfile.to_str().expect("a UTF-8 path");
    let (code, _, stderr) = sink_with(&[("PGPASSFILE", file)]);
    assert_eq!(code, Some(1), "{stderr}");
    common::assert_mentions(&stderr, &["group or world access", "0600"]);
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, _, stderr) = sink_with(&[("PGPASSFILE", file)]);
    assert_eq!(code, Some(0), "{stderr}");

    // ~/.pgpass is the default password file.
    std::fs::rename(&passfile, home.path().join(".pgpass")).expect("rename");
    let (code, _, stderr) = sink_with(&[]);
    assert_eq!(code, Some(0), "{stderr}");
}
