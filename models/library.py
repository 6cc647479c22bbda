"""The avatar library: where avatar folders live and how names map to them."""
from __future__ import annotations

import os
import re
from pathlib import Path

LIBRARY_ENV = "H2H_LIBRARY"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LibraryError(Exception):
    """A library or avatar name problem; the message says what to do."""


def default_library() -> Path:
    """$H2H_LIBRARY, else the per-user data folder (e.g. ~/.local/share/h2h/avatars)."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("h2h", appauthor=False)) / "avatars"


def resolve_library(path: str | Path | None) -> Path:
    return Path(path).expanduser() if path else default_library()


def check_name(name: str) -> str:
    """Reject names that are not a plain folder name (no paths, no hidden folders)."""
    if not _NAME.match(name or ""):
        raise LibraryError(
            f"invalid avatar name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def avatar_dir(library: Path, name: str) -> Path:
    return library / check_name(name)


def ensure_writable(library: Path) -> None:
    """Create the library if needed and prove we can write there."""
    try:
        library.mkdir(parents=True, exist_ok=True)
        probe = library / ".h2h-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LibraryError(
            f"cannot write to the avatar library {library} ({exc.strerror or exc}); "
            f"pass --library DIR or set {LIBRARY_ENV} to a writable folder"
        ) from exc


def list_avatars(library: Path) -> list[str]:
    """Names of the folders in the library that hold an avatar.json."""
    if not library.is_dir():
        return []
    return sorted(p.name for p in library.iterdir() if _NAME.match(p.name) and (p / "avatar.json").is_file())
