"""The model registry: content-addressed model versions, aliases, and an append-only promotion history.

Layout under the registry root (a local path, or any URI pyarrow's filesystems serve: `s3://...`):

    <model_name>/versions/<version_id>/<file>         the artifact files, never overwritten
    <model_name>/versions/<version_id>/version.json   written last: a version exists once this does
    <model_name>/history.jsonl                        one JSON line per registration or alias change
    <model_name>/history.head.json                    the number and sha256 of the latest line
    <model_name>/aliases.json                         alias -> version_id, a cache for people and tools

`version_id` is the sha256 of the canonical JSON `{"files": {name: sha256, ...}}` (keys sorted, no
spaces), so registering the same files again finds the existing version, and a `version.json` whose
hashes were edited no longer matches the directory it sits in.

The history is a hash chain: every line carries `prev`, the sha256 of the previous line's bytes (the
first line: the sha256 of `fleetml registry history of <model_name>`, so a history copied from another
model does not fit either), and every read verifies the whole chain. An edited, inserted, deleted or
reordered line breaks the link of the line after it; the last line has no line after it, so
`history.head.json` records it (line count and sha256), written after each append. A crash between an
append and its head leaves one line past the head, which is accepted (so is, therefore, one line added
at the end by hand); the next write anchors it before appending, so two lines past the head, a missing
head or a shorter history are tampering.

`metadata`, `sequence` and `created_at` are outside the content address, so registration appends a
`register` line carrying the sha256 of the whole record (canonical JSON) before it publishes
`version.json`, and every load of a version checks the record against it. The digest sits in the chain
rather than in `version.json` itself because a digest beside the data is recomputed by whoever edits
the data; one in the chain can only be changed by rewriting every later line and the head. A crash
between that line and `version.json` leaves an invisible version whose registration, retried, appends
a line of its own; any registered digest of the version is accepted.

None of this is a signature: someone who can write the store and recomputes the chain and its head is
not caught. That needs a key kept outside the store; this detects edits of the stored files.

Aliases are always derived by replaying `history.jsonl`: the history is the record, and
`aliases.json` is rewritten after every change only so that people and other tools can read the
current aliases with one GET. A crash between the history append and the cache write therefore loses
nothing; the next alias change rewrites the cache.

Concurrency: on a local path, registrations and alias changes of one model take an exclusive lock
(`<model_name>/.lock`, flock) and publish `version.json` with a no-clobber link, so concurrent writers
(threads or processes) are safe and sequence numbers are unique. Object stores offer pyarrow no lock
and no conditional write: there, writes are atomic per object but two writers of the same model at the
same instant can race: one history line can be lost, which the chain then reports as tampering (a
version whose `register` line was lost, or a head that records the other writer's line). Production
serializes registry writers per model (one registering or promoting run at a time).
"""

import contextlib
import datetime as dt
import hashlib
import json
import os
import posixpath
import re
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dagster as dg

VERSION_FILE = "version.json"
HISTORY_FILE = "history.jsonl"
HEAD_FILE = "history.head.json"
ALIASES_FILE = "aliases.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
MIN_PREFIX_CHARS = 8
SHORT_ID_CHARS = 12

# Used with fullmatch only: `$` also matches before a trailing newline, so `re.match` took "champion\n".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX_PREFIX = re.compile(r"[0-9a-f]+")
ALIAS_ACTIONS = ("set_alias", "rollback")
REGISTER_ACTION = "register"


class RegistryError(Exception):
    """Base class of registry errors; the message is one line, fit for a CLI."""


class UnknownModelError(RegistryError, LookupError):
    """No version of this model was ever registered."""


class UnknownVersionError(RegistryError, LookupError):
    """No registered version matches the id or prefix."""


class AmbiguousVersionError(RegistryError, LookupError):
    """A prefix matches more than one version."""


class NoPreviousVersionError(RegistryError):
    """A rollback was asked for but the alias never pointed anywhere before its latest change."""


class TamperedRegistryError(RegistryError):
    """Stored bytes do not match their recorded sha256, a record its address or the history its chain."""


class RegistrationMetadataIgnored(UserWarning):
    """Identical files were registered again with different metadata; the first metadata is kept."""


