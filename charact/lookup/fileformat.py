"""The versioned lookup-model file format (see ``models/README.md``).

A model file is one JSON object::

    {"schema": "charact.lookup/2", "kind": "code_error" | "pvt_table",
     "provenance": {...}, "data": {...}, "checksum": "sha256:<hex>"}

The checksum is the sha256 of the canonical JSON (sorted keys, no spaces, ASCII,
no NaN) of the object without its ``checksum`` field, so any hand edit of the data
or the provenance is detected. Numeric arrays are written inline as nested lists,
unless the file holds more than :data:`SIDECAR_THRESHOLD` numbers; then they go to
a sidecar ``<stem>.npz`` next to the JSON and the JSON keeps a reference with the
array's shape, dtype and sha256 (covered by the checksum).

Versions: files are written as ``charact.lookup/2``; ``charact.lookup/1`` files (before
code-error points could carry a per-column ``structure``) are read as they are, their
points having no structure. The envelope, checksum and sidecar are the same in both.

This module knows nothing about what the data means; ``error_model`` and
``pvt_table`` build and check their own ``data``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from charact.errors import UserError
from charact.provenance import write_bytes

SCHEMA = "charact.lookup/2"
SCHEMA_V1 = "charact.lookup/1"
#: the versions this charact reads (it writes only SCHEMA)
READABLE_SCHEMAS = (SCHEMA_V1, SCHEMA)
SCHEMA_FAMILY = "charact.lookup/"
KINDS = ("code_error", "pvt_table", "grid_table")
# Files with more numbers than this put their arrays in a sidecar .npz: below it the
# JSON stays readable and diff-able (a 32x32 table per PVT point is ~1 k numbers, so
# even 27 PVT points stay inline).
SIDECAR_THRESHOLD = 65536
_TOP_FIELDS = ("schema", "kind", "provenance", "data", "checksum")
_ARRAY_REF = "$array"


def canonical_json(obj: Any) -> str:
    """The one serialization the checksum is computed over."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    except ValueError as exc:  # NaN/inf slipped in: a bug in the writer, not user input
        raise ValueError(f"model data must be finite JSON: {exc}") from exc


def checksum_of(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and paths to plain JSON values; NaN/inf become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def default_provenance(**fields: Any) -> dict:
    """Provenance every model file carries, plus the caller's ``fields`` (which win)."""
    from charact import __version__

    prov: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "charact_version": __version__,
        "tool_versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "command": " ".join(["charact", *sys.argv[1:]]) if sys.argv else "",
    }
    prov.update(fields)
    return jsonable(prov)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".npz")


