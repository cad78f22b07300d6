"""Tally as a PySpark job: ``tally-spark run``.

The driver plans the run (the rule resolved once and its hash pinned, the
inputs listed and fingerprinted), Spark reads the inputs (JSON lines with its
text source, ``.gz`` included; Parquet with its Parquet source), each task
validates its batches with ``mapInArrow`` and routes every valid record to
its shard by Tally's shard function, the shards are moved to their reduce
partition by an identity partitioner (shard ``k`` to partition ``k``), each
partition is deduplicated, classified with the pinned rule (broadcast once,
its hash checked on every executor) and summed, and its part of the survivor
index written into the run's index directory (``Plan.index_dir``, which the
driver and every executor see at the same path), and the driver merges the
partial sums, checks every part, and commits them as ``tally run`` does: same
partitions and survivor index, byte for byte, same lineage, log entry and
report.

Nothing is committed unless every task succeeded: the commit runs on the
driver after the job returned, and a failed task (a rule that traps, a rule
whose bytes are not the pinned ones) fails the job.

    from tally import spark as tally_spark

    session = tally_spark.session("local[2]")
    report, summary = tally_spark.run(session, ["events/"], "creator-pay-v1.wasm", "out")
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Iterable, Iterator, Optional, Sequence, Tuple

import pyarrow as pa

from tally import _native as native

#: What a validate task gives: a shard's records, or the task's summary.
BLOB_SCHEMA = "key int, data binary"


def _validate(plan_json, kind: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Validates one Spark task's batches; yields record blobs and, last,
    the task's summary."""
    from pyspark import TaskContext

    validator = native.Validator(plan_json.value, kind)
    for batch in batches:
        out = pa.record_batch(validator.push(batch))
        if out.num_rows:
            yield out
    context = TaskContext.get()
    yield pa.record_batch(validator.finish(context.partitionId() if context else 0))


def _reduce(plan_json, rule, index_dir: str, threads: int, items: Iterable[Tuple[int, bytes]]):
    """Reduces one partition: its shards' records, deduplicated, classified
    and summed, its part of the survivor index written into ``index_dir``.
    The rule's hash is checked before anything else."""
    reducer = native.Reducer(plan_json.value, rule.value, index_dir, threads)
    for key, blob in items:
        reducer.add(key, blob)
    yield reducer.finish()


def _shard(key: int) -> int:
    """The identity partitioner: shard k goes to partition k (summaries,
    keyed from the shard count on, spread over the partitions)."""
    return key


def session(master: Optional[str] = None, app_name: str = "tally"):
    """A SparkSession set up for Tally: UTC session time zone, timestamps
    read from Parquet as they are stored, large Arrow batches. Running
    locally, the executors' Python is this one."""
    from pyspark.sql import SparkSession

    local = (master or "local").startswith("local")
    if local and "PYSPARK_PYTHON" not in os.environ and "PYSPARK_GATEWAY_PORT" not in os.environ:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
        "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
    }.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def execute(spark, plan, rule_bytes: Optional[bytes] = None) -> Tuple[dict, str]:
    """Runs a planned run on Spark and commits it. ``rule_bytes``: the rule
    component the executors run (default: the planned one); refused on every
    executor unless its blake3 is the plan's pinned hash. The reduce tasks
    write their parts of the survivor index into ``plan.index_dir``, and send
    the driver only their names, rows and hashes. Returns the run report (as
    ``tally run --json`` prints it) and its summary."""
    from pyspark.sql import functions as F

    sc = spark.sparkContext
    plan_json = sc.broadcast(plan.json)
    rule = sc.broadcast(plan.rule_bytes if rule_bytes is None else bytes(rule_bytes))
    lines = [path for path, fmt in plan.files if fmt != "parquet"]
    parquet = [path for path, fmt in plan.files if fmt == "parquet"]
    frames = []
    if lines:
        # Lines end at "\n" only, as Tally reads them (a "\r" before it is
        # dropped in Tally's validation, a lone "\r" is part of the line).
        text = spark.read.option("lineSep", "\n").text(lines).select(
            F.col("value").cast("binary").alias("line"),
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
        )
        frames.append(text.mapInArrow(functools.partial(_validate, plan_json, "lines"), BLOB_SCHEMA))
    if parquet:
        table = spark.read.parquet(*parquet)
        present = [F.col(f) for f in native.FIELDS if f in table.columns]
        rows = table.select(
            *present,
            F.col("_metadata.file_path").alias("_tally_file"),
            F.col("_metadata.row_index").alias("_tally_row"),
        )
        frames.append(rows.mapInArrow(functools.partial(_validate, plan_json, "rows"), BLOB_SCHEMA))
    blobs = functools.reduce(lambda a, b: a.unionAll(b), frames)
    threads = int(sc.getConf().get("spark.task.cpus", "1"))
    results = (
        blobs.rdd.map(lambda row: (row[0], row[1]))
        .partitionBy(plan.shards, _shard)
        .mapPartitions(functools.partial(_reduce, plan_json, rule, str(plan.index_dir), threads))
        .collect()
    )
    report, summary = plan.commit(results)
    return json.loads(report), summary