@dataclass(frozen=True)
class ArtifactFile:
    """One file of a version, as recorded in `version.json`."""

    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version (immutable; `metadata` is read-only at its top level)."""

    version_id: str
    model_name: str
    sequence: int
    created_at: dt.datetime
    files: Mapping[str, ArtifactFile]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.version_id[:SHORT_ID_CHARS]

    def __hash__(self) -> int:
        return hash((self.model_name, self.version_id))


@dataclass(frozen=True)
class HistoryEvent:
    """One alias change, as appended to `history.jsonl`. `action` is `set_alias` or `rollback`."""

    at: dt.datetime
    alias: str
    version_id: str
    previous_version_id: str | None
    actor: str
    reason: str
    run_id: str | None = None
    action: str = "set_alias"

    def to_record(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "alias": self.alias,
            "version_id": self.version_id,
            "previous_version_id": self.previous_version_id,
            "actor": self.actor,
            "reason": self.reason,
            "run_id": self.run_id,
            "action": self.action,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "HistoryEvent":
        if record["action"] not in ALIAS_ACTIONS:
            raise ValueError(f"unknown action {record['action']!r}")
        return cls(
            at=dt.datetime.fromisoformat(record["at"]),
            alias=record["alias"],
            version_id=record["version_id"],
            previous_version_id=record.get("previous_version_id"),
            actor=record["actor"],
            reason=record["reason"],
            run_id=record.get("run_id"),
            action=record["action"],
        )


@dataclass(frozen=True)
class _History:
    """A verified `history.jsonl`: its alias changes, registered record digests, and chain end."""

    events: list[HistoryEvent]
    record_sha256s: Mapping[str, frozenset[str]]  # version_id -> digests of its registered records
    line_count: int
    anchored_lines: int  # lines covered by the head
    last_sha256: str  # the next line's `prev`


def compute_version_id(file_sha256s: Mapping[str, str]) -> str:
    """The content address of a version: sha256 of `{"files": {name: sha256}}` as canonical JSON."""
    canonical = json.dumps({"files": dict(file_sha256s)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay_aliases(events: "list[HistoryEvent]") -> dict[str, str]:
    """Aliases as the history leaves them: each alias points where its latest event put it."""
    aliases: dict[str, str] = {}
    for event in events:
        aliases[event.alias] = event.version_id
    return aliases


def _canonical_json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _record_sha256(record: Mapping[str, Any]) -> str:
    """The digest of a whole `version.json` record, as its `register` history line carries it."""
    return hashlib.sha256(_canonical_json(record)).hexdigest()


def _genesis_sha256(model_name: str) -> str:
    """The `prev` of a model's first history line."""
    return hashlib.sha256(f"fleetml registry history of {model_name}".encode()).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in {VERSION_FILE}:
        raise ValueError(
            f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


class ModelRegistry:
    """The registry under `uri` (a local path, or `s3://bucket/prefix` and other pyarrow URIs).

    No Dagster here: the CLI, notebooks and tests use this class directly; `ModelRegistryResource`
    wraps it for assets. `clock` returns the current UTC time (injected by tests).
    """

    def __init__(self, uri: str, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.uri = str(uri)
        self._store: _Store = _ArrowStore(self.uri) if "://" in self.uri else _LocalStore(self.uri)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ModelRegistry({self.uri!r})"

    # ------------------------------------------------------------------ versions

    def register(
        self, model_name: str, files: Mapping[str, bytes], metadata: Mapping[str, Any]
    ) -> ModelVersion:
        """Store `files` as a version of `model_name` and return it; idempotent for identical files.

        Registering files already registered returns the existing version untouched (its sequence,
        time and metadata); when `metadata` differs, a `RegistrationMetadataIgnored` warning says so.
        `metadata` is free JSON (params, metrics, lineage, run id, code version).
        """
        _check_name("model name", model_name)
        if not files:
            raise ValueError("a version needs at least one file")
        for name in files:
            _check_name("file name", name)
        try:
            metadata_json = json.loads(json.dumps(dict(metadata), allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"metadata must be plain JSON (no NaN): {error}") from error

        entries = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
            for name, data in sorted(files.items())
        }
        version_id = compute_version_id({name: entry["sha256"] for name, entry in entries.items()})
        existing = self._existing(model_name, version_id, metadata_json)
        if existing is not None:
            return existing

        directory = self._version_dir(model_name, version_id)
        for name, data in files.items():
            path = posixpath.join(directory, name)
            if not self._store.publish(path, data):
                # Written by an earlier attempt that stopped before version.json, or a concurrent one.
                stored = self._store.read(path)
                if stored is None or hashlib.sha256(stored).hexdigest() != entries[name]["sha256"]:
                    raise TamperedRegistryError(f"{self._store.uri_of(path)} exists with other content")

        with self._store.lock(model_name):
            history = self._read_history(model_name)
            existing = self._existing(model_name, version_id, metadata_json, history)
            if existing is not None:
                return existing
            sequence = max((v.sequence for v in self._load_versions(model_name, history)), default=0) + 1
            record = {
                "format": FORMAT_VERSION,
                "version_id": version_id,
                "model_name": model_name,
                "sequence": sequence,
                "created_at": self._clock().isoformat(),
                "files": entries,
                "metadata": metadata_json,
            }
            # The register line is the commit: a version.json no register line vouches for is tampered.
            self._append_history(
                model_name,
                history,
                {
                    "action": REGISTER_ACTION,
                    "at": record["created_at"],
                    "version_id": version_id,
                    "record_sha256": _record_sha256(record),
                },
            )
            body = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
            if not self._store.publish(posixpath.join(directory, VERSION_FILE), body):
                # Only without a lock (object stores): a concurrent writer committed it first.
                return self._load_version(model_name, version_id)
            return self._version_from_record(model_name, version_id, record)

    def version(self, model_name: str, version_id: str) -> ModelVersion:
        """The version whose id is `version_id` or starts with it (a prefix of at least 8 hex chars)."""
        return self._load_version(model_name, self._resolve(model_name, version_id))

    def versions(self, model_name: str) -> list[ModelVersion]:
        """Every version of `model_name`, in registration order (by sequence)."""
        versions = self._load_versions(model_name)
        if not versions:
            raise self._unknown_model(model_name)
        return versions

    def models(self) -> list[str]:
        """Names of the models with at least one registered version, sorted."""
        return sorted(
            name
            for name in self._store.list_dirs("")
            if _NAME.fullmatch(name) and self._store.list_dirs(posixpath.join(name, "versions"))
        )

    def read_file(self, model_name: str, version_id: str, name: str) -> bytes:
        """The bytes of one artifact, checked against the sha256 and size in `version.json`."""
        version = self.version(model_name, version_id)
        if name not in version.files:
            raise RegistryError(
                f"{model_name} {version.short_id} has no file {name!r} (files: {', '.join(version.files)})"
            )
        path = posixpath.join(self._version_dir(model_name, version.version_id), name)
        data = self._store.read(path)
        expected = version.files[name]
        if data is None:
            raise TamperedRegistryError(f"{self._store.uri_of(path)} is missing")
        if len(data) != expected.size_bytes or hashlib.sha256(data).hexdigest() != expected.sha256:
            raise TamperedRegistryError(
                f"{self._store.uri_of(path)} does not match its sha256 in {VERSION_FILE}: tampered registry"
            )
        return data

    def artifact_uri(self, model_name: str, version_id: str, name: str) -> str:
        """Where one artifact lives (for asset metadata); read it with `read_file`, which verifies it."""
        version = self.version(model_name, version_id)
        if name not in version.files:
            raise RegistryError(f"{model_name} {version.short_id} has no file {name!r}")
        return self._store.uri_of(posixpath.join(self._version_dir(model_name, version.version_id), name))

    # ------------------------------------------------------------------ aliases and history

    def history(self, model_name: str, alias: str | None = None) -> list[HistoryEvent]:
        """Alias changes in the order they happened, optionally for one alias only."""
        self._require_model(model_name)
        events = self._read_history(model_name).events
        return [event for event in events if alias is None or event.alias == alias]

    def aliases(self, model_name: str) -> dict[str, str]:
        """Every alias of `model_name` and the version id it points at, replayed from the history."""
        self._require_model(model_name)
        return replay_aliases(self._read_history(model_name).events)

    def alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """The version `alias` points at, or None when it was never set."""
        self._require_model(model_name)
        history = self._read_history(model_name)
        version_id = replay_aliases(history.events).get(alias)
        return None if version_id is None else self._load_version(model_name, version_id, history)

    def set_alias(
        self,
        model_name: str,
        alias: str,
        version_id: str,
        actor: str,
        reason: str,
        run_id: str | None = None,
    ) -> HistoryEvent:
        """Point `alias` at a version (id or prefix), recording who, why and from which run.

        Setting an alias to the version it already points at records nothing and returns the event
        that put it there, so a re-run of a promoting step does not duplicate history.
        """
        if version_id is None:
            raise ValueError("set_alias needs a version id (use rollback to go back)")
        return self._change_alias(model_name, alias, version_id, actor, reason, run_id, "set_alias")

    def rollback(
        self,
        model_name: str,
        alias: str = "champion",
        to_version: str | None = None,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
    ) -> HistoryEvent:
        """Point `alias` back at `to_version`, or by default where it pointed before its latest change.

        Rolling back twice without a change in between therefore returns to where it started: each
        rollback undoes the latest change. Raises `NoPreviousVersionError` when the alias has no
        earlier version.
        """
        return self._change_alias(model_name, alias, to_version, actor, reason, run_id, "rollback")

    # ------------------------------------------------------------------ internals

    def _change_alias(
        self,
        model_name: str,
        alias: str,
        version_id: str | None,
        actor: str,
        reason: str,
        run_id: str | None,
        action: str,
    ) -> HistoryEvent:
        """Append one alias change under the model lock; `version_id` None means the previous version."""
        _check_name("alias", alias)
        if not reason or not reason.strip():
            raise ValueError("an alias change needs a reason")
        self._require_model(model_name)
        target = None if version_id is None else self.version(model_name, version_id).version_id
        with self._store.lock(model_name):
            history = self._read_history(model_name)
            events = history.events
            aliases = replay_aliases(events)
            current = aliases.get(alias)
            if target is None:
                latest = next((event for event in reversed(events) if event.alias == alias), None)
                if latest is None or latest.previous_version_id is None:
                    raise NoPreviousVersionError(
                        f"{model_name}: alias {alias!r} has no previous version to roll back to"
                        + ("" if latest else " (it was never set)")
                    )
                target = latest.previous_version_id
            if current == target:
                return next(event for event in reversed(events) if event.alias == alias)
            event = HistoryEvent(
                at=self._clock(),
                alias=alias,
                version_id=target,
                previous_version_id=current,
                actor=actor,
                reason=reason,
                run_id=run_id,
                action=action,
            )
            # The history line is the commit; the alias cache follows it and is only ever derived.
            self._append_history(model_name, history, event.to_record())
            aliases[alias] = target
            cache = json.dumps(aliases, indent=2, sort_keys=True).encode() + b"\n"
            self._store.replace(posixpath.join(model_name, ALIASES_FILE), cache)
            return event

    def _read_history(self, model_name: str) -> _History:
        """The history of `model_name`, its hash chain and head verified line by line."""
        data = self._store.read(posixpath.join(model_name, HISTORY_FILE)) or b""
        # A last line without its newline is a write that never completed: not part of the history.
        complete = data[: data.rfind(b"\n") + 1]
        where = f"{model_name}/{HISTORY_FILE}"
        events: list[HistoryEvent] = []
        record_sha256s: dict[str, set[str]] = {}
        line_sha256s = [_genesis_sha256(model_name)]
        for number, line in enumerate(complete.splitlines(), start=1):
            try:
                record = json.loads(line)
                prev = record.pop("prev")
                if record["action"] == REGISTER_ACTION:
                    digests = record_sha256s.setdefault(record["version_id"], set())
                    digests.add(record["record_sha256"])
                else:
                    events.append(HistoryEvent.from_record(record))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise TamperedRegistryError(
                    f"{where} line {number} is not a history line ({type(error).__name__}: {error})"
                ) from error
            if prev != line_sha256s[-1]:
                follows = f"line {number - 1}" if number > 1 else "the start of the history"
                raise TamperedRegistryError(
                    f"{where} line {number} does not follow {follows} "
                    "(a line was edited, inserted, deleted or reordered): tampered registry"
                )
            line_sha256s.append(hashlib.sha256(line).hexdigest())
        anchored_lines = self._verify_head(model_name, line_sha256s)
        return _History(
            events=events,
            record_sha256s={version_id: frozenset(digests) for version_id, digests in record_sha256s.items()},
            line_count=len(line_sha256s) - 1,
            anchored_lines=anchored_lines,
            last_sha256=line_sha256s[-1],
        )

    def _verify_head(self, model_name: str, line_sha256s: list[str]) -> int:
        """How many lines the head covers, after checking that the history still ends as it recorded."""
        where = f"{model_name}/{HISTORY_FILE}"
        line_count = len(line_sha256s) - 1
        data = self._store.read(posixpath.join(model_name, HEAD_FILE))
        try:
            head = json.loads(data) if data is not None else {"lines": 0, "sha256": line_sha256s[0]}
            anchored_lines, head_sha256 = int(head["lines"]), head["sha256"]
        except (ValueError, KeyError, TypeError) as error:
            raise TamperedRegistryError(f"{model_name}/{HEAD_FILE} is unreadable: {error}") from error
        if anchored_lines > line_count:
            raise TamperedRegistryError(
                f"{where} has {line_count} lines but its head records {anchored_lines}: "
                "lines were deleted from its end: tampered registry"
            )
        if line_sha256s[anchored_lines] != head_sha256:
            raise TamperedRegistryError(
                f"{where} line {anchored_lines} is not the line its head records: tampered registry"
            )
        if line_count - anchored_lines > 1:
            raise TamperedRegistryError(
                f"{where} lines {anchored_lines + 1} to {line_count} are past its head "
                "(only one interrupted append can be): tampered registry"
            )
        return anchored_lines

    def _append_history(self, model_name: str, history: _History, record: Mapping[str, Any]) -> None:
        """Append `record` to the verified `history` as a chained line, then move the head onto it.

        Callers hold the model lock. A line left past the head by an interrupted append is anchored
        first, so that at most one line is ever past the head.
        """
        if history.anchored_lines < history.line_count:
            self._write_head(model_name, history.line_count, history.last_sha256)
        line = _canonical_json({**record, "prev": history.last_sha256})
        self._store.append_line(posixpath.join(model_name, HISTORY_FILE), line + b"\n")
        self._write_head(model_name, history.line_count + 1, hashlib.sha256(line).hexdigest())

    def _write_head(self, model_name: str, lines: int, sha256: str) -> None:
        self._store.replace(
            posixpath.join(model_name, HEAD_FILE), _canonical_json({"lines": lines, "sha256": sha256})
        )

    def _version_dir(self, model_name: str, version_id: str) -> str:
        return posixpath.join(model_name, "versions", version_id)

    def _version_ids(self, model_name: str) -> list[str]:
        return [
            name
            for name in self._store.list_dirs(posixpath.join(model_name, "versions"))
            if len(name) == 64 and _HEX_PREFIX.fullmatch(name)
        ]

    def _load_versions(self, model_name: str, history: _History | None = None) -> list[ModelVersion]:
        _check_name("model name", model_name)
        version_ids = self._version_ids(model_name)
        if history is None and version_ids:
            history = self._read_history(model_name)
        versions = []
        for version_id in version_ids:
            record = self._read_record(model_name, version_id)
            if record is not None:  # a directory without version.json is a registration in progress
                versions.append(self._registered_version(model_name, version_id, record, history))
        return sorted(versions, key=lambda version: (version.sequence, version.version_id))

    def _read_record(self, model_name: str, version_id: str) -> dict[str, Any] | None:
        data = self._store.read(posixpath.join(self._version_dir(model_name, version_id), VERSION_FILE))
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise TamperedRegistryError(
                f"{model_name} {version_id[:SHORT_ID_CHARS]}: unreadable {VERSION_FILE}"
            ) from error

    def _load_version(
        self, model_name: str, version_id: str, history: _History | None = None
    ) -> ModelVersion:
        record = self._read_record(model_name, version_id)
        if record is None:
            raise UnknownVersionError(f"{model_name} has no version {version_id}")
        return self._registered_version(model_name, version_id, record, history)

    def _registered_version(
        self, model_name: str, version_id: str, record: Mapping[str, Any], history: _History | None
    ) -> ModelVersion:
        """The version of `record`, once the history vouches for the whole record, not only its files."""
        version = self._version_from_record(model_name, version_id, record)
        if history is None:
            history = self._read_history(model_name)
        if _record_sha256(record) not in history.record_sha256s.get(version_id, frozenset()):
            raise TamperedRegistryError(
                f"{model_name}/versions/{version_id}/{VERSION_FILE} is not the record registered in "
                f"{HISTORY_FILE} (metadata, sequence or created_at edited?): tampered registry"
            )
        return version

    def _version_from_record(
        self, model_name: str, version_id: str, record: Mapping[str, Any]
    ) -> ModelVersion:
        files = {
            name: ArtifactFile(sha256=entry["sha256"], size_bytes=int(entry["size_bytes"]))
            for name, entry in record["files"].items()
        }
        recomputed = compute_version_id({name: entry.sha256 for name, entry in files.items()})
        addressed = (recomputed, record.get("version_id"), record.get("model_name"))
        if addressed != (version_id, version_id, model_name):
            raise TamperedRegistryError(
                f"{model_name}/versions/{version_id}/{VERSION_FILE} does not match its address: "
                "tampered registry"
            )
        return ModelVersion(
            version_id=version_id,
            model_name=model_name,
            sequence=int(record["sequence"]),
            created_at=dt.datetime.fromisoformat(record["created_at"]),
            files=MappingProxyType(files),
            metadata=MappingProxyType(dict(record.get("metadata") or {})),
        )

    def _existing(
        self,
        model_name: str,
        version_id: str,
        metadata: Mapping[str, Any],
        history: _History | None = None,
    ) -> ModelVersion | None:
        record = self._read_record(model_name, version_id)
        if record is None:
            return None
        version = self._registered_version(model_name, version_id, record, history)
        if dict(version.metadata) != dict(metadata):
            warnings.warn(
                f"{model_name} {version.short_id} is already registered (sequence {version.sequence}) with "
                "other metadata; the first registration's metadata is kept",
                RegistrationMetadataIgnored,
                stacklevel=3,
            )
        return version

    def _resolve(self, model_name: str, version_id: str) -> str:
        _check_name("model name", model_name)
        prefix = str(version_id).strip().lower()
        if len(prefix) < MIN_PREFIX_CHARS or not _HEX_PREFIX.fullmatch(prefix):
            raise UnknownVersionError(
                f"{model_name}: {version_id!r} is not a version id or a prefix of at least "
                f"{MIN_PREFIX_CHARS} hex characters"
            )
        known = self._version_ids(model_name)
        if not known:
            raise self._unknown_model(model_name)
        matches = [
            candidate
            for candidate in known
            if candidate.startswith(prefix) and self._read_record(model_name, candidate) is not None
        ]
        if not matches:
            raise UnknownVersionError(f"{model_name} has no version {version_id}")
        if len(matches) > 1:
            listed = ", ".join(sorted(match[:SHORT_ID_CHARS] for match in matches))
            raise AmbiguousVersionError(
                f"{model_name}: prefix {version_id} matches {len(matches)} versions: {listed}"
            )
        return matches[0]

    def _require_model(self, model_name: str) -> None:
        _check_name("model name", model_name)
        if not self._version_ids(model_name):
            raise self._unknown_model(model_name)

    def _unknown_model(self, model_name: str) -> UnknownModelError:
        known = self.models()
        return UnknownModelError(
            f"no model {model_name!r} in registry {self.uri}"
            + (f" (models: {', '.join(known)})" if known else " (it is empty)")
        )


class _Store:
    """Bytes at paths relative to the registry root, with the few primitives the registry needs."""

    def read(self, path: str) -> bytes | None: ...

    def publish(self, path: str, data: bytes) -> bool:
        """Write `path` atomically unless it exists; True when this call created it."""

    def replace(self, path: str, data: bytes) -> None:
        """Write `path` atomically, replacing it."""

    def append_line(self, path: str, line: bytes) -> None: ...

    def list_dirs(self, path: str) -> list[str]: ...

    def lock(self, model_name: str) -> contextlib.AbstractContextManager[None]: ...

    def uri_of(self, path: str) -> str: ...


class _LocalStore(_Store):
    """A local directory: atomic renames, no-clobber links, flock and O_APPEND with fsync."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser().absolute()

    def _path(self, path: str) -> Path:
        return self.root / path if path else self.root

    def uri_of(self, path: str) -> str:
        return str(self._path(path))

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _temp(self, target: Path, data: bytes) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        return temp

    def publish(self, path: str, data: bytes) -> bool:
        target = self._path(path)
        if target.exists():
            return False
        temp = self._temp(target, data)
        try:
            os.link(temp, target)  # fails if the target exists: never overwrites, even under a race
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def replace(self, path: str, data: bytes) -> None:
        target = self._path(path)
        os.replace(self._temp(target, data), target)

    def append_line(self, path: str, line: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Callers hold the model lock, so an unterminated tail is a write that crashed before
                # its newline: never part of the history, cut before appending after it.
                os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def list_dirs(self, path: str) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self._path(path)) if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        import fcntl

        lock_path = self._path(posixpath.join(model_name, LOCK_FILE))
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+b") as stream:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


class _ArrowStore(_Store):
    """Any pyarrow filesystem URI (`s3://`, `gs://`, `file://`): atomic per object, no locks."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs as pafs

        from resources.filesystems import filesystem_and_path

        self._uri = uri.rstrip("/")
        self.fs: pafs.FileSystem
        self.fs, self.root = filesystem_and_path(self._uri)

    def _path(self, path: str) -> str:
        return posixpath.join(self.root, path) if path else self.root

    def uri_of(self, path: str) -> str:
        return posixpath.join(self._uri, path) if path else self._uri

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(self._path(path)).type.name != "NotFound"

    def read(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self._path(path)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError:
            if not self._exists(path):
                return None
            raise

    def _write(self, path: str, data: bytes) -> None:
        target = self._path(path)
        directory, name = posixpath.split(target)
        self.fs.create_dir(directory, recursive=True)
        temp = posixpath.join(directory, f".tmp-{uuid.uuid4().hex}-{name}")
        with self.fs.open_output_stream(temp) as stream:
            stream.write(data)
        self.fs.move(temp, target)

    def publish(self, path: str, data: bytes) -> bool:
        if self._exists(path):
            return False
        self._write(path, data)
        return True

    def replace(self, path: str, data: bytes) -> None:
        self._write(path, data)

    def append_line(self, path: str, line: bytes) -> None:
        # Object stores cannot append: rewrite the whole object, keeping every complete line as it was.
        data = self.read(path) or b""
        self._write(path, data[: data.rfind(b"\n") + 1] + line)

    def list_dirs(self, path: str) -> list[str]:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self._path(path), allow_not_found=True))
        return sorted(posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.Directory)

    def lock(self, model_name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry for assets: content-addressed versions, aliases and promotion history.

    `uri` is a local path or an `s3://` URI. Methods mirror `ModelRegistry`; `registry()` returns it.
    """

    uri: str

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.uri)

    def register(
        self, model_name: str, files: Mapping[str, bytes], metadata: Mapping[str, Any]
    ) -> ModelVersion:
        """Store files as a version of the model (idempotent for identical files)."""
        return self.registry().register(model_name, files, metadata)

    def version(self, model_name: str, version_id: str) -> ModelVersion:
        """The version with this id or unique prefix (at least 8 hex characters)."""
        return self.registry().version(model_name, version_id)

    def versions(self, model_name: str) -> list[ModelVersion]:
        """Every version of the model, by sequence."""
        return self.registry().versions(model_name)

    def read_file(self, model_name: str, version_id: str, name: str) -> bytes:
        """One artifact's bytes, verified against its recorded sha256."""
        return self.registry().read_file(model_name, version_id, name)

    def artifact_uri(self, model_name: str, version_id: str, name: str) -> str:
        """Where one artifact is stored, for asset metadata."""
        return self.registry().artifact_uri(model_name, version_id, name)

    def aliases(self, model_name: str) -> dict[str, str]:
        """Alias -> version id, replayed from the history."""
        return self.registry().aliases(model_name)

    def alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """The version an alias points at, or None."""
        return self.registry().alias(model_name, alias)

    def set_alias(
        self, model_name: str, alias: str, version_id: str, actor: str, reason: str, run_id: str | None = None
    ) -> HistoryEvent:
        """Point an alias at a version, appending to the history."""
        return self.registry().set_alias(model_name, alias, version_id, actor, reason, run_id)

    def history(self, model_name: str, alias: str | None = None) -> list[HistoryEvent]:
        """Alias changes in order, optionally for one alias."""
        return self.registry().history(model_name, alias)

    def rollback(
        self,
        model_name: str,
        alias: str = "champion",
        to_version: str | None = None,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
    ) -> HistoryEvent:
        """Point an alias back (by default to where it was before its latest change)."""
        return self.registry().rollback(
            model_name, alias, to_version, actor=actor, reason=reason, run_id=run_id
        )
