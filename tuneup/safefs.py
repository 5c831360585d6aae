"""The one write primitive: every file tuneup writes goes through here.

- A regular file (or a missing path) is replaced atomically: the bytes go to a temp file created
  with O_CREAT|O_EXCL|O_NOFOLLOW under an unpredictable name in the same directory, which gets the
  owner, group and permission bits of the file it replaces (a new file: 0644 unless the caller says
  otherwise), is fsynced, renamed over the target, and the directory is fsynced.
- A character or block device, a FIFO (and a socket, which cannot be opened and is an error) is
  written in place, never replaced.
- A symbolic link at the target is never replaced and never followed; a directory, a path whose
  parent is not a directory, a name longer than the filesystem allows: one-line error (UsageError,
  exit 2). No temp file is left behind on any error.
- Under a root (fix --out-dir, fix --apply, rollback) every path is relative, and every directory
  component is opened one at a time with O_NOFOLLOW from the root's descriptor: `..`, an absolute
  path or a symlinked component is refused before anything is written.

Permission bits are kept without setuid, setgid or sticky: tuneup never writes a set-id file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tuneup.errors import UsageError
from tuneup.textsafe import printable

NAME_MAX = 255
PERM_BITS = 0o777
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TMP_TRIES = 32


def _err(message: str, where: object) -> UsageError:
    return UsageError(printable(message), printable(str(where)))


def _oserr(exc: OSError, where: object, what: str = "cannot write") -> UsageError:
    return _err(f"{what}: {exc.strerror or exc}", where)


# -- relative paths under a root --------------------------------------------------------------------
def split_rel(rel: str, where: object = None) -> tuple[str, ...]:
    """The components of a path that must stay under its root; refuses absolute paths, `..`, `.`,
    empty components, NUL and names longer than NAME_MAX bytes."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\x00" in rel:
        raise _err(f"refusing a path that is not relative to the root: {rel!r}", where or rel)
    parts = tuple(rel.split("/"))
    for p in parts:
        if p in ("", ".", ".."):
            raise _err(f"refusing a path that could leave the root: {rel!r}", where or rel)
        try:
            n = len(p.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            raise _err(f"refusing a path that is not valid text: {rel!r}", where or rel) from None
        if n > NAME_MAX:
            raise _err(f"file name longer than {NAME_MAX} bytes", where or rel)
    return parts


def _open_root(root: Path) -> int:
    try:
        return os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _oserr(exc, root, "cannot open the root directory") from None


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_component(dir_fd: int, name: str, where: object) -> int:
    """The directory `name` in dir_fd, refusing a symlink or a non-directory."""
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = _lstat_at(dir_fd, name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise _err("a component of the path is a symbolic link; refusing to follow it", where) from None
            raise _err("a component of the path is not a directory", where) from None
        raise


@dataclass
class Probe:
    """What is at root/rel now, found without following any symlink and without writing."""
    missing_dirs: tuple[str, ...]          # directories that would have to be created (relative, parents first)
    st: os.stat_result | None              # the target's lstat, None when missing


def probe(root: Path, rel: str) -> Probe:
    """Walk root/rel component by component (O_NOFOLLOW). Refuses a symlinked or non-directory
    component (UsageError) and reports which directories are missing and what the target is."""
    parts = split_rel(rel, Path(root) / rel)
    where = Path(root) / rel
    fd = _open_root(Path(root))
    try:
        for i, comp in enumerate(parts[:-1]):
            try:
                nfd = _open_component(fd, comp, where)
            except FileNotFoundError:
                return Probe(tuple("/".join(parts[: j + 1]) for j in range(i, len(parts) - 1)), None)
            except OSError as exc:
                raise _oserr(exc, where, "cannot open") from None
            os.close(fd)
            fd = nfd
        return Probe((), _lstat_at(fd, parts[-1]))
    finally:
        os.close(fd)


def open_parent(root: Path, rel: str, create: bool = False, created: list[str] | None = None) -> tuple[int, str]:
    """(descriptor of the directory holding root/rel, final name). Each component is opened with
    O_NOFOLLOW; missing directories are created (0755) when `create`, and appended to `created`."""
    parts = split_rel(rel, Path(root) / rel)
    where = Path(root) / rel
    fd = _open_root(Path(root))
    try:
        for i, comp in enumerate(parts[:-1]):
            try:
                nfd = _open_component(fd, comp, where)
            except FileNotFoundError:
                if not create:
                    raise _err("directory does not exist", Path(root).joinpath(*parts[: i + 1])) from None
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.fsync(fd)
                except OSError as exc:
                    raise _oserr(exc, Path(root).joinpath(*parts[: i + 1]), "cannot create directory") from None
                if created is not None:
                    created.append("/".join(parts[: i + 1]))
                nfd = _open_component(fd, comp, where)
            except OSError as exc:
                raise _oserr(exc, where, "cannot open") from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


# -- the primitive ----------------------------------------------------------------------------------
def write_at(dir_fd: int, name: str, data: bytes | BinaryIO, where: object, *, force: bool, mode: int | None = None,
             owner: tuple[int, int] | None = None, new_mode: int = 0o644, special: bool = True) -> str:
    """Write `data` as `name` in the directory dir_fd. Returns "created", "replaced" or "written in
    place". mode/owner: what the file gets (default: those of the file it replaces, else new_mode
    and the caller's ids). special=False refuses devices and FIFOs instead of writing into them."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise _err(f"file name longer than {NAME_MAX} bytes", where)
    try:
        st = _lstat_at(dir_fd, name)
    except OSError as exc:
        raise _oserr(exc, where) from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise _err("is a symbolic link; tuneup neither replaces nor follows one (name its target instead)", where)
        if stat.S_ISDIR(st.st_mode):
            raise _err("is a directory", where)
        if not stat.S_ISREG(st.st_mode):
            if not special:
                raise _err("not a regular file; refusing to replace it", where)
            return _write_in_place(dir_fd, name, data, where)
        if not force:
            raise _err("file exists; pass --force to overwrite it", where)
    perm = (mode if mode is not None else (st.st_mode if st is not None else new_mode)) & PERM_BITS
    ids = owner if owner is not None else ((st.st_uid, st.st_gid) if st is not None else None)
    tmp, fd = _create_temp(dir_fd, where)
    try:
        try:
            _write_all(fd, data)
            if ids is not None and (ids[0], ids[1]) != (os.geteuid(), os.getegid()):
                os.fchown(fd, ids[0], ids[1])
            os.fchmod(fd, perm)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        _unlink_quiet(dir_fd, tmp)
        if exc.errno == errno.EISDIR:
            raise _err("is a directory", where) from None
        raise _oserr(exc, where) from None
    except BaseException:
        _unlink_quiet(dir_fd, tmp)
        raise
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        raise _oserr(exc, where, "written, but the directory could not be synced") from None
    return "replaced" if st is not None else "created"


def _create_temp(dir_fd: int, where: object) -> tuple[str, int]:
    for _ in range(_TMP_TRIES):
        tmp = f".tuneup-{secrets.token_hex(8)}.tmp"
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _oserr(exc, where) from None
    raise _err("cannot create a temporary file (every name taken)", where)


def _write_all(fd: int, data: bytes | BinaryIO) -> None:
    """data: the bytes, or a binary file read from its current position in 1 MiB pieces (a spool
    too big to hold in memory)."""
    chunks = (data,) if isinstance(data, (bytes, bytearray)) else iter(lambda: data.read(2**20), b"")
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def _write_in_place(dir_fd: int, name: str, data: bytes | BinaryIO, where: object) -> str:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _err("is a socket; tuneup cannot write to it", where) from None
        raise _oserr(exc, where) from None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):   # swapped for a regular file since the lstat
            raise _err("changed while being written; try again", where)
        _write_all(fd, data)
    except OSError as exc:
        raise _oserr(exc, where) from None
    finally:
        os.close(fd)
    return "written in place"


def _unlink_quiet(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


# -- entry points -----------------------------------------------------------------------------------
def write_file(path: Path, data: bytes | BinaryIO, force: bool, mode: int | None = None) -> str:
    """A path the user named (`-o FILE`): its directory is reached as the user wrote it; the final
    component is never a symlink that gets followed or replaced."""
    path = Path(path)
    name = path.name
    if not name or name in (".", ".."):
        raise _err("is a directory", path)
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise _err(f"file name longer than {NAME_MAX} bytes", path)
    parent = path.parent
    try:
        dir_fd = os.open(parent, _DIR_FLAGS)
    except FileNotFoundError:
        raise _err("directory does not exist", parent) from None
    except NotADirectoryError:
        raise _err("not a directory", parent) from None
    except OSError as exc:
        raise _oserr(exc, parent, "cannot open directory") from None
    try:
        return write_at(dir_fd, name, data, path, force=force, mode=mode)
    finally:
        os.close(dir_fd)


def write_under(root: Path, rel: str, data: bytes, *, force: bool, mode: int | None = None,
                owner: tuple[int, int] | None = None, created: list[str] | None = None,
                create_dirs: bool = True) -> str:
    """root/rel written with the primitive, every component confined under root (no symlinks)."""
    where = Path(root) / rel
    fd, name = open_parent(root, rel, create=create_dirs, created=created)
    try:
        return write_at(fd, name, data, where, force=force, mode=mode, owner=owner, special=False)
    finally:
        os.close(fd)


def read_under(root: Path, rel: str, limit: int = 64 * 2**20) -> tuple[bytes, os.stat_result] | None:
    """(bytes, fstat) of the regular file root/rel, None when missing; refuses symlinks anywhere."""
    where = Path(root) / rel
    try:
        fd, name = open_parent(root, rel)
    except UsageError as exc:
        if exc.message == "directory does not exist":
            return None
        raise
    try:
        try:
            ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _err("is a symbolic link; refusing to follow it", where) from None
            raise _oserr(exc, where, "cannot read") from None
        try:
            st = os.fstat(ffd)
            if not stat.S_ISREG(st.st_mode):
                raise _err("not a regular file", where)
            if st.st_size > limit:
                raise _err(f"larger than {limit} bytes", where)
            chunks = []
            while True:
                b = os.read(ffd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
                if sum(map(len, chunks)) > limit:
                    raise _err(f"larger than {limit} bytes", where)
            return b"".join(chunks), st
        except OSError as exc:
            raise _oserr(exc, where, "cannot read") from None
        finally:
            os.close(ffd)
    finally:
        os.close(fd)


def remove_under(root: Path, rel: str) -> bool:
    """Unlink the regular file root/rel (confined); False when it is not there."""
    where = Path(root) / rel
    try:
        fd, name = open_parent(root, rel)
    except UsageError as exc:
        if exc.message == "directory does not exist":
            return False
        raise
    try:
        st = _lstat_at(fd, name)
        if st is None:
            return False
        if not stat.S_ISREG(st.st_mode):
            raise _err("not a regular file; refusing to remove it", where)
        os.unlink(name, dir_fd=fd)
        os.fsync(fd)
        return True
    except OSError as exc:
        raise _oserr(exc, where, "cannot remove") from None
    finally:
        os.close(fd)


def rmdir_under(root: Path, rel: str) -> bool:
    """Remove the empty directory root/rel (confined); False when it is missing or not empty."""
    try:
        fd, name = open_parent(root, rel)
    except UsageError:
        return False
    try:
        st = _lstat_at(fd, name)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return False
        os.rmdir(name, dir_fd=fd)
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
