#!/usr/bin/env python3
"""The Tally pipeline with creator-pay v1, run in DuckDB: the reference for
"Tally's time against DuckDB's" (see benches/README.md).

    python3 benches/duckdb_reference.py --input DIR --out OUTDIR [--threads N]

It does what `tally run --input DIR --rule target/rules/creator-pay-v1.wasm
--out OUTDIR` does to the same Parquet files, as SQL in one DuckDB process:

1. Reads every `*.parquet` file of DIR (not recursive), as `tally gen --format
   parquet` writes them: the contract's columns as strings, timestamps of any
   unit or int64 epoch milliseconds. Other columns are ignored. A contract
   column missing from the files reads as null (so `missing-field:<name>`); a
   column of any other type makes every row `bad-type:<name>`. All files are
   read as one table, so they must share one schema.
2. Validates each record against the usage-event contract
   (`spec/events.md` of the shared folder beside the project) and quarantines the invalid ones WITH their
   reason code: the first problem in the contract's field order,
   `missing-field:<name>` (null) or `bad-value:<name>` (event_id not 1 to 128
   bytes; a timestamp outside 2000-01-01T00:00:00Z to 2100-12-31T23:59:59.999Z;
   empty creator_id or template_id; an enum that is not exactly one of the
   listed lower-case values; a country that is not two ASCII upper-case
   letters). They are written to OUTDIR/quarantine.parquet with columns `file`,
   `row` (0-based row index in the file, as Tally reports it), `reason` and
   `raw` (the row's contract fields as DuckDB renders them in JSON: timestamps
   as UTC `YYYY-MM-DD HH:MM:SS[.fff]` without an offset, not Tally's RFC 3339
   text; null fields kept as null).
3. Deduplicates the valid records by event_id: the survivor has the smallest
   ingested_at, ties broken by the smallest (occurred_at, creator_id,
   template_id, brand_id with null first, content_kind, action, user_tier,
   country), strings by bytes (DuckDB's default collation). Duplicates whose
   fields other than ingested_at differ from the survivor's are counted as
   conflicts, as Tally counts them.
4. Classifies each survivor with creator-pay v1 (shared/spec/policies.md),
   as a SQL CASE in integer arithmetic: not the WebAssembly rule.
5. Aggregates per (day = UTC date of occurred_at, creator_id, template_id):
   events, payable_events, amount_micros; writes them as Parquet partitioned
   by day, OUTDIR/daily/day=YYYY-MM-DD/*.parquet (replacing OUTDIR/daily).
   There is no rule_hash column (no rule component is involved).

It prints one line of JSON on stdout: records, quarantined, duplicates,
conflicts, unique, rows, payable, amount_micros, threads and wall_seconds (from
the start of reading to the end of writing, DuckDB's start-up and the Python
import not included; `tally run` is timed from process start to exit, so time
the whole command, e.g. with /usr/bin/time, when start-up matters). Written
and checked against Tally with duckdb 2.0.1 on 200,000 generated records (equal
counts, equal daily rows, equal quarantine file, row and reason).

What Tally does that this does not: the survivor index, the monthly derived
table, the reconciliation with a previous output, the run report and the
atomic replacement of the output directory. The comparison is therefore, if
anything, generous to DuckDB.
"""

import argparse
import json
import os
import sys
import time

import duckdb

FIELDS = [
    "event_id",
    "occurred_at",
    "ingested_at",
    "creator_id",
    "template_id",
    "brand_id",
    "content_kind",
    "action",
    "user_tier",
    "country",
]
TIMESTAMPS = {"occurred_at", "ingested_at"}
CONTENT_KINDS = ["template", "image", "video", "audio", "font"]
ACTIONS = ["view", "use", "export", "publish"]
USER_TIERS = ["free", "pro", "teams", "enterprise"]

# 2000-01-01T00:00:00Z and 2101-01-01T00:00:00Z in epoch milliseconds.
MIN_MS = 946_684_800_000
END_MS = 4_133_980_800_000

# creator-pay v1: base(content_kind) and tier_pct(user_tier).
BASE = {"template": 30000, "image": 10000, "video": 50000, "audio": 8000, "font": 5000}
TIER_PCT = {"free": 50, "pro": 100, "teams": 120, "enterprise": 150}


def sql_str(text):
    return "'" + text.replace("'", "''") + "'"


def sql_list(values):
    return "(" + ", ".join(sql_str(v) for v in values) + ")"


