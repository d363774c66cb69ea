"""No-follow file operations below a folder that outsiders write to (an inbox, an upload folder).

Open the folder once (`open_root`: the caller's own path, followed like any path a user types),
then name everything inside it *relative to that descriptor*. Each name is looked up one
component at a time with ``O_NOFOLLOW`` (``openat``/``fstatat``/``renameat`` with ``dir_fd``), so
a symbolic link — to a file or to a folder, there before the run or swapped in during it — is
never followed: the caller gets `Unsafe`, which says what the thing is, and decides (file it
away, refuse, skip). `rename` moves a link itself, never its target.

    Unsafe                 a name that is a link or not the kind it must be (exit 3: refused)
    kind(st)               "a symbolic link", "a FIFO (named pipe)", ... for messages
    open_root(path)        descriptor of the folder (the caller closes it)
    at(dirfd, rel)         context manager: descriptor of a folder below, no links (create=True
                           makes missing folders)
    lstat(dirfd, rel)      the entry itself (a link is described, not followed)
    read_file(dirfd, rel)  (bytes, fstat) of a regular file with one name, read through its fd
    write_file(dirfd, rel, data)  a new file, atomically (exclusive temp name + rename)
    rename(sfd, src, dfd, dst)    move an entry (a link moves as a link)
    walk(dirfd)            every entry that is not a folder, (rel, lstat), real folders entered

`rel` is a relative path inside the folder ("sub/a.jpg"); an absolute path, ``..`` or an empty
name is refused (ValueError). A regular file with several names (a hard link) is refused by
`read_file` unless ``single_link=False``: its other name may lie anywhere on the file system.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from posterdb.core.errors import RefusedError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
SYMLINK = "a symbolic link: not followed"


class Unsafe(RefusedError):
    """`path` is a link, or not the kind of thing it must be; `reason` says what it is."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


def kind(st: os.stat_result) -> str:
    """What an entry is, for messages: "a folder", "a symbolic link", "a FIFO (named pipe)"..."""
    m = st.st_mode
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(m):
            return name
    return "not a regular file"


def not_regular(st: os.stat_result) -> str | None:
    """Why an entry is not a plain file to read (None: it is one, with a single name)."""
    if stat.S_ISLNK(st.st_mode):
        return SYMLINK
    if not stat.S_ISREG(st.st_mode):
        return f"{kind(st)}, not a regular file: not read"
    if st.st_nlink > 1:
        return (f"a hard link (the same file has {st.st_nlink} names): not read; copy the file "
                "in instead")
    return None


def _parts(rel) -> list[str]:
    parts = [p for p in PurePosixPath(os.fspath(rel)).parts if p not in ("", ".")]
    if any(p in ("..", "/") for p in parts):
        raise ValueError(f"{rel}: not a plain relative path")
    return parts


def open_root(path) -> int:
    """Descriptor of the folder `path` (its own components are followed: the caller named it).
    FileNotFoundError / NotADirectoryError / PermissionError as the OS says."""
    return os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _open_dir(dirfd: int, name: str, shown: str, create: bool, mode: int) -> int:
    for _ in range(3):
        try:
            return os.open(name, _DIR, dir_fd=dirfd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, mode, dir_fd=dirfd)
            except FileExistsError:
                pass
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue         # gone in between: look again
            raise Unsafe(shown, f"{kind(st)}, not a folder: not followed") from None
    raise Unsafe(shown, "keeps changing while opened")


@contextmanager
def at(dirfd: int, rel="", *, create: bool = False, mode: int = 0o755,
       shown: str = "") -> Iterator[int]:
    """Descriptor of the folder `rel` below `dirfd` (`dirfd` itself, duplicated, for ""),
    closed on exit. Every component must be a real folder (`Unsafe` names the first that is
    not); `create`: missing ones are made. `shown`: how messages name `dirfd`'s folder."""
    fd = os.dup(dirfd)
    try:
        here = shown
        for name in _parts(rel):
            here = f"{here}/{name}" if here else name
            nxt = _open_dir(fd, name, here, create, mode)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def lstat(dirfd: int, rel, *, shown: str = "") -> os.stat_result:
    """The entry `rel` itself (a link is described, not followed); FileNotFoundError if absent."""
    parts = _parts(rel)
    if not parts:
        return os.fstat(dirfd)
    with at(dirfd, "/".join(parts[:-1]), shown=shown) as parent:
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)


