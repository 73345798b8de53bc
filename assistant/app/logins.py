"""The app's logins: a users file of hashed passwords in the data home, plus the one configured pair.

The users file, ``HOME/users.txt`` in the data home, holds one
``name:scrypt$n$r$p$salt$hash`` line per user, like an htpasswd file; ``#`` starts a
comment. Manage it with::

    python -m assistant.app add-user NAME      # asks for the password twice
    python -m assistant.app remove-user NAME
    python -m assistant.app users

The file is read again when it changes, so a user added or removed counts at the next
login, without a restart. Each login user sees only their own conversations.
"""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
from pathlib import Path

from assistant.app.common import USER_ERRORS
from assistant.errors import AssistantError
from assistant.settings import load_settings

USERS_FILE = "users.txt"  # in the data home
_NAME = re.compile(r"^[^\s:#][^\s:]{0,63}$")
_N, _R, _P = 2**14, 8, 1  # scrypt cost: about 16 MiB and 50 ms per check


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``password`` as the users file keeps it: ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` value), in constant time."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def _dummy() -> str:
    """A hash checked for unknown names, so they take as long as known ones."""
    return hash_password("", b"ragtune-dummy-salt")


def check_name(name: str) -> str:
    """``name`` when it can be a login name (1-64 characters, no spaces or ``:``).

    Raises:
        AssistantError: it cannot.
    """
    if not _NAME.match(name):
        raise AssistantError(f"login name {name!r}: use 1-64 characters without spaces or ':'")
    return name


def read_users(path: Path) -> dict[str, str]:
    """The users file as {name: hashed password} (empty when it does not exist).

    Raises:
        AssistantError: a line that is not ``name:scrypt$...``.
    """
    if not path.exists():
        return {}
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, stored = line.partition(":")
        if not _NAME.match(name) or not stored.startswith("scrypt$"):
            raise AssistantError(
                f"{path}:{number} is not `name:scrypt$...`: write users with `python -m assistant.app add-user NAME`"
            )
        users[name] = stored
    return users


def write_users(path: Path, users: dict[str, str]) -> None:
    """Replace the users file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    body = "# ragtune app logins: `python -m assistant.app add-user NAME` writes this file\n"
    body += "".join(f"{name}:{stored}\n" for name, stored in sorted(users.items()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, path)


def add_user(path: Path, name: str, password: str) -> bool:
    """Add login ``name`` (or change its password); returns whether it is new.

    Raises:
        AssistantError: a bad name, or an empty password.
    """
    check_name(name)
    if not password:
        raise AssistantError("the password is empty")
    users = read_users(path)
    new = name not in users
    users[name] = hash_password(password)
    write_users(path, users)
    return new


def remove_user(path: Path, name: str) -> None:
    """Remove login ``name`` (their kept conversations stay in the store).

    Raises:
        AssistantError: no such login.
    """
    users = read_users(path)
    if name not in users:
        raise AssistantError(f"no login {name!r} in {path}: see `python -m assistant.app users`")
    del users[name]
    write_users(path, users)


class Logins:
    """Who may log in: the users file (read again when it changes) and the configured pair.

    Args:
        path: The users file (None: none).
        pair: The ``username``/``password`` of the ``[app]`` settings (or their environment variables).
    """

    def __init__(self, path: Path | None, pair: tuple[str, str] | None = None) -> None:
        self.path, self.pair = path, pair
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}

    def users(self) -> dict[str, str]:
        """The users file's logins, read again when the file changed."""
        if self.path is None:
            return {}
        with self._lock:
            try:
                stat = self.path.stat()
                stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self._users = read_users(self.path) if stamp else {}
                self._stamp = stamp
            return self._users

    def __bool__(self) -> bool:
        """Whether a login is required at all."""
        return bool(self.pair) or bool(self.users())

    def check(self, username: str, password: str) -> bool:
        """Whether ``username`` and ``password`` are a login (compared in constant time)."""
        if self.pair is not None:
            good = hmac.compare_digest(username.encode(), self.pair[0].encode())
            good = hmac.compare_digest(password.encode(), self.pair[1].encode()) and good
            if good:
                return True
        users = self.users()
        if not users:
            return False
        stored = users.get(username)
        return verify_password(password, stored or _dummy()) and stored is not None


def main(argv: list[str] | None = None) -> int:
    """``python -m assistant.app add-user|remove-user NAME`` or ``users``: manage the app's users file."""
    parser = argparse.ArgumentParser(prog="python -m assistant.app", description="Manage the browser app's logins.")
    parser.add_argument(
        "action",
        choices=["add-user", "remove-user", "users"],
        help="add-user: add a login (or change its password); remove-user; users: list the logins",
    )
    parser.add_argument("name", nargs="?", help="the login name (add-user, remove-user)")
    parser.add_argument("--home", help="the data home (default: $RAGTUNE_HOME)")
    parser.add_argument("--config", help="a config file (default: HOME/config.toml when it exists)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin (scripts)"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, home=args.home)
        path = settings.home / USERS_FILE
        if args.action == "users":
            print("\n".join(read_users(path)) or f"no logins in {path}")
            return 0
        if not args.name:
            parser.error(f"{args.action} needs a NAME")
        if args.action == "remove-user":
            remove_user(path, args.name)
            print(f"removed {args.name} from {path}")
            return 0
        check_name(args.name)
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise AssistantError("the passwords differ")
        new = add_user(path, args.name, password)
        print(f"{'added' if new else 'changed the password of'} {args.name} in {path}")
        return 0
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
