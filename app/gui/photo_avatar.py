""""New avatar from photo…" and dropping photos on the window: a one-shot avatar made off the
GUI thread (h2h prepare PHOTO.jpg), then listed and selected."""
from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog, QLabel, QPushButton, QWidget

from ...models.library import avatar_dir
from ...models.oneshot_model import SHIPPED_ONESHOT
from ...models.manifest import MAX_PHOTOS
from ...models.photo_prepare import is_photo

PHOTO_FILTER = "Photos (*.jpg *.jpeg *.png *.bmp *.webp *.tif *.tiff)"


def name_for(photo: Path, library: Path) -> str:
    """An unused avatar name from the photo's file name (letters, digits, '_', '-', '.')."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", photo.stem).strip("-._")[:56] or "photo"  # starts with a letter or digit
    name, n = stem, 2
    while avatar_dir(library, name).exists():
        name, n = f"{stem}-{n}", n + 1
    return name


def photos_in(paths: list[Path]) -> list[Path]:
    return [p for p in paths if is_photo(p)]


class PhotoAvatarMaker:
    """Owns the button and the background job; `done(name)` is called on the GUI thread when
    an avatar was made, `status(text)` shows progress and errors."""

    def __init__(self, parent: QWidget, library: Callable[[], Path], done: Callable[[str], None], status: QLabel) -> None:
        self.parent, self.library, self.done, self.status = parent, library, done, status
        self.weights = SHIPPED_ONESHOT  # the person-generic generator the photos are bound to
        self.button = QPushButton("New avatar from photo…")
        self.button.setToolTip(f"One to {MAX_PHOTOS} photos of one person, or drop them on the window; no training needed")
        self.button.clicked.connect(self.choose)
        self._results: queue.Queue = queue.Queue()
        self._busy = False
        self._timer = QTimer(parent)
        self._timer.timeout.connect(self._poll)
        self._timer.start(100)

    def choose(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self.parent, "Photos of one person", str(Path.home()), PHOTO_FILTER)
        if files:
            self.make([Path(f) for f in files])

    def make(self, paths: list[Path]) -> bool:
        """Start making an avatar from `paths` (the photos among them); False when refused."""
        photos = photos_in(paths)
        if self._busy:
            self.status.setText("Still making the previous avatar from a photo; try again when it is listed.")
            return False
        if not photos:
            self.status.setText("Drop photos (JPEG, PNG, BMP, WebP or TIFF) to make an avatar from them.")
            return False
        if len(photos) > MAX_PHOTOS:
            self.status.setText(f"Give at most {MAX_PHOTOS} photos of one person ({len(photos)} were given).")
            return False
        library = self.library()
        name = name_for(photos[0], library)
        self._busy = True
        self.button.setEnabled(False)
        self.status.setText(f"Making avatar '{name}' from {len(photos)} photo{'s' if len(photos) > 1 else ''}… (about half a minute)")
        threading.Thread(target=self._work, args=(photos, library, name, self.weights), daemon=True).start()
        return True

    def _work(self, photos: list[Path], library: Path, name: str, weights: Path) -> None:
        from ...export.oneshot_export import make_photo_avatar

        try:
            result, _ = make_photo_avatar(photos, library, name, weights=weights)
            self._results.put((name, f"Avatar '{name}' made from {result.frames} photo(s) in {result.seconds:.0f} s.", None))
        except Exception as exc:  # shown to the user, never raised into Qt
            self._results.put((name, None, exc))

    def _poll(self) -> None:
        while not self._results.empty():
            name, text, error = self._results.get()
            self._busy = False
            self.button.setEnabled(True)
            if error is not None:
                self.status.setText(f"Could not make an avatar from the photo: {error}")
                continue
            self.done(name)
            self.status.setText(text)
