//! The PostgreSQL target of a sink: applies an output's commits to a table,
//! each chunk of rows in one transaction with its ledger entry.
//!
//! For each chunk: binary `COPY` into a temporary table, one upsert keyed by
//! the table's key (an older commit never overwrites a row a newer one
//! wrote), and the chunk's ledger entry, committed together; a commit counts
//! as applied with its last chunk. A session advisory lock on the table makes
//! sinks into one table take turns, and the ledger, read under that lock, says
//! where to go on: a sink that is killed leaves its open transaction to be
//! rolled back by the server, so the table is always at a chunk boundary that
//! the ledger names, and every row is applied exactly once.
//!
//! This module owns the database side: the URL (whose password it never
//! shows), the tables' definitions and their checks, the lock, the ledger and
//! the writes. What to apply comes from [`super`].

use super::password;
use super::{
    Changeset, Column, ColumnType, DAILY, LedgerEntry, MONTHLY, Pace, Part, Position, SinkError,
    Source, TableSpec,
};
use crate::progress::Progress;
use crate::report::thousands;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::NaiveDate;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::config::{Host, SslMode};
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, GenericClient, NoTls};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The environment variable a sink reads its URL from when `--url` is not given.
pub const URL_ENV: &str = "TALLY_POSTGRES_URL";
/// Rows per chunk (and per transaction) unless told otherwise.
pub const DEFAULT_CHUNK_ROWS: u64 = 50_000;
/// The version of the JSON report's shape.
pub const REPORT_SCHEMA_VERSION: u32 = 1;
/// How long a connection attempt may take unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The suffix of a ledger's name: table `t` keeps its ledger in `t_ledger`.
pub const LEDGER_SUFFIX: &str = "_ledger";
/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;
/// The temporary table each chunk of a table is copied into is this,
/// then the table spec's name (`tally_sink_stage_daily`).
const STAGE_PREFIX: &str = "tally_sink_stage_";
/// The suffix of the monthly table's name when only `--table` is given:
/// `--table t` puts the monthly totals in `t_monthly`.
pub const MONTHLY_SUFFIX: &str = "_monthly";
/// What the password is shown as.
const MASK: &str = "***";

/// What can go wrong on the database side of a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The URL cannot be parsed.
    #[error(
        "invalid PostgreSQL URL: {0} (expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME, or ?host=/socket/dir for a Unix socket)"
    )]
    InvalidUrl(String),
    /// The server cannot be reached, or refused the connection.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// A statement failed.
    #[error("{what}: {message}")]
    Query { what: String, message: String },
    /// No table name has a schema to go into.
    #[error(
        "the connection has no current schema (its search_path is empty); give the table as --table SCHEMA.NAME"
    )]
    NoSchema,
    /// The target's name is taken by something that is not a table.
    #[error("{name} is a {kind}, not a table; name another table with --table")]
    NotATable { name: String, kind: String },
    /// The target tables' names do not work together.
    #[error("{0}")]
    InvalidTable(String),
    /// The table or its ledger exists with other columns.
    #[error(
        "{table} does not have the columns a sink writes ({}); its definition must be the one in the README (`tally sink postgres` creates it when it is missing), or name another table with --table",
        .problems.join("; ")
    )]
    Columns {
        table: String,
        problems: Vec<String>,
    },
    /// The table holds another output's rows.
    #[error(
        "{table} holds the rows of another output ({theirs}, from {path}); this output is {ours}: a table serves one output. Sink into another --table, or drop {table} and {ledger} to load this output instead"
    )]
    OtherOutput {
        table: String,
        ledger: String,
        theirs: String,
        path: String,
        ours: String,
    },
    /// The table holds rows its ledger does not account for.
    #[error(
        "{table} holds rows but its ledger {ledger} records none: they were not written by a sink, and applying commits over them would mix them in. Empty the table, or sink into another --table"
    )]
    Unledgered { table: String, ledger: String },
    /// The output side failed (its log, a changeset, the ledger's fit).
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A message for a failed statement or connection: the server's own words
/// (severity, message, SQLSTATE, detail, hint) when it sent any.
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => chain(error),
    }
}

/// An error and its causes, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

