#!/usr/bin/env python3
"""fs_write: a mechanism server that writes and deletes files under a root, exactly as planned.

A second, independent implementation of the mechanism protocol (the Rust one lives in
mechanism-server/), in Python 3.11 with the standard library only. It is meant to be read: it
shows everything a mechanism in any language has to do, in the order a request meets it.

    fs_write.py --root DIR --store DIR [--force-ack-signers FILE]
                [--force-ack-max-ttl SECONDS] [--max-message-bytes N]

Operations:
  write   params {"path": P}, input blob "content": P gets exactly the blob's bytes.
          Destructive when it overwrites an existing file whose content differs.
  delete  params {"path": P}, no inputs: P is removed. Always destructive.

The file, top to bottom:
  1. protocol constants and error codes    6. force-acks (checked with ssh-keygen)
  2. canonical JSON (RFC 8785) and digests 7. the verbs: describe, plan, declare_cost,
  3. a tiny JSON Schema validator             execute, status
  4. the object store; intents             8. JSON-RPC 2.0: messages, batches, errors
  5. paths under the root; the operations  9. framing (lines or Content-Length), main

Requests are served one at a time, in the order they arrive (the Rust server runs them
concurrently; this one keeps the example simple). An execute killed at any instant is finished
by the next execute, or the next start, in the same root (`Intents`). stdout carries protocol
messages only; logs go to stderr (FS_WRITE_LOG=debug for more).
"""

import argparse
import contextlib
import difflib
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import unicodedata
from datetime import datetime, timezone
from typing import NamedTuple

log = logging.getLogger("fs_write")

# --- 1. Protocol constants and error codes ------------------------------------------------

MECHANISM = {"id": "fs_write", "version": "0.1.0"}
PRODUCER = "fs_write.py fs_write"  # who we say produced what we store (provenance sidecars)
PROTOCOL_VERSION = "mechanism/0"
MAX_INLINE_BYTES = 32 * 1024       # bigger payloads travel through the store, by digest
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 100                    # nesting bound of one message (protocol::canonical)
MAX_BATCH_ENTRIES = 1024           # the most entries one batch may hold (protocol::jsonrpc)
MAX_HEADER_LINE = 8192             # the longest Content-Length header line, its '\r' included
MAX_SAFE_INTEGER = 2**53 - 1       # I-JSON: the integers a double carries exactly
PREVIEW_MAX = 64 * 1024            # larger files get a summary, not a diff, in the preview
ACK_KIND, ACK_NAMESPACE = "mechanism.force-ack/v0", "mechanism-force-ack"
ACK_FIELDS = ("kind", "plan_hash", "admission_hash", "approver", "expires_at", "nonce")
# A result witness is an in-toto Statement v1 with only the Statement's fields: in-toto's own
# parsers refuse any other, so it has no "kind" and is recognised by these two values.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_KINDS = {"https://schemas.mechanism.invalid/v0/result-witness":
                   "mechanism.result-witness/v0"}
UMASK = 0o022                      # the process umask, read once at startup

# The stable codes and their JSON-RPC numbers (protocol/src/error.rs).
ERROR_NUMBERS = {
    "PARSE_ERROR": -32700, "INVALID_REQUEST": -32600, "METHOD_NOT_FOUND": -32601,
    "INVALID_PARAMS": -32602, "INTERNAL_ERROR": -32603, "MESSAGE_TOO_LARGE": -32001,
    "UNSUPPORTED_VERSION": -32002, "UNKNOWN_OPERATION": -32003, "ARTIFACT_REQUIRED": -32004,
    "UNKNOWN_PLAN": -32005, "UNKNOWN_ARTIFACT": -32006, "INTEGRITY_MISMATCH": -32007,
    "STALE_PLAN": -32008, "ADMISSION_REQUIRED": -32009, "FORCE_ACK_REQUIRED": -32010,
    "FORCE_ACK_INVALID": -32011, "FORCE_ACK_EXPIRED": -32012, "FORCE_ACK_REPLAYED": -32013,
    "CAPABILITY_DENIED": -32014, "BUDGET_EXCEEDED": -32015, "DEADLINE_EXCEEDED": -32016,
    "CANCELLED": -32017, "BUSY": -32018, "EXECUTION_FAILED": -32019, "PATH_REFUSED": -32020,
}

class Refusal(Exception):
    """A protocol error: a stable code, a message for people, optional extra `data`."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data or {}

    def to_json(self):
        return {"code": ERROR_NUMBERS[self.code], "message": self.message,
                "data": {**self.data, "code": self.code}}


# --- 2. Canonical JSON (RFC 8785) and digests ---------------------------------------------

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
SURROGATE_RE = re.compile("[\ud800-\udfff]")


class JsonObject(dict):
    """A parsed JSON object that remembers a key it saw twice (json.loads keeps the last)."""
    duplicate = None


def _object_pairs(pairs):
    obj = JsonObject()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes):
    """One JSON text as received; ValueError when it is not JSON (or not UTF-8)."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_object_pairs,
                      parse_constant=_refuse_constant)


def nodes(value):
    """Every value inside `value` (itself included), with its location and nesting depth."""
    stack = [(value, "$", 1)]
    while stack:
        item, where, depth = stack.pop()
        yield item, where, depth
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))


def ijson_problem(value):
    """Why `value` cannot be hashed as this protocol hashes, or None. Two different documents
    must never share a digest, so duplicate keys and integers a double would round are refused;
    fs_write uses integers only, so fractions are refused too."""
    for item, where, _ in nodes(value):
        if isinstance(item, JsonObject) and item.duplicate is not None:
            return f"duplicate key {item.duplicate!r} in the object at {where}"
        if isinstance(item, float):
            return f"{where} is not an integer; only integers are allowed"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INTEGER:
            return f"the integer at {where} is beyond +-(2^53 - 1)"
        if isinstance(item, str) and SURROGATE_RE.search(item):
            return f"lone surrogate in the string at {where}"
    return None


def _jcs(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is beyond +-(2^53 - 1)")
        return str(value)
    if isinstance(value, str):
        # json.dumps escapes exactly what RFC 8785 escapes: '"', '\\' and the control
        # characters (\b \t \n \f \r by name, the others as \u00xx); the rest stays UTF-8.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # Keys sorted by UTF-16 code units, as RFC 8785 says (not by code points).
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_jcs(k) + ":" + _jcs(value[k]) for k in keys) + "}"
    raise ValueError(f"{type(value).__name__} has no canonical form here (integers only)")


def canonical(value) -> bytes:
    """The RFC 8785 bytes of a value; ValueError for one that has none (a lone surrogate
    fails to encode as UTF-8)."""
    return _jcs(value).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(value) -> str:
    """An artifact's digest: SHA-256 over its canonical bytes."""
    return sha256_digest(canonical(value))


def hash_file(f):
    """(digest, size) of everything left in an open binary file, read in chunks."""
    h, size = hashlib.sha256(), 0
    while chunk := f.read(1 << 18):
        h.update(chunk)
        size += len(chunk)
    return "sha256:" + h.hexdigest(), size


# --- 3. A tiny JSON Schema validator ------------------------------------------------------
# Only the keywords our own schemas below use; a mechanism may as well use a library.

TYPES = {"object": dict, "array": list, "string": str, "integer": int}