def sql_array(values):
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def case_map(column, mapping):
    arms = " ".join(f"WHEN {sql_str(k)} THEN {v}" for k, v in mapping.items())
    return f"CASE {column} {arms} END"


def column_kinds(con, source):
    """For each contract field: 'string', 'timestamp', 'millis', 'missing' or
    'wrong' (any other type), from the schema DuckDB reads."""
    types = {
        name: typ
        for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    }
    kinds = {}
    for field in FIELDS:
        typ = types.get(field)
        if typ is None:
            kinds[field] = "missing"
        elif field in TIMESTAMPS:
            if typ.startswith("TIMESTAMP"):
                kinds[field] = "timestamp"
            elif typ == "BIGINT":
                kinds[field] = "millis"
            else:
                kinds[field] = "wrong"
        else:
            kinds[field] = "string" if typ == "VARCHAR" else "wrong"
    return kinds


def checked_view(con, files):
    """Creates the view `checked`: every input row, its file and row index,
    its contract fields (timestamps as UTC epoch milliseconds) and `reason`,
    null for a valid row."""
    source = f"read_parquet({sql_array(files)}, filename = true, file_row_number = true)"
    kinds = column_kinds(con, source)

    projections = []
    for field in FIELDS:
        kind = kinds[field]
        col = quote(field)
        if kind == "missing" or kind == "wrong":
            typ = "BIGINT" if field in TIMESTAMPS else "VARCHAR"
            projections.append(f"CAST(NULL AS {typ}) AS {col}")
        elif kind == "timestamp":
            # epoch_ms of a timestamp of any unit: UTC milliseconds.
            projections.append(f"epoch_ms({col}) AS {col}")
        else:
            projections.append(col)

    def null_or(field, bad_value_test):
        if kinds[field] == "wrong":
            return [f"WHEN true THEN 'bad-type:{field}'"]
        arms = [f"WHEN {quote(field)} IS NULL THEN 'missing-field:{field}'"]
        if bad_value_test:
            arms.append(f"WHEN {bad_value_test} THEN 'bad-value:{field}'")
        return arms

    arms = []
    arms += null_or("event_id", "strlen(event_id) NOT BETWEEN 1 AND 128")
    for ts in ("occurred_at", "ingested_at"):
        arms += null_or(ts, f"{ts} NOT BETWEEN {MIN_MS} AND {END_MS - 1}")
    arms += null_or("creator_id", "creator_id = ''")
    arms += null_or("template_id", "template_id = ''")
    if kinds["brand_id"] == "wrong":  # optional: only its type can be wrong
        arms.append("WHEN true THEN 'bad-type:brand_id'")
    arms += null_or("content_kind", f"content_kind NOT IN {sql_list(CONTENT_KINDS)}")
    arms += null_or("action", f"action NOT IN {sql_list(ACTIONS)}")
    arms += null_or("user_tier", f"user_tier NOT IN {sql_list(USER_TIERS)}")
    arms += null_or("country", "NOT regexp_full_match(country, '[A-Z][A-Z]')")

    con.execute(
        f"""
        CREATE TEMP VIEW checked AS
        SELECT *, CASE {' '.join(arms)} END AS reason
        FROM (
            SELECT filename AS file, file_row_number AS "row", {', '.join(projections)}
            FROM {source}
        )
        """
    )