fn query_error(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> PgError {
    let what = what.into();
    move |e| PgError::Query {
        what,
        message: describe(&e),
    }
}

/// A parsed database URL. It shows itself with the password masked, and
/// masks the password in any text.
#[derive(Clone)]
pub struct Url {
    config: Config,
    shown: String,
    secrets: Vec<String>,
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Url {
    /// Parses a URL (`postgresql://…`) or a libpq key-value string
    /// (`host=… user=…`). The error never quotes the text.
    pub fn parse(text: &str) -> Result<Url, PgError> {
        let config = Config::from_str(text).map_err(|e| PgError::InvalidUrl(chain(&e)))?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(PgError::InvalidUrl(
                "sslmode=require: Tally connects without TLS; use a Unix socket or a trusted network, with sslmode=disable or prefer".to_string(),
            ));
        }
        let mut secrets = Vec::new();
        if let Some(password) = config.get_password().filter(|p| !p.is_empty()) {
            secrets.push(String::from_utf8_lossy(password).into_owned());
            // As written in the URL, percent-encoded or not.
            if let Some(raw) = raw_password(text)
                && !raw.is_empty()
            {
                secrets.push(raw.to_string());
            }
        }
        // Longest first, so that a secret inside another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let shown = show(&config);
        Ok(Url {
            config,
            shown,
            secrets,
        })
    }

    /// `text` with every occurrence of the password replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), MASK);
        }
        out
    }

    fn connect(&self) -> Result<Client, PgError> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tally sink");
        }
        let found = if config.get_password().is_none() {
            self.password_from_environment(&mut config)
        } else {
            None
        };
        config.connect(NoTls).map_err(|e| {
            let mut message = self.mask(&describe(&e));
            if let Some((password, source)) = &found {
                if !password.is_empty() {
                    message = message.replace(password.as_str(), MASK);
                }
                message.push_str(&match source {
                    password::Found::Environment => {
                        format!(" (password from {})", password::PASSWORD_ENV)
                    }
                    password::Found::File(path) => {
                        format!(" (password from {})", path.display())
                    }
                });
            }
            PgError::Connect {
                target: self.shown.clone(),
                message,
            }
        })
    }

    /// Sets the password libpq would use when the URL has none
    /// (`PGPASSWORD`, then the password file), and says where it came from.
    fn password_from_environment(&self, config: &mut Config) -> Option<(String, password::Found)> {
        let user = config.get_user()?.to_string();
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => Some(name.clone()),
            _ => None,
        };
        let database = config.get_dbname().unwrap_or(&user).to_string();
        let target = password::Target {
            host: host.as_deref(),
            port: config.get_ports().first().copied(),
            database: &database,
            user: &user,
        };
        let mut warnings = Vec::new();
        let found = password::lookup(&target, &mut warnings);
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        let (password, source) = found?;
        config.password(password.as_bytes());
        Some((password, source))
    }
}

/// The password as written in a URL (between `user:` and `@`, or a
/// `password=` parameter), to mask it also in that spelling.
fn raw_password(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"));
    if let Some(rest) = rest {
        if let Some((credentials, _)) = rest.split_once('@')
            && let Some((_, password)) = credentials.split_once(':')
        {
            return Some(password);
        }
        let query = rest.split_once('?')?.1;
        return query
            .split('&')
            .find_map(|pair| pair.strip_prefix("password="));
    }
    text.split_whitespace()
        .find_map(|pair| pair.strip_prefix("password="))
        .map(|p| p.trim_matches('\''))
}

/// A URL for people: the user, `***` for a password, hosts, ports, database.
fn show(config: &Config) -> String {
    let mut text = String::from("postgresql://");
    if let Some(user) = config.get_user() {
        text.push_str(user);
    }
    if config.get_password().is_some() {
        text.push(':');
        text.push_str(MASK);
    }
    if config.get_user().is_some() || config.get_password().is_some() {
        text.push('@');
    }
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied();
    let mut tcp = Vec::new();
    let mut sockets = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            Host::Tcp(name) => {
                let name = if name.contains(':') {
                    format!("[{name}]")
                } else {
                    name.clone()
                };
                tcp.push(match port(i) {
                    Some(p) => format!("{name}:{p}"),
                    None => name,
                });
            }
            Host::Unix(dir) => sockets.push((dir.display().to_string(), port(i))),
        }
    }
    text.push_str(&tcp.join(","));
    text.push('/');
    if let Some(db) = config.get_dbname() {
        text.push_str(db);
    }
    let mut params: Vec<String> = Vec::new();
    for (dir, port) in sockets {
        params.push(format!("host={dir}"));
        if let Some(p) = port {
            params.push(format!("port={p}"));
        }
    }
    if !params.is_empty() {
        text.push('?');
        text.push_str(&params.join("&"));
    }
    text
}

/// A table name as `--table` takes it: `NAME` or `SCHEMA.NAME`, lower-case
/// letters, digits and `_`, not starting with a digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl FromStr for TableName {
    type Err = String;

    fn from_str(text: &str) -> Result<TableName, String> {
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text),
        };
        let check = |part: &str, what: &str, max: usize| -> Result<(), String> {
            let mut bytes = part.bytes();
            let first_ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
            if !first_ok
                || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(format!(
                    "{text:?}: a {what} is lower-case letters, digits and _, not starting with a digit"
                ));
            }
            if part.len() > max {
                return Err(format!(
                    "{text:?}: a {what} is at most {max} bytes long here"
                ));
            }
            Ok(())
        };
        if let Some(schema) = schema {
            check(schema, "schema name", MAX_IDENTIFIER)?;
        }
        check(name, "table name", MAX_IDENTIFIER - LEDGER_SUFFIX.len())?;
        Ok(TableName {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        })
    }
}

/// A name as an SQL identifier, always quoted (names are checked to need no
/// escaping, but may be keywords).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a sink is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    /// The target table (the default table's name in the current schema
    /// when None).
    pub table: Option<TableName>,
    /// The target of the monthly table (when None: `table` and
    /// [`MONTHLY_SUFFIX`] beside it, or the default monthly table's name in
    /// the current schema).
    pub monthly_table: Option<TableName>,
    pub chunk_rows: u64,
    pub max_rows_per_second: Option<u64>,
    pub dry_run: bool,
    pub progress: bool,
}