def _count_numbers(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return int(obj.size)
    if isinstance(obj, dict):
        return sum(_count_numbers(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_numbers(v) for v in obj)
    return 1


def _array_sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _externalize(obj: Any, store: dict[str, np.ndarray], key: str) -> Any:
    """Replace numpy arrays in ``obj`` by sidecar references (filling ``store``)."""
    if isinstance(obj, np.ndarray):
        name = f"a{len(store)}"
        arr = np.ascontiguousarray(obj)
        store[name] = arr
        return {_ARRAY_REF: name, "shape": list(arr.shape), "dtype": str(arr.dtype),
                "sha256": _array_sha(arr)}
    if isinstance(obj, dict):
        return {k: _externalize(v, store, f"{key}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_externalize(v, store, f"{key}/{i}") for i, v in enumerate(obj)]
    return obj


def _internalize(obj: Any, arrays: dict[str, np.ndarray] | None, where: str) -> Any:
    if isinstance(obj, dict):
        if _ARRAY_REF in obj:
            if arrays is None:
                raise UserError(f"{where}: refers to a sidecar array but its .npz is missing")
            name = obj[_ARRAY_REF]
            if name not in arrays:
                raise UserError(f"{where}: sidecar array {name!r} is missing from the .npz")
            arr = arrays[name]
            if list(arr.shape) != obj.get("shape") or _array_sha(arr) != obj.get("sha256"):
                raise UserError(f"{where}: sidecar array {name!r} does not match its checksum "
                                "(the .npz was changed or belongs to another model)")
            return arr
        return {k: _internalize(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_internalize(v, arrays, where) for v in obj]
    return obj


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    write_bytes(path, payload, fsync=True)


def write_model_file(path: str | os.PathLike, kind: str, data: dict, provenance: dict,
                     sidecar_threshold: int = SIDECAR_THRESHOLD) -> None:
    """Write a model file atomically. ``data`` may hold numpy arrays."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    path = Path(path)
    side = sidecar_path(path)
    if path.suffix.lower() != ".json":
        raise UserError(f"model file name must end in .json: {path}")
    store: dict[str, np.ndarray] = {}
    if _count_numbers(data) > sidecar_threshold:
        data = _externalize(data, store, "data")
    doc = {"schema": SCHEMA, "kind": kind, "provenance": jsonable(provenance),
           "data": jsonable(data)}
    doc["checksum"] = checksum_of(doc)
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
    if store:
        buf = io.BytesIO()
        np.savez_compressed(buf, **store)
        # the sidecar first: a JSON never points at a sidecar that is not there yet
        _atomic_write_bytes(side, buf.getvalue())
    _atomic_write_bytes(path, text.encode("ascii"))
    if not store and side.exists():
        # a stale sidecar from an earlier, larger version of this model
        side.unlink()


def resolve_model_path(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists; a bare name (``column_ref`` or ``column_ref.json``)
    otherwise means a model shipped in ``models/`` (``charact.models`` when installed)."""
    p = Path(path)
    if p.exists() or p.parent != Path("."):
        return p
    from charact.paths import models_dir

    shipped = models_dir() / (p.name if p.suffix == ".json" else f"{p.name}.json")
    if shipped.is_file():
        return shipped
    try:
        names = sorted(f.stem for f in models_dir().glob("*.json"))
    except OSError:
        names = []
    raise UserError(f"model file not found: {p} (shipped models: {', '.join(names) or 'none'})")


class ModelDocument(NamedTuple):
    """A model file's envelope, validated: its schema version, kind, data and provenance."""

    schema: str
    kind: str
    data: dict
    provenance: dict


def read_model_file(path: str | os.PathLike, kind: str | None = None) -> tuple[str, dict, dict]:
    """Read and validate the envelope; return ``(kind, data, provenance)``
    (:func:`read_model_document` also gives the schema version)."""
    doc = read_model_document(path, kind)
    return doc.kind, doc.data, doc.provenance


def read_model_document(path: str | os.PathLike, kind: str | None = None) -> ModelDocument:
    """Read and validate the envelope of a model file of any readable schema version.

    A bare name refers to a shipped model (:func:`resolve_model_path`). Arrays from a
    sidecar come back as numpy arrays, inline ones as lists. Every problem is a
    :class:`UserError` with one line naming the file.
    """
    path = resolve_model_path(path)
    name = str(path)
    if not path.is_file():
        raise UserError(f"model file not found: {name}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read model file {name}: {exc.strerror}") from exc
    try:
        # NaN, Infinity and -Infinity are not JSON, but Python's reader takes them:
        # mark them, to refuse them below naming the field
        doc = json.loads(raw.decode("utf-8"), parse_constant=_NonFinite)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = "empty" if not raw.strip() else f"invalid JSON ({exc})" if isinstance(
            exc, json.JSONDecodeError) else "not UTF-8 text"
        raise UserError(f"{name}: not a model file: {why}; truncated or corrupted?") from exc
    if not isinstance(doc, dict):
        raise UserError(f"{name}: not a model file: top level is not a JSON object")
    bad = _first_non_finite(doc, "")
    if bad is not None:
        field, text = bad
        raise UserError(f"{name}: field {field or '(top level)'} holds {text}, not a finite "
                        "number (model files hold only finite numbers, null for a missing "
                        "value)")
    schema = doc.get("schema")
    if schema is None:
        raise UserError(f"{name}: missing field 'schema'")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_FAMILY):
        raise UserError(f"{name}: unknown schema {schema!r}; expected {SCHEMA!r}")
    if schema not in READABLE_SCHEMAS:
        raise UserError(f"{name}: unsupported schema version {schema!r}; this charact reads "
                        f"{' and '.join(map(repr, READABLE_SCHEMAS))} (upgrade charact or "
                        "refit the model)")
    for field in _TOP_FIELDS:
        if field not in doc:
            raise UserError(f"{name}: missing field {field!r}")
    extra = sorted(set(doc) - set(_TOP_FIELDS))
    if extra:
        raise UserError(f"{name}: unexpected top-level field(s) {', '.join(extra)}")
    if doc["kind"] not in KINDS:
        raise UserError(f"{name}: unknown kind {doc['kind']!r}; known: {', '.join(KINDS)}")
    if kind is not None and doc["kind"] != kind:
        raise UserError(f"{name}: is a {doc['kind']!r} model, expected {kind!r}")
    if not isinstance(doc["provenance"], dict) or not isinstance(doc["data"], dict):
        raise UserError(f"{name}: 'provenance' and 'data' must be JSON objects")
    if not isinstance(doc["checksum"], str) or checksum_of(doc) != doc["checksum"]:
        raise UserError(f"{name}: checksum mismatch: the file was edited or damaged after it "
                        "was written; refit it with 'charact fit'")
    data = doc["data"]
    if _has_ref(data):
        side = sidecar_path(path)
        arrays = None
        if side.is_file():
            try:
                with np.load(side, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            except Exception as exc:  # zip/npy errors come in many types
                raise UserError(f"{side}: sidecar is unreadable ({exc})") from exc
        data = _internalize(data, arrays, name)
    return ModelDocument(schema, doc["kind"], data, doc["provenance"])


class _NonFinite(str):
    """A NaN or infinity read from a model file, kept as its text."""


def _first_non_finite(obj: Any, where: str) -> tuple[str, str] | None:
    """The path (``data.points[0].prob[5][5]``) and text of the first NaN/infinity."""
    if isinstance(obj, _NonFinite):
        return where, str(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = _first_non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _first_non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _has_ref(obj: Any) -> bool:
    if isinstance(obj, dict):
        return _ARRAY_REF in obj or any(_has_ref(v) for v in obj.values())
    if isinstance(obj, list):
        return any(isinstance(v, (dict, list)) and _has_ref(v) for v in obj)
    return False


def as_array(value: Any, where: str, shape: tuple[int | None, ...],
             dtype: type = np.float64) -> np.ndarray:
    """A data field as a numpy array of the expected shape (None = any length)."""
    try:
        # None (JSON null) becomes NaN for float arrays
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: not a numeric array ({exc})") from exc
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape,
                                                                              strict=True)):
        want = "x".join("n" if s is None else str(s) for s in shape)
        raise UserError(f"{where}: shape {arr.shape} does not match the expected {want}")
    return arr


def require(obj: dict, key: str, where: str) -> Any:
    """``obj[key]`` or a one-line UserError naming the missing field."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    if key not in obj:
        raise UserError(f"{where}: missing field {key!r}")
    return obj[key]


def by_corner(grids: dict[str, Any], corner: str) -> Any:
    """The entry of ``grids`` for ``corner``, matched without regard to case (a table's
    corners are named as its technology names them)."""
    for c in grids:
        if c.lower() == str(corner).lower():
            return grids[c]
    raise UserError(f"unknown corner {corner!r}; this table has: {', '.join(grids)}")


def check_axis_range(axis: str, pts: Any, q: Any, tol: float, name: str, corner: str,
                     extrapolate: bool) -> None:
    """Refuse, in one line, a query of ``axis`` outside the characterized points ``pts``
    (sorted) by more than ``tol``, or not finite, unless ``extrapolate``."""
    lo, hi = pts[0], pts[-1]
    outside = (q < lo - tol) | (q > hi + tol) | ~np.isfinite(q)
    if np.any(outside) and not extrapolate:
        bad = q[outside].flat[0]
        span = f"{lo:g}" if pts.size == 1 else f"{lo:g}..{hi:g}"
        raise UserError(f"{axis}={bad:g} is outside the characterized {axis} range {span} "
                        f"of {name!r} at corner {corner} (pass extrapolate=True to "
                        "extrapolate)")