def run(input_dir, out_dir, threads):
    files = sorted(
        os.path.join(input_dir, name)
        for name in os.listdir(input_dir)
        if name.endswith(".parquet") and os.path.isfile(os.path.join(input_dir, name))
    )
    if not files:
        sys.exit(f"no *.parquet file in {input_dir}")
    os.makedirs(out_dir, exist_ok=True)

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    # Row order does not matter anywhere here (Tally's daily files are sorted
    # differently anyway); not keeping it lets DuckDB parallelize more.
    con.execute("SET preserve_insertion_order = false")

    start = time.perf_counter()
    checked_view(con, files)

    # Quarantine: the invalid rows with their reason; COPY returns the count.
    quarantine_path = os.path.join(out_dir, "quarantine.parquet")
    raw = "to_json({" + ", ".join(
        f"{sql_str(f)}: " + (f"epoch_ms({quote(f)})" if f in TIMESTAMPS else quote(f))
        for f in FIELDS
    ) + "})"
    (quarantined,) = con.execute(
        f"""
        COPY (
            SELECT file, "row", reason, {raw} AS raw
            FROM checked WHERE reason IS NOT NULL
        ) TO {sql_str(quarantine_path)} (FORMAT parquet)
        """
    ).fetchall()[0]

    # Dedup in two aggregations: first per distinct (event_id, fields other than
    # ingested_at), with its earliest ingested_at and its count; then per
    # event_id, the survivor is the version with the smallest (earliest
    # ingested_at, fields), and every record of another version is a conflict.
    # The key orders a null brand_id first: (brand_id IS NOT NULL, brand_id or '').
    # Then creator-pay v1 on the survivors.
    fields = ", ".join(f for f in FIELDS if f not in ("event_id", "ingested_at"))
    key = (
        "{'i': first_ingested, 'o': occurred_at, 'c': creator_id, 't': template_id,"
        " 'hb': brand_id IS NOT NULL, 'b': coalesce(brand_id, ''), 'k': content_kind,"
        " 'a': action, 'u': user_tier, 'n': country}"
    )
    survivor = (
        "{'occurred_at': occurred_at, 'creator_id': creator_id, 'template_id': template_id,"
        " 'content_kind': content_kind, 'action': action, 'user_tier': user_tier}"
    )
    rate = f"{case_map('s.content_kind', BASE)} * {case_map('s.user_tier', TIER_PCT)} // 100"
    con.execute(
        f"""
        CREATE TEMP TABLE survivors AS
        WITH versions AS (
            SELECT event_id, {fields}, min(ingested_at) AS first_ingested, count(*) AS n
            FROM checked WHERE reason IS NULL
            GROUP BY event_id, {fields}
        ),
        per_event AS (
            SELECT arg_min({survivor}, {key}) AS s,
                   arg_min(n, {key}) AS n_survivor_version,
                   sum(n) AS n
            FROM versions GROUP BY event_id
        ),
        classified AS (
            SELECT s, n, n_survivor_version,
                   NOT starts_with(s.creator_id, 'test-')
                   AND s.action <> 'view'
                   AND NOT (s.user_tier = 'free' AND s.action <> 'publish') AS payable
            FROM per_event
        )
        SELECT CAST(epoch_ms(s.occurred_at) AS DATE) AS day,
               s.creator_id AS creator_id,
               s.template_id AS template_id,
               payable,
               CASE WHEN payable THEN CAST({rate} AS BIGINT) ELSE 0 END AS rate_micros,
               CAST(n - 1 AS BIGINT) AS duplicates,
               CAST(n - n_survivor_version AS BIGINT) AS conflicts
        FROM classified
        """
    )

    daily_dir = os.path.join(out_dir, "daily")
    (rows,) = con.execute(
        f"""
        COPY (
            SELECT day, creator_id, template_id,
                   CAST(count(*) AS BIGINT) AS events,
                   CAST(count_if(payable) AS BIGINT) AS payable_events,
                   CAST(sum(rate_micros) AS BIGINT) AS amount_micros
            FROM survivors
            GROUP BY day, creator_id, template_id
        ) TO {sql_str(daily_dir)} (FORMAT parquet, PARTITION_BY (day), OVERWRITE)
        """
    ).fetchall()[0]

    unique, duplicates, conflicts, payable, amount = con.execute(
        """
        SELECT count(*), coalesce(sum(duplicates), 0), coalesce(sum(conflicts), 0),
               coalesce(count_if(payable), 0), CAST(coalesce(sum(rate_micros), 0) AS BIGINT)
        FROM survivors
        """
    ).fetchall()[0]
    wall = time.perf_counter() - start

    (records,) = con.execute(
        f"SELECT sum(num_rows) FROM parquet_file_metadata({sql_array(files)})"
    ).fetchall()[0]
    summary = {
        "records": int(records),
        "quarantined": int(quarantined),
        "duplicates": int(duplicates),
        "conflicts": int(conflicts),
        "unique": int(unique),
        "rows": int(rows),
        "payable": int(payable),
        "amount_micros": int(amount),
        "threads": int(con.execute("SELECT current_setting('threads')").fetchall()[0][0]),
        "wall_seconds": round(wall, 3),
    }
    if summary["records"] != summary["quarantined"] + summary["duplicates"] + summary["unique"]:
        print(json.dumps(summary), file=sys.stderr)
        sys.exit("records != quarantined + duplicates + unique")
    print(json.dumps(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="directory of *.parquet files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: one per core)")
    args = parser.parse_args()
    run(args.input, args.out, args.threads)


if __name__ == "__main__":
    main()
