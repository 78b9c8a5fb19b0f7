"""What a restore sets on an entry beyond its data: owner, attributes, ACLs, mode, times, flags.

One order for every entry, the one that cannot fail on its own work:
owner first (chown drops set-id bits and security.capability), then the
extended attributes and POSIX ACLs, then mode and times (setting an xattr
moves only ctime), then the project id, and the chattr flags last of all,
after every name of the file is made: once a file is immutable or
append-only nothing more can be done to it, a link to it included.

The seed's permission rule: an entry that had only mode bits, restored into
a directory with a default ACL, gets what that default ACL gives a new entry
of its mode (the kernel's rule for creating one), not the bare mode bits;
an entry that had ACLs gets them exactly, and loses any the target's
defaults gave it on creation. The parent's default ACL is read as the target
has it while files are restored: directories restored from media get their
own ACLs in stage 4, after their files, so a dumped tree restored into a
directory without defaults comes back as it was.

Birth times are kept on media and in the file history, but Linux has no call
that sets one: a restored entry is born when the restore makes it, and the
restore says so once. Project ids are set only when the target is the root
of a file system, as the seed restores qtree information only at a volume's
root; elsewhere the restore says they were not.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from dataclasses import dataclass, field

from ndmptools.engine import metadata
from ndmptools.engine.metadata import (
    EARLY_FLAGS,
    RESTORED_FLAGS,
    set_inode_flags,
    set_project_id,
    xattr_path,
)
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restoremarks import MARK_XATTR
from ndmptools.errors import FormatError
from ndmptools.format.header import InodeInfo
from ndmptools.format.xattr import (
    ACL_ACCESS,
    ACL_DEFAULT,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER_OBJ,
    AclEntry,
    ReadAttributes,
    format_acl,
    parse_acl,
)

_MARK = os.fsencode(MARK_XATTR)
_ACLS = (ACL_ACCESS, ACL_DEFAULT)
MAX_NAMED = 20  # entries named in warnings of one kind; the rest are counted


def inherited_acl(default: bytes, mode: int) -> tuple[bytes, int]:
    """The access ACL a new entry of ``mode`` gets under ``default``, and the mode bits that go with it.

    The kernel's rule (posix_acl_create): the owner, the mask (or, without
    one, the owning group) and others keep of the default only what the
    mode grants them; named entries are kept as they are.
    """
    entries = parse_acl(default)
    has_mask = any(e.tag == ACL_MASK for e in entries)
    user, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    result = []
    bits = {ACL_USER_OBJ: 0, ACL_GROUP_OBJ: 0, ACL_OTHER: 0}
    for e in entries:
        perm = e.perm
        if e.tag == ACL_USER_OBJ:
            perm &= user
        elif e.tag == ACL_MASK or (e.tag == ACL_GROUP_OBJ and not has_mask):
            perm &= group
        elif e.tag == ACL_OTHER:
            perm &= other
        result.append(AclEntry(e.tag, perm, e.id))
        if e.tag in (ACL_USER_OBJ, ACL_OTHER):
            bits[e.tag] = perm
        elif e.tag == ACL_MASK or (e.tag == ACL_GROUP_OBJ and not has_mask):
            bits[ACL_GROUP_OBJ] = perm
    mode_bits = (bits[ACL_USER_OBJ] << 6) | (bits[ACL_GROUP_OBJ] << 3) | bits[ACL_OTHER]
    return format_acl(result), mode_bits


@dataclass
class _Trouble:
    """Entries whose attributes of one kind could not be set: the first few by name, the rest counted."""

    named: int = 0
    more: int = 0


@dataclass
class AttributeSetter:
    """Sets the metadata of restored entries, in the order above, and says what it could not."""

    run: RunContext
    project_ids: bool  # the target is the root of a file system: project ids are set
    acls: bool = True  # EXTRACT_ACL=N: the ACLs on media are not set (entries get what a new one would)
    _parent_defaults: dict[int, bytes | None] = field(default_factory=dict)
    _trouble: dict[str, _Trouble] = field(default_factory=dict)
    _births = False
    _projects_left = 0

    # -- the steps ---------------------------------------------------------------------------

    def before_data(self, fd: int, info: InodeInfo) -> None:
        """Flags that take only on an empty file (no copy-on-write, compression), before the data."""
        if info.flags & EARLY_FLAGS:
            with suppress(OSError):  # tried again, and reported, with the other flags at the end
                set_inode_flags(fd, info.flags & EARLY_FLAGS)

    def apply(
        self,
        path: bytes,
        info: InodeInfo,
        attributes: ReadAttributes | None,
        *,
        fd: int | None = None,
        dir_fd: int | None = None,
        name: bytes = b"",
        parent_default: bytes | None = None,
        set_defaults: bool = False,
        drop_others: bool = False,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """Owner, attributes and ACLs, mode and times of one entry: by ``fd``, or by ``name`` in ``dir_fd``.

        ``parent_default`` is the default ACL of the directory it is restored
        into (None: none there, or the rule does not apply); ``set_defaults``:
        a directory, whose own default ACL is made to match the media's;
        ``drop_others``: an entry that was there before (a directory restore -r
        merges into), whose user.* and trusted.* attributes and ACLs that the
        media does not hold are removed, so that it ends as the dump has it.
        ``owner``: the (uid, gid) the entry has now, when known; no chown is
        asked when it is the one on media (a restore as root of root's files).
        """
        if info.birth_ns is not None:
            self._births = True
        where: int | bytes = fd if fd is not None else xattr_path(dir_fd, name)
        # RESTORES_OWNERS is looked up each time: a test may run a restore as nobody.
        if metadata.RESTORES_OWNERS and owner != (info.uid, info.gid):
            self._step(path, "owner", lambda: _chown(fd, dir_fd, name, info))
        if drop_others:
            self._drop_others(where, attributes, set_defaults, parent_default)
        mode = self._set_attributes(path, where, info, attributes, parent_default, set_defaults)
        self._step(path, "mode and times", lambda: _mode_and_times(fd, dir_fd, name, info, mode))

    def after_links(self, path: bytes, info: InodeInfo, fd: int) -> None:
        """Project id and chattr flags, once the entry has all its names: nothing is written to it after."""
        if info.project_id is not None:
            if self.project_ids:
                self._step(path, "project id", lambda: set_project_id(fd, info.project_id))
            else:
                self._projects_left += 1
        if info.flags & RESTORED_FLAGS:
            self._step(path, "chattr flags", lambda: set_inode_flags(fd, info.flags))

    def parent_default(self, parent: int, opener) -> bytes | None:
        """The default ACL of directory ``parent`` in the target (``opener`` gives its fd), once read."""
        if parent not in self._parent_defaults:
            try:
                with opener(parent) as dir_fd:
                    self._parent_defaults[parent] = os.getxattr(dir_fd, ACL_DEFAULT)
            except OSError:
                self._parent_defaults[parent] = None
        return self._parent_defaults[parent]

    def finish(self, target: str) -> None:
        """What the restore could not carry over, said once."""
        for kind, trouble in self._trouble.items():
            if trouble.more:
                self.run.warn(f"and {trouble.more} more entries whose {kind} could not be set")
        if self._projects_left:
            self.run.note(
                f"{self._projects_left} entries have project ids on media, not restored: {target} is not "
                "the root of a file system (they are restored only there)"
            )
        if self._births:
            self.run.note(
                "birth (creation) times are on media but Linux cannot set them: restored entries are "
                "born now (`restore -t --long` shows the originals)"
            )

    # -- inside --------------------------------------------------------------------------------

    def _set_attributes(
        self,
        path: bytes,
        where: int | bytes,
        info: InodeInfo,
        attributes: ReadAttributes | None,
        parent_default: bytes | None,
        set_defaults: bool,
    ) -> int:
        """The extended attributes and ACLs; returns the mode bits to set after them."""
        mode = stat.S_IMODE(info.mode)
        wanted = [(n, v) for n, v in (attributes.attributes if attributes else ()) if n != _MARK]
        if not self.acls:
            wanted = [(n, v) for n, v in wanted if n not in _ACLS]
        if attributes is not None and (attributes.unknown_indexes or attributes.damaged):
            self._warn(path, "attributes on media", "some of its extended attributes are unreadable on media")
        has_acl = any(n in _ACLS for n, _ in wanted)
        follow = isinstance(where, int)
        if not has_acl and parent_default is not None:
            try:
                access, bits = inherited_acl(parent_default, mode)
            except FormatError:
                access = None
            if access is not None:
                wanted.append((ACL_ACCESS, access))
                mode = (mode & 0o7000) | bits  # the mode the ACL gives; chmod must not undo it
        elif has_acl:
            present = {n for n, _ in wanted}
            for acl in _ACLS:
                if acl not in present and (acl == ACL_ACCESS or set_defaults):
                    with suppress(OSError):  # none there: nothing given on creation to take back
                        os.removexattr(where, acl, follow_symlinks=follow)
        for xname, value in wanted:
            try:
                os.setxattr(where, xname, value, follow_symlinks=follow)
            except OSError as err:
                kind = "ACLs" if xname in _ACLS else "extended attributes"
                self._warn(path, kind, f"its {os.fsdecode(xname)} could not be set: {err.strerror}")
        return mode

    def _drop_others(
        self,
        where: int | bytes,
        attributes: ReadAttributes | None,
        set_defaults: bool,
        parent_default: bytes | None,
    ) -> None:
        """Remove what an existing entry has and its dump does not (user.*, trusted.*, ACLs)."""
        follow = isinstance(where, int)
        keep = {os.fsencode(n) for n, _ in (attributes.attributes if attributes else ())}
        try:
            present = [os.fsencode(n) for n in os.listxattr(where, follow_symlinks=follow)]
        except OSError:
            return
        for name in present:
            if name in keep or name == _MARK:
                continue
            acl = (name == ACL_ACCESS and parent_default is None) or (name == ACL_DEFAULT and set_defaults)
            if acl or name.startswith((b"user.", b"trusted.")):
                with suppress(OSError):
                    os.removexattr(where, name, follow_symlinks=follow)

    def _step(self, path: bytes, what: str, action) -> None:
        try:
            action()
        except OSError as err:
            self._warn(path, what, f"restored, but its {what} could not be set: {err.strerror}")

    def _warn(self, path: bytes, kind: str, message: str) -> None:
        trouble = self._trouble.setdefault(kind, _Trouble())
        if trouble.named < MAX_NAMED:
            trouble.named += 1
            self.run.warn(f"{path.decode('utf-8', 'surrogateescape')}: {message}")
        else:
            trouble.more += 1


def _chown(fd: int | None, dir_fd: int | None, name: bytes, info: InodeInfo) -> None:
    if fd is not None:
        os.fchown(fd, info.uid, info.gid)
    else:
        os.chown(name, info.uid, info.gid, dir_fd=dir_fd, follow_symlinks=False)


def _mode_and_times(fd: int | None, dir_fd: int | None, name: bytes, info: InodeInfo, mode: int) -> None:
    """Mode, then times; by name, the mode only once lstat shows the entry is no symbolic link."""
    if fd is not None:
        os.fchmod(fd, mode)
        os.utime(fd, ns=(info.atime_ns, info.mtime_ns))
        return
    if not info.is_symlink:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(errno.ELOOP, "it turned into a symbolic link")
        os.chmod(name, mode, dir_fd=dir_fd)
    os.utime(name, ns=(info.atime_ns, info.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
