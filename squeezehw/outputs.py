"""Writing outputs without ever destroying what squeezehw did not write.

Output folders (``squeezehw build -o DIR``, ``squeezehw demo -o DIR``):

* every folder squeezehw writes carries a manifest, ``.squeezehw-output.json``, listing the
  top-level entries it wrote (commands that add files later, like ``demo``'s report, add them);
* a missing or empty folder is fine; a folder with a manifest whose entries are all squeezehw's
  (plus ``synth-*`` folders that ``squeezehw synth`` puts inside a build) is a previous output and
  is replaced; anything else -- a non-empty folder without a manifest, a file where the folder
  should be, a folder holding files squeezehw did not write -- is refused with a ``UserError``
  and nothing is touched;
* the new folder is written to a temporary sibling and swapped in with two renames, so a failed
  or interrupted write leaves the previous output (and no temporary folder) behind.

Output files (integer models, folding files) are written to a temporary sibling and renamed into
place; an existing file is replaced only when it is a file of the same kind (checked by the
caller), never a folder.  Everything is created with the permissions the user's umask gives
(``tempfile`` would give 0600 files and 0700 folders).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

_SOURCE_CHECKOUT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Where squeezehw keeps what it can rebuild (the quantised default model, Verilator builds):
    ``$SQUEEZEHW_CACHE``, else ``build/`` of the source checkout squeezehw runs from (editable
    install, ``./dev``), else the user's cache folder (``$XDG_CACHE_HOME/squeezehw`` or
    ``~/.cache/squeezehw``) for an installed wheel, whose package folder may be read-only."""
    if os.environ.get("SQUEEZEHW_CACHE"):
        return Path(os.environ["SQUEEZEHW_CACHE"])
    if (_SOURCE_CHECKOUT / "pyproject.toml").is_file() and (_SOURCE_CHECKOUT / "squeezehw").is_dir():
        return _SOURCE_CHECKOUT / "build"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "squeezehw"

__all__ = ["MANIFEST", "OutputError", "check_output_dir", "check_output_file", "replace_dir",
           "add_to_manifest", "atomic_write", "umask_mode"]

MANIFEST = ".squeezehw-output.json"
# what squeezehw build wrote before folders carried a manifest (recognised as previous outputs)
_LEGACY_ENTRIES = {"mem", "design.json", "folding.json", "summary.txt", "demo_report.json"}


class OutputError(UserError):
    """An output path squeezehw refuses to write (it would destroy something it did not write)."""


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process's umask applied (what ``open``/``mkdir`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _is_previous_output(path: Path) -> tuple[bool, list[str]]:
    """(is a squeezehw output folder, top-level entries squeezehw did not write)."""
    entries = sorted(p.name for p in path.iterdir())
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            ours = set(json.loads(manifest.read_text()).get("entries", []))
        except (ValueError, AttributeError, OSError, UnicodeDecodeError):
            return False, entries
        ours.add(MANIFEST)
    elif (path / "design.json").is_file():           # built before outputs carried a manifest
        try:
            verilog = json.loads((path / "design.json").read_text()).get("verilog")
        except (ValueError, AttributeError, OSError, UnicodeDecodeError):
            return False, entries
        ours = _LEGACY_ENTRIES | {verilog}
    else:
        return False, entries
    foreign = [e for e in entries if e not in ours and not e.startswith("synth-")]
    return True, foreign


def check_output_dir(path, option: str = "-o") -> Path:
    """Raise ``OutputError`` unless ``path`` may be (re)placed by a new output folder."""
    path = Path(path)
    shown = str(path)
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise OutputError(f"{option} {shown} is the current folder (or contains it); give a new "
                          "sub-folder such as rtl_out/NAME")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{option} {shown} exists and is not a folder; give a new folder name")
    if path.is_dir() and any(path.iterdir()):
        ours, foreign = _is_previous_output(path)
        if not ours:
            raise OutputError(f"{option} {shown} is a non-empty folder that squeezehw did not write; "
                              "give a new or empty folder (squeezehw never deletes files it did not write)")
        if foreign:
            extra = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputError(f"{option} {shown} holds {extra}, which squeezehw did not write; move "
                              "it elsewhere or give another folder")
    _check_parent(path, option)
    return path


def _check_parent(path: Path, option: str) -> None:
    parent = path.parent
    existing = parent
    while not existing.exists():
        if existing.is_symlink() or existing == existing.parent:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    try:                                   # try it: os.access says yes to root, and to /proc
        fd, probe = tempfile.mkstemp(prefix=".squeezehw-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot write in {existing} ({e.strerror or e}); "
                          "give a folder you can write to") from None


def check_output_file(path, option: str = "-o", *, inputs=(), kind: str = "file", is_same_kind=None) -> Path:
    """Raise ``OutputError`` unless ``path`` may be written as an output file.

    ``inputs``: (option, path) pairs the command reads; writing over one of them is refused.
    ``is_same_kind(path) -> bool``: an existing file is replaced only when this says it is a
    file of the kind being written (e.g. an integer model), never anything else."""
    path = Path(path)
    for name, p in inputs:
        if p is not None and Path(p).exists() and path.exists() and os.path.samefile(p, path):
            raise OutputError(f"{option} {path} is the {name} file being read; give another output name")
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name, e.g. {path / ('out' + (path.suffix or _suffix(kind)))}")
    if path.exists():
        if not path.is_file():
            raise OutputError(f"{option} {path} exists and is not a regular file; give another name")
        if is_same_kind is not None and not is_same_kind(path):
            raise OutputError(f"{option} {path} exists and is not a {kind}; squeezehw replaces only its "
                              "own files: give another name or remove it yourself")
    _check_parent(path, option)
    return path


def _suffix(kind: str) -> str:
    return ".json" if "folding" in kind else ".npz"


@contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary sibling of ``path`` for writing; on success rename it onto ``path`` (with
    umask permissions), on any failure delete it.  OSErrors become ``OutputError``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def replace_dir(path, fill, *, option: str = "-o") -> Path:
    """Write a new output folder at ``path``: ``fill(tmp)`` writes the contents into a temporary
    sibling, which gets a manifest and replaces ``path`` (checked by ``check_output_dir``)."""
    path = Path(path)
    check_output_dir(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    old = None
    try:
        fill(tmp)
        _write_manifest(tmp, sorted(p.name for p in tmp.iterdir()))
        _chmod_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old / "previous", path)      # put the previous output back
            raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not (old / "previous").exists():
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def add_to_manifest(folder, *names: str) -> None:
    """Record files a command added to an output folder after writing it (e.g. a report)."""
    folder = Path(folder)
    m = folder / MANIFEST
    try:
        entries = set(json.loads(m.read_text()).get("entries", []))
    except (OSError, ValueError, AttributeError):
        entries = set()
    _write_manifest(folder, sorted(entries | set(names)))


def _write_manifest(folder: Path, entries: list[str]) -> None:
    entries = [e for e in entries if e != MANIFEST]
    text = json.dumps({"format": "squeezehw-output", "version": 1, "entries": entries}, indent=1) + "\n"
    with atomic_write(folder / MANIFEST, "w") as f:
        f.write(text)


def _chmod_tree(root: Path) -> None:
    dmode, fmode = umask_mode(0o777), umask_mode(0o666)
    os.chmod(root, dmode)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dmode)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), fmode)