/// One commit a sink applied (or would apply, in a dry run).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitReport {
    pub commit: u64,
    pub rule_hash: String,
    pub rule_name: String,
    pub rule_version: String,
    pub input_fingerprint: String,
    pub committed_at: String,
    /// Rows the commit changed in all.
    pub rows: u64,
    /// The first of them this sink applied: 0, or where an earlier sink
    /// stopped.
    pub first_row: u64,
    /// Chunks this sink applied (or would).
    pub chunks: u64,
}

/// What a sink did to one target table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    pub ledger: String,
    /// Commits already applied to it before this sink.
    pub already_applied: u64,
    /// Commits applied (or that would be), in order; the last one is partly
    /// applied only if the sink stopped.
    pub applied: Vec<CommitReport>,
    /// Rows written (or that would be).
    pub rows: u64,
    pub chunks: u64,
}

/// What a sink did, for people (`Display`) and machines (JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tally_version: String,
    pub output: String,
    pub output_id: String,
    /// The database, password masked.
    pub target: String,
    pub dry_run: bool,
    /// Tables this sink created (or would create, in a dry run).
    pub created: Vec<String>,
    /// Commits in the output.
    pub commits: u64,
    /// The daily table (its fields at the top level of the JSON report).
    #[serde(flatten)]
    pub daily: TableReport,
    /// The monthly table.
    pub monthly: TableReport,
    pub chunk_rows: u64,
    pub max_rows_per_second: Option<u64>,
    pub lock_wait_seconds: f64,
    pub elapsed_seconds: f64,
    /// Rows written to both tables a second.
    pub rows_per_second: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let would = |done: &'static str, future: &'static str| {
            if self.dry_run { future } else { done }
        };
        writeln!(
            f,
            "sink postgres: {} (output {}, {} commit(s)) into {} and {} at {}",
            self.output,
            self.output_id,
            self.commits,
            self.daily.table,
            self.monthly.table,
            self.target
        )?;
        if !self.created.is_empty() {
            writeln!(
                f,
                "{} {}",
                would("created", "would create"),
                self.created.join(", ")
            )?;
        }
        for table in [&self.daily, &self.monthly] {
            table.fmt_applied(f, self.dry_run)?;
        }
        let rows = self.daily.rows + self.monthly.rows;
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        } else if rows > 0 {
            writeln!(
                f,
                "wrote {} row(s) in {:.2} s ({} rows/s)",
                thousands(rows),
                self.elapsed_seconds,
                thousands(self.rows_per_second.round() as u64)
            )?;
        }
        if let Some(rate) = self.max_rows_per_second {
            writeln!(f, "paced at most {} rows/s", thousands(rate))?;
        }
        if self.lock_wait_seconds >= 0.1 {
            writeln!(
                f,
                "waited {:.1} s for another sink into {}",
                self.lock_wait_seconds, self.daily.table
            )?;
        }
        Ok(())
    }
}

impl TableReport {
    /// The commits applied to this table and a line of totals.
    fn fmt_applied(&self, f: &mut fmt::Formatter<'_>, dry_run: bool) -> fmt::Result {
        for c in &self.applied {
            let rows = if c.first_row > 0 {
                format!(
                    "rows {}..{} of {} (resumed)",
                    thousands(c.first_row),
                    thousands(c.rows),
                    thousands(c.rows)
                )
            } else {
                format!("{} row(s)", thousands(c.rows))
            };
            writeln!(
                f,
                "  {}  commit {}  {}@{} ({})  {}  {rows} in {} chunk(s)",
                self.table,
                c.commit,
                crate::rule::shown(&c.rule_name),
                crate::rule::shown(&c.rule_version),
                c.rule_hash.chars().take(12).collect::<String>(),
                c.committed_at,
                c.chunks
            )?;
        }
        let before = if self.already_applied > 0 {
            format!("; {} commit(s) were applied before", self.already_applied)
        } else {
            String::new()
        };
        if self.applied.is_empty() {
            writeln!(
                f,
                "{}: nothing to apply: all {} commit(s) are applied",
                self.table, self.already_applied
            )
        } else {
            writeln!(
                f,
                "{}: {} {} commit(s), {} row(s) in {} chunk(s){before}",
                self.table,
                if dry_run { "would apply" } else { "applied" },
                self.applied.len(),
                thousands(self.rows),
                self.chunks
            )
        }
    }
}

/// The columns of a ledger: one row per chunk applied.
const LEDGER_COLUMNS: &[(&str, &str)] = &[
    ("output_id", "text"),
    ("output_path", "text"),
    ("commit", "bigint"),
    ("first_row", "bigint"),
    ("chunk_rows", "bigint"),
    ("commit_rows", "bigint"),
    ("complete", "boolean"),
    ("rule_hash", "text"),
    ("input_fingerprint", "text"),
    ("committed_at", "timestamp with time zone"),
    ("applied_at", "timestamp with time zone"),
];
const LEDGER_KEY: &[&str] = &["output_id", "commit", "first_row"];

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Date => "date",
        ColumnType::Text => "text",
        ColumnType::BigInt => "bigint",
    }
}

fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Date => Type::DATE,
        ColumnType::Text => Type::TEXT,
        ColumnType::BigInt => Type::INT8,
    }
}