def schema_error(schema, value, where="$"):
    """The first way `value` fails `schema`, or None."""
    # JSON true and false are Python bools, which are ints too: never an integer here.
    if (expected := schema.get("type")) and (not isinstance(value, TYPES[expected])
                                             or isinstance(value, bool)):
        return f"{where} must be of type {expected}"
    if isinstance(value, int) and not schema.get("minimum", value) <= value <= schema.get(
            "maximum", value):
        return f"{where} is outside {schema.get('minimum')}..{schema.get('maximum')}"
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)):
            return f"{where} is longer than {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} does not match {schema['pattern']}"
    if isinstance(value, list) and len(value) < schema.get("minItems", 0):
        return f"{where} has fewer than {schema['minItems']} items"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if error := schema_error(schema["items"], item, f"{where}[{i}]"):
                return error
    if isinstance(value, dict):
        if missing := [name for name in schema.get("required", []) if name not in value]:
            return f"{where} lacks the required property {missing[0]!r}"
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", {})
        for name, item in value.items():
            if "propertyNames" in schema and (error := schema_error(
                    schema["propertyNames"], name, f"{where} property name")):
                return error
            if name not in props and extra is False:
                return f"{where} has the unexpected property {name!r}"
            if error := schema_error(props.get(name, extra or {}), item, f"{where}.{name}"):
                return error
    return None


DIGEST_SCHEMA = {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"}
PATH_PARAMS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False, "required": ["path"],
    "properties": {"path": {"type": "string", "maxLength": 4096,
                            "description": "The file, relative to the root, /-separated."}},
}
# The verbs' params, as protocol/schemas/verbs/*.params.json say. `operation` need only be a
# string (an unknown one is UNKNOWN_OPERATION, as the Rust server answers), and `force_ack` is
# checked by the force-ack verifier, which says what is wrong with it.
VERB_PARAMS = {
    "describe": {"type": "object", "additionalProperties": False, "properties": {
        "protocol_versions": {"type": "array", "minItems": 1, "items": {"type": "string"}}}},
    "plan": {"type": "object", "additionalProperties": False,
             "required": ["operation", "params"], "properties": {
                 "operation": {"type": "string"}, "params": {"type": "object"},
                 "inputs": {"type": "object", "additionalProperties": DIGEST_SCHEMA,
                            "propertyNames": {"pattern": r"^[a-z][a-z0-9_.-]{0,63}$"}}}},
    "execute": {"type": "object", "additionalProperties": False,
                "required": ["plan_hash", "admission"], "properties": {
                    "plan_hash": DIGEST_SCHEMA, "admission": DIGEST_SCHEMA, "force_ack": {},
                    "deadline_ms": {"type": "integer", "minimum": 1,
                                    "maximum": 9007199254740991}}},
    "status": {"type": "object", "additionalProperties": False, "required": ["plan_hash"],
               "properties": {"plan_hash": DIGEST_SCHEMA}},
}
VERB_PARAMS["declare_cost"] = VERB_PARAMS["status"]


# --- 4. The object store ------------------------------------------------------------------
# Shared with the admission, so its layout is part of the contract (protocol/src/store.rs):
#   objects/sha256/<2 hex>/<62 hex>            an object: canonical bytes, or a blob's bytes
#   objects/sha256/<2 hex>/<62 hex>.prov.json  who produced it, when, from what
#   refs/results/<plan hex>.json               {"result", "witness", "succeeded"} of a plan
#   nonces/<nonce>                             a used force-ack nonce
#   tmp/                                       files being written, then renamed into place
# and fs_write's own (see Intents):
#   fs_write/<root key>.lock                   held (flock) by the process executing in a root
#   fs_write/<root key>.intent.json            an execute past its point of no return

