"""`minerwatch evidence verify`: a bundle, or every bundle under a directory, checked against its
manifest and, when given, against the hash recorded at collection (`--manifest-sha256`, or the
record file `--records` that `evidence` appended to on the host, see custody.py).

Without a recorded hash only internal consistency is checked: files and manifest rewritten
together pass, and `verify` says so. Everything read from a bundle is the host's (a bundle can be
tampered with): manifests are read bounded, names escaped, links neither followed nor hashed.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import click

from minerwatch.host.files import BoundedRead, open_regular
from minerwatch.investigation import custody
from minerwatch.investigation.bundles import MANIFEST, PARTIAL, manifest_digest, sha256_bytes, sha256_file
from minerwatch.text import host_text

MAX_MANIFEST_BYTES = 64 << 20
MAX_RECORDS_BYTES = 64 << 20  # a record file is at most custody.MAX_FILE_BYTES; a copy of many, more
MAX_DEPTH = 4  # directory levels searched for bundles below the one given (a case: site/host/run/bundle)
MAX_ENTRIES = 100_000  # directory entries looked at in all: a search must end
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _read_manifest(path: str) -> bytes:
    with open_regular(path, follow=False) as f:
        reader = BoundedRead(f, MAX_MANIFEST_BYTES)
        raw = reader.read()
    if reader.truncated:
        raise OSError(errno.EFBIG, f"larger than {MAX_MANIFEST_BYTES} bytes, which no manifest is", path)
    return raw


@dataclass
class Verdict:
    """What `check` found: problems (one line each, naming the file; none when intact), the
    sha256 of MANIFEST.json as read, and notes on copies cut at collection."""

    problems: List[str]
    manifest_sha256: str = ""
    notes: List[str] = field(default_factory=list)


def verify(bundle: str, manifest_sha256: Optional[str] = None) -> List[str]:
    """Problems found in a bundle, one line each naming the file; [] when it is intact."""
    return check(bundle, manifest_sha256).problems


def check(bundle: str, manifest_sha256: Optional[str] = None) -> Verdict:
    """Every file against the manifest, the manifest against its own hash and, when given, against
    `manifest_sha256`, the hash recorded at collection. Names from the bundle are escaped: a
    bundle can be tampered with."""
    manifest_path = os.path.join(bundle, MANIFEST)
    try:
        raw = _read_manifest(manifest_path)
    except OSError as exc:
        return Verdict([f"{manifest_path}: cannot read: {exc.strerror}"])
    verdict = Verdict([], sha256_bytes(raw))
    problems = verdict.problems
    if manifest_sha256 and verdict.manifest_sha256 != manifest_sha256.lower():
        problems.append(f"{manifest_path}: sha256 {verdict.manifest_sha256} is not the one recorded at collection")
    try:
        manifest = json.loads(raw)
        entries = list(manifest["files"])
        listed = {entry["path"]: entry["sha256"] for entry in entries}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
            raise TypeError("paths and hashes are strings")
    except (ValueError, KeyError, TypeError, RecursionError):
        problems.append(f"{manifest_path}: not a minerwatch evidence manifest")
        return verdict
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        problems.append(f"{manifest_path}: its own hash does not match its contents (the manifest was edited)")
    for name, expected in sorted(listed.items()):
        parts = name.split("/")
        shown = os.path.join(bundle, host_text(name, 256))
        if name.startswith("/") or ".." in parts or "" in parts:
            problems.append(f"{manifest_path}: lists a path outside the bundle: {host_text(name, 256)}")
            continue
        try:
            actual = sha256_file(os.path.join(bundle, *parts))
        except OSError as exc:
            problems.append(f"{shown}: missing or unreadable ({exc.strerror})")
            continue
        if actual != expected:
            problems.append(f"{shown}: sha256 {actual} differs from the manifest's {host_text(expected, 64)}")
    for root, dirs, names in os.walk(bundle):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), bundle).replace(os.sep, "/")
            if rel != MANIFEST and rel not in listed:
                problems.append(f"{os.path.join(bundle, host_text(rel, 512))}: not in the manifest (added later)")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("truncated") is True:
            verdict.notes.append(
                f"{os.path.join(bundle, host_text(entry['path'], 256))}: holds the first "
                f"{host_text(str(entry.get('size_bytes')), 32)} bytes only; the file held "
                f"{host_text(str(entry.get('source_size_bytes')), 32)} at collection")
    return verdict


def is_bundle(path: str) -> bool:
    return os.path.lexists(os.path.join(path, MANIFEST))


def find_bundles(top: str, max_depth: int = MAX_DEPTH) -> List[str]:
    """Bundles at most `max_depth` levels below `top`, sorted; a bundle is not searched inside,
    a symbolic link to a directory is not followed, `.partial-*` directories (being written, or
    left by a killed run) are left out. At most MAX_ENTRIES directory entries are looked at."""
    found: List[str] = []
    pending = [(top, 0)]
    seen = 0
    while pending:
        directory, depth = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    seen += 1
                    if seen > MAX_ENTRIES:
                        raise OSError(errno.E2BIG, f"more than {MAX_ENTRIES} entries under it: give a narrower one",
                                      top)
                    if entry.name.startswith(PARTIAL) or not entry.is_dir(follow_symlinks=False):
                        continue
                    if is_bundle(entry.path):
                        found.append(entry.path)
                    elif depth + 1 < max_depth:
                        pending.append((entry.path, depth + 1))
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise
            continue  # unreadable: not a place bundles are kept
    return sorted(found)


class RecordBook:
    """The records of `--records` files, by the bundle's directory name (a bundle copied
    elsewhere keeps its name, `<time>-pid<N>`)."""

    def __init__(self, files: Sequence[str]):
        self.files = list(files)
        self.by_name: Dict[str, List[custody.Record]] = {}
        for path in self.files:
            for record in custody.read_all(path, MAX_RECORDS_BYTES):
                name = record.bundle.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
                self.by_name.setdefault(name, []).append(record)

    def expected(self, bundle: str, actual: str) -> Optional[custody.Record]:
        """The record of `bundle`: the one whose hash is `actual` if any, else the latest."""
        records = self.by_name.get(os.path.basename(os.path.normpath(bundle)), [])
        for record in records:
            if record.manifest_sha256 == actual:
                return record
        return max(records, key=lambda r: r.time_seconds) if records else None


def _check_against(bundle: str, manifest_sha256: Optional[str], book: Optional[RecordBook]):
    """(verdict, what the manifest was checked against: "" for nothing)."""
    if book is None:
        verdict = check(bundle, manifest_sha256)
        return verdict, ("the sha256 given" if manifest_sha256 else "")
    verdict = check(bundle)
    if not verdict.manifest_sha256:
        return verdict, ""
    record = book.expected(bundle, verdict.manifest_sha256)
    manifest_path = os.path.join(bundle, MANIFEST)
    if record is None:
        verdict.problems.append(f"{manifest_path}: no record of this bundle in {', '.join(book.files)}")
        return verdict, ""
    when = custody.Record(record.time_seconds, record.pid, "", record.manifest_sha256)
    stamp = json.loads(when.line())["time"]
    if record.manifest_sha256 != verdict.manifest_sha256:
        verdict.problems.insert(0, f"{manifest_path}: sha256 {verdict.manifest_sha256} is not the one recorded at "
                                   f"collection ({record.manifest_sha256}, pid {record.pid}, {stamp})")
    return verdict, f"the record of pid {record.pid} at {stamp}"


def _echo_one(bundle: str, verdict: Verdict, against: str) -> None:
    """The report on one bundle given by itself: a line per problem, or OK and what was checked."""
    for line in verdict.problems:
        click.echo(f"FAILED {line}")
    if verdict.problems:
        return
    digest = verdict.manifest_sha256
    if against:
        click.echo(f"OK {bundle}: every file matches {MANIFEST}, whose sha256 {digest} is the one recorded "
                   f"at collection" + ("" if against == "the sha256 given" else f" ({against})"))
    else:
        click.echo(f"OK {bundle}: every file matches {MANIFEST} (sha256 {digest}): internal consistency only")
        click.echo(f"NOT CHECKED {MANIFEST} against the sha256 recorded at collection: files and manifest "
                   f"rewritten together pass the check above. Compare {digest} with the sha256 printed at "
                   "collection, or run again with --manifest-sha256 <that sha256> or --records <record file>")
    for note in verdict.notes:
        click.echo(f"NOTE {note}")


def _echo_many(bundle: str, verdict: Verdict, against: str) -> None:
    """One line per bundle of a directory, its problems indented below it."""
    if verdict.problems:
        first = verdict.problems[0]
        why = first[len(bundle):].lstrip("/\\") if first.startswith(bundle) else first
        more = f" (and {len(verdict.problems) - 1} more)" if len(verdict.problems) > 1 else ""
        click.echo(f"FAILED {bundle}: {why}{more}")
        for line in verdict.problems[1:]:
            click.echo(f"  {line}")
        return
    what = f"recorded at collection ({against})" if against else "internal consistency only"
    click.echo(f"OK {bundle}: every file matches {MANIFEST} (sha256 {verdict.manifest_sha256}): {what}")
    for note in verdict.notes:
        click.echo(f"  NOTE {note}")


@click.command("verify")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--manifest-sha256", help="sha256 of MANIFEST.json printed at collection, kept off the host "
                                        "(one bundle only).")
@click.option("--records", "records", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="Record file(s) of the collecting host (evidence-records.jsonl under --state.dir, and its "
                   ".1): each bundle's manifest must have the sha256 recorded there (repeatable).")
@click.pass_context
def verify_command(ctx, bundle, manifest_sha256, records):
    """Check a bundle, or every bundle under a directory (a --out directory), against its manifest:
    exit 0 every file matches, 1 one did not (named). Without --manifest-sha256 or --records only
    internal consistency is checked: files and manifest rewritten together pass."""
    if manifest_sha256 is not None and not _SHA256.fullmatch(manifest_sha256):
        raise click.BadParameter("must be 64 hexadecimal digits", param_hint="'--manifest-sha256'")
    if manifest_sha256 and records:
        raise click.UsageError("give --manifest-sha256 or --records, not both")
    try:
        book = RecordBook(records) if records else None
    except OSError as exc:
        raise click.BadParameter(host_text(str(exc), 1024), param_hint="'--records'")
    if is_bundle(bundle):
        verdict, against = _check_against(bundle, manifest_sha256, book)
        _echo_one(bundle, verdict, against)
        ctx.exit(1 if verdict.problems else 0)
    try:
        found = find_bundles(bundle)
    except OSError as exc:
        raise click.ClickException(host_text(str(exc), 1024))
    if not found:  # no bundle here, nor below: say what a bundle lacks
        _echo_one(bundle, check(bundle), "")
        ctx.exit(1)
    if manifest_sha256:
        raise click.UsageError(f"{len(found)} bundles under {bundle}: --manifest-sha256 checks one bundle; "
                               "give the bundle, or --records")
    failed = 0
    checked_against_record = True
    for path in found:
        verdict, against = _check_against(path, None, book)
        _echo_many(path, verdict, against)
        failed += bool(verdict.problems)
        checked_against_record &= bool(against)
    click.echo(f"{len(found)} bundle{'s' if len(found) != 1 else ''}: {len(found) - failed} OK, {failed} FAILED")
    if not checked_against_record and book is None:
        click.echo(f"NOT CHECKED any {MANIFEST} against the sha256 recorded at collection: run again with "
                   "--records <the host's evidence-records.jsonl>, or each bundle with --manifest-sha256")
    ctx.exit(1 if failed else 0)