/// The definition of a table: its columns (name, type as PostgreSQL spells
/// it) and its primary key. Every column is NOT NULL.
#[derive(Debug)]
struct Definition {
    columns: Vec<(&'static str, &'static str)>,
    key: Vec<&'static str>,
    defaults: &'static [(&'static str, &'static str)],
}

impl Definition {
    /// A served table: the spec's columns and `commit`, the commit that last
    /// wrote the row.
    fn served(spec: &TableSpec) -> Definition {
        let mut columns: Vec<(&str, &str)> = spec
            .all_columns()
            .iter()
            .map(|c| (c.name, sql_type(c.ty)))
            .collect();
        columns.push(("commit", "bigint"));
        Definition {
            columns,
            key: std::iter::once(spec.partition)
                .chain(spec.key.iter().copied())
                .collect(),
            defaults: &[],
        }
    }

    fn ledger() -> Definition {
        Definition {
            columns: LEDGER_COLUMNS.to_vec(),
            key: LEDGER_KEY.to_vec(),
            defaults: &[("applied_at", "now()")],
        }
    }

    /// `CREATE TABLE` for `name` (qualified and quoted).
    fn create(&self, name: &str) -> String {
        let width = self
            .columns
            .iter()
            .map(|(n, _)| n.len() + 2)
            .max()
            .unwrap_or(0);
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|(n, t)| {
                let default = self
                    .defaults
                    .iter()
                    .find(|(d, _)| d == n)
                    .map(|(_, v)| format!(" DEFAULT {v}"))
                    .unwrap_or_default();
                format!("    {:width$} {t} NOT NULL{default}", ident(n))
            })
            .collect();
        lines.push(format!(
            "    PRIMARY KEY ({})",
            self.key
                .iter()
                .map(|k| ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        format!("CREATE TABLE {name} (\n{}\n)", lines.join(",\n"))
    }
}

/// The `CREATE TABLE` statements a sink runs for the default tables and
/// their ledgers when they are missing (there, with the schema's name before
/// each table's), as the README documents them.
pub fn ddl() -> String {
    let mut text = String::new();
    for spec in super::TABLES {
        let ledger = format!("{}{LEDGER_SUFFIX}", spec.default_target);
        text.push_str(&format!(
            "{};\n{};\n",
            Definition::served(spec).create(&ident(spec.default_target)),
            Definition::ledger().create(&ident(&ledger))
        ));
    }
    text
}

/// One target table and its ledger.
#[derive(Debug)]
struct Target {
    spec: &'static TableSpec,
    schema: String,
    table: String,
    ledger: String,
    table_sql: String,
    ledger_sql: String,
    /// This session's staging table (temporary, so unqualified).
    stage: String,
}

impl Target {
    fn new(spec: &'static TableSpec, schema: &str, name: &str) -> Target {
        let ledger = format!("{name}{LEDGER_SUFFIX}");
        Target {
            spec,
            schema: schema.to_string(),
            table_sql: format!("{}.{}", ident(schema), ident(name)),
            ledger_sql: format!("{}.{}", ident(schema), ident(&ledger)),
            table: format!("{schema}.{name}"),
            ledger: format!("{schema}.{ledger}"),
            stage: ident(&format!("{STAGE_PREFIX}{}", spec.name)),
        }
    }

    /// The key of the advisory lock sinks into this table take.
    fn lock_key(&self) -> i64 {
        let hash = blake3::hash(format!("tally sink\0{}", self.table).as_bytes());
        let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("8 bytes");
        i64::from_le_bytes(bytes)
    }

    /// Takes the lock, waiting for another sink that holds it; returns how
    /// long it waited.
    fn lock(&self, client: &mut Client, progress: bool) -> Result<Duration, PgError> {
        let started = Instant::now();
        let what = || format!("taking the lock of {}", self.table);
        let key = self.lock_key();
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(query_error(what()))?
            .get(0);
        if !got {
            let line = Progress::stage(
                &format!("waiting for another sink into {}", self.table),
                progress,
            );
            client
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .map_err(query_error(what()))?;
            line.finish();
        }
        Ok(started.elapsed())
    }

    /// Checks the table and the ledger, creating whichever is missing
    /// (unless `dry_run`); returns the names of those created (or that would
    /// be). Nothing is created unless both check out.
    fn prepare(&self, client: &mut Client, dry_run: bool) -> Result<Vec<String>, PgError> {
        let mut tx = client
            .transaction()
            .map_err(query_error("starting a transaction"))?;
        let mut missing = Vec::new();
        for (name, sql, definition) in [
            (&self.table, &self.table_sql, Definition::served(self.spec)),
            (&self.ledger, &self.ledger_sql, Definition::ledger()),
        ] {
            match self.relation(&mut tx, name)? {
                Some(oid) => check(&mut tx, name, oid, &definition)?,
                None => missing.push((name.clone(), definition.create(sql))),
            }
        }
        // A table without its ledger: only an empty one gets a new ledger.
        if missing.len() == 1 && missing[0].0 == self.ledger {
            self.check_empty(&mut tx)?;
        }
        if !dry_run {
            for (name, create) in &missing {
                tx.batch_execute(create)
                    .map_err(query_error(format!("creating {name}")))?;
            }
            tx.commit()
                .map_err(query_error(format!("creating {}", self.table)))?;
        }
        Ok(missing.into_iter().map(|(name, _)| name).collect())
    }

    /// The oid of relation `name` (schema-qualified) if it exists; an error
    /// if it is not a table.
    fn relation(
        &self,
        client: &mut impl GenericClient,
        name: &str,
    ) -> Result<Option<u32>, PgError> {
        let bare = name.rsplit_once('.').map_or(name, |(_, n)| n);
        let row = client
            .query_opt(
                "SELECT c.oid, c.relkind::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&self.schema, &bare],
            )
            .map_err(query_error(format!("looking up {name}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (oid, kind): (u32, String) = (row.get(0), row.get(1));
        match kind.as_str() {
            "r" | "p" => Ok(Some(oid)),
            other => Err(PgError::NotATable {
                name: name.to_string(),
                kind: match other {
                    "v" => "view",
                    "m" => "materialized view",
                    "i" | "I" => "index",
                    "S" => "sequence",
                    "f" => "foreign table",
                    "c" => "composite type",
                    _ => "relation other than a table",
                }
                .to_string(),
            }),
        }
    }

    /// The ledger's entries for `source`, in order; an error if it holds
    /// another output's.
    fn ledger(&self, client: &mut Client, source: &Source) -> Result<Vec<LedgerEntry>, PgError> {
        let what = || format!("reading {}", self.ledger);
        let other = client
            .query_opt(
                &format!(
                    "SELECT output_id, output_path FROM {} WHERE output_id <> $1 LIMIT 1",
                    self.ledger_sql
                ),
                &[&source.id],
            )
            .map_err(query_error(what()))?;
        if let Some(row) = other {
            return Err(PgError::OtherOutput {
                table: self.table.clone(),
                ledger: self.ledger.clone(),
                theirs: row.get(0),
                path: row.get(1),
                ours: source.id.clone(),
            });
        }
        let rows = client
            .query(
                &format!(
                    "SELECT \"commit\", first_row, chunk_rows, commit_rows, complete, rule_hash \
                     FROM {} WHERE output_id = $1 ORDER BY \"commit\", first_row",
                    self.ledger_sql
                ),
                &[&source.id],
            )
            .map_err(query_error(what()))?;
        let count = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        Ok(rows
            .iter()
            .map(|r| LedgerEntry {
                commit: count(r.get(0)),
                first_row: count(r.get(1)),
                rows: count(r.get(2)),
                commit_rows: count(r.get(3)),
                complete: r.get(4),
                rule_hash: r.get(5),
            })
            .collect())
    }

    /// Refuses a table that holds rows when its ledger records none (for
    /// this output, so, after [`Target::ledger`], none at all) or is missing.
    fn check_empty(&self, client: &mut impl GenericClient) -> Result<(), PgError> {
        let any: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", self.table_sql),
                &[],
            )
            .map_err(query_error(format!("reading {}", self.table)))?
            .get(0);
        if any {
            return Err(PgError::Unledgered {
                table: self.table.clone(),
                ledger: self.ledger.clone(),
            });
        }
        Ok(())
    }

    /// Creates this session's staging table, emptied at every commit.
    fn stage(&self, client: &mut Client) -> Result<(), PgError> {
        let columns: Vec<String> = self
            .spec
            .all_columns()
            .iter()
            .map(|c| format!("{} {} NOT NULL", ident(c.name), sql_type(c.ty)))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TEMPORARY TABLE {} ({}) ON COMMIT DELETE ROWS",
                self.stage,
                columns.join(", ")
            ))
            .map_err(query_error("creating the staging table"))
    }

    /// Applies one chunk of a commit: copies its rows into the staging
    /// table, upserts them and writes the chunk's ledger entry, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        client: &mut Client,
        source: &Source,
        changeset: &Changeset,
        first_row: u64,
        parts: &[Part],
        rows: u64,
        complete: bool,
    ) -> Result<(), PgError> {
        let commit = changeset.commit;
        let what = || {
            format!(
                "applying rows {first_row}..{} of commit {commit} to {}",
                first_row + rows,
                self.table
            )
        };
        let columns = self.spec.all_columns();
        let names: Vec<String> = columns.iter().map(|c| ident(c.name)).collect();
        let mut tx = client.transaction().map_err(query_error(what()))?;
        if rows > 0 {
            let copy = tx
                .copy_in(&format!(
                    "COPY pg_temp.{} ({}) FROM STDIN (FORMAT binary)",
                    self.stage,
                    names.join(", ")
                ))
                .map_err(query_error(what()))?;
            let types: Vec<Type> = columns.iter().map(|c| pg_type(c.ty)).collect();
            let mut writer = BinaryCopyInWriter::new(copy, &types);
            for part in parts {
                write_part(&mut writer, &columns, part).map_err(query_error(what()))?;
            }
            writer.finish().map_err(query_error(what()))?;
            let key: Vec<String> = std::iter::once(self.spec.partition)
                .chain(self.spec.key.iter().copied())
                .map(ident)
                .collect();
            let updates: Vec<String> = columns
                .iter()
                .map(|c| c.name)
                .filter(|n| *n != self.spec.partition && !self.spec.key.contains(n))
                .chain(["commit"])
                .map(|n| format!("{0} = EXCLUDED.{0}", ident(n)))
                .collect();
            let upsert = format!(
                "INSERT INTO {table} AS t ({cols}, \"commit\") SELECT {cols}, $1::bigint FROM pg_temp.{stage} \
                 ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE t.\"commit\" <= EXCLUDED.\"commit\"",
                table = self.table_sql,
                stage = self.stage,
                cols = names.join(", "),
                key = key.join(", "),
                updates = updates.join(", "),
            );
            tx.execute(&upsert, &[&sql_count(commit)])
                .map_err(query_error(what()))?;
        }
        let entry = source.commit(commit);
        tx.execute(
            &format!(
                "INSERT INTO {} (output_id, output_path, \"commit\", first_row, chunk_rows, commit_rows, \
                 complete, rule_hash, input_fingerprint, committed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::timestamptz)",
                self.ledger_sql
            ),
            &[
                &source.id,
                &absolute(&source.out),
                &sql_count(commit),
                &sql_count(first_row),
                &sql_count(rows),
                &sql_count(changeset.rows),
                &complete,
                &entry.rule.hash,
                &entry.input_fingerprint,
                &entry.committed_at,
            ],
        )
        .map_err(query_error(what()))?;
        tx.commit().map_err(query_error(what()))
    }
}

fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn absolute(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// One value of a row being copied.
enum Value<'a> {
    Date(NaiveDate),
    Text(&'a str),
    BigInt(i64),
}

impl Value<'_> {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Date(d) => d,
            Value::Text(s) => s,
            Value::BigInt(n) => n,
        }
    }
}

