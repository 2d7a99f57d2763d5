"""Provenance stamps and atomic file writes shared by every stage."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from charact import __version__

_REPO = Path(__file__).resolve().parent.parent


def code_revision() -> str:
    """The git revision of the source tree (with ``+dirty``), or the package version."""
    if (_REPO / ".git").exists():
        try:
            rev = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "--short=12", "HEAD"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain",
                                    "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if rev:
                return rev + ("+dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return f"charact-{__version__}"


def stamp(**extra: Any) -> dict[str, Any]:
    """A provenance record: who made a file, when, with what."""
    return {
        "tool": "charact",
        "charact_version": __version__,
        "code_revision": code_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        **extra,
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path in the same folder (``.<name>.<pid>.<random>.tmp``), renamed
    onto ``path`` only on success.

    The file ends with the permissions a plain ``open`` would give it (mkstemp makes
    it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: a temporary file of a dead process is known stale.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, payload: bytes, fsync: bool = False) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(payload)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_table(df: Any, path: Path, provenance: dict[str, Any]) -> None:
    """Parquet with the provenance in the file metadata; CSV with a ``.provenance.json``."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"charact.provenance"] = json.dumps(provenance, default=str).encode()
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp)
    elif path.suffix == ".csv":
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        write_json(path.with_suffix(".provenance.json"), provenance)
    else:
        raise ValueError(f"unsupported table format: {path.suffix}")


def read_parquet_provenance(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"charact.provenance")
    return json.loads(raw) if raw else {}
