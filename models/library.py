"""The avatar library: where avatar folders live and how names map to them."""
from __future__ import annotations

import os
import re
from pathlib import Path

LIBRARY_ENV = "H2H_LIBRARY"
NAME_BODY = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAME_PATTERN = f"^(?:{NAME_BODY})$"  # for pydantic (Rust regex: '$' is the end of the text)
_NAME = re.compile(NAME_BODY)
PARTIAL_MARK = ".partial-"  # prepare builds an avatar in .<name>.partial-<pid>-<random> beside it
BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "demo"  # the demo avatars shipped with the app


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


def check_name(name: str, what: str = "avatar name") -> str:
    """Reject names that are not a plain folder name (no paths, no hidden folders, no newline)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LibraryError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def check_run_name(run: str) -> str:
    """Training run names are folder names under checkpoints/, checked like avatar names."""
    return check_name(run, "run name")


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
    return sorted(
        p.name for p in library.iterdir()
        if _NAME.fullmatch(p.name) and not p.is_symlink() and (p / "avatar.json").is_file()
    )