/// Writes a part's rows: the partition value, then the batch's columns.
fn write_part(
    writer: &mut BinaryCopyInWriter<'_>,
    columns: &[Column],
    part: &Part,
) -> Result<(), postgres::Error> {
    let batch: &RecordBatch = &part.batch;
    for row in 0..batch.num_rows() {
        let values: Vec<Value<'_>> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| match (i, c.ty) {
                (0, _) => Value::Date(part.partition),
                (_, ColumnType::Text) => {
                    Value::Text(batch.column(i - 1).as_string::<i32>().value(row))
                }
                (_, ColumnType::BigInt) => {
                    Value::BigInt(batch.column(i - 1).as_primitive::<Int64Type>().value(row))
                }
                (_, ColumnType::Date) => Value::Date(
                    batch
                        .column(i - 1)
                        .as_primitive::<arrow::datatypes::Date32Type>()
                        .value_as_date(row)
                        .unwrap_or_default(),
                ),
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::sql).collect();
        writer.write(&refs)?;
    }
    Ok(())
}

/// Checks that relation `oid` has exactly the columns and primary key of
/// `definition`.
fn check(
    client: &mut impl GenericClient,
    name: &str,
    oid: u32,
    definition: &Definition,
) -> Result<(), PgError> {
    let what = || format!("reading the columns of {name}");
    let found: Vec<(String, String, bool)> = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .map_err(query_error(what()))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let key: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .map_err(query_error(what()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut problems = Vec::new();
    for (column, ty) in &definition.columns {
        match found.iter().find(|(n, _, _)| n == column) {
            None => problems.push(format!("no column {column} ({ty})")),
            Some((_, found_ty, not_null)) => {
                if found_ty != ty {
                    problems.push(format!("column {column} is {found_ty}, not {ty}"));
                }
                if !not_null {
                    problems.push(format!("column {column} allows nulls"));
                }
            }
        }
    }
    for (column, ty, _) in &found {
        if !definition.columns.iter().any(|(n, _)| n == column) {
            problems.push(format!("an unexpected column {column} ({ty})"));
        }
    }
    let mut want: Vec<&str> = definition.key.clone();
    let mut have: Vec<&str> = key.iter().map(String::as_str).collect();
    want.sort_unstable();
    have.sort_unstable();
    if want != have {
        problems.push(if have.is_empty() {
            format!(
                "no primary key (it must be ({}))",
                definition.key.join(", ")
            )
        } else {
            format!(
                "its primary key is ({}), not ({})",
                key.join(", "),
                definition.key.join(", ")
            )
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PgError::Columns {
            table: name.to_string(),
            problems,
        })
    }
}

/// The name of the monthly table's target: `--monthly-table`, else the
/// daily target's name with [`MONTHLY_SUFFIX`] when `--table` is given, else
/// the default; in the daily target's schema unless it names its own.
fn monthly_name(options: &Options, schema: &str) -> Result<(String, String), PgError> {
    if let Some(t) = &options.monthly_table {
        return Ok((
            t.schema.clone().unwrap_or_else(|| schema.to_string()),
            t.name.clone(),
        ));
    }
    let Some(daily) = &options.table else {
        return Ok((schema.to_string(), MONTHLY.default_target.to_string()));
    };
    let name = format!("{}{MONTHLY_SUFFIX}", daily.name);
    if name.len() + LEDGER_SUFFIX.len() > MAX_IDENTIFIER {
        return Err(PgError::InvalidTable(format!(
            "the monthly table's name {name} (from --table) is longer than {} bytes; name it with --monthly-table",
            MAX_IDENTIFIER - LEDGER_SUFFIX.len()
        )));
    }
    Ok((schema.to_string(), name))
}

/// A commit to apply to one table: its changeset, the first row to apply
/// and the chunks `(first_row, rows)` that apply the rest.
type Step = (Changeset, u64, Vec<(u64, u64)>);

/// One served table in a sink: its target, where its ledger says to go on
/// from, what to apply (each commit's changeset, its first row to apply and
/// its chunks) and what was done.
struct Served {
    target: Target,
    position: Position,
    plan: Vec<Step>,
    report: TableReport,
}

/// Applies every commit of `options.out` not yet applied to the targets (the
/// daily table's and the monthly table's), in order, or (with `dry_run`)
/// says what it would apply. Each commit is applied to the daily table,
/// then to the monthly one, before the next commit.
pub fn sink(options: &Options, url: &Url) -> Result<Report, PgError> {
    let started = Instant::now();
    let source = Source::open(&options.out)?;
    let mut client = url.connect()?;
    let schema = match options.table.as_ref().and_then(|t| t.schema.clone()) {
        Some(schema) => schema,
        None => client
            .query_one("SELECT current_schema()::text", &[])
            .map_err(query_error("reading the current schema"))?
            .get::<_, Option<String>>(0)
            .ok_or(PgError::NoSchema)?,
    };
    let name = options
        .table
        .as_ref()
        .map_or(DAILY.default_target, |t| t.name.as_str());
    let (monthly_schema, monthly) = monthly_name(options, &schema)?;
    let targets = [
        Target::new(&DAILY, &schema, name),
        Target::new(&MONTHLY, &monthly_schema, &monthly),
    ];
    let [daily, monthly] = &targets;
    if [&daily.table, &daily.ledger].contains(&&monthly.table) || daily.table == monthly.ledger {
        return Err(PgError::InvalidTable(format!(
            "the daily table ({}, ledger {}) and the monthly table ({}, ledger {}) must be different tables; name the monthly one with --monthly-table",
            daily.table, daily.ledger, monthly.table, monthly.ledger
        )));
    }
    // Always in this order, so that two sinks never wait for each other.
    let mut lock_wait = Duration::ZERO;
    if !options.dry_run {
        for target in &targets {
            lock_wait += target.lock(&mut client, options.progress)?;
        }
    }
    let chunk_rows = Pace::new(options.max_rows_per_second).chunk_rows(options.chunk_rows);
    // Every table is checked, and every ledger read, before any is created:
    // nothing is created unless all of them check out.
    let mut created = Vec::new();
    let mut checked = Vec::new();
    for target in targets {
        let missing = target.prepare(&mut client, true)?;
        let entries = if missing.contains(&target.ledger) {
            Vec::new()
        } else {
            target.ledger(&mut client, &source)?
        };
        if entries.is_empty() && !missing.contains(&target.table) {
            target.check_empty(&mut client)?;
        }
        created.extend(missing);
        checked.push((target, entries));
    }
    if !options.dry_run {
        for (target, _) in &checked {
            target.prepare(&mut client, false)?;
        }
    }
    let mut tables = Vec::new();
    for (target, entries) in checked {
        let position = super::resume(&source, &entries)?;
        // What to apply: each commit after the last applied one, from where
        // an earlier sink stopped.
        let mut plan = Vec::new();
        for number in position.applied + 1..=source.commits.len() as u64 {
            let changeset = source.changeset(target.spec, number)?;
            let from = if number == position.applied + 1 {
                position.next_row
            } else {
                0
            };
            if number == position.applied + 1
                && let Some(recorded) = position.partial_rows
                && recorded != changeset.rows
            {
                return Err(SinkError::Ledger(format!(
                    "commit {number}'s changeset of the {} table holds {} row(s), but the ledger {} recorded {recorded} when a sink began applying it: the output changed since",
                    target.spec.name, changeset.rows, target.ledger
                ))
                .into());
            }
            let chunks = super::chunks(from, changeset.rows, chunk_rows);
            plan.push((changeset, from, chunks));
        }
        let report = TableReport {
            table: target.table.clone(),
            ledger: target.ledger.clone(),
            already_applied: position.applied,
            applied: Vec::new(),
            rows: 0,
            chunks: 0,
        };
        tables.push(Served {
            target,
            position,
            plan,
            report,
        });
    }

    let commit_report = |changeset: &Changeset, from: u64| {
        let entry = source.commit(changeset.commit);
        CommitReport {
            commit: changeset.commit,
            rule_hash: entry.rule.hash.clone(),
            rule_name: entry.rule.name.clone(),
            rule_version: entry.rule.version.clone(),
            input_fingerprint: entry.input_fingerprint.clone(),
            committed_at: entry.committed_at.clone(),
            rows: changeset.rows,
            first_row: from,
            chunks: 0,
        }
    };

    let mut rows_per_second = 0.0;
    if options.dry_run {
        for served in &mut tables {
            for (changeset, from, chunks) in &served.plan {
                let mut c = commit_report(changeset, *from);
                c.chunks = chunks.len() as u64;
                served.report.rows += changeset.rows - from;
                served.report.chunks += c.chunks;
                served.report.applied.push(c);
            }
        }
    } else {
        for served in &tables {
            if !served.plan.is_empty() {
                served.target.stage(&mut client)?;
            }
        }
        let total: u64 = tables
            .iter()
            .flat_map(|t| &t.plan)
            .map(|(c, from, _)| c.rows - from)
            .sum();
        let bar = Progress::counting("sink", Some(total), "rows", options.progress);
        let mut pace = Pace::new(options.max_rows_per_second);
        let writing = Instant::now();
        let first = tables
            .iter()
            .map(|t| t.position.applied + 1)
            .min()
            .unwrap_or(1);
        for number in first..=source.commits.len() as u64 {
            for served in &mut tables {
                let Some(index) = number.checked_sub(served.position.applied + 1) else {
                    continue;
                };
                let (changeset, from, chunks) = &served.plan[index as usize];
                served.report.applied.push(commit_report(changeset, *from));
                let last = chunks.len() - 1;
                for (i, &(first_row, rows)) in chunks.iter().enumerate() {
                    let parts = changeset.read(first_row, rows)?;
                    served.target.apply(
                        &mut client,
                        &source,
                        changeset,
                        first_row,
                        &parts,
                        rows,
                        i == last,
                    )?;
                    served.report.rows += rows;
                    served.report.chunks += 1;
                    if let Some(c) = served.report.applied.last_mut() {
                        c.chunks += 1;
                    }
                    bar.inc(rows);
                    pace.wrote(rows);
                }
            }
        }
        bar.finish();
        let spent = writing.elapsed().as_secs_f64();
        let rows: u64 = tables.iter().map(|t| t.report.rows).sum();
        if spent > 0.0 {
            rows_per_second = rows as f64 / spent;
        }
    }
    Ok(finish(
        options,
        url,
        &source,
        created,
        tables,
        chunk_rows,
        lock_wait,
        started,
        rows_per_second,
    ))
}

/// The report of a sink.
#[allow(clippy::too_many_arguments)]
fn finish(
    options: &Options,
    url: &Url,
    source: &Source,
    created: Vec<String>,
    tables: Vec<Served>,
    chunk_rows: u64,
    lock_wait: Duration,
    started: Instant,
    rows_per_second: f64,
) -> Report {
    let mut reports = tables.into_iter().map(|t| t.report);
    let daily = reports.next().expect("the daily table");
    let monthly = reports.next().expect("the monthly table");
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        tally_version: crate::pipeline::VERSION.to_string(),
        output: options.out.display().to_string(),
        output_id: source.id.clone(),
        target: url.to_string(),
        dry_run: options.dry_run,
        created,
        commits: source.commits.len() as u64,
        daily,
        monthly,
        chunk_rows,
        max_rows_per_second: options.max_rows_per_second,
        lock_wait_seconds: lock_wait.as_secs_f64(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        rows_per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password() {
        let url = Url::parse("postgresql://tally:pa%40ss@db.example:6543/totals").unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://tally:***@db.example:6543/totals"
        );
        assert_eq!(
            url.mask("auth failed for pa@ss and pa%40ss"),
            "auth failed for *** and ***"
        );
        let socket =
            Url::parse("postgres://tally:secret@/totals?host=/run/postgresql&port=5433").unwrap();
        assert_eq!(
            socket.to_string(),
            "postgresql://tally:***@/totals?host=/run/postgresql&port=5433"
        );
        let kv = Url::parse("host=localhost user=tally password=hunter2 dbname=t").unwrap();
        assert!(!kv.to_string().contains("hunter2"), "{kv}");
        assert_eq!(kv.mask("x hunter2 y"), "x *** y");
        let bare = Url::parse("postgresql://localhost/t").unwrap();
        assert_eq!(bare.to_string(), "postgresql://localhost:5432/t");
    }

    #[test]
    fn invalid_urls_are_not_quoted() {
        for text in [
            "postgresql://tally:hunter2@localhost:notaport/t",
            "postgresql://tally:hunter2@localhost/t?sslmode=sometimes",
            "hunter2",
            "postgresql://tally:hunter2@localhost/t?sslmode=require",
        ] {
            let err = Url::parse(text).unwrap_err().to_string();
            assert!(err.starts_with("invalid PostgreSQL URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(
            "serving.totals".parse::<TableName>(),
            Ok(TableName {
                schema: Some("serving".into()),
                name: "totals".into()
            })
        );
        for bad in [
            "Totals",
            "1x",
            "a;drop",
            "",
            "a.b.c",
            "x\"y",
            &"t".repeat(57),
        ] {
            assert!(bad.parse::<TableName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_documented_ddl_is_what_a_sink_creates() {
        let ddl = ddl();
        assert!(ddl.contains("CREATE TABLE \"tally_daily\" ("), "{ddl}");
        assert!(
            ddl.contains("PRIMARY KEY (\"day\", \"creator_id\", \"template_id\")"),
            "{ddl}"
        );
        assert!(
            ddl.contains("\"applied_at\"        timestamp with time zone NOT NULL DEFAULT now()"),
            "{ddl}"
        );
        // The README shows these statements; keep them the same.
        let readme = include_str!("../../../README.md");
        for statement in ddl.split(";\n").filter(|s| !s.trim().is_empty()) {
            assert!(
                readme.contains(statement),
                "README.md does not show:\n{statement}"
            );
        }
    }
}
