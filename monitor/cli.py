"""The `monitor` command line (contract §3).

Every failure a user can cause (a missing archive or bank, an unknown option, an unreadable setting) ends
with one clear line on stderr and a non-zero exit, never a traceback. Per-input commands (`match`,
`match-caption`, `inspect`) print one JSON line per input in input order; an input that fails gets a line
with an `error` field, the others are still processed, and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from monitor.bank.matcher import BankMatcher
from monitor.bank.store import BankError, add_images, add_narrative, export_pdq, import_pdq, load_bank
from monitor.bank.threatexchange import FormatError, PdqEntry, format_lines, parse_lines
from monitor.imaging.fingerprint import fingerprint
from monitor.ingest.archive import ArchiveError, check_archive
from monitor.ingest.decode import DecodeError
from monitor.models import Alert, format_time
from monitor.narratives.matcher import ModelError
from monitor.narratives.models_fetch import FetchError, fetch_model, known_models
from monitor.pipeline import decode_limits
from monitor.provenance.markers import read_markers
from monitor.review.decisions import VERDICTS, ReviewError
from monitor.review.evidence import write_source
from monitor.runtime.topics import BrokerUnavailable
from monitor.settings import Settings, SettingsError, explicit_setting, load_settings

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad invocation: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: Options that set a setting (monitor.settings): name -> (type, help). Each may stand before the command
#: (`monitor --bank B replay ...`) or after it, and each reads its `MONITOR_<NAME>` variable when absent.
SETTING_OPTIONS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "bank": (Path, "DIR", "bank directory (env MONITOR_BANK)"),
    "threshold": (int, "N", "shares in the window that make a cluster viral (env MONITOR_THRESHOLD)"),
    "window_seconds": (int, "S", "length of the virality window, in event time (env MONITOR_WINDOW_SECONDS)"),
    "level_factor": (int, "K", "each alert level needs K times more shares (env MONITOR_LEVEL_FACTOR)"),
    "broker": (str, "URL", "Kafka broker, default kafka://localhost:9092 (env MONITOR_BROKER)"),
    "partitions": (int, "N", "partitions of the topics the project creates (env MONITOR_PARTITIONS)"),
    "data_dir": (Path, "DIR", "the worker's local state directory (env MONITOR_DATA_DIR)"),
    "log_level": (str, "LEVEL", "debug, info, warning, error (env MONITOR_LOG_LEVEL)"),
    "models_dir": (Path, "DIR", "where fetched caption models live (env MONITOR_MODELS_DIR)"),
    "embedded_processes": (
        int,
        "N",
        "processes that analyse an in-process replay, 0: this process; default: the analysis_processes "
        "setting for an archive of 1000 posts or more, else 0 (env MONITOR_EMBEDDED_PROCESSES)",
    ),
}
PIPELINE_OPTIONS = ("bank", "threshold", "window_seconds", "level_factor")
#: Commands that read a bank, and whether it must exist already (`bank add` creates it).
BANK_COMMANDS = {
    "match": True,
    "match-caption": True,
    "export": True,
    "add": False,
    "import": False,
    "add-narrative": False,
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting_options(parser: argparse.ArgumentParser, *names: str, help_prefix: str = "") -> None:
    """The setting options a command takes. Left out, an option stays out of the namespace (SUPPRESS), so
    the same option given before the command is not overwritten."""
    for name in (*names, "log_level"):
        kind, metavar, text = SETTING_OPTIONS[name]
        parser.add_argument(
            _flag(name), type=kind, metavar=metavar, default=argparse.SUPPRESS, help=help_prefix + text
        )
    parser.set_defaults(accepts=frozenset((*names, "log_level")))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="monitor",
        description="Streaming monitor for viral AI-generated fakes. Setting options may stand before or "
        "after the command; flags win over MONITOR_* environment variables.",
    )
    for name, (kind, metavar, text) in SETTING_OPTIONS.items():
        parser.add_argument(_flag(name), type=kind, metavar=metavar, default=None, help=text)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    demo = commands.add_parser("demo", help="the whole pipeline in-process on the bundled sample")
    _setting_options(demo, *PIPELINE_OPTIONS, "embedded_processes")
    demo.add_argument("--archive", type=Path, help="another archive instead of the bundled sample")
    demo.add_argument("--alerts-out", type=Path, help="also write the alerts as JSON lines to FILE")

    worker = commands.add_parser("worker", help="run the Faust worker against Kafka")
    _setting_options(worker, *PIPELINE_OPTIONS, "broker", "partitions", "data_dir")

    replay = commands.add_parser("replay", help="replay an archive into Kafka or in-process")
    replay.add_argument("archive", type=Path)
    mode = replay.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to-kafka", action="store_true", help="produce the archive into the posts topic")
    mode.add_argument("--embedded", action="store_true", help="run the pipeline in-process")
    _setting_options(replay, *PIPELINE_OPTIONS, "broker", "partitions", "embedded_processes")
    replay.add_argument("--alerts-out", type=Path, help="write alerts as JSON lines here (--embedded)")
    replay.add_argument("--rejects-out", type=Path, help="write malformed events here (--embedded)")

    bank = commands.add_parser("bank", help="manage the bank of known fakes")
    _setting_options(bank, "bank")
    bank_commands = bank.add_subparsers(dest="bank_command", parser_class=_Parser, required=True)
    add = bank_commands.add_parser("add", help="add images of a known fake to a cluster")
    _setting_options(add, "bank", help_prefix="created if missing; ")
    add.add_argument("--cluster", required=True)
    add.add_argument("--label", default="")
    add.add_argument("images", nargs="+", type=Path)
    imported = bank_commands.add_parser(
        "import", help="add PDQ hashes from a ThreatExchange/HMA hash list (hash,cluster[,label] per line)"
    )
    _setting_options(imported, "bank", help_prefix="created if missing; ")
    imported.add_argument("--cluster", help="cluster for lines that carry only a hash")
    imported.add_argument("--label", default="", help="label for lines that carry none")
    imported.add_argument("file", help="the hash list, or - for standard input")
    exported = bank_commands.add_parser("export", help="write the bank's PDQ hashes as a ThreatExchange list")
    _setting_options(exported, "bank")
    exported.add_argument("--out", type=Path, help="write here instead of standard output")
    narrative = bank_commands.add_parser(
        "add-narrative", help="add example captions of a false narrative (two or more)"
    )
    _setting_options(narrative, "bank", help_prefix="created if missing; ")
    narrative.add_argument("--id", required=True, dest="narrative_id")
    narrative.add_argument("texts", nargs="+")

    match = commands.add_parser("match", help="match images against the bank")
    _setting_options(match, "bank")
    match.add_argument("images", nargs="+")
    caption = commands.add_parser("match-caption", help="match captions against the banked narratives")
    _setting_options(caption, "bank")
    caption.add_argument("texts", nargs="+")
    inspect = commands.add_parser("inspect", help="hashes and provenance markers of images")
    _setting_options(inspect)
    inspect.add_argument("images", nargs="+")

    record = commands.add_parser(
        "record", help="read a topic of posts into an archive that replays to the same alerts"
    )
    _setting_options(record, "broker")
    record.add_argument(
        "--topic", help="the topic to read (default: the posts topic, env MONITOR_POSTS_TOPIC)"
    )
    record.add_argument(
        "--out", type=Path, required=True, metavar="ARCHIVE", help="a .jsonl or .jsonl.gz file"
    )
    start = record.add_mutually_exclusive_group()
    start.add_argument("--since", "--from", metavar="TIME", help="first message time, RFC 3339 (inclusive)")
    start.add_argument(
        "--from-offsets",
        "--from-offset",
        metavar="P:N[,P:N]|N",
        help="first offset per partition (or of all)",
    )
    record.add_argument("--until", metavar="TIME", help="last message time, RFC 3339 (inclusive)")
    record.add_argument("--max-events", "--max-posts", type=int, metavar="N", help="stop after N events")
    record.add_argument(
        "--inline-images", action="store_true", help="fetch url images into the archive (self-contained)"
    )
    _review_parsers(commands)

    topics = commands.add_parser("topics", help="create the Kafka topics (the worker also does this)")
    _setting_options(topics, "broker", "partitions")

    models = commands.add_parser("models", help="caption models that no package ships (fetched once)")
    _setting_options(models, "models_dir")
    models_commands = models.add_subparsers(dest="models_command", parser_class=_Parser, required=True)
    fetch = models_commands.add_parser(
        "fetch", help="download, assemble and verify (sha256 pins) a model into the models directory"
    )
    _setting_options(fetch, "models_dir")
    fetch.add_argument("model", choices=sorted(known_models()))
    return parser


def _review_parsers(commands: Any) -> None:
    """`review confirm|dismiss|list` and `review-server` (monitor/review): against a bank directory and an
    alerts file when `--alerts` is given, else against Kafka."""
    review = commands.add_parser("review", help="an analyst's decision on an alert: confirm or dismiss")
    _setting_options(review, "bank", "broker")
    verbs = review.add_subparsers(dest="review_command", parser_class=_Parser, required=True)
    for verdict in VERDICTS:
        verb = verbs.add_parser(
            verdict,
            help="the cluster's pictures join the bank"
            if verdict == "confirm"
            else "the cluster stops alerting, its pictures and matched captions stop being evidence",
        )
        _setting_options(verb, "bank", "broker")
        verb.add_argument("alert_id")
        verb.add_argument("--reason", default="", help="why (kept in the audit log)")
        verb.add_argument("--by", default="", help="who decides (default: $USER)")
        _review_sources(verb)
    listing = verbs.add_parser("list", help="the alerts, pending or decided (one JSON line each)")
    _setting_options(listing, "bank", "broker")
    _review_sources(listing)
    server = commands.add_parser("review-server", help="serve the Slack buttons' request URL")
    _setting_options(server, "bank", "broker")
    server.add_argument(
        "--alerts", type=Path, help="the alerts file the buttons refer to (default: the alerts topic)"
    )
    server.add_argument("--archive", type=Path, help="the archive the alerts came from")
    server.add_argument("--port", type=int, help="listen here (env MONITOR_REVIEW_PORT, default 8090)")


def _review_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alerts", type=Path, help="an alerts file (replay --embedded --alerts-out): decide against --bank"
    )
    parser.add_argument(
        "--archive", type=Path, help="the archive the alerts came from (default: noted beside the alerts)"
    )


def _command_name(args: argparse.Namespace) -> str:
    sub = {"bank": "bank_command", "models": "models_command", "review": "review_command"}.get(args.command)
    return str(f"{args.command} {getattr(args, sub)}" if sub else args.command)


def _check_options(args: argparse.Namespace) -> None:
    """A setting option given before a command that does not use it is refused, as it is after it."""
    for name in SETTING_OPTIONS:
        if getattr(args, name, None) is not None and name not in args.accepts:
            raise UsageError(f"{_flag(name)} does not apply to '{_command_name(args)}'")


def _resolve_bank(args: argparse.Namespace) -> None:
    """`--bank`, else MONITOR_BANK, for the commands that read or write a bank; one clear line if neither."""
    command = args.bank_command if args.command == "bank" else args.command
    if command not in BANK_COMMANDS:
        return
    bank = load_settings({"bank": args.bank}).bank
    if bank is None:
        raise UsageError(f"'{_command_name(args)}' needs a bank: give --bank DIR or set MONITOR_BANK")
    if BANK_COMMANDS[command] and not bank.is_dir():
        raise UsageError(f"bank directory not found: {bank}")
    args.bank = bank


def _settings(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> Settings:
    names = (
        "bank",
        "threshold",
        "window_seconds",
        "level_factor",
        "broker",
        "partitions",
        "data_dir",
        "log_level",
        "embedded_processes",
    )
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    settings = load_settings(overrides, defaults=defaults)
    if settings.bank is not None and not settings.bank.is_dir():
        raise UsageError(f"bank directory not found: {settings.bank}")
    return settings


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _read_image(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from None


def cmd_match(args: argparse.Namespace) -> int:
    settings = load_settings()
    matcher = BankMatcher(load_bank(args.bank), settings.match_distance, local=settings.local_match)
    limits = decode_limits(settings)
    failed = False
    for path in args.images:
        try:
            hashes, matched = matcher.match_bytes(_read_image(path), limits)
        except DecodeError as exc:
            _print_json({"path": path, "error": str(exc)})
            failed = True
            continue
        nearest = matched or matcher.nearest(hashes)
        _print_json(
            {
                "path": path,
                "bank_cluster": matched.bank_cluster if matched else None,
                "distance": nearest.distance if nearest else None,
                "hash": nearest.hash_kind if nearest else "pdq",
                "not_compared": None if matched else matcher.explain_bytes(_read_image(path), hashes, limits),
            }
        )
    return 1 if failed else 0


def cmd_match_caption(args: argparse.Namespace) -> int:
    from monitor.pipeline import make_encoder, make_narrative_matcher

    settings = load_settings()
    bank = load_bank(args.bank)
    matcher = make_narrative_matcher(settings, make_encoder(settings), bank.narratives)
    decisions = matcher.match_many(args.texts)
    for text, decision in zip(args.texts, decisions, strict=True):
        best = decision or matcher.best(text)
        _print_json(
            {
                "text": text,
                "narrative_id": decision.narrative_id if decision else None,
                "score": best.score if best else None,
            }
        )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    limits = decode_limits(load_settings())
    failed = False
    for path in args.images:
        try:
            data = _read_image(path)
            markers = read_markers(data)
            hashes = fingerprint(data, limits).hashes
        except DecodeError as exc:
            _print_json({"path": path, "error": str(exc)})
            failed = True
            continue
        _print_json({"path": path, "hashes": hashes.to_json(), "provenance": list(markers)})
    return 1 if failed else 0


def cmd_bank(args: argparse.Namespace) -> int:
    if args.bank_command == "add":
        missing = [str(p) for p in args.images if not p.is_file()]
        if missing:
            raise UsageError(f"image not found: {', '.join(missing)}")
        limits = decode_limits(load_settings())
        added = add_images(args.bank, args.cluster, args.images, label=args.label, limits=limits)
        print(f"added {len(added)} image(s) to cluster {args.cluster} in {args.bank}", file=sys.stderr)
        sources = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in args.images}
        for image in added:
            if image.evidence not in ("", "detailed"):
                source = sources.get(image.sha256, image.file)
                print(f"monitor: warning: {source}: {image.evidence_note}", file=sys.stderr)
    elif args.bank_command == "import":
        return _bank_import(args)
    elif args.bank_command == "export":
        text = format_lines(export_pdq(load_bank(args.bank)))
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    else:
        added_texts = add_narrative(args.bank, args.narrative_id, args.texts)
        print(f"added {len(added_texts)} caption(s) to narrative {args.narrative_id}", file=sys.stderr)
        _warn_few_examples(args.bank, args.narrative_id)
    return 0


def _warn_few_examples(bank: Path, narrative_id: str) -> None:
    """The matcher finds a narrative's subjects from the names that come back in two of its examples
    (monitor.narratives.text.subject_names) and builds its 'same event, someone else' decoys from them:
    with one example it has neither, and on-topic captions about other people can match."""
    count = sum(1 for n in load_bank(bank).narratives if n.narrative_id == narrative_id and not n.negative)
    if count < 2:
        print(
            f"monitor: warning: narrative {narrative_id} has {count} example caption; add at least one more "
            "(naming its subject the same way): the matcher learns a narrative's subjects from names that "
            "come back in two examples, and without them the same story about someone else can match",
            file=sys.stderr,
        )


def _bank_import(args: argparse.Namespace) -> int:
    if args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        source = Path(args.file)
        if not source.is_file():
            raise UsageError(f"hash list not found: {source}")
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        entries = parse_lines(lines, args.cluster)
    except FormatError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if args.label:
        entries = [e if e.label else PdqEntry(e.pdq, e.cluster, args.label, e.quality) for e in entries]
    added = import_pdq(args.bank, entries)
    print(f"imported {len(added)} of {len(entries)} hash(es) into {args.bank}", file=sys.stderr)
    return 0


def _print_alert(alert: Alert) -> None:
    reasons = ", ".join(f"{r.kind}:{r.subject}" for r in alert.reasons)
    print(
        f"ALERT level {alert.level} {alert.cluster_id} ({alert.bank_cluster or 'unbanked'}): "
        f"{alert.shares_in_window} shares in {alert.window_seconds}s at {format_time(alert.event_time)}; "
        f"reasons: {reasons}",
        flush=True,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.runtime.replay import replay_embedded

    sample = Path(str(resources.files("monitor") / "sample"))
    manifest = json.loads((sample / "manifest.json").read_text())
    archive = args.archive or sample / "archive.jsonl"
    defaults = {
        "bank": sample / "bank",
        "threshold": manifest["threshold"],
        "window_seconds": manifest["window_seconds"],
    }
    settings = _settings(args, defaults)  # the sample's, under the environment's and the flags
    if not archive.is_file():
        raise UsageError(f"archive not found: {archive}")
    check_archive(archive)
    print(
        f"demo: replaying {archive} with bank {settings.bank} (threshold {settings.threshold} shares "
        f"in {settings.window_seconds} s); loading the caption model...",
        file=sys.stderr,
        flush=True,
    )
    out = args.alerts_out.open("w", encoding="utf-8") if args.alerts_out else None
    try:
        summary = asyncio.run(replay_embedded(archive, settings, alerts_out=out, on_alert=_print_alert))
    finally:
        if out is not None:
            out.close()
    print(f"demo: {summary.line()}", flush=True)
    return 0


def _settings_line(settings: Settings) -> str:
    bank = f"bank {settings.bank}" if settings.bank is not None else "no bank (--bank or MONITOR_BANK)"
    return f"threshold {settings.threshold} shares in {settings.window_seconds} s, {bank}"


def cmd_replay(args: argparse.Namespace) -> int:
    from monitor.runtime.replay import ReplayError, replay_embedded, replay_to_kafka

    settings = _settings(args)
    if not args.archive.is_file():
        raise UsageError(f"archive not found: {args.archive}")
    check_archive(args.archive)  # before any output file is opened: a wrong file truncates nothing
    if args.to_kafka:
        try:
            summary = asyncio.run(replay_to_kafka(args.archive, settings))
        except ReplayError as exc:
            print(f"replay: {exc}; stopped, events after it were not sent", file=sys.stderr)
            return 1
        too_large = (
            f", {summary.dead_lettered} too large for a Kafka record (sent to {settings.dlq_topic})"
            if summary.dead_lettered
            else ""
        )
        print(
            f"replay: produced {summary.posts} posts to {settings.posts_topic} and {summary.rejected} "
            f"malformed events (the worker dead-letters them){too_large} in {summary.seconds:.1f} s",
            file=sys.stderr,
        )
        _warn_no_posts(args.archive, summary.posts, summary.rejected)
        return 0
    rejects_path = args.rejects_out or (
        args.alerts_out.with_name(args.alerts_out.name + ".rejects.jsonl") if args.alerts_out else None
    )
    out = args.alerts_out.open("w", encoding="utf-8") if args.alerts_out else sys.stdout
    rejects = rejects_path.open("w", encoding="utf-8") if rejects_path else None
    try:
        summary = asyncio.run(replay_embedded(args.archive, settings, alerts_out=out, rejects_out=rejects))
    finally:
        if args.alerts_out:
            out.close()
        if rejects is not None:
            rejects.close()
    if args.alerts_out:
        write_source(args.alerts_out, args.archive)  # for `monitor review`: where the alerts' pictures are
    where = f"; rejects in {rejects_path}" if rejects_path and summary.rejected else ""
    print(f"replay: {summary.line()}{where}; {_settings_line(settings)}", file=sys.stderr)
    _warn_no_posts(args.archive, summary.posts, summary.rejected)
    return 0


def _warn_no_posts(archive: Path, posts: int, rejected: int) -> None:
    """Every event malformed is data (contract §1: exit 0), but worth a line of its own."""
    if posts == 0:
        print(
            f"monitor: warning: no valid post in {archive}: all {rejected} events are malformed",
            file=sys.stderr,
        )


def cmd_worker(args: argparse.Namespace) -> int:
    from monitor.runtime.app import run_worker

    run_worker(_settings(args))
    return 0


def _record_time(option: str, value: str | None) -> float | None:
    from monitor.ingest.events import MalformedEvent, parse_time

    try:
        return None if value is None else parse_time(value)
    except MalformedEvent as exc:
        raise UsageError(f"{option}: {exc.detail} (e.g. 2023-03-26T16:00:00Z)") from None


def cmd_record(args: argparse.Namespace) -> int:
    from monitor.runtime.record import RecordError, RecordRange, parse_offsets, record_topic
    from monitor.runtime.replay import stderr_progress

    settings = _settings(args)
    if not args.out.name.endswith((".jsonl", ".jsonl.gz")):
        raise UsageError(f"--out must name a .jsonl or .jsonl.gz archive, got {args.out}")
    if args.max_events is not None and args.max_events < 1:
        raise UsageError("--max-events must be at least 1")
    try:
        span = RecordRange(
            since=_record_time("--since", args.since),
            until=_record_time("--until", args.until),
            from_offsets=parse_offsets(args.from_offsets) if args.from_offsets else None,
            max_events=args.max_events,
        )
        topic = args.topic or settings.posts_topic
        summary = asyncio.run(
            record_topic(
                settings, topic, args.out, span, inline_images=args.inline_images, progress=stderr_progress
            )
        )
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    print(f"record: {topic} -> {args.out}: {summary.line()}", file=sys.stderr)
    if summary.events == 0:
        print(f"monitor: warning: nothing recorded from {topic} in that range", file=sys.stderr)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from monitor.runtime.topics import ensure_topics

    created = asyncio.run(ensure_topics(_settings(args)))
    print(f"created: {', '.join(created) or 'nothing (all topics exist)'}", file=sys.stderr)
    return 0


def _review_desk(args: argparse.Namespace, alerts: Path) -> Any:
    from monitor.review.desk import ReviewDesk

    settings = _settings(args)
    if settings.bank is None:
        raise UsageError(
            f"'{_command_name(args)}' with --alerts needs a bank: give --bank DIR or set MONITOR_BANK"
        )
    if not alerts.is_file():
        raise UsageError(f"alerts file not found: {alerts}")
    if args.archive is not None and not args.archive.is_file():
        raise UsageError(f"archive not found: {args.archive}")
    return ReviewDesk(settings, settings.bank, alerts, args.archive)


def cmd_review(args: argparse.Namespace) -> int:
    if args.alerts is None:
        from monitor.review.kafka import review_on_kafka

        return review_on_kafka(args, _settings(args))
    desk = _review_desk(args, args.alerts)
    if args.review_command == "list":
        for row in desk.listing():
            _print_json(row)
        return 0
    by = args.by or os.environ.get("USER") or "unknown"
    outcome = desk.decide(args.alert_id, args.review_command, by, args.reason)
    _print_json({**outcome.decision.to_json(), "applied": outcome.applied})
    print(f"review: {outcome.line()}", file=sys.stderr)
    return 0


def cmd_review_server(args: argparse.Namespace) -> int:
    from monitor.review.server import serve_forever

    if args.alerts is not None:
        serve_forever(_review_desk(args, args.alerts), args.port)
        return 0
    from monitor.review.kafka import KafkaDesk

    settings = _settings(args)
    if settings.bank is None:
        raise UsageError(
            "'review-server' needs the bank the workers read: give --bank DIR or set MONITOR_BANK"
        )
    serve_forever(KafkaDesk(settings, settings.bank), args.port)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    settings = load_settings({"models_dir": args.models_dir})
    folder = fetch_model(args.model, settings.models_dir)
    print(folder, flush=True)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "review": cmd_review,
    "review-server": cmd_review_server,
    "demo": cmd_demo,
    "worker": cmd_worker,
    "replay": cmd_replay,
    "bank": cmd_bank,
    "match": cmd_match,
    "match-caption": cmd_match_caption,
    "inspect": cmd_inspect,
    "record": cmd_record,
    "topics": cmd_topics,
    "models": cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _check_options(args)
        _resolve_bank(args)
        level = (explicit_setting("log_level", args.log_level) or "warning").upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if level not in ("DEBUG", "INFO"):
            # aiokafka logs each failed connection; our own one-line error says it better.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"monitor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        SettingsError,
        BankError,
        ArchiveError,
        ModelError,
        FetchError,
        BrokerUnavailable,
        ReviewError,
    ) as exc:
        print(f"monitor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"monitor: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
