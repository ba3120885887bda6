"""The ``bastion`` command line.

    bastion ledger verify PATH           check the hash chain and the indexes
    bastion ledger query PATH [filters]  find records
    bastion ledger tail PATH [-n N] [-f] the newest records, optionally following
    bastion ledger stats PATH            counts, head, size
    bastion ledger export PATH --format parquet|csv|jsonl --out PATH [filters]
                                         records to files (Parquet: partitioned by day)
    bastion ledger repair PATH --accept-loss
                                         recover from a damaged write-ahead log
    bastion ledger verify PATH --checkpoint FILE --verifier KEY
                                         ... and check the records are the ones signed
    bastion ledger checkpoint PATH --key FILE
                                         sign and store the Merkle tree head
    bastion ledger prove PATH SEQ [--size N]
                                         a record's inclusion proof
    bastion ledger export-evidence PATH --out DIR (--verifier KEY | --key FILE)
                                         an auditor's folder with verify_evidence.py
    bastion ledger erase PATH --user U --reason TEXT --by NAME
                                         erase a data subject's personal data
    bastion test POLICY_DIR              run a policy bundle's test cases
    bastion keys generate NAME --out FILE
                                         a new checkpoint signing key; prints its verifier key
    bastion keys verifier FILE           the verifier key of a signing key file

Every ledger command but repair, erase and checkpoint (and export-evidence --key)
opens PATH as a reader, so it is safe
beside a running agent that is writing to the ledger. ``--json`` prints machine-readable
output. A sharded ledger (PATH/shards/<name>, written by several processes) is read
as one by verify, query, tail, stats and export; PATH may also be a guard directory
(its ledger/ is read).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import bastion
from bastion._core import Ledger

# Columns of the human-readable record table: (field, header, width).
_TABLE = (
    ("seq", "SEQ", 7),
    ("timestamp_ns", "TIME (UTC)", 23),
    ("action", "ACTION", 12),
    ("agent_id", "AGENT", 14),
    ("user_id", "USER", 10),
    ("model_or_tool", "MODEL/TOOL", 18),
    ("effect", "EFFECT", 16),
    ("cost_usd", "COST $", 10),
)


def _fmt_time(ns: int) -> str:
    if not ns:
        return "-"
    t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _cell(record: dict[str, Any], field: str) -> str:
    if field == "timestamp_ns":
        return _fmt_time(record["timestamp_ns"])
    if field == "model_or_tool":
        return record["tool"] or record["model"] or "-"
    if field == "cost_usd":
        return f"{record['cost_usd']:.6f}" if record["cost_usd"] else "-"
    value = record[field]
    return "-" if value is None else str(value)


def _print_table(records: Sequence[dict[str, Any]], out: TextIO) -> None:
    header = "  ".join(h.ljust(w) for _, h, w in _TABLE)
    out.write(header.rstrip() + "\n")
    for r in records:
        cells = []
        for field, _, width in _TABLE:
            text = _cell(r, field)
            if len(text) > width:
                text = text[: width - 1] + "…"
            cells.append(text.ljust(width))
        out.write("  ".join(cells).rstrip() + "\n")
        if r["reasons"]:
            for reason in r["reasons"]:
                out.write(f"{'':9}↳ {reason['policy_id']}: {reason['message']}\n")


def _parse_time(text: str) -> int:
    """ns since the epoch from an integer, an ISO 8601 time, or a relative
    duration such as 15m, 2h, 7d (meaning that long ago)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return time.time_ns() - int(text[:-1]) * units[text[-1]] * 1_000_000_000
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a time: use ns since the epoch, ISO 8601 "
            "(2026-11-21T09:00:00Z), or an age such as 15m, 2h, 7d"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _count(text: str) -> int:
    """A non-negative integer option (a record count or sequence number)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


class _ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere unless forced."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> bool:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return True
        self.last = now
        width = 30
        frac = done / total if total else 1.0
        filled = int(frac * width)
        rate = done / max(now - self.started, 1e-9)
        self.out.write(
            f"\rverifying [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
            f"{done:,}/{total:,} ({rate:,.0f}/s)"
        )
        if done >= total:
            self.out.write("\n")
        self.out.flush()
        return True


def _ledger_dir(path: str) -> str:
    """PATH itself, or PATH/ledger when PATH is a guard directory (it holds a
    ledger/ folder and is no ledger itself)."""
    p = Path(path)
    if (p / "ledger").is_dir() and not (p / "CURRENT").exists() and not (p / "shards").is_dir():
        return str(p / "ledger")
    return path


def _open_reader(path: str) -> Ledger:
    return Ledger.open(_ledger_dir(path), reader=True)


def _shard_label(name: str) -> str:
    return f"'{name}'" if name else "(main)"


def _report_json(report: bastion.VerifyReport) -> dict[str, Any]:
    out = {
        "ok": report.ok,
        "records_checked": report.records_checked,
        "from_seq": report.from_seq,
        "to_seq": report.to_seq,
        "problem": report.problem,
        "bad_seq": report.bad_seq,
        "message": report.message,
    }
    if report.shards:
        out["shard"] = report.shard
        out["shards"] = [dict(_report_json(r), shard=r.shard) for r in report.shards]
    return out


def _text_arg(value: str) -> str:
    """A verifier key or note given as text, or as the file holding it."""
    path = Path(value)
    return path.read_text(encoding="utf-8") if path.is_file() else value


def _cmd_verify(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) != (args.verifier is None):
        print("bastion: error: --checkpoint and --verifier go together", file=sys.stderr)
        return 2
    show = args.progress or (not args.json and sys.stderr.isatty())
    bar = _ProgressBar(sys.stderr, show)
    extra: dict[str, Any] = {}
    if args.checkpoint is not None:
        extra = {"checkpoint": Path(args.checkpoint).read_text(encoding="utf-8"),
                 "verifier": _text_arg(args.verifier).strip()}
    with _open_reader(args.path) as ledger:
        report = ledger.verify(
            from_seq=args.from_seq,
            to_seq=args.to_seq,
            check_indexes=not args.no_indexes,
            progress=bar if show else None,
            **extra,
        )
    if args.json:
        print(json.dumps(_report_json(report)))
    elif report.shards:
        for r in report.shards:
            if r.ok:
                print(f"  shard {_shard_label(r.shard or '')}: OK "
                      f"({r.records_checked:,} records)")
            elif r.problem is None:
                print(f"  shard {_shard_label(r.shard or '')}: not checked: {r.message}")
            else:
                print(f"  shard {_shard_label(r.shard or '')}: FAILED at record {r.bad_seq}: "
                      f"{r.problem}: {r.message}")
        failed = sum(not r.ok for r in report.shards)
        if report.ok:
            print(f"OK: {len(report.shards)} shards, {report.records_checked:,} records, "
                  f"{report.bytes_checked:,} bytes")
        else:
            print(f"FAILED: {failed} of {len(report.shards)} shards; first: shard "
                  f"{_shard_label(report.shard or '')} at record {report.bad_seq}: "
                  f"{report.problem}")
    elif report.ok:
        print(f"OK: {report.message} ({report.records_checked:,} records, "
              f"{report.bytes_checked:,} bytes)")
    else:
        print(f"FAILED at record {report.bad_seq}: {report.problem}: {report.message}")
    return 0 if report.ok else 1


def _query_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "user_id": args.user,
        "agent_id": args.agent,
        "tenant_id": args.tenant,
        "action": args.action,
        "tool": args.tool,
        "effect": args.effect,
        "risk_level": args.risk,
        "run_id": args.run,
        "trace_id": args.trace,
        "since": args.since,
        "until": args.until,
    }


def _json_number(value: Any) -> Any:
    # cost_usd is an exact Decimal; as a JSON number it prints the same digits
    # (a double holds every amount of at most 9 decimals below $9 million).
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _emit_records(records: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.json:
        for r in records:
            print(json.dumps(r, ensure_ascii=False, default=_json_number))
    else:
        _print_table(records, sys.stdout)


def _cmd_query(args: argparse.Namespace) -> int:
    with _open_reader(args.path) as ledger:
        result = ledger.query(
            **_query_kwargs(args),
            newest_first=not args.oldest_first,
            limit=args.limit or None,
            cursor=args.cursor,
        )
        records = list(result)
    _emit_records(records, args)
    if not args.json:
        more = f"; next page: --cursor {result.next_cursor}" if result.next_cursor else ""
        print(f"({len(records)} records{more})")
    return 0


# Records per query page of an export: bounds its memory.
_EXPORT_PAGE = 50_000


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _cmd_export(args: argparse.Namespace) -> int:
    import csv

    out = Path(args.out)
    if args.format == "parquet" and out.exists() and not out.is_dir():
        print(f"bastion: error: --out '{out}' is a file; Parquet goes to a folder",
              file=sys.stderr)
        return 2
    if args.format != "parquet" and out.is_dir():
        print(f"bastion: error: --out '{out}' is a folder; {args.format} goes to one file",
              file=sys.stderr)
        return 2
    count = 0
    files: list[str] = []
    with _open_reader(args.path) as ledger, contextlib.ExitStack() as stack:
        sink = None
        writer = None
        cursor = None
        while True:
            page = ledger.query(**_query_kwargs(args), newest_first=False,
                                limit=_EXPORT_PAGE, cursor=cursor)
            if args.format == "parquet":
                files += page.to_parquet(out)
            else:
                if sink is None:
                    sink = stack.enter_context(out.open("w", encoding="utf-8", newline=""))
                for record in page:
                    if args.format == "jsonl":
                        sink.write(json.dumps(record, ensure_ascii=False,
                                              default=_json_number) + "\n")
                        continue
                    if writer is None:
                        writer = csv.DictWriter(sink, fieldnames=list(record))
                        writer.writeheader()
                    writer.writerow({k: _csv_cell(v) for k, v in record.items()})
            count += len(page)
            cursor = page.next_cursor
            if cursor is None:
                break
    if args.json:
        print(json.dumps({"records": count, "format": args.format, "out": str(out),
                          "files": files if args.format == "parquet" else [str(out)]}))
    else:
        where = f"{len(files)} files under {out}" if args.format == "parquet" else str(out)
        print(f"exported {count:,} records to {where}")
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    with _open_reader(args.path) as ledger:
        # limit=0 would mean "no limit": -n 0 shows nothing and follows from the head.
        records = list(ledger.query(limit=args.n))[::-1] if args.n > 0 else []
        _emit_records(records, args)
        if not args.follow:
            return 0
        if (Path(ledger.path) / "shards").is_dir():
            return _follow_sharded(ledger, records, args)
        last = records[-1]["seq"] if records else ledger.head()["seq"]
        try:
            deadline = time.monotonic() + args.follow_for if args.follow_for else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(args.interval)
                ledger.refresh()
                head = ledger.head()["seq"]
                if head <= last:
                    continue
                new = list(ledger.query(newest_first=False, cursor=f"s:{last}", limit=None))
                if new:
                    if args.json:
                        _emit_records(new, args)
                    else:
                        _print_rows(new)
                    last = new[-1]["seq"]
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return 0


def _follow_sharded(ledger: Ledger, shown: list[dict[str, Any]],
                    args: argparse.Namespace) -> int:
    """tail --follow on a sharded ledger: records after the last one shown, in
    (time, shard, seq) order. A record whose time is before that (a worker
    whose clock is behind) is not shown."""
    def cursor(r: dict[str, Any]) -> str:
        return f"m:{r['timestamp_ns']}:{r['seq']}:{r['shard']}"

    last = cursor(shown[-1]) if shown else None
    since = None if shown else time.time_ns()
    try:
        deadline = time.monotonic() + args.follow_for if args.follow_for else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(args.interval)
            ledger.refresh()
            new = list(ledger.query(newest_first=False, cursor=last, since=since, limit=None))
            if new:
                if args.json:
                    _emit_records(new, args)
                else:
                    _print_rows(new)
                last = cursor(new[-1])
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def _print_rows(records: Sequence[dict[str, Any]]) -> None:
    """Rows without the header, for tail --follow."""
    import io

    buf = io.StringIO()
    _print_table(records, buf)
    sys.stdout.write(buf.getvalue().split("\n", 1)[1])


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open_reader(args.path) as ledger:
        stats = ledger.stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"ledger      {args.path}")
    print(f"format      {stats['format']}")
    print(f"records     {stats['records']:,}")
    if stats["by_shard"]:
        print(f"shards      {len(stats['by_shard'])} (each its own chain; verify names them)")
    else:
        print(f"head        #{stats['head_seq']} {stats['head_hash']}")
    print(f"time span   {_fmt_time(stats['first_timestamp_ns'])} .. "
          f"{_fmt_time(stats['last_timestamp_ns'])}")
    print(f"disk        {stats['disk_bytes'] / 1e6:,.1f} MB")
    for title, key in (("by action", "by_action"), ("by effect", "by_effect"),
                       ("by agent", "by_agent"), ("by shard", "by_shard")):
        if key == "by_shard" and not stats[key]:
            continue
        items = sorted(stats[key].items(), key=lambda kv: -kv[1])
        print(f"{title}:")
        for name, count in items[:20]:
            shown = (name or "(main)") if key == "by_shard" else name
            print(f"  {shown:<30} {count:>10,}")
        if len(items) > 20:
            print(f"  ... and {len(items) - 20} more")
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    report = Ledger.repair(args.path, accept_loss=args.accept_loss, by=args.by,
                           reason=args.reason)
    if args.json:
        print(
            json.dumps(
                {
                    "repaired": report.repaired,
                    "last_intact_seq": report.last_intact_seq,
                    "lost_through_seq": report.lost_through_seq,
                    "repair_seq": report.repair_seq,
                    "damaged_files": report.damaged_files,
                    "quarantine_path": report.quarantine_path,
                    "message": report.message,
                }
            )
        )
    elif not report.repaired:
        print(f"nothing to repair: {report.message}")
    else:
        print(f"REPAIRED: {report.message}")
        print(f"the damaged files are kept in {report.quarantine_path}")
        print(f"record {report.repair_seq} (action 'repair') records the loss")
    return 0


def _ranges(seqs: Sequence[int]) -> str:
    """Sequence numbers as compact ranges: "3-5, 9"."""
    out: list[str] = []
    i = 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ", ".join(out)


def _cmd_erase(args: argparse.Namespace) -> int:
    if args.user is None and not args.seq:
        print("bastion: error: erase needs --user, --seq, or both", file=sys.stderr)
        return 2
    try:
        ledger = Ledger.open(args.path, create=False)
    except bastion.BusyError as e:
        print(f"bastion: error: {e}", file=sys.stderr)
        print("bastion: erasing needs the ledger's writer: stop the program that has it open "
              "(a running agent?) and retry, or call Ledger.erase in that program",
              file=sys.stderr)
        return 2
    with ledger:
        report = ledger.erase_report(user_id=args.user, seqs=args.seq or None,
                                     reason=args.reason, by=args.by)
    if args.json:
        print(
            json.dumps(
                {
                    "erased": report.erased,
                    "already_erased": report.already_erased,
                    "erasure_seq": report.erasure_seq,
                    "seqs": report.seqs,
                    "quarantine_folders": report.quarantine_folders,
                }
            )
        )
        return 0
    if report.erased:
        print(f"ERASED the personal data of {report.erased} record"
              f"{'s' if report.erased != 1 else ''}: {_ranges(report.seqs)}")
    else:
        print("no record to erase")
    if report.already_erased:
        print(f"{report.already_erased} listed record"
              f"{'s were' if report.already_erased != 1 else ' was'} already erased")
    print(f"record {report.erasure_seq} (action 'erasure') records the erasure")
    for folder in report.quarantine_folders:
        print(f"warning: {folder} holds copies of old write-ahead logs (from a repair) that may "
              "still contain the erased values; delete it once it is no longer needed",
              file=sys.stderr)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from bastion import policytest

    try:
        return policytest.main(args.dirs, verbose=args.verbose, as_json=args.json,
                               name_filter=args.run)
    except policytest.CaseFileError as e:
        print(f"bastion: error: {e}", file=sys.stderr)
        return 2


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    key = bastion.SigningKey.load(args.key)
    with Ledger.open(args.path, create=False) as ledger:
        note = ledger.checkpoint(key)
    if args.out:
        Path(args.out).write_text(note, encoding="utf-8")
    if args.json:
        cp = bastion.open_checkpoint(note, key.verifier)
        print(json.dumps({"origin": cp.origin, "size": cp.size, "root": cp.root.hex(),
                          "key_id": f"{cp.key_id:08x}", "note": note}))
    elif not args.out:
        sys.stdout.write(note)
    else:
        print(f"checkpoint of {key.name} over {note.splitlines()[1]} records written to "
              f"{args.out}")
    return 0


def _cmd_prove(args: argparse.Namespace) -> int:
    with _open_reader(args.path) as ledger:
        size, root = ledger.tree_head(args.size)
        proof = ledger.inclusion_proof(args.seq, size)
        record = ledger.get(args.seq)
    leaf = bastion.merkle_leaf_hash(bytes.fromhex(record["hash"]))
    ok = bastion.verify_inclusion(args.seq, size, leaf, proof, root)
    out = {"seq": args.seq, "tree_size": size, "chain_hash": record["hash"],
           "leaf_hash": leaf.hex(), "root": root.hex(), "proof": [h.hex() for h in proof],
           "verified": ok}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"record {args.seq} in the tree of {size} records (root {root.hex()}):")
        print(f"  leaf hash {leaf.hex()}")
        for i, h in enumerate(proof):
            print(f"  proof[{i}]  {h.hex()}")
        print("inclusion proof verified against the root" if ok else "PROOF DOES NOT VERIFY")
    return 0 if ok else 1


def _cmd_export_evidence(args: argparse.Namespace) -> int:
    checkpoint = None
    if args.key is not None:
        key = bastion.SigningKey.load(args.key)
        verifier = key.verifier
        with Ledger.open(args.path, create=False) as ledger:
            checkpoint = ledger.checkpoint(key)
    elif args.verifier is not None:
        verifier = _text_arg(args.verifier).strip()
    else:
        print("bastion: error: give --verifier (with the checkpoint to use, or the ledger's "
              "newest) or --key (to take a checkpoint now)", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint).read_text(encoding="utf-8")
    try:
        out = bastion.export_evidence(args.path, args.out, verifier=verifier,
                                      checkpoint=checkpoint, format=args.format,
                                      overwrite=args.overwrite)
    except (FileExistsError, LookupError) as e:
        print(f"bastion: error: {e}", file=sys.stderr)
        return 2
    cp = bastion.open_checkpoint((out / "checkpoint.txt").read_text(encoding="utf-8"), verifier)
    print(f"evidence for records 1..{cp.size} (checkpoint of {cp.origin}, key "
          f"{cp.key_id:08x}) written to {out}; the auditor runs: "
          f"python verify_evidence.py {out}")
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    key = bastion.SigningKey.generate(args.name)
    try:
        key.save(args.out, overwrite=args.overwrite)
    except FileExistsError:
        print(f"bastion: error: {args.out} exists (pass --overwrite to replace it)",
              file=sys.stderr)
        return 2
    print(key.verifier)
    return 0


def _cmd_keys_verifier(args: argparse.Namespace) -> int:
    try:
        key = bastion.SigningKey.load(args.file)
    except OSError as e:
        print(f"bastion: error: {e}", file=sys.stderr)
        return 2
    print(key.verifier)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion",
        description="Bastion: governance for AI agents. Test policy bundles; inspect and "
        "verify audit ledgers.",
        epilog="Run 'bastion ledger COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"bastion {bastion.__version__}")
    top = parser.add_subparsers(dest="area", metavar="AREA", required=True)

    ledger = top.add_parser(
        "ledger",
        help="verify, query, tail, summarize and repair an audit ledger; erase personal data",
        description="Work with a hash-chained audit ledger. PATH is opened read-only, "
        "so these commands are safe while an agent is writing; repair and erase open it for "
        "writing.",
    )
    cmds = ledger.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=help_text)
        p.add_argument("path", metavar="PATH", help="the ledger directory")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    v = add("verify", "check every record's hash and link, the head, and the indexes")
    v.add_argument("--from", dest="from_seq", type=_count, metavar="SEQ", help="first record")
    v.add_argument("--to", dest="to_seq", type=_count, metavar="SEQ", help="last record")
    v.add_argument("--no-indexes", action="store_true", help="skip the index check")
    v.add_argument("--progress", action="store_true",
                   help="show the progress bar even when stderr is not a terminal")
    v.add_argument("--checkpoint", metavar="FILE",
                   help="a signed checkpoint kept outside the ledger: the records must be the "
                   "ones it signed (with --verifier)")
    v.add_argument("--verifier", metavar="KEY",
                   help="the verifier key text of the checkpoint's signer, or a file holding it")
    v.set_defaults(func=_cmd_verify)

    c = add("checkpoint", "sign the ledger's current Merkle tree head and store the checkpoint "
            "(opens PATH for writing)")
    c.add_argument("--key", required=True, metavar="FILE", help="the signing key file")
    c.add_argument("--out", metavar="FILE", help="also write the signed note to FILE")
    c.set_defaults(func=_cmd_checkpoint)

    pr = add("prove", "print the inclusion proof of record SEQ in the Merkle tree, checked")
    pr.add_argument("seq", type=_count, metavar="SEQ", help="the record")
    pr.add_argument("--size", type=_count, metavar="N",
                    help="the tree size to prove against (default: the head)")
    pr.set_defaults(func=_cmd_prove)

    ev = add("export-evidence", "write an auditor's folder: records with their stored bytes, "
             "the signed checkpoint, the verifier key and the standalone verify_evidence.py")
    ev.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    ev.add_argument("--verifier", metavar="KEY",
                    help="the verifier key (text or file); the checkpoint is --checkpoint or "
                    "the newest the ledger holds by that key")
    ev.add_argument("--checkpoint", metavar="FILE", help="the signed checkpoint to include")
    ev.add_argument("--key", metavar="FILE",
                    help="take a checkpoint now with this signing key (opens PATH for writing)")
    ev.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl",
                    help="records as JSON lines (default) or Parquet (needs pyarrow)")
    ev.add_argument("--overwrite", action="store_true", help="replace files in a non-empty DIR")
    ev.set_defaults(func=_cmd_export_evidence)

    def add_filters(p: argparse.ArgumentParser) -> None:
        for flag, field in (("--user", "user_id"), ("--agent", "agent_id"),
                            ("--tenant", "tenant_id"), ("--action", "action"),
                            ("--tool", "tool"), ("--effect", "effect"),
                            ("--risk", "risk_level"), ("--run", "run_id"),
                            ("--trace", "trace_id")):
            p.add_argument(flag, metavar="VALUE", help=f"only records whose {field} is VALUE")
        p.add_argument("--since", type=_parse_time, metavar="TIME",
                       help="not before TIME (ISO 8601, ns since the epoch, or an age: 15m, "
                       "2h, 7d)")
        p.add_argument("--until", type=_parse_time, metavar="TIME", help="not after TIME")

    q = add("query", "find records by who, what and when (newest first)")
    add_filters(q)
    q.add_argument("--oldest-first", action="store_true", help="oldest records first")
    q.add_argument("--limit", type=_count, default=50, metavar="N",
                   help="at most N records (0: all; default 50)")
    q.add_argument("--cursor", metavar="CURSOR", help="continue after a previous page")
    q.set_defaults(func=_cmd_query)

    x = add("export", "write the records (oldest first) to a file: Parquet partitioned by "
            "UTC day (OUT/day=YYYY-MM-DD/part-*.parquet), CSV or JSON lines")
    x.add_argument("--format", choices=("parquet", "csv", "jsonl"), required=True,
                   help="parquet (a folder, needs pyarrow), csv or jsonl (one file)")
    x.add_argument("--out", required=True, metavar="PATH",
                   help="the folder (parquet) or file (csv, jsonl) to write")
    add_filters(x)
    x.set_defaults(func=_cmd_export)

    t = add("tail", "show the newest records, and optionally follow new ones")
    t.add_argument("-n", type=_count, default=10, metavar="N", help="how many (default 10)")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    t.add_argument("--interval", type=_seconds, default=0.5, metavar="SECONDS",
                   help="how often to look for new records when following (default 0.5)")
    t.add_argument("--follow-for", type=_seconds, default=None, metavar="SECONDS",
                   help="stop following after this long (default: until Ctrl-C)")
    t.set_defaults(func=_cmd_tail)

    s = add("stats", "record counts by action, effect and agent; head; size on disk")
    s.set_defaults(func=_cmd_stats)

    r = add("repair", "recover a ledger whose write-ahead log is damaged, recording the loss "
            "(opens PATH for writing: stop the agent first)")
    r.add_argument("--accept-loss", action="store_true",
                   help="required: the records after the damage are dropped; without it, "
                   "repair only says what would be lost")
    r.add_argument("--by", metavar="NAME", help="who repairs (default: $USER)")
    r.add_argument("--reason", metavar="TEXT", help="why, kept in the repair record")
    r.set_defaults(func=_cmd_repair)

    e = add("erase", "erase the personal data (user id, summaries, approver, attributes) of a "
            "user's records or of listed records, keeping the chain verifiable; records an "
            "'erasure' record (opens PATH for writing: stop the agent first)")
    e.add_argument("--user", metavar="USER_ID", help="erase every record of this user_id")
    e.add_argument("--seq", type=_count, action="append", metavar="N",
                   help="erase this record (repeatable)")
    e.add_argument("--reason", required=True, metavar="TEXT",
                   help="why (kept in the erasure record; must not name the user)")
    e.add_argument("--by", required=True, metavar="NAME",
                   help="who erases (kept in the erasure record)")
    e.set_defaults(func=_cmd_erase)

    pt = top.add_parser(
        "test",
        help="run a policy bundle's table-driven cases (POLICY_DIR/cases/*.yaml)",
        description="Evaluate every case in POLICY_DIR/cases/*.yaml against the bundle in "
        "POLICY_DIR and report which pass. Exits 1 if any case fails.",
    )
    pt.add_argument("dirs", nargs="+", metavar="POLICY_DIR", help="a policy bundle folder")
    pt.add_argument("-v", "--verbose", action="store_true",
                    help="show which policies decided, for passing cases too")
    pt.add_argument("--run", metavar="REGEX", help="only cases whose name matches REGEX")
    pt.add_argument("--json", action="store_true", help="one JSON object per case")
    pt.set_defaults(func=_cmd_test)

    keys = top.add_parser(
        "keys",
        help="create checkpoint signing keys and show their verifier keys",
        description="Ed25519 keys that sign ledger checkpoints (C2SP signed notes). The key "
        "file is secret (mode 0600); the verifier key it prints is public: give it to auditors.",
    )
    kcmds = keys.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kg = kcmds.add_parser("generate", help="a new signing key; prints its verifier key",
                          description="Write a new signing key to --out and print its "
                          "verifier key.")
    kg.add_argument("name", metavar="NAME",
                    help="the key's name, also the checkpoints' origin line (no spaces, no '+'), "
                    "e.g. audit.example.com/ledger")
    kg.add_argument("--out", required=True, metavar="FILE", help="where to write the key")
    kg.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    kg.set_defaults(func=_cmd_keys_generate)
    kv = kcmds.add_parser("verifier", help="print the verifier key of a signing key file",
                          description="Print the public verifier key of a signing key file "
                          "(Bastion's PEM form or a Go signer key).")
    kv.add_argument("file", metavar="FILE", help="the signing key file")
    kv.set_defaults(func=_cmd_keys_verifier)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except bastion.Error as e:
        print(f"bastion: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
