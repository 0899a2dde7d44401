"""Compatibility gate of the contract registry: may a new minor version replace the old one?

`can_read(reader, writer)` lists why data valid under `writer` may fail `reader`, with
Confluent Schema Registry JSON Schema semantics. BACKWARD (reader=new, writer=old): the new
unit version still accepts requests written for the old one, and consumers on the new reply
schema still read the old unit's replies; FORWARD is the reverse; FULL is both. The trap: an
open content model (no `additionalProperties: false`, pydantic's default) may already carry
any property, so adding one, or closing the model, breaks; `extra="forbid"` avoids it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mbs.contract.model import Contract

__all__ = ["Incompatibility", "can_read", "check_contract", "check_schema"]

Schema = dict[str, Any]
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "$comment", "$defs"}
)
_ALL_TYPES = frozenset({"null", "boolean", "integer", "number", "string", "array", "object"})
_NUMERIC = frozenset({"integer", "number"})


@dataclass(frozen=True)
class Incompatibility:
    """One reason why data valid under one schema may be rejected by another."""

    path: str
    reason: str


def can_read(reader: Schema, writer: Schema, path: str = "$") -> list[Incompatibility]:
    """Every reason why data valid under `writer` may be invalid under `reader`."""
    issues = _Comparison(reader_root=reader, writer_root=writer).compare(reader, writer, path)
    return list(dict.fromkeys(issues))


def check_schema(old: Schema, new: Schema, mode: str, path: str = "$") -> list[Incompatibility]:
    """Apply a compatibility mode (BACKWARD, FORWARD, FULL, NONE) to one schema change."""
    if mode not in ("BACKWARD", "FORWARD", "FULL", "NONE"):
        raise ValueError(
            f"compatibility mode {mode!r} unknown: use BACKWARD, FORWARD, FULL or NONE"
        )
    issues: list[Incompatibility] = []
    if mode in ("BACKWARD", "FULL"):
        issues += can_read(reader=new, writer=old, path=path)
    if mode in ("FORWARD", "FULL"):
        issues += can_read(reader=old, writer=new, path=path)
    return list(dict.fromkeys(issues))


def check_contract(old: Contract, new: Contract) -> list[Incompatibility]:
    """Why `new` may not be registered as the successor of `old` (empty list: it may)."""
    if new.capability != old.capability:
        reason = f"capability changed from {old.capability!r} to {new.capability!r}"
        return [Incompatibility("$.capability", f"{reason}: register it as a new contract")]
    if new.major != old.major:
        return []  # a new major is a new topic: nobody reads across it
    if _version_key(new.version) <= _version_key(old.version):
        reason = f"version must increase: {new.version} is not greater than {old.version}"
        return [Incompatibility("$.version", reason)]
    if new.compatibility == "NONE":
        return []
    issues = []
    if new.unit != old.unit:
        reason = f"owner unit changed from {old.unit!r} to {new.unit!r}"
        issues.append(
            Incompatibility("$.unit", f"{reason}: register under a new capability or major")
        )
    issues += check_schema(old.request, new.request, new.compatibility, "$.request")
    issues += check_schema(old.reply, new.reply, new.compatibility, "$.reply")
    return issues


def _version_key(version: str) -> tuple[int, int, int, int, str]:
    """Semver order: a release sorts after its prereleases, prereleases compare as text."""
    core, _, prerelease = version.partition("-")
    major, minor, patch = (int(part) for part in core.split("."))
    return major, minor, patch, 0 if prerelease else 1, prerelease


@dataclass
class _Comparison:
    """One reader/writer comparison: the roots resolve `$ref`s, `active` stops recursion."""

    reader_root: Schema
    writer_root: Schema
    active: set[tuple[str, str]] = field(default_factory=set)

    def compare(
        self, reader: Schema | bool, writer: Schema | bool, path: str
    ) -> list[Incompatibility]:
        if writer is False or reader is True:
            return []
        if reader is False:
            return [Incompatibility(path, "reader accepts nothing here: every writer value breaks")]
        writer = {} if writer is True else writer
        pair = (reader.get("$ref", ""), writer.get("$ref", ""))
        if pair in self.active:
            return []  # the same pair of definitions is already being compared further up
        if all(pair):
            self.active.add(pair)
        try:
            return self._compare(
                _resolve(reader, self.reader_root, path),
                _resolve(writer, self.writer_root, path),
                path,
            )
        finally:
            self.active.discard(pair)

    def _compare(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        if not set(reader) - _ANNOTATIONS:
            return []
        writer_branches = _branches(writer)
        if writer_branches is not None:
            return [i for branch in writer_branches for i in self.compare(reader, branch, path)]
        reader_branches = _branches(reader)
        if reader_branches is not None:
            return self._any_branch(reader_branches, writer, path)
        return self._single(reader, writer, path)

    def _any_branch(
        self, branches: list[Schema], writer: Schema, path: str
    ) -> list[Incompatibility]:
        """The writer value must fit one reader branch; report the closest branch's reasons."""
        outcomes = [self.compare(branch, writer, path) for branch in branches]
        if any(not issues for issues in outcomes):
            return []
        fitting = [
            issues
            for branch, issues in zip(branches, outcomes, strict=True)
            if not _type_changes(_resolve(branch, self.reader_root, path), writer, path)
        ]
        if fitting:
            return min(fitting, key=len)
        written = _show_types(_types(writer))
        return [Incompatibility(path, f"no reader anyOf branch accepts the writer's {written}")]

    def _single(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        issues = _type_changes(reader, writer, path) + _value_changes(reader, writer, path)
        kinds = _shared_kinds(_types(reader), _types(writer))
        if "string" in kinds:
            issues += _size_changes(reader, writer, path, "minLength", "maxLength")
            issues += _text_changes(reader, writer, path)
        if kinds & _NUMERIC:
            issues += _bound_changes(reader, writer, path)
        if "array" in kinds:
            issues += self._array(reader, writer, path)
        if "object" in kinds:
            issues += self._object(reader, writer, path)
        return issues

    def _array(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        issues = self.compare(reader.get("items", True), writer.get("items", True), f"{path}.items")
        issues += _size_changes(reader, writer, path, "minItems", "maxItems")
        if reader.get("uniqueItems") and not writer.get("uniqueItems"):
            issues.append(Incompatibility(path, "uniqueItems added: writer may repeat items"))
        return issues

    def _object(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        issues = _size_changes(reader, writer, path, "minProperties", "maxProperties")
        issues += self._required(reader, writer, path)
        issues += self._properties(reader, writer, path)
        writer_extra, reader_extra = _extra(writer), _extra(reader)
        if writer_extra is None:
            return issues
        if reader_extra is None:
            reason = "writer's content model is open, reader's is closed: writer may send any"
            issues.append(Incompatibility(f"{path}.additionalProperties", f"{reason} extra field"))
            return issues
        return issues + self.compare(reader_extra, writer_extra, f"{path}.additionalProperties")

    def _required(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        added = [
            name for name in reader.get("required", []) if name not in writer.get("required", [])
        ]
        return [
            Incompatibility(
                f"{path}.properties.{name}",
                f"required field {name!r} added: data valid under the writer's schema may lack it",
            )
            for name in added
        ]

    def _properties(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        reader_props: Schema = reader.get("properties", {})
        writer_props: Schema = writer.get("properties", {})
        issues = []
        for name, written in writer_props.items():
            issues += self._known_to_writer(reader_props.get(name), written, reader, name, path)
        for name, read in reader_props.items():
            if name not in writer_props and name not in reader.get("required", []):
                issues += self._unknown_to_writer(read, writer, name, path)
        return issues

    def _known_to_writer(
        self, read: Schema | None, written: Schema, reader: Schema, name: str, path: str
    ) -> list[Incompatibility]:
        field_path = f"{path}.properties.{name}"
        if read is not None:
            return self.compare(read, written, field_path)
        reader_extra = _extra(reader)
        if reader_extra is None:
            reason = (
                f"field {name!r} is not in the reader's closed content model: writer may send it"
            )
            return [Incompatibility(field_path, reason)]
        return self.compare(reader_extra, written, field_path)

    def _unknown_to_writer(
        self, read: Schema, writer: Schema, name: str, path: str
    ) -> list[Incompatibility]:
        writer_extra = _extra(writer)
        if writer_extra is None or not self.compare(
            read, writer_extra, f"{path}.properties.{name}"
        ):
            return []
        reason = (
            f"field {name!r} added while the writer's content model is open: "
            f"writer may already send {name!r} with values the reader rejects"
        )
        return [Incompatibility(f"{path}.properties.{name}", reason)]


def _resolve(schema: Schema, root: Schema, path: str) -> Schema:
    """Follow local `$ref`s (siblings override the target) and single-element `allOf`s."""
    for _ in range(64):
        if "$ref" in schema:
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**_pointer(schema["$ref"], root, path), **siblings}
        elif len(schema.get("allOf", [])) == 1:
            siblings = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**schema["allOf"][0], **siblings}
        else:
            return schema
    raise ValueError(f"$ref chain at {path} does not end: the schema refers to itself in a loop")


def _pointer(ref: str, root: Schema, path: str) -> Schema:
    if not ref.startswith("#"):
        raise ValueError(f"$ref {ref!r} at {path} is not local: only '#/$defs/Name' is supported")
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"$ref {ref!r} at {path} names nothing in the schema's $defs")
        node = node[key]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} at {path} must name an object schema, not {node!r}")
    return node


def _branches(schema: Schema) -> list[Schema] | None:
    """The alternatives of an anyOf/oneOf schema (oneOf read as anyOf), else None."""
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            branches: list[Schema] = schema[keyword]
            return branches
    return None


def _types(schema: Schema) -> frozenset[str] | None:
    """The JSON types a schema admits; None when it does not restrict them."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    values = _values(schema)
    return None if values is None else frozenset(_json_type(value) for value in values)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "object")


def _accepts(reader_types: frozenset[str], written: str) -> bool:
    return written in reader_types or (written == "integer" and "number" in reader_types)


def _shared_kinds(reader: frozenset[str] | None, writer: frozenset[str] | None) -> frozenset[str]:
    """The types both sides admit: only their keywords can tighten."""
    if writer is None:
        return _ALL_TYPES if reader is None else reader
    if reader is None:
        return writer
    return frozenset(t for t in writer if _accepts(reader, t))


def _show_types(types: frozenset[str] | None) -> str:
    return "any type" if types is None else "/".join(repr(t) for t in sorted(types))


def _type_changes(reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
    reader_types, writer_types = _types(reader), _types(writer)
    if reader_types is None:
        return []
    if writer_types is None:
        reason = f"writer allows any type, reader accepts only {_show_types(reader_types)}"
        return [Incompatibility(path, reason)]
    rejected = sorted(t for t in writer_types if not _accepts(reader_types, t))
    if rejected == ["null"]:
        return [Incompatibility(path, "null no longer accepted (nullable removed)")]
    change = f"type changed from {_show_types(writer_types)} to {_show_types(reader_types)}"
    return [
        Incompatibility(path, f"{change}: writer's {t!r} values are rejected") for t in rejected
    ]


def _values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum: list[Any] | None = schema.get("enum")
    return enum


def _value_changes(reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
    allowed, written = _values(reader), _values(writer)
    if allowed is None:
        return []
    kind = "const changed" if "const" in reader else "enum narrowed"
    if written is None:
        return [Incompatibility(path, f"{kind}: reader allows only {allowed}, writer any value")]
    missing = [value for value in written if value not in allowed]
    if not missing:
        return []
    return [Incompatibility(path, f"{kind}: writer's {missing} not in reader's {allowed}")]


def _size_changes(
    reader: Schema, writer: Schema, path: str, low: str, high: str
) -> list[Incompatibility]:
    issues = []
    if low in reader and reader[low] > writer.get(low, 0):
        reason = f"{low} tightened from {writer.get(low, 0)} to {reader[low]}"
        issues.append(Incompatibility(path, f"{reason}: shorter writer values are rejected"))
    if high in reader and reader[high] < writer.get(high, math.inf):
        reason = f"{high} tightened from {writer.get(high, 'unbounded')} to {reader[high]}"
        issues.append(Incompatibility(path, f"{reason}: longer writer values are rejected"))
    return issues


def _text_changes(reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
    issues = []
    for keyword in ("pattern", "format"):
        if keyword in reader and reader[keyword] != writer.get(keyword):
            was = f"changed from {writer[keyword]!r}" if keyword in writer else "added"
            change = f"{keyword} {was} to {reader[keyword]!r}"
            issues.append(Incompatibility(path, f"{change}: writer's strings may not match"))
    return issues


def _bound(schema: Schema, inclusive: str, exclusive: str, sign: int) -> tuple[float, bool] | None:
    """A numeric bound as (value * sign, exclusive): the larger tuple is the tighter bound."""
    bounds = [(schema[inclusive] * sign, False)] if inclusive in schema else []
    if exclusive in schema:
        bounds.append((schema[exclusive] * sign, True))
    return max(bounds, default=None)


def _bound_changes(reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
    issues = []
    for name, sign in (("minimum", 1), ("maximum", -1)):
        exclusive = f"exclusive{name.capitalize()}"
        tight, loose = _bound(reader, name, exclusive, sign), _bound(writer, name, exclusive, sign)
        if tight is not None and (loose is None or tight > loose):
            change = (
                f"{name} tightened from {_show_bound(loose, sign)} to {_show_bound(tight, sign)}"
            )
            issues.append(Incompatibility(path, f"{change}: writer's values may fall outside"))
    return issues


def _show_bound(bound: tuple[float, bool] | None, sign: int) -> str:
    if bound is None:
        return "unbounded"
    value, exclusive = bound
    return f"{'>' if sign > 0 else '<'}{'' if exclusive else '='} {value * sign}"


def _extra(schema: Schema) -> Schema | None:
    """What an object admits beyond its properties: None when closed, {} when fully open."""
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return None
    return {} if extra is True else dict(extra)
