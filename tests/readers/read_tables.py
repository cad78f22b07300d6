"""Reads each table of a Tally output with DuckDB, Polars and pyarrow, with
every pattern a user would try on the table directory, and prints what each
read saw as one JSON object: {table: {reader/pattern: summary}}.

Usage: python3 read_tables.py OUT

A summary is {"rows": N, "sums": {column: total}, "types": {column: type}}, or
{"error": message} when the read failed. The test that runs this compares
every summary with what Tally itself wrote.
"""

import json
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SUMS = ["events", "payable_events", "amount_micros"]


def summarize_arrow(table):
    return {
        "rows": table.num_rows,
        "sums": {c: int(pa.compute.sum(table[c]).as_py() or 0) for c in SUMS if c in table.column_names},
        "types": {f.name: str(f.type) for f in table.schema},
    }


def summarize_polars(frame):
    return {
        "rows": frame.height,
        "sums": {c: int(frame[c].sum()) for c in SUMS if c in frame.columns},
        "types": {name: str(dtype) for name, dtype in frame.schema.items()},
    }


def summarize_duckdb(relation):
    table = relation.arrow()
    if hasattr(table, "read_all"):
        table = table.read_all()
    summary = summarize_arrow(table)
    summary["types"] = dict(zip(relation.columns, [str(t) for t in relation.types]))
    return summary


def attempt(read):
    try:
        return read()
    except Exception as e:  # every failure is reported, never hidden
        return {"error": f"{type(e).__name__}: {e}"}


def parquet_table(path, partitions):
    """Every read of the Parquet table at `path` (hive partitions `partitions`)."""
    depth = "/".join("*" for _ in partitions)
    schema = pa.schema([(name, typ) for name, typ in partitions])
    return {
        "duckdb/**": attempt(lambda: summarize_duckdb(
            duckdb.sql(f"select * from read_parquet('{path}/**/*.parquet', hive_partitioning = true)"))),
        "duckdb/depth": attempt(lambda: summarize_duckdb(
            duckdb.sql(f"select * from read_parquet('{path}/{depth}/*.parquet')"))),
        "duckdb/dir": attempt(lambda: summarize_duckdb(
            duckdb.sql(f"select * from read_parquet('{path}')"))),
        "polars/dir": attempt(lambda: summarize_polars(pl.scan_parquet(f"{path}/").collect())),
        "polars/**": attempt(lambda: summarize_polars(
            pl.scan_parquet(f"{path}/**/*.parquet", hive_partitioning=True).collect())),
        "pyarrow/read_table": attempt(lambda: summarize_arrow(pq.read_table(path))),
        "pyarrow/typed": attempt(lambda: summarize_arrow(
            ds.dataset(path, format="parquet",
                       partitioning=ds.partitioning(schema, flavor="hive")).to_table())),
    }


def main():
    out = sys.argv[1].rstrip("/")
    seen = {
        "daily": parquet_table(f"{out}/daily", [("day", pa.date32())]),
        "changes": parquet_table(f"{out}/changes", [("commit", pa.int64()), ("day", pa.date32())]),
        "monthly": parquet_table(f"{out}/monthly", [("month", pa.string())]),
        "monthly_changes": parquet_table(f"{out}/monthly_changes",
                                         [("commit", pa.int64()), ("month", pa.string())]),
        "quarantine": {
            "duckdb/**": attempt(lambda: summarize_duckdb(duckdb.sql(
                f"select * from read_json('{out}/quarantine/**/*.jsonl', hive_partitioning = true, "
                "format = 'newline_delimited')"))),
            "polars/*": attempt(lambda: summarize_polars(pl.concat(
                [pl.read_ndjson(p) for p in sorted(__import__("glob").glob(f"{out}/quarantine/*/*.jsonl"))],
                how="diagonal_relaxed"))),
        },
    }
    json.dump(seen, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
