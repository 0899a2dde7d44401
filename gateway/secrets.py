"""Secrets in a journey's input: fields a contract marks `writeOnly` (sent, never returned).

A journey input field that flows into a `writeOnly` property of a step's request (in any
provider's contract of the step, or of its compensation) is secret for that journey. The
journey log is read by every gateway instance and compacted, not deleted: a run record holds
such a field only AES-256-GCM encrypted under `MBS_SECRETS_KEY`, bound to its run and field,
while the run may still send it (also after a crash, from another instance), and the marker
`***` once the run is finished. It is decrypted only where a request body for a unit is built
(`calls.resolve` given the vault); what is shown of a run is `JourneyRun.public()`."""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import logging
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition, parse_ref
from gateway.models import REDACTED, JourneyRun, rewrite
from mbs.errors import MbsError
from mbs.settings import DEV_SECRETS_KEY, Settings, get_settings

log = logging.getLogger("mbs.gateway.secrets")
SEALED = "$sealed"  # a sealed field: {"$sealed": base64url(nonce + ciphertext and tag)}
_NONCE_BYTES = 12
_KEY_BYTES = 32
_NOT_SCHEMAS = frozenset({"$ref", "const", "default", "enum", "examples"})
_ROTATE = "every gateway instance needs the same key; to rotate, set MBS_SECRETS_KEY=new,old"


class SecretsKeyError(MbsError):
    """`MBS_SECRETS_KEY` is not usable: the gateway refuses to start rather than guess."""


class SecretUnavailable(MbsError):
    """A secret input field cannot be opened: sealed under another key, or already dropped."""


def secret_inputs(definition: JourneyDefinition, catalog: Catalog) -> list[str]:
    """The journey input fields (dotted paths) that flow into a request property some
    provider's contract marks `writeOnly`, in a step's request or its compensation's."""
    found: set[str] = set()
    for step in definition.steps:
        providers = catalog.providers(step.capability)
        targets = [(step.input, providers)]
        if step.compensate is not None:
            undoing = {step.compensate.capability or c.compensation for c in providers}
            undoers = [u for cap in sorted(c for c in undoing if c) for u in catalog.providers(cap)]
            targets.append((step.compensate.input, undoers))
        for mapping, contracts in targets:
            for field, value in mapping.items():
                ref = parse_ref(value)
                if ref is None or ref[0] != "input":
                    continue
                if any(_write_only(contract.request, field) for contract in contracts):
                    found.add(".".join(ref[1]))
    return sorted(found)


def _write_only(schema: dict[str, Any], field: str) -> bool:
    prop = schema.get("properties", {}).get(field)
    return prop is not None and _marked(prop, schema, set())


def _marked(node: Any, root: dict[str, Any], seen: set[str]) -> bool:
    """Whether a schema, or one nested in it, is `writeOnly` (a secret inside an object makes
    the object secret); local `$ref`s are followed."""
    if isinstance(node, list):
        return any(_marked(item, root, seen) for item in node)
    if not isinstance(node, dict):
        return False
    if node.get("writeOnly") is True:
        return True
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        seen.add(ref)
        target: Any = root
        for token in ref[2:].split("/"):
            name = token.replace("~1", "/").replace("~0", "~")
            target = target.get(name, {}) if isinstance(target, dict) else {}
        if _marked(target, root, seen):
            return True
    return any(_marked(value, root, seen) for key, value in node.items() if key not in _NOT_SCHEMAS)


class Vault:
    """Seals a new run's secret input fields and opens them for a request body."""

    def __init__(self, keys: str) -> None:
        """`keys`: `MBS_SECRETS_KEY`, one key or `new,old,...` (seals with the first)."""
        texts = [text.strip() for text in keys.split(",") if text.strip()]
        if not texts:
            raise SecretsKeyError(f"MBS_SECRETS_KEY is empty; {_ROTATE}")
        self._ciphers = [AESGCM(_key(text)) for text in texts]
        self.development = texts[0] == DEV_SECRETS_KEY

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Vault:
        vault = cls((settings or get_settings()).secrets_key.get_secret_value())
        if vault.development:
            _warn_dev_key()
        return vault

    def seal(self, run: JourneyRun, paths: list[str]) -> None:
        """Encrypt each secret field of a new run's input, in place, before its first save."""
        run.input = copy.deepcopy(run.input)
        run.secrets = list(paths)
        for path in paths:
            rewrite(run.input, path, functools.partial(self._seal, run.run_id, path))

    def _seal(self, run_id: str, path: str, value: Any) -> dict[str, str]:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(value).encode()
        sealed = self._ciphers[0].encrypt(nonce, plain, _context(run_id, path))
        return {SEALED: base64.urlsafe_b64encode(nonce + sealed).decode()}

    def open(self, run: JourneyRun, path: str, value: Any) -> Any:
        """The value of a sealed field, for a request body to a unit (and nothing else)."""
        where = f"secret input field {path!r} of run {run.run_id}"
        if value == REDACTED:
            raise SecretUnavailable(f"{where} was dropped when the run finished")
        text = value.get(SEALED) if isinstance(value, dict) and len(value) == 1 else None
        try:
            raw = base64.urlsafe_b64decode(text) if isinstance(text, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) <= _NONCE_BYTES:
            raise SecretUnavailable(f"{where} is not sealed: the record was altered")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for cipher in self._ciphers:
            try:
                return json.loads(cipher.decrypt(nonce, sealed, _context(run.run_id, path)))
            except InvalidTag:
                continue
        raise SecretUnavailable(
            f"{where} cannot be decrypted with MBS_SECRETS_KEY: it was sealed under another "
            f"key (or altered); {_ROTATE}"
        )


@functools.cache
def _warn_dev_key() -> None:
    log.warning("MBS_SECRETS_KEY not set: journey-log secrets use the public development key")


def _key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise SecretsKeyError(
            f"MBS_SECRETS_KEY: each key must be {_KEY_BYTES} random bytes in URL-safe base64 "
            "(44 characters; python -c 'import base64,os; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
        )
    return key


def _context(run_id: str, path: str) -> bytes:
    """Authenticated with the ciphertext: a sealed value opens only in its run and field."""
    return f"mbs-secret\x00{run_id}\x00{path}".encode()