def run(
    spark,
    inputs: Sequence[str],
    rule: str,
    out: str,
    *,
    registry: Optional[str] = None,
    work: Optional[str] = None,
    shards: Optional[int] = None,
    days: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_line_bytes: Optional[int] = None,
    rule_bytes: Optional[bytes] = None,
) -> Tuple[dict, str]:
    """Plans a run over ``inputs`` with ``rule`` into ``out`` and runs it on
    ``spark`` (see :func:`execute`). Without ``shards``, enough for about two
    million records each, and at least twice Spark's default parallelism.
    The reduce tasks write their parts of the survivor index into a hidden
    directory in ``work`` (default: the output's parent directory), which the
    driver and every executor must see at the same path."""
    plan = native.plan(
        [str(i) for i in inputs],
        rule,
        str(out),
        registry=registry,
        work=None if work is None else str(work),
        shards=shards,
        min_shards=2 * spark.sparkContext.defaultParallelism,
        batch_size=batch_size,
        days=days,
        max_line_bytes=max_line_bytes,
    )
    return execute(spark, plan, rule_bytes=rule_bytes)


def _cause(error: Exception) -> str:
    """What made a Spark job fail: the Tally error an executor raised when
    there is one (Spark wraps it in Java's stack traces), else the first line
    of the error."""
    lines = str(error).strip().splitlines()
    for line in lines:
        if "TallyError: " in line:
            return line.split("TallyError: ", 1)[1].strip()
    return lines[0] if lines else repr(error)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


EXAMPLES = """examples:
  tally-spark run --input events/ --rule creator-pay-v1.wasm --out out --master 'local[2]'
  spark-submit --master yarn --archives tally-env.tar.gz#env \\
      --conf spark.pyspark.python=./env/bin/python \\
      --conf spark.pyspark.driver.python=tally-env/bin/python \\
      tally-env/lib/python3.11/site-packages/tally/spark.py run \\
      --input /mnt/events --rule creator-pay@prod --out /mnt/out
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tally-spark",
        description="Tally as a Spark job: the same partitions, byte for byte, as `tally run`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_args = commands.add_parser(
        "run",
        help="read, validate, dedup, classify and sum on Spark; commit on the driver",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_args.add_argument("--input", "-i", dest="inputs", nargs="+", action="extend", required=True,
                          help="input files or directories (searched recursively)")
    run_args.add_argument("--rule", required=True,
                          help="a component file, a hash, name@version or name@tag")
    run_args.add_argument("--out", required=True, help="the output directory (written by the driver)")
    run_args.add_argument("--registry", help="the rule registry (default: $TALLY_REGISTRY, else ./tally-registry)")
    run_args.add_argument("--work",
                          help="where the reduce tasks write their parts of the survivor index, seen at the same "
                               "path by the driver and every executor (default: the output's parent directory)")
    run_args.add_argument("--master", help="Spark's master URL (default: spark-submit's, else local[*])")
    run_args.add_argument("--shards", type=_positive,
                          help="shards by event_id, one reduce partition each")
    run_args.add_argument("--days", metavar="FROM..TO", help="recompute only these days")
    run_args.add_argument("--batch-size", type=_positive, help="events per rule call")
    run_args.add_argument("--max-line-bytes", type=_positive, help="the longest JSON line parsed")
    run_args.add_argument("--report", help="also write the JSON run report to this file")
    run_args.add_argument("--json", action="store_true", help="print the JSON run report")
    args = parser.parse_args(argv)

    try:
        # The plan first: a bad rule or input fails before Spark starts.
        plan = native.plan(
            args.inputs,
            args.rule,
            args.out,
            registry=args.registry,
            work=args.work,
            shards=args.shards,
            batch_size=args.batch_size,
            days=args.days,
            max_line_bytes=args.max_line_bytes,
        )
        spark = session(args.master)
        if args.shards is None:
            wanted = max(plan.shards, 2 * spark.sparkContext.defaultParallelism)
            plan = plan.with_shards(wanted)
        report, summary = execute(spark, plan)
    except native.TallyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a failed Spark job: the driver committed nothing
        print(f"error: the Spark job failed; nothing was committed: {_cause(e)}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2) + "\n"
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    sys.stdout.write(text if args.json else summary if summary.endswith("\n") else summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