def lexists(dirfd: int, rel, *, shown: str = "") -> bool:
    try:
        lstat(dirfd, rel, shown=shown)
        return True
    except FileNotFoundError:
        return False


def read_file(dirfd: int, rel, *, max_bytes: int | None = None, single_link: bool = True,
              shown: str = "") -> tuple[bytes, os.stat_result]:
    """(up to `max_bytes` of the bytes, fstat) of the regular file `rel`, read through one
    no-follow descriptor; `Unsafe` for a link, a FIFO, a device, a socket, a folder, or (with
    `single_link`) a file with several names. FIFOs and devices are never opened for reading
    data: the descriptor is opened non-blocking and checked with fstat first."""
    parts = _parts(rel)
    if not parts:
        raise ValueError("read_file needs a file name")
    where = "/".join(p for p in (shown, *parts) if p)

    def check(st: os.stat_result) -> None:
        why = not_regular(st)
        if why and (single_link or not stat.S_ISREG(st.st_mode)):
            raise Unsafe(where, why)

    with at(dirfd, "/".join(parts[:-1]), shown=shown) as parent:
        check(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False))  # devices: never opened
        try:
            fd = os.open(parts[-1], _FILE, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
                raise
            check(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False))
            raise Unsafe(where, f"cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        check(st)      # what was opened, in case the name was swapped after the first look
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while max_bytes is None or total < max_bytes:
            b = os.read(fd, 1 << 20 if max_bytes is None else min(1 << 20, max_bytes - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def write_file(dirfd: int, rel, data: bytes, *, mode: int = 0o644, shown: str = "") -> None:
    """Write a new file `rel` atomically: an exclusive temp name in its folder (``O_EXCL``: no
    link is followed), then one rename over the name (a link there is replaced, not followed)."""
    parts = _parts(rel)
    with at(dirfd, "/".join(parts[:-1]), shown=shown) as parent:
        tmp = f".posterdb-{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.close(fd)
            fd = -1
            os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=parent)
            except OSError:
                pass
            raise


def rename(src_dirfd: int, src, dst_dirfd: int, dst, *, shown_src: str = "",
           shown_dst: str = "") -> None:
    """Move entry `src` (below `src_dirfd`) to `dst` (below `dst_dirfd`, whose folders must
    exist). The entry moves as it is: a link stays a link; an entry already at `dst` is replaced
    (as rename(2) does), a folder there makes it fail."""
    s, d = _parts(src), _parts(dst)
    with at(src_dirfd, "/".join(s[:-1]), shown=shown_src) as sp, \
            at(dst_dirfd, "/".join(d[:-1]), shown=shown_dst) as dp:
        os.rename(s[-1], d[-1], src_dir_fd=sp, dst_dir_fd=dp)


def walk(dirfd: int, *, enter: Callable[[str], bool] = lambda rel: True,
         max_depth: int = 32) -> Iterator[tuple[str, os.stat_result]]:
    """(rel, lstat) of every entry below `dirfd` that is not a real folder — files, links (to
    files or folders), FIFOs, sockets, devices — sorted by name, a folder's own entries before
    its sub-folders'. Real folders for which `enter(rel)` is true are entered through no-follow
    descriptors, down to `max_depth` levels; unreadable folders are skipped."""

    def one(fd: int, prefix: str, depth: int) -> Iterator[tuple[str, os.stat_result]]:
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        subdirs = []
        for e in entries:
            rel = f"{prefix}{e.name}"
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue           # gone since listed
            if stat.S_ISDIR(st.st_mode):
                if depth < max_depth and enter(rel):
                    subdirs.append((e.name, rel))
            else:
                yield rel, st
        for name, rel in subdirs:
            try:
                sub = os.open(name, _DIR, dir_fd=fd)
            except OSError:        # swapped for a link (or gone) since listed: next pass
                continue
            try:
                yield from one(sub, rel + "/", depth + 1)
            finally:
                os.close(sub)

    yield from one(dirfd, "", 0)
