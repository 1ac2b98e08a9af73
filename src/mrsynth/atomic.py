"""Atomic outputs: a file or folder is either complete at its final path or absent.

Everything mrsynth writes for a user (NIfTI predictions, model files, checkpoints, prepared
subjects, simulated subjects, reports) goes through these helpers: the content is written
under a hidden temporary name beside the target and renamed into place, which is atomic on
one file system.  A crash or kill leaves at most a hidden temporary behind, never a partial
file at the target path.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError

#: ``.<name>.<pid>-<random>.<tmp|old><suffix>``: what this module leaves only if its process dies.
_LEFTOVER = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.(tmp|old)(\.[A-Za-z0-9.]+)?$")


def _temporary_name(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` that keeps its suffixes (nibabel picks gzip from ``.gz``) and names
    the writing process, so that a later run can tell a dead writer's leftovers from a live one's work."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}{suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in ``folder`` (not live ones')."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and not _alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def check_writable(path: str | Path) -> Path:
    """Refuse, before any long computation, an output file that could not be written.

    Its folder must exist or be creatable and be writable, and the path must not be a folder (nor end with a
    slash, which names one).  Raises :class:`~mrsynth.errors.InputError` naming the path.
    """
    if str(path).endswith(("/", os.sep)):
        raise InputError("ends with a slash, which names a folder; give an output file name", path)
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give an output file name", path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot create the output here: {folder} is not a folder", path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: the folder {folder} is not writable", path)
    return path


def refuse_overwriting(outputs, inputs: dict) -> None:
    """Refuse an output that is one of the command's inputs, by whatever path (``inputs``: what the user calls each
    input, e.g. ``--t1``, -> its path or ``None``): no command writes over one of its own inputs."""
    for output in outputs:
        for role, source in inputs.items():
            if source is not None and _same_file(Path(output), Path(source)):
                raise InputError(
                    f"is the {role} input: mrsynth never writes over its inputs, give another output", output
                )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (a link, a relative path) or, where one does not exist yet, one place."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def write_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary)`` and rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path, "tmp")
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # as open() would; some writers create 0600 files
        os.replace(temporary, path)
    except OSError as error:  # name the file the user asked for, not the hidden temporary one
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_file(path, lambda temporary: temporary.write_text(text))


def create_once(path: str | Path, text: str) -> bool:
    """Create ``path`` with ``text``, whole, unless it exists: of processes that try at once, one creates it and the
    others find it complete (a hard link of a finished temporary file, which fails where the name is taken).
    Whether this call created it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path, "tmp")
    try:
        temporary.write_text(text)
        os.chmod(temporary, 0o666 & ~_umask())
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def replace_folder(new: Path, final: Path, attempts: int = 50) -> None:
    """Swap the folder ``new`` into place as ``final``; an old ``final`` is removed only afterwards.

    Safe against another process replacing ``final`` at the same moment (two ``prepare`` runs
    into one cache): whoever renames last wins, and ``final`` is always one whole folder.
    """
    for _ in range(attempts):
        old = _temporary_name(final, "old")
        try:
            os.rename(final, old)
        except FileNotFoundError:  # no old folder, or another writer moved it away first
            old = None
        try:
            os.rename(new, final)
        except OSError as error:  # another writer's folder arrived in between: move it aside, try again
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, f"could not replace {final}: other writers kept replacing it", str(final))


@contextmanager
def building_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``final``; on success it replaces ``final``, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(final, "tmp")
    try:
        temporary.mkdir()
        yield temporary
        replace_folder(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