def artifact_kind(value):
    """An artifact's kind, or None: its "kind" field, or for an in-toto Statement v1 the kind
    its predicateType stands for (the predicateType itself when we do not know it)."""
    if not isinstance(value, dict):
        return None
    if value.get("_type") == STATEMENT_TYPE:
        predicate_type = value.get("predicateType")
        if not isinstance(predicate_type, str):
            return None
        return PREDICATE_KINDS.get(predicate_type, predicate_type)
    kind = value.get("kind")
    return kind if isinstance(kind, str) else None


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir_durable(path):
    """Creates a directory if missing and flushes its parent, so the entry survives a crash."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    fsync_dir(os.path.dirname(path))


class Store:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.objects = os.path.join(self.root, "objects", "sha256")
        self.tmp = os.path.join(self.root, "tmp")
        for path in (os.path.dirname(self.objects), self.objects, self.tmp):
            make_dir_durable(path)

    def path_of(self, digest):
        hex_ = digest.removeprefix("sha256:")
        return os.path.join(self.objects, hex_[:2], hex_[2:])

    def open(self, digest):
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise Refusal("UNKNOWN_ARTIFACT", f"no object {digest} in the store") from None

    @staticmethod
    def check(digest, actual):
        """Every read re-hashes: bytes that do not hash to their name are never used."""
        if actual != digest:
            raise Refusal("INTEGRITY_MISMATCH",
                          f"object {digest} is corrupt: its bytes hash to {actual}")

    def verify(self, digest):
        """The object's size, once its bytes are seen to hash to its digest."""
        with self.open(digest) as f:
            actual, size = hash_file(f)
        self.check(digest, actual)
        return size

    def read(self, digest, max_bytes):
        """A whole object, verified; refused (never half-read) when bigger than max_bytes."""
        with self.open(digest) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Refusal("MESSAGE_TOO_LARGE", f"object {digest} is larger than {max_bytes} bytes")
        self.check(digest, sha256_digest(data))
        return data

    def get_artifact(self, digest):
        """A stored artifact, verified and parsed strictly. Bytes that hash right but are not
        an artifact in canonical form were stored as a blob: INVALID_PARAMS, nothing corrupt."""
        data = self.read(digest, MAX_ARTIFACT_BYTES)
        try:
            value = parse_json(data)
            problem = ijson_problem(value)
            if not problem and artifact_kind(value) is None:
                problem = ("an artifact is a JSON object with a string \"kind\", or an in-toto "
                           "Statement v1 with a string \"predicateType\"")
            if not problem and canonical(value) != data:
                problem = "its bytes are not in canonical form: it is a blob"
        except (ValueError, RecursionError) as e:
            problem = f"not JSON: {e}"
        if problem:
            raise Refusal("INVALID_PARAMS", f"object {digest} is not an artifact: {problem}")
        return value

    def _temp(self, data, mode):
        """A flushed temporary file in tmp/, on the store's filesystem so a rename is atomic."""
        fd, path = tempfile.mkstemp(prefix=".put-", dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(path)
            raise
        return path

    def put_artifact(self, value, derived_from=()):
        """Stores an artifact's canonical bytes (read-only) and its sidecar; returns the digest."""
        data = canonical(value)
        digest = sha256_digest(data)
        path = self.path_of(digest)
        make_dir_durable(os.path.dirname(path))
        try:
            self.verify(digest)
            changed = False
        except Refusal:  # absent, or corrupt: a put heals it with bytes that hash right
            os.replace(self._temp(data, 0o444), path)
            changed = True
        # The sidecar is created no-clobber (a hard link fails if one exists): the first
        # record to land is kept. Same fields and layout as the Rust store's.
        sidecar = path + ".prov.json"
        if not os.path.exists(sidecar):
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            record = {"producer": PRODUCER, "created_at": now, "derived_from": list(derived_from),
                      "kind": artifact_kind(value), "size": len(data)}
            temp = self._temp(json.dumps(record, indent=2, ensure_ascii=False).encode(), 0o444)
            try:
                os.link(temp, sidecar)
                changed = True
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
        if changed:
            fsync_dir(os.path.dirname(path))
        return digest

    def _ref(self, plan_hash):
        name = plan_hash.removeprefix("sha256:") + ".json"
        return os.path.join(self.root, "refs", "results", name)

    def result_record(self, plan_hash):
        """The last execution recorded for a plan, or None. An unreadable record is treated as
        absent: the plan is then re-checked against the world, never trusted."""
        try:
            with open(self._ref(plan_hash), "rb") as f:
                record = json.loads(f.read(64 * 1024))
            if isinstance(record, dict) and isinstance(record.get("succeeded"), bool) and all(
                    DIGEST_RE.fullmatch(str(record.get(key))) for key in ("result", "witness")):
                return record
            log.warning("ignoring a malformed result record for %s", plan_hash)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("ignoring an unreadable result record for %s: %s", plan_hash, e)
        return None

    def set_result_record(self, plan_hash, record):
        """Replaces the plan's record whole: temp file, flush, rename, flush the directory."""
        path = self._ref(plan_hash)
        make_dir_durable(os.path.dirname(os.path.dirname(path)))
        make_dir_durable(os.path.dirname(path))
        os.replace(self._temp((json.dumps(record, indent=2) + "\n").encode(), 0o644), path)
        fsync_dir(os.path.dirname(path))

    def claim_nonce(self, nonce, plan_hash):
        """Records a force-ack's nonce as used, by exclusive create, durably and before any
        effect (as force_ack::claim_nonce does): of any number of claims exactly one wins."""
        directory = os.path.join(self.root, "nonces")
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            fsync_dir(self.root)
        try:
            fd = os.open(os.path.join(directory, nonce),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise Refusal("FORCE_ACK_REPLAYED", f"force-ack nonce {nonce} was already used; a "
                          "force-ack is good for one execution, ask for a fresh one") from None
        # From here on the nonce is taken even if a write fails: failing closed costs the
        # operator a fresh approval; failing open could apply an effect twice.
        try:
            os.write(fd, f"{plan_hash}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(directory)


class Intents:
    """What makes an execute survive `kill -9` at any instant, for one root.

    Before its first change, an execute writes an intent durably (the plan, the admission and
    the force-ack it runs with); only then does it claim the force-ack's nonce (its point of no
    return) and change the root, each step idempotent; it records the result and removes the
    intent last. An execute killed before the intent changed nothing and spent no approval; one
    killed after it is finished by the next execute or start of fs_write in this root, which
    rolls it forward, claims the nonce if it was not yet, and records the result. The intent
    lives in the store (which plans may not touch), named after the root. One process at a
    time executes in a root: it holds an flock on the lock file, which the kernel drops when
    the process dies, so a dead holder never blocks anyone."""

    def __init__(self, store, root):
        self.dir, self.root = os.path.join(store.root, "fs_write"), root
        self.store = store
        key = hashlib.sha256(os.fsencode(root)).hexdigest()[:32]
        self.path = os.path.join(self.dir, key + ".intent.json")
        self.lock_path = os.path.join(self.dir, key + ".lock")

    def pending(self):
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def lock(self):
        """The right to execute in the root until the block ends; BUSY while another has it."""
        make_dir_durable(self.dir)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Refusal("BUSY", "another process is executing a plan in this root; "
                              "retry when it is done") from None
            yield
        finally:
            os.close(fd)  # and with it the lock

    def read(self):
        """The pending intent, or None."""
        try:
            with open(self.path, "rb") as f:
                return json.loads(f.read(64 * 1024))
        except FileNotFoundError:
            return None

    def write(self, intent):
        """Temp file, flush, rename, flush the directory: there whole, or not at all."""
        make_dir_durable(self.dir)
        data = (json.dumps({**intent, "root": self.root}, indent=2) + "\n").encode()
        os.replace(self.store._temp(data, 0o644), self.path)
        fsync_dir(self.dir)

    def remove(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fsync_dir(self.dir)


# --- 5. Paths under the root, and the two operations --------------------------------------

class FileState(NamedTuple):
    digest: str
    size: int
    mode: int
    data: bytes | None  # the content when small, for the preview


class FsWrite:
    """The mechanism itself: what it offers, how it plans, how it applies a plan. Everything
    else in this file (store, verbs, JSON-RPC, framing) is the same for every mechanism."""

    def __init__(self, root, store):
        self.root, self.store = root, store
        # When the store lies inside the root (the admission's default is ./.mechanism), a
        # write there could forge result records or delete used nonces: such paths are refused.
        rel = os.path.relpath(os.path.realpath(store.root), root).split(os.sep)
        self.store_parts = None if rel[0] == ".." else [p.casefold() for p in rel if p != "."]

    def check_path(self, path):
        """The path's components, after every check made before anything is opened."""
        def refuse(why):
            raise Refusal("PATH_REFUSED", f"path {path!r} {why}; nothing was written")
        if not path:
            refuse("is empty")
        if "\\" in path or "\x00" in path:
            refuse("contains a backslash or NUL")
        if path.startswith("/"):
            refuse("is absolute; paths are relative to the root")
        parts = path.split("/")
        for part in parts:
            if part in ("", ".", ".."):
                refuse("has an empty, '.' or '..' component")
            # Case-insensitive filesystems (and Windows' trailing dots and spaces) make ".GIT"
            # or ".git." the same directory, and writing there runs code (hooks, config).
            if part.rstrip(". ").lower() == ".git":
                refuse("points into .git")
        if self.store_parts is not None and [
                p.casefold() for p in parts[:len(self.store_parts)]] == self.store_parts:
            refuse("points into the object store")
        return parts

    def open_parent(self, parts, create):
        """Opens the directory holding the last component, one component at a time with
        O_NOFOLLOW, so no symlink is ever followed, not even one swapped in after the lstat
        that checked it. Returns (fd, missing): without `create`, fd is None when a directory
        is missing and `missing` lists those to create; with `create`, they are created."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i, name in enumerate(parts[:-1]):
                where = "/".join(parts[:i + 1])
                try:
                    st = os.lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None, ["/".join(parts[:j + 1]) for j in range(i, len(parts) - 1)]
                    os.mkdir(name, 0o777, dir_fd=fd)
                    os.fsync(fd)
                    st = os.lstat(name, dir_fd=fd)
                if stat.S_ISLNK(st.st_mode):
                    raise Refusal("PATH_REFUSED", f"{where} is a symlink, never followed")
                if not stat.S_ISDIR(st.st_mode):
                    raise Refusal("INVALID_PARAMS", f"{where} exists and is not a directory")
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd, []
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def leaf_state(fd, parts):
        """The file's current state, or None when it does not exist."""
        try:
            st = os.lstat(parts[-1], dir_fd=fd)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise Refusal("PATH_REFUSED", f"{'/'.join(parts)} is a symlink, never followed")
        if not stat.S_ISREG(st.st_mode):
            raise Refusal("INVALID_PARAMS", f"{'/'.join(parts)} exists and is not a regular file")
        with os.fdopen(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as f:
            digest, size = hash_file(f)
            f.seek(0)
            data = f.read() if size <= PREVIEW_MAX else None
        return FileState(digest, size, st.st_mode, data)

    def survey(self, parts):
        """(missing directories, current file state) of a checked path, as it is now."""
        try:
            fd, missing = self.open_parent(parts, create=False)
            if fd is None:
                return missing, None
            try:
                return missing, self.leaf_state(fd, parts)
            finally:
                os.close(fd)
        except OSError as e:  # a name too long, a permission, a directory swapped for a link
            raise Refusal("INVALID_PARAMS", f"{'/'.join(parts)}: {e.strerror}") from None

    def operations(self):
        path_op = {"params_schema": PATH_PARAMS_SCHEMA, "determinism": "D0"}
        return [
            {"name": "write", **path_op, "inputs": ["content"], "effect_types": ["fs.write"],
             "description": "Write the input blob `content` to `path` (relative to the root), "
                            "creating parent directories; destructive when it replaces other "
                            "content.",
             "destructive": "maybe",
             # Run in this order on an empty root: a new file, then an overwrite (destructive).
             "examples": [
                 {"params": {"path": "notes/hello.txt"}, "inputs": {"content": "hello\n"}},
                 {"params": {"path": "notes/hello.txt"}, "inputs": {"content": "hello, world\n"}},
             ]},
            {"name": "delete", **path_op, "inputs": [], "effect_types": ["fs.delete"],
             "description": "Delete the file at `path` (relative to the root).",
             "destructive": "always", "examples": [{"params": {"path": "notes/hello.txt"}}]},
        ]

    # Planning is a pure function of operation, params, inputs and the files as they are now:
    # no clock, no randomness, no absolute path. The same world gives the same bytes anywhere.
    def plan(self, operation, params, inputs, preview):
        """(plan artifact, preview text or None). It checks everything itself, because
        execute re-plans from a stored plan whose params nobody has checked yet."""
        if operation not in ("write", "delete"):
            raise Refusal("UNKNOWN_OPERATION",
                          f"no operation {operation!r}; fs_write has write and delete")
        if error := schema_error(PATH_PARAMS_SCHEMA, params):
            raise Refusal("INVALID_PARAMS", f"params of {operation}: {error}")
        wanted = ["content"] if operation == "write" else []
        digests = all(DIGEST_RE.fullmatch(str(d)) for d in inputs.values())
        if sorted(inputs) != wanted or not digests:
            raise Refusal("INVALID_PARAMS", f"{operation} takes the inputs {wanted}, each the "
                          f"digest of a blob in the store; got {dict(inputs)}")
        path = params["path"]
        parts = self.check_path(path)
        if operation == "write":
            size = self.store.verify(inputs["content"])  # absent or corrupt: refused here
            return self._plan_write(params, inputs, path, size, *self.survey(parts), preview)
        _, current = self.survey(parts)
        if current is None:
            raise Refusal("INVALID_PARAMS", f"{path} does not exist: there is nothing to delete")
        return self._plan_delete(params, path, current, preview)

    @staticmethod
    def _plan(operation, params, inputs, state, effects, touches, reasons, costs, recipe):
        order = {"read": 0, "write": 1, "delete": 2}
        return {
            "kind": "mechanism.plan/v0", "mechanism": MECHANISM, "operation": operation,
            "params": params, "inputs": inputs, "state": state, "intended_effects": effects,
            "touches": sorted(touches, key=lambda t: (t["resource"], order[t["access"]])),
            "destructive": bool(reasons), "destructive_reasons": reasons,
            "determinism": "D0", "estimated_costs": costs, "exec_recipe": recipe,
        }

    def _plan_write(self, params, inputs, path, size, missing, current, preview):
        content, before = inputs["content"], current.digest if current else None
        # The state the plan depends on: execute changes it, so planning the same request
        # again gives another plan, and a plan made before a change is recognised as stale.
        state = {"path": path, "content": before, "missing_dirs": missing}
        touches = [{"resource": d, "access": "write"} for d in missing]
        touches += [{"resource": path, "access": "read"}] if current else []
        if before == content:  # nothing to do: the empty plan after apply
            plan = self._plan("write", params, inputs, state, [], touches, [],
                              {"wall_ms": 10, "bytes_written": 0, "files_touched": 0}, [])
            return plan, preview and f"{path} already holds {content}; nothing to write\n"
        effect = {"type": "fs.write", "resource": path, "path": path,
                  "before": before, "after": content, "size": size}
        reasons = [f"overwrites {path}, replacing its content {before} ({current.size} bytes)"
                   ] if current else []
        recipe = [{"op": "fs.mkdir", "args": {"path": d}} for d in missing]
        recipe.append({"op": "fs.write_file",
                       "args": {"path": path, "content": content, "expect_before": before}})
        costs = {"wall_ms": 50 + size // 100_000, "bytes_written": size, "files_touched": 1}
        plan = self._plan("write", params, inputs, state, [effect],
                          touches + [{"resource": path, "access": "write"}], reasons, costs, recipe)
        return plan, preview and self._diff(path, current, content, size)

    def _plan_delete(self, params, path, current, preview):
        what = f"{path} ({current.size} bytes, {current.digest})"
        effect = {"type": "fs.delete", "resource": path, "path": path,
                  "before": current.digest, "size": current.size}
        touches = [{"resource": path, "access": "read"}, {"resource": path, "access": "delete"}]
        recipe = [{"op": "fs.delete_file", "args": {"path": path, "expect_before": current.digest}}]
        plan = self._plan("delete", params, {}, {"path": path, "content": current.digest},
                          [effect], touches, [f"deletes {what}"],
                          {"wall_ms": 10, "bytes_written": 0, "files_touched": 1}, recipe)
        return plan, preview and f"delete {what}\n"

    def _diff(self, path, current, content, size):
        """A unified diff for small UTF-8 text, else a one-line summary."""
        try:
            new = self.store.read(content, PREVIEW_MAX).decode() if size <= PREVIEW_MAX else None
            old = current.data.decode() if current and current.data is not None else ""
        except (UnicodeDecodeError, Refusal):
            new = None
        if new is None or (current and current.data is None):
            before = current.digest if current else "a new file"
            return f"write {path}: {before} -> {content} ({size} bytes)\n"
        lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                     "a/" + path if current else "/dev/null", "b/" + path)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                       for line in lines)

    # Executing: a roll forward from whatever state an earlier run of it was killed in, so an
    # interrupted execute is finished by running it again. Each file is compared once more right
    # before it changes: as planned before, it is changed; already as planned after, it is left.
    def apply(self, plan, plan_hash):
        """Applies the plan; returns (effects_applied, evidence, subjects, state_after)."""
        path, state = plan["params"]["path"], plan["state"]
        parts = self.check_path(path)
        if plan["operation"] == "write":
            content = plan["inputs"]["content"]
            if plan["intended_effects"]:
                # Named after the plan, so a temporary file a killed execute left is reused.
                temp = f".fs_write-{plan_hash.removeprefix('sha256:')[:16]}.tmp"
                self._write(parts, state["content"], content, temp)
            evidence = {"path": path, "before": state["content"], "after": content,
                        "created_dirs": state["missing_dirs"] if plan["intended_effects"] else []}
            produced, after = content, content
        else:
            self._delete(parts, state["content"])
            evidence = {"path": path, "deleted": state["content"]}
            produced, after = state["content"], None  # the subject: what was deleted
        subjects = [{"name": path, "digest": {"sha256": produced.removeprefix("sha256:")}}]
        return plan["intended_effects"], evidence, subjects, {"path": path, "content": after}

    @staticmethod
    def _unexpected(parts, before, after, current):
        return Refusal("EXECUTION_FAILED", f"{'/'.join(parts)} holds {current}, neither the "
                       f"planned {before} nor {after}: something else changed it during the "
                       "execute")

    def _write(self, parts, before, after, temp):
        """Temp file in the same directory, fsync, rename over, fsync the directory: a reader
        sees the old content or the new one, never half of it. Missing directories are created
        (those a killed run made are kept)."""
        fd, _ = self.open_parent(parts, create=True)
        try:
            current = self.leaf_state(fd, parts)
            digest = current.digest if current else None
            if digest == after:  # renamed into place before a kill
                return
            if digest != before:
                raise self._unexpected(parts, before, after, digest)
            # New files get the usual 0666 & ~umask; an overwrite keeps the file's mode.
            mode = stat.S_IMODE(current.mode) if current else 0o666 & ~UMASK
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            out = os.open(temp, flags, 0o600, dir_fd=fd)
            try:
                h = hashlib.sha256()
                with os.fdopen(out, "wb") as f, self.store.open(after) as src:
                    while chunk := src.read(1 << 18):  # streamed: memory stays flat
                        h.update(chunk)
                        f.write(chunk)
                    f.flush()
                    os.fchmod(f.fileno(), mode)
                    os.fsync(f.fileno())
                # Checked before the rename, so unverified bytes never reach the file.
                self.store.check(after, "sha256:" + h.hexdigest())
                os.rename(temp, parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=fd)
                raise
            os.fsync(fd)
        finally:
            os.close(fd)

    def _delete(self, parts, before):
        fd, _ = self.open_parent(parts, create=False)
        if fd is None:  # a directory on the way is gone, and the file with it
            return
        try:
            current = self.leaf_state(fd, parts)
            if current is None:  # deleted before a kill
                return
            if current.digest != before:
                raise self._unexpected(parts, before, None, current.digest)
            os.unlink(parts[-1], dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)

    def still_applied(self, plan):
        """Whether an executed plan's effect still holds, so executing it again returns the
        recorded result and applies nothing."""
        try:
            _, current = self.survey(self.check_path(plan["params"]["path"]))
        except Refusal:
            return False
        if plan["operation"] == "delete":
            return current is None
        return current is not None and current.digest == plan["inputs"]["content"]


# --- 6. Force-acks ------------------------------------------------------------------------
# Python's standard library has no ed25519, so the signature and the trust check are left to
# OpenSSH's own verifier, `ssh-keygen -Y verify`, over the bytes we rebuild ourselves.

EXPIRES_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")


def parse_expires_at(text):
    """RFC 3339 in UTC, written with T and Z, as nanoseconds since the epoch; None if not."""
    if not (m := EXPIRES_RE.fullmatch(text)):
        return None
    try:
        t = datetime(*map(int, m.groups()[:6]), tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(t.timestamp()) * 10**9 + int((m.group(7) or "0").ljust(9, "0"))


def verify_force_ack(ack, plan_hash, admission_hash, signers, max_ttl_s, now_ns):
    """Checks a force-ack as protocol/src/force_ack.rs does, with its codes; returns its fields.
    The nonce is not claimed here: the caller does that last, right before the effect."""
    def malformed(why):
        return Refusal("FORCE_ACK_INVALID", f"force-ack is malformed: {why}")
    if not isinstance(ack, dict):
        raise malformed("a force-ack must be a JSON object")
    fields = dict(ack)
    signature = fields.pop("signature", None)
    if not isinstance(signature, str):
        raise malformed("field \"signature\" is missing or not a string")
    if extra := sorted(set(fields) - set(ACK_FIELDS)):
        # A field the verifier does not know would be signed, but never checked.
        raise malformed(f"unexpected field {extra[0]!r}; a force-ack has exactly "
                        f"{', '.join(ACK_FIELDS)} and signature")
    if missing := [name for name in ACK_FIELDS if not isinstance(fields.get(name), str)]:
        raise malformed(f"field {missing[0]!r} is missing or not a string")
    approver, expires_ns = fields["approver"], parse_expires_at(fields["expires_at"])
    if fields["kind"] != ACK_KIND:
        raise malformed(f"kind is {fields['kind']!r}, expected {ACK_KIND!r}")
    if not all(DIGEST_RE.fullmatch(fields[name]) for name in ("plan_hash", "admission_hash")):
        raise malformed("plan_hash and admission_hash must be sha256:<64 lowercase hex>")
    if not approver or len(approver.encode()) > 256 or any(
            unicodedata.category(c) == "Cc" for c in approver):
        raise malformed("approver must be 1 to 256 bytes without control characters")
    if expires_ns is None:
        raise malformed(f"expires_at {fields['expires_at']!r} is not like 2026-11-22T19:00:00Z")
    if not re.fullmatch(r"[0-9a-f]{32}", fields["nonce"]):
        raise malformed("nonce must be exactly 32 lowercase hex digits")
    try:  # the signed bytes are rebuilt from the fields, never taken from the sender
        payload = canonical(fields)
    except ValueError as e:
        raise malformed(str(e)) from None

    with tempfile.TemporaryDirectory(prefix="fs_write-ack-") as tmp:
        with open(sig_file := os.path.join(tmp, "force-ack.sig"), "w") as f:
            f.write(signature)
        try:  # its output is captured: our stdout belongs to the protocol
            run = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", signers, "-I", approver,
                                  "-n", ACK_NAMESPACE, "-s", sig_file],
                                 input=payload, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Refusal("INTERNAL_ERROR", f"cannot run ssh-keygen -Y verify: {e}") from None
    if run.returncode != 0:
        said = (run.stderr or run.stdout).decode(errors="replace").strip().splitlines()
        said = said or ["refused"]
        raise Refusal("FORCE_ACK_INVALID", f"force-ack signature does not verify as signed by "
                      f"{approver!r}, a trusted signer ({said[-1]})")
    if fields["plan_hash"] != plan_hash:
        raise Refusal("FORCE_ACK_INVALID", f"force-ack approves plan {fields['plan_hash']}, "
                      f"but plan {plan_hash} is being executed")
    if fields["admission_hash"] != admission_hash:
        raise Refusal("FORCE_ACK_INVALID", f"force-ack approves admission "
                      f"{fields['admission_hash']}, but the plan was admitted by {admission_hash}")
    if expires_ns <= now_ns:
        raise Refusal("FORCE_ACK_EXPIRED", f"force-ack expired at {fields['expires_at']}; "
                      "ask the approver for a fresh one")
    if expires_ns > now_ns + max_ttl_s * 10**9:
        raise Refusal("FORCE_ACK_EXPIRED", f"force-ack expires at {fields['expires_at']}, more "
                      f"than {max_ttl_s} s from now; approve again with a shorter lifetime")
    return fields


# --- 7. The verbs -------------------------------------------------------------------------

class Server:
    def __init__(self, mechanism, store, signers, max_ttl, max_message_bytes):
        self.mechanism, self.store = mechanism, store
        self.signers, self.max_ttl, self.max_message_bytes = signers, max_ttl, max_message_bytes
        self.intents = Intents(store, mechanism.root)

    def describe(self, params):
        offered = params.get("protocol_versions")  # absent: only the current version
        if offered is not None and PROTOCOL_VERSION not in offered:
            raise Refusal("UNSUPPORTED_VERSION",
                          f"this server speaks {PROTOCOL_VERSION}; offered {offered}")
        return {"protocol_version": PROTOCOL_VERSION, "mechanism": MECHANISM,
                "operations": self.mechanism.operations(),
                "capability_scope": [{"capability": c, "resources": ["**"]}
                                     for c in ("fs.write", "fs.delete")],
                "limits": {"max_message_bytes": self.max_message_bytes,
                           "max_inline_bytes": MAX_INLINE_BYTES,
                           "max_batch_entries": MAX_BATCH_ENTRIES}}

    def plan(self, params):
        if self.intents.pending():  # the root is changing: a plan of it now would be stale
            raise Refusal("BUSY", "an execute in this root is under way, or was killed past its "
                          "point of no return and is finished by the next execute or start of "
                          "fs_write; plan again then")
        op_params, inputs = params["params"], params.get("inputs", {})
        if len(canonical(op_params)) > MAX_INLINE_BYTES:
            raise Refusal("ARTIFACT_REQUIRED", f"params over {MAX_INLINE_BYTES} bytes go into the "
                          "store and travel by digest")
        plan, preview = self.mechanism.plan(params["operation"], op_params, inputs, preview=True)
        plan_hash = self.store.put_artifact(plan, [inputs[name] for name in sorted(inputs)])
        return {"plan_hash": plan_hash, "plan": plan, **({"preview": preview} if preview else {})}

    def load_plan(self, plan_hash):
        """A plan this mechanism issued, by hash; anything else is UNKNOWN_PLAN."""
        try:
            plan = self.store.get_artifact(plan_hash)
        except Refusal as e:
            if e.code == "UNKNOWN_ARTIFACT":
                raise Refusal("UNKNOWN_PLAN", f"no plan {plan_hash} in the store") from None
            if e.code == "INVALID_PARAMS":  # intact, but not an artifact (a content blob)
                raise Refusal("UNKNOWN_PLAN", f"{plan_hash} is not a plan: {e.message}") from None
            raise  # a corrupt object is reported as such
        shape = {"mechanism": dict, "operation": str, "params": dict, "inputs": dict,
                 "state": dict, "intended_effects": list, "touches": list, "destructive": bool,
                 "destructive_reasons": list, "determinism": str, "estimated_costs": dict,
                 "exec_recipe": list}
        if artifact_kind(plan) != "mechanism.plan/v0" or not all(
                isinstance(plan.get(key), kind) for key, kind in shape.items()):
            raise Refusal("UNKNOWN_PLAN", f"{plan_hash} is not a plan")
        if plan["mechanism"] != MECHANISM:
            raise Refusal("UNKNOWN_PLAN", f"{plan_hash} is a plan of another mechanism")
        return plan

    def declare_cost(self, params):
        plan = self.load_plan(params["plan_hash"])
        witness = {"kind": "mechanism.cost-witness/v0", "plan_hash": params["plan_hash"],
                   "costs": plan["estimated_costs"],
                   "basis": "the plan's own estimate, from the size of the content written"}
        digest = self.store.put_artifact(witness, [params["plan_hash"]])
        return {"cost_witness": witness, "cost_witness_hash": digest}

    def status(self, params):
        plan_hash = params["plan_hash"]
        if record := self.store.result_record(plan_hash):  # never "running": one request at a time
            return {"state": "succeeded" if record["succeeded"] else "failed",
                    "result_hash": record["result"]}
        self.load_plan(plan_hash)  # only a plan of ours is "planned"; anything else is refused
        return {"state": "planned"}

    def execute(self, params):
        """Step by step as mechanism-server/src/server/execute.rs: nothing is claimed or applied
        before every check has passed, and an execute killed at any instant is finished by the
        next one (see Intents)."""
        received = time.monotonic()
        plan_hash, admission = params["plan_hash"], params["admission"]
        plan = self.load_plan(plan_hash)
        with self.intents.lock():
            # 0. An execute a killed process left past its point of no return is finished first.
            if reply := self.finish_interrupted(plan_hash):
                return reply

            # 1. Executed before and the effect still holds: the recorded result, nothing applied.
            record = self.store.result_record(plan_hash)
            if record and record["succeeded"] and self.mechanism.still_applied(plan):
                result, witness = record["result"], record["witness"]
                return {"result": self.store.get_artifact(result), "result_hash": result,
                        "witness": self.store.get_artifact(witness), "witness_hash": witness}

            # 2. Recompute the plan against the world as it is now; it must be the very same.
            #    This one rule refuses a forged plan (one we would not produce) and a plan whose
            #    world changed, and means stored plans need no trust.
            try:
                fresh, _ = self.mechanism.plan(plan["operation"], plan["params"], plan["inputs"],
                                               False)
            except Refusal as e:
                if e.code in ("INVALID_PARAMS", "PATH_REFUSED", "UNKNOWN_OPERATION"):
                    raise Refusal("STALE_PLAN", f"the plan no longer holds: {e.message}") from None
                raise
            if digest_of(fresh) != plan_hash:
                raise Refusal("STALE_PLAN", f"the world changed since planning: the plan is now "
                              f"{digest_of(fresh)}, not {plan_hash}; plan again")

            # 3. The admission witness must be in the store, be for this plan, and admit it.
            self.check_admission(plan_hash, admission)

            # 4. A destructive plan needs a valid force-ack (its nonce is claimed in step 6).
            force_ack_hash, nonce = None, None
            if plan["destructive"]:
                force_ack_hash, nonce = self.check_force_ack(plan_hash, admission,
                                                             params.get("force_ack"))

            # 5. The intent, durably, before anything is spent or changed; not if the client
            #    will have stopped waiting before we are done.
            if "deadline_ms" in params:
                left = params["deadline_ms"] - (time.monotonic() - received) * 1000
                needed = plan["estimated_costs"].get("wall_ms", 0)
                if left <= 0 or needed > left:
                    raise Refusal("DEADLINE_EXCEEDED", f"{left:.0f} ms of the deadline are "
                                  f"left and the plan takes an estimated {needed} ms; nothing "
                                  "was applied")
            intent = {"plan_hash": plan_hash, "admission": admission,
                      "force_ack": force_ack_hash, "nonce": nonce}
            self.intents.write(intent)

            # 6. The point of no return: the approval is spent, and the plan applied from here on.
            if nonce:
                try:
                    self.store.claim_nonce(nonce, plan_hash)
                except Refusal:
                    self.intents.remove()
                    raise
            return self.run(plan_hash, plan, intent)

    def finish_interrupted(self, plan_hash=None):
        """Finishes the execute a killed process left past its point of no return in this root,
        if any; call with the root's lock held. Returns its reply when it was of `plan_hash`."""
        intent = self.intents.read()
        if intent is None:
            return None
        pending = intent["plan_hash"]
        log.warning("finishing an interrupted execute of plan %s", pending)
        if intent["nonce"]:  # killed before claiming it: the approval is spent now
            with contextlib.suppress(Refusal):  # FORCE_ACK_REPLAYED: it had claimed it
                self.store.claim_nonce(intent["nonce"], pending)
        try:
            reply = self.run(pending, self.load_plan(pending), intent)
        except Refusal as e:
            if pending == plan_hash:
                raise
            if self.intents.pending():
                raise Refusal("BUSY", f"an interrupted execute of plan {pending} in this root "
                              f"cannot be finished now ({e.message}); retry") from None
            return None
        return reply if pending == plan_hash else None

    def run(self, plan_hash, plan, intent):
        """Applies the plan as its intent says, records the result and its in-toto witness (a
        failure too), and removes the intent; unless the failure was an I/O error, which running
        again may get past, so the intent stays for the next execute or start."""
        error, again = None, False
        try:
            effects, evidence, subjects, state_after = self.mechanism.apply(plan, plan_hash)
        except Refusal as e:
            error = {"code": e.code, "message": e.message}
        except OSError as e:
            error = {"code": "EXECUTION_FAILED", "message": f"{plan['params']['path']}: {e}"}
            again = True
        if error:
            effects, evidence, subjects, state_after = [], {}, [], plan["state"]
        admission, force_ack_hash = intent["admission"], intent["force_ack"]
        result = {"kind": "mechanism.result/v0", "plan_hash": plan_hash,
                  "status": "failure" if error else "success",
                  "effects_applied": effects, "evidence": evidence,
                  **({"error": error} if error else {})}
        derived = [plan_hash, admission] + ([force_ack_hash] if force_ack_hash else [])
        result_hash = self.store.put_artifact(result, derived)
        predicate = {"plan_hash": plan_hash, "admission_hash": admission,
                     "result_hash": result_hash, "mechanism": MECHANISM,
                     "state_before": plan["state"], "state_after": state_after,
                     **({"force_ack_hash": force_ack_hash} if force_ack_hash else {})}
        witness = {"_type": STATEMENT_TYPE, "subject": subjects,
                   "predicateType": "https://schemas.mechanism.invalid/v0/result-witness",
                   "predicate": predicate}
        witness_hash = self.store.put_artifact(witness, derived + [result_hash])
        self.store.set_result_record(plan_hash, {"result": result_hash, "witness": witness_hash,
                                                 "succeeded": error is None})
        if not again:
            self.intents.remove()
        reply = {"result": result, "result_hash": result_hash,
                 "witness": witness, "witness_hash": witness_hash}
        if error:  # the recorded failure travels in error.data, as the Rust server sends it
            raise Refusal(error["code"], error["message"], {"result": reply})
        return reply

    def recover(self):
        """At start: finishes an execute a killed process left in this root, unless another
        live process holds the root (it finishes it itself)."""
        if not self.intents.pending():
            return
        try:
            with self.intents.lock():
                self.finish_interrupted()
        except (Refusal, OSError) as e:
            log.warning("an interrupted execute could not be finished now: %s", e)

    def check_admission(self, plan_hash, admission):
        try:
            witness = self.store.get_artifact(admission)
        except Refusal as e:
            if e.code != "INVALID_PARAMS":
                raise  # absent (UNKNOWN_ARTIFACT) or corrupt: reported as such
            raise Refusal("ADMISSION_REQUIRED", f"{admission} is not an admission witness: "
                          f"{e.message}") from None
        required = ("plan_hash", "mechanism", "policy_digest", "gates", "decision",
                    "force_ack_required")
        if artifact_kind(witness) != "mechanism.admission-witness/v0" or not all(
                key in witness for key in required):
            raise Refusal("ADMISSION_REQUIRED", f"{admission} is not an admission witness")
        if witness.get("plan_hash") != plan_hash:
            raise Refusal("ADMISSION_REQUIRED", f"admission {admission} is for plan "
                          f"{witness.get('plan_hash')}, not {plan_hash}")
        if witness.get("decision") != "ADMIT":
            raise Refusal("ADMISSION_REQUIRED", f"admission {admission} denied this plan")

    def check_force_ack(self, plan_hash, admission, force_ack):
        if force_ack is None:  # absent, or null
            raise Refusal("FORCE_ACK_REQUIRED", f"plan {plan_hash} is destructive: it needs an "
                          "operator's signed force-ack")
        if self.signers is None:
            raise Refusal("FORCE_ACK_INVALID", "this server trusts no force-ack signers "
                          "(--force-ack-signers), so destructive plans cannot run")
        fields = verify_force_ack(force_ack, plan_hash, admission, self.signers, self.max_ttl,
                                  time.time_ns())
        return self.store.put_artifact(force_ack, [plan_hash, admission]), fields["nonce"]


# --- 8. JSON-RPC 2.0 ----------------------------------------------------------------------

def error_response(id_, code, message):
    return {"jsonrpc": "2.0", "id": id_, "error": Refusal(code, message).to_json()}


def classify(msg):
    """('request', id, method, params), ('notification',), ('response',) or
    ('invalid', id, reason): protocol/src/jsonrpc.rs, plus refusing a duplicate member."""
    if not isinstance(msg, dict):
        return "invalid", None, "a JSON-RPC message must be an object"
    has_id, id_ = "id" in msg, msg.get("id")
    if has_id and (isinstance(id_, bool) or not isinstance(id_, (str, int, float, type(None)))):
        return "invalid", None, "\"id\" must be a string, a number or null"
    if getattr(msg, "duplicate", None) is not None:
        id_ = None if msg.duplicate == "id" else id_
        return "invalid", id_, f"duplicate member {msg.duplicate!r}"
    if msg.get("jsonrpc") != "2.0":
        return "invalid", id_, "\"jsonrpc\" must be \"2.0\""
    if "method" in msg:
        if not isinstance(msg["method"], str):
            return "invalid", id_, "\"method\" must be a string"
        if not isinstance(msg.get("params", {}), (dict, list)):
            return "invalid", id_, "\"params\" must be an object or an array"
        if extra := sorted(set(msg) - {"jsonrpc", "id", "method", "params"}):
            return "invalid", id_, f"unexpected member {extra[0]!r}"
        if not has_id:
            return ("notification",)
        return "request", id_, msg["method"], msg.get("params", {})
    if ("result" in msg) != ("error" in msg) and isinstance(msg.get("error", {}), dict):
        return ("response",)
    return "invalid", id_, "a message needs \"method\", or exactly one of \"result\" and \"error\""


def handle_message(server, msg):
    """The response to one message, or None."""
    kind = classify(msg)
    if kind[0] == "invalid":
        return error_response(kind[1], "INVALID_REQUEST", kind[2])
    if kind[0] != "request":
        # A response is not ours to answer. A notification gets no reply, so running a verb for
        # one would hide its outcome (an execute nobody hears about): it is ignored. So is
        # $/cancelRequest: each request is finished before the next message is read.
        return None
    _, id_, method, params = kind
    if method not in VERB_PARAMS:
        return error_response(id_, "METHOD_NOT_FOUND", f"no method {method!r}")
    try:
        if not isinstance(params, dict):
            raise Refusal("INVALID_PARAMS", f"{method} takes its params by name, in an object")
        if method == "execute" and "admission" not in params:
            raise Refusal("ADMISSION_REQUIRED", "execute needs `admission`: the digest of the "
                          "AdmissionWitness that admitted the plan")
        if problem := ijson_problem(params) or schema_error(VERB_PARAMS[method], params, "params"):
            raise Refusal("INVALID_PARAMS", problem)
        return {"jsonrpc": "2.0", "id": id_, "result": getattr(server, method)(params)}
    except Refusal as e:
        return {"jsonrpc": "2.0", "id": id_, "error": e.to_json()}
    except Exception as e:  # a bug, or an I/O failure of ours: say so, and keep serving
        log.exception("%s failed", method)
        return error_response(id_, "INTERNAL_ERROR", f"{method}: {type(e).__name__}: {e}")


def handle_frame(server, data: bytes):
    """The reply to one frame (a message or a batch), or None. Anything that is not JSON as
    the Rust server parses it (too deep, a lone surrogate, a number beyond a double) is a
    PARSE_ERROR with id null: no id read from it can be trusted."""
    too_deep = f"invalid JSON: nesting deeper than {MAX_DEPTH} levels"
    try:
        value = parse_json(data)
    except RecursionError:  # json.loads recurses: far too deep for it
        return error_response(None, "PARSE_ERROR", too_deep)
    except ValueError as e:
        return error_response(None, "PARSE_ERROR", f"invalid JSON: {e}")
    for item, where, depth in nodes(value):  # what serde_json refuses while parsing
        if depth > MAX_DEPTH and isinstance(item, (dict, list)):
            return error_response(None, "PARSE_ERROR", too_deep)
        if any(SURROGATE_RE.search(text) for text in (
                item if isinstance(item, dict) else [item] if isinstance(item, str) else [])):
            return error_response(None, "PARSE_ERROR", f"invalid JSON: lone surrogate at {where}")
        if isinstance(item, float) and abs(item) == float("inf"):
            return error_response(None, "PARSE_ERROR", f"invalid JSON: {where} is out of range")
    if not isinstance(value, list):
        return handle_message(server, value)
    if not value:
        return error_response(None, "INVALID_REQUEST", "empty batch")
    if len(value) > MAX_BATCH_ENTRIES:  # refused whole: one frame must not fan out unbounded
        return error_response(None, "INVALID_REQUEST", f"a batch of {len(value)} entries exceeds "
                              f"the limit of {MAX_BATCH_ENTRIES} entries; none was served")
    replies = [r for r in (handle_message(server, m) for m in value) if r is not None]
    return replies or None  # a batch of notifications gets nothing at all


# --- 9. Framing and main ------------------------------------------------------------------
# The first non-whitespace byte decides: 'C' or 'c' opens LSP-style "Content-Length: N"
# framing, anything else one message per line. Replies use the framing we were spoken to.

class FrameError(NamedTuple):
    code: str
    message: str


class StreamEnded(Exception):
    """EOF inside a message (a line without its '\n', a header block or a body cut short):
    a partial frame, which gets no reply, for nobody is left to read one."""


class FrameReader:
    """Reads one frame at a time, never holding more than the limit (plus one read) of it."""

    def __init__(self, fd, max_bytes):
        self.fd, self.max = fd, max_bytes
        self.buf, self.eof = bytearray(), False
        self.framing = None   # "lines" or "content-length", from the first frame on
        self.skip = None      # what a refused frame left behind: an int (bytes), b"\n" or a header

    def _fill(self):
        if not self.eof:
            chunk = os.read(self.fd, 1 << 16)
            self.buf += chunk
            self.eof = not chunk
        return not self.eof

    def _skip_whitespace(self):
        """The next non-whitespace byte (left in the buffer), or None at EOF."""
        while not (stripped := self.buf.lstrip(b" \t\r\n")):
            self.buf.clear()
            if not self._fill():
                return None
        del self.buf[:len(self.buf) - len(stripped)]
        return self.buf[0]

    def _skip_leftover(self):
        """Skips what a refused frame left: the rest of an oversized body (a count), of an
        overlong line (up to b"\n"), or, after a bad header, up to the next "content-length:"
        (the body's end is unknown). False if the stream ends first: the frame was answered."""
        while True:
            if isinstance(self.skip, int):
                taken = min(self.skip, len(self.buf))
                del self.buf[:taken]
                self.skip -= taken
                if not self.skip:
                    return True
            elif (at := self.buf.lower().find(self.skip)) >= 0:
                del self.buf[:at + len(self.skip)]
                return True
            else:  # keep a tail that may be the start of a match split across two reads
                del self.buf[:max(0, len(self.buf) - len(self.skip) + 1)]
            if not self._fill():
                return False

    def read_frame(self):
        """The next message's bytes, a FrameError for a refused one, or None at EOF."""
        resynced = self.skip == b"content-length:"
        if self.skip is not None:
            if not self._skip_leftover():
                return None
            self.skip = None
        if self.framing is None:
            if (first := self._skip_whitespace()) is None:
                return None
            self.framing = "content-length" if first in b"Cc" else "lines"
        return self._line() if self.framing == "lines" else self._content_length(resynced)

    def _too_large(self, declared=""):
        return FrameError("MESSAGE_TOO_LARGE",
                          f"message{declared} exceeds the limit of {self.max} bytes")

    def _line(self):
        if self._skip_whitespace() is None:
            return None
        searched = 0
        while (end := self.buf.find(b"\n", searched)) < 0:
            if len(self.buf) > self.max + 1:  # (+1: a '\r' that is not part of the message)
                self.buf.clear()
                self.skip = b"\n"
                return self._too_large()
            searched = len(self.buf)
            if not self._fill():  # only the '\n' ends a message
                raise StreamEnded("the stream ended in the middle of a line")
        line = bytes(self.buf[:end]).removesuffix(b"\r")
        del self.buf[:end + 1]
        return self._too_large() if len(line) > self.max else line

    def _content_length(self, resynced):
        if not resynced and self._skip_whitespace() is None:
            return None
        declared, prefix = None, b"Content-Length:" if resynced else b""
        while True:  # header lines, up to an empty one
            while (end := self.buf.find(b"\n", 0, MAX_HEADER_LINE + 1)) < 0:
                if len(self.buf) > MAX_HEADER_LINE:
                    del self.buf[:MAX_HEADER_LINE]  # so the resync looks past its start
                    self.skip = b"content-length:"  # resynchronise, as after a bad header
                    return FrameError("MESSAGE_TOO_LARGE", "a header line exceeds the limit "
                                      f"of {MAX_HEADER_LINE} bytes")
                if not self._fill():
                    raise StreamEnded("the stream ended in a header block")
            line, prefix = prefix + bytes(self.buf[:end]).removesuffix(b"\r"), b""
            del self.buf[:end + 1]
            if not line:
                break
            name, colon, value = line.partition(b":")
            if not colon or not re.fullmatch(rb"[A-Za-z0-9!#$%&'*+\-.^_`|~]+", name):
                return self._bad_header(f"malformed header line {line[:64]!r}")
            if name.lower() == b"content-length":
                if declared is not None or not re.fullmatch(rb"[0-9]+", value.strip(b" \t")):
                    return self._bad_header(f"a second or bad Content-Length {value[:64]!r}")
                declared = int(value.strip(b" \t"))
        if declared is None:
            return self._bad_header("missing Content-Length")
        if declared > self.max:
            self.skip = declared  # skipped at the next read, after we have answered
            return self._too_large(f" of {declared} bytes")
        while len(self.buf) < declared:
            if not self._fill():
                raise StreamEnded("the stream ended in the middle of a message")
        body = bytes(self.buf[:declared])
        del self.buf[:declared]
        return body

    def _bad_header(self, why):
        self.skip = b"content-length:"
        return FrameError("PARSE_ERROR", f"bad frame header: {why}")


def parse_duration(text):
    """Seconds, written 3600, 90s, 15m or 1h."""
    if not (m := re.fullmatch(r"([0-9]+)([smh]?)", text)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600, 15m or 1h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def main(argv=None):
    parser = argparse.ArgumentParser(description="The fs_write mechanism: JSON-RPC 2.0 on stdio.")
    parser.add_argument("--root", required=True, help="every path lies under this directory")
    parser.add_argument("--store", required=True, help="the object store shared with the admission")
    parser.add_argument("--force-ack-signers", metavar="FILE", help="OpenSSH allowed_signers "
                        "trusted for force-acks; without it destructive plans never run")
    parser.add_argument("--force-ack-max-ttl", type=parse_duration, default=3600, metavar="SECONDS",
                        help="the longest a force-ack may live (default 3600)")
    parser.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024, metavar="N")
    args = parser.parse_args(argv)

    # stdout belongs to the protocol: keep it, and send anything printed by mistake to stderr.
    out, sys.stdout = sys.stdout.buffer, sys.stderr
    logging.basicConfig(stream=sys.stderr, format="fs_write: %(levelname)s %(message)s",
                        level=os.environ.get("FS_WRITE_LOG", "warning").upper())
    global UMASK
    UMASK = os.umask(UMASK)
    os.umask(UMASK)
    try:
        root = os.path.realpath(args.root)
        if not os.path.isdir(root):
            raise OSError(f"--root {root} is not a directory")
        store = Store(args.store)
        signers = args.force_ack_signers and os.path.abspath(args.force_ack_signers)
        if signers:
            open(signers, "rb").close()  # unreadable: a configuration error, not a refusal
        if args.max_message_bytes < 1:
            raise OSError("--max-message-bytes must be at least 1")
    except OSError as e:
        print(f"fs_write: error: {e}", file=sys.stderr)
        return 2
    server = Server(FsWrite(root, store), store, signers, args.force_ack_max_ttl,
                    args.max_message_bytes)
    server.recover()
    reader = FrameReader(sys.stdin.buffer.fileno(), args.max_message_bytes)
    while True:
        try:
            frame = reader.read_frame()
        except StreamEnded as e:
            log.warning("%s; the partial message is dropped unanswered", e)
            return 0
        if frame is None:
            return 0  # EOF: every request has been answered, nothing is in flight
        if isinstance(frame, FrameError):
            reply = error_response(None, frame.code, frame.message)
        else:
            reply = handle_frame(server, frame)
        if reply is None:
            continue
        payload = json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()
        if reader.framing == "content-length":
            out.write(b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        else:
            out.write(payload + b"\n")
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
