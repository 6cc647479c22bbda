"""The live app's main window (PySide6): avatar library, source, previews, controls, output."""
from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ...models.geometry.tracker import TRACKER_NAMES
from ...models.library import resolve_library
from ..background import BackgroundError, parse_background
from ..live import SAMPLE_CLIP
from ..session import AvatarEntry, LiveSession, available_avatars, landmarks_overlay, load_avatar
from ..sinks import OUTPUT_SIZES, VirtualCameraError
from ..sources import CameraSource, VideoFileSource, list_cameras
from .photo_avatar import PhotoAvatarMaker, photos_in

log = logging.getLogger(__name__)
PREVIEW = 256
BACKGROUND_CHOICES = {"Keep": "keep", "Blur": "blur", "Green": "color:00B140", "Blue": "color:0047BB", "White": "color:FFFFFF"}
IMAGE_CHOICE = "Image…"
SHORTCUTS = (
    ("Space", "start / stop"),
    ("Ctrl+Right", "next avatar"),
    ("Ctrl+Left", "previous avatar"),
    ("V", "virtual camera on / off"),
    ("R", "record on / off"),
    ("C", "recalibrate (take the neutral face and position from now)"),
    ("F1", "this help"),
)


def to_pixmap(image: np.ndarray, side: int) -> QPixmap:
    """RGB uint8 -> a QPixmap scaled to fit side x side."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimage).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


def thumbnail_icon(png: bytes | None) -> QIcon:
    """An icon from checked thumbnail bytes (never a path into an avatar folder)."""
    pixmap = QPixmap()
    if png is None or not pixmap.loadFromData(png, "PNG"):
        return QIcon()
    return QIcon(pixmap)


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings, library: Path | None = None, engine: str = "auto") -> None:
        super().__init__()
        self.settings = settings
        self.engine_choice = engine
        self.engine_device = "cpu"  # where a PyTorch engine runs (h2h live --device)
        self.library = Path(library or settings.value("library", "") or resolve_library(None))
        self.session = LiveSession(mode=str(settings.value("mode", "head")))
        self.entries: list[AvatarEntry] = []
        self._loads: queue.Queue = queue.Queue()
        self._loading: str | None = None
        self._start_pending = False
        self._restoring = False
        self.setWindowTitle("h2h live")
        self.setAcceptDrops(True)
        self._build()
        self._restore_controls()
        self.refresh_avatars(select=str(settings.value("avatar", "")) or None)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.timer.start(33)

    # ----- layout ---------------------------------------------------------------------
    def _build(self) -> None:
        root = QWidget()
        layout = QHBoxLayout(root)
        layout.addWidget(self._library_panel(), 0)
        layout.addWidget(self._preview_panel(), 1)
        layout.addWidget(self._controls_panel(), 0)
        self.setCentralWidget(root)
        self.fps_label, self.stage_label, self.engine_label, self.face_label = (QLabel() for _ in range(4))
        for label in (self.face_label, self.fps_label, self.stage_label, self.engine_label):
            self.statusBar().addPermanentWidget(label)
        self._actions()

    def _library_panel(self) -> QWidget:
        panel = QGroupBox("Avatars")
        box = QVBoxLayout(panel)
        self.avatar_list = QListWidget()
        self.avatar_list.setIconSize(QSize(64, 64))
        self.avatar_list.setMinimumWidth(230)
        self.avatar_list.currentRowChanged.connect(self._avatar_chosen)
        box.addWidget(self.avatar_list)
        self.library_label = QLabel()
        self.library_label.setWordWrap(True)
        box.addWidget(self.library_label)
        choose = QPushButton("Library folder…")
        choose.clicked.connect(self.choose_library)
        box.addWidget(choose)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("color: #8a4b00;")
        self.photo_maker = PhotoAvatarMaker(self, lambda: self.library, lambda name: self.refresh_avatars(select=name), self.banner)
        box.addWidget(self.photo_maker.button)
        box.addWidget(self.banner)
        self.export_button = QPushButton("Export to ONNX (faster)")
        self.export_button.clicked.connect(self.export_current)
        self.export_button.hide()
        box.addWidget(self.export_button)
        return panel

    def _preview_panel(self) -> QWidget:
        panel = QWidget()
        box = QVBoxLayout(panel)
        row = QHBoxLayout()
        self.source_view, self.cond_view, self.output_view = QLabel(), QLabel(), QLabel()
        for title, view, side in (("Source", self.source_view, PREVIEW), ("Conditioning", self.cond_view, PREVIEW), ("Avatar", self.output_view, PREVIEW + 128)):
            col = QVBoxLayout()
            col.addWidget(QLabel(title))
            view.setFixedSize(side, side)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view.setStyleSheet("background: #111; color: #bbb;")
            col.addWidget(view)
            col.addStretch(1)
            row.addLayout(col)
        box.addLayout(row)
        self.message = QLabel("Pick an avatar and a source, then press Start (Space).")
        self.message.setWordWrap(True)
        box.addWidget(self.message)
        box.addStretch(1)
        return panel

    def _slider(self, lo: int, hi: int, value: int) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(lo, hi)
        slider.setValue(value)
        slider.valueChanged.connect(self._controls_changed)
        return slider

    def _controls_panel(self) -> QWidget:
        panel = QWidget()
        box = QVBoxLayout(panel)
        source = QGroupBox("Source")
        form = QFormLayout(source)
        self.source_combo = QComboBox()
        form.addRow("Input", self.source_combo)
        browse = QPushButton("Video file…")
        browse.clicked.connect(self.choose_video)
        form.addRow("", browse)
        self.resolution_combo = QComboBox()
        self.resolution_combo.addItems(["640x480", "1280x720", "1920x1080"])
        form.addRow("Camera size", self.resolution_combo)
        self.mirror_check = QCheckBox("Mirror")
        form.addRow("", self.mirror_check)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["head", "face"])
        self.mode_combo.currentTextChanged.connect(self._mode_changed)
        form.addRow("Reenactment", self.mode_combo)
        self.tracker_combo = QComboBox()
        for kind, shown in TRACKER_NAMES.items():
            self.tracker_combo.addItem(shown, kind)
        self.tracker_combo.setToolTip("MediaPipe's face mesh, or the project's DenseFaceReg network (faster; MediaPipe still finds the face)")
        self.tracker_combo.currentIndexChanged.connect(lambda _: self._tracker_changed())
        form.addRow("Face tracker", self.tracker_combo)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.toggle_running)
        form.addRow(self.start_button)
        box.addWidget(source)

        controls = QGroupBox("Controls")
        form = QFormLayout(controls)
        self.lock_check = QCheckBox("Lock head pose")
        self.lock_check.toggled.connect(self._controls_changed)
        form.addRow(self.lock_check)
        self.yaw, self.pitch, self.roll = self._slider(-30, 30, 0), self._slider(-30, 30, 0), self._slider(-30, 30, 0)
        form.addRow("Yaw offset", self.yaw)
        form.addRow("Pitch offset", self.pitch)
        form.addRow("Roll offset", self.roll)
        self.expression = self._slider(0, 200, 100)
        form.addRow("Expression %", self.expression)
        self.gaze_check = QCheckBox("Look at the camera")
        self.gaze_check.toggled.connect(self._controls_changed)
        form.addRow(self.gaze_check)
        self.smoothing = self._slider(0, 100, 30)
        form.addRow("Smoothing", self.smoothing)
        recalibrate = QPushButton("Recalibrate (C)")
        recalibrate.clicked.connect(self.recalibrate)
        form.addRow(recalibrate)
        box.addWidget(controls)

        output = QGroupBox("Output")
        form = QFormLayout(output)
        self.size_combo = QComboBox()
        self.size_combo.addItems(list(OUTPUT_SIZES))
        form.addRow("Size", self.size_combo)
        self.vcam_check = QCheckBox("Virtual camera")
        self.vcam_check.toggled.connect(self.set_vcam)
        form.addRow(self.vcam_check)
        self.vcam_label = QLabel("off")
        self.vcam_label.setWordWrap(True)
        form.addRow("Status", self.vcam_label)
        self.record_button = QPushButton("Record…")
        self.record_button.clicked.connect(self.toggle_recording)
        form.addRow(self.record_button)
        self.background_choices = dict(BACKGROUND_CHOICES)  # name shown -> spec
        self.background_combo = QComboBox()
        self.background_combo.addItems(list(self.background_choices) + [IMAGE_CHOICE])
        self.background_combo.currentTextChanged.connect(self._background_changed)
        form.addRow("Background", self.background_combo)
        self.hires_check = QCheckBox("512x512 detail (learned upsampler)")
        self.hires_check.toggled.connect(self.set_hires)
        form.addRow(self.hires_check)
        self.overlay_check = QCheckBox("Show fps on the avatar")
        self.overlay_check.setChecked(True)
        form.addRow(self.overlay_check)
        box.addWidget(output)
        box.addStretch(1)
        self._fill_sources()
        return panel

    def _actions(self) -> None:
        for key, slot in (
            ("Space", self.toggle_running), ("Ctrl+Right", lambda: self.step_avatar(1)),
            ("Ctrl+Left", lambda: self.step_avatar(-1)), ("V", lambda: self.vcam_check.toggle()),
            ("R", self.toggle_recording), ("C", self.recalibrate), ("F1", self.show_help),
        ):
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slot)
            self.addAction(action)
        help_menu = self.menuBar().addMenu("&Help")
        shortcuts = help_menu.addAction("Keyboard shortcuts")
        shortcuts.triggered.connect(self.show_help)

    # ----- avatars --------------------------------------------------------------------
    def refresh_avatars(self, select: str | None = None) -> None:
        self.library_label.setText(f"Library: {self.library}")
        problems: list[str] = []
        self.entries = available_avatars(self.library, problems)
        self.banner.setText("Skipped (cannot be opened): " + " · ".join(problems) if problems else "")
        self.avatar_list.blockSignals(True)
        self.avatar_list.clear()
        for entry in self.entries:
            kind = "  (demo)" if entry.bundled else "  (one-shot)" if entry.oneshot else ""
            made_from = f"{entry.frames} photo{'s' if entry.frames > 1 else ''}" if entry.oneshot else f"{entry.frames} frames"
            label = f"{entry.name}{kind}\n{made_from} · {entry.engine}"
            item = QListWidgetItem(thumbnail_icon(entry.thumbnail), label)
            self.avatar_list.addItem(item)
        self.avatar_list.blockSignals(False)
        if not self.entries:
            self.message.setText(f"No avatars in {self.library}. Drop a photo here, make one with h2h prepare and h2h train, or choose another library folder.")
            return
        names = [e.name for e in self.entries]
        row = names.index(select) if select in names else next((i for i, e in enumerate(self.entries) if e.bundled), 0)
        self.avatar_list.setCurrentRow(row)

    def step_avatar(self, delta: int) -> None:
        if self.entries:
            self.avatar_list.setCurrentRow((self.avatar_list.currentRow() + delta) % len(self.entries))

    def _avatar_chosen(self, row: int) -> None:
        if not 0 <= row < len(self.entries):
            return
        entry = self.entries[row]
        if entry.engine == "none":
            self.banner.setText(f"'{entry.name}' has no trained generator yet: run h2h train {entry.name}.")
            return
        self._loading = entry.name
        self.message.setText(f"Loading {entry.name}…")
        threading.Thread(target=self._load_worker, args=(entry,), daemon=True).start()

    def _load_worker(self, entry: AvatarEntry) -> None:
        try:
            loaded = load_avatar(entry, self.engine_choice, self.engine_device)
            if self.session.hires:
                loaded.load_upsampler()  # off the GUI thread; a problem is said when applied
            self._loads.put((entry, loaded, None))
        except Exception as exc:  # shown to the user, never raised into Qt
            self._loads.put((entry, None, exc))

    def _apply_loaded(self) -> None:
        while not self._loads.empty():
            entry, loaded, error = self._loads.get()
            if entry.name != self._loading:
                continue  # a newer choice replaced it
            if error is not None:
                self.message.setText(f"Cannot load {entry.name}: {error}")
                continue
            self.session.set_avatar(loaded)
            self.settings.setValue("avatar", entry.name)
            engine = loaded.engine
            self.engine_label.setText(f"{engine.provider}, {engine.precision}")
            pytorch = engine.provider.startswith("PyTorch")
            self.banner.setText("Running the PyTorch generator (slow). Export it to ONNX for real time." if pytorch else "")
            self.export_button.setVisible(pytorch)
            problem = " ".join(p for p in (self.session.background_problem(), self.session.hires_problem()) if p)
            ready = f"Avatar {entry.name} ready." + ("" if self.session.running else " Press Start (Space).")
            self.message.setText(f"{ready} {problem}" if problem else ready)
            if self._start_pending and not self.session.running:
                self._start_pending = False
                self.toggle_running()

    def start_when_ready(self) -> None:
        """Start driving as soon as the chosen avatar has loaded."""
        if self.session.current is not None and not self.session.running:
            self.toggle_running()
        else:
            self._start_pending = True

    def export_current(self) -> None:
        entry = next((e for e in self.entries if e.name == self._loading), None)
        if entry is None:
            return
        self.export_button.setEnabled(False)
        self.banner.setText(f"Exporting {entry.name} to ONNX…")

        def work() -> None:
            from ...export.onnx_export import export_avatar
            from ...models.avatar import Avatar

            try:
                export_avatar(Avatar.open_path(entry.path))
                self._loads.put((entry, load_avatar(entry, self.engine_choice, self.engine_device), None))
            except Exception as exc:
                self._loads.put((entry, None, exc))

        threading.Thread(target=work, daemon=True).start()

    def choose_library(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Avatar library", str(self.library))
        if folder:
            self.set_library(Path(folder))

    def set_library(self, folder: Path) -> None:
        self.library = folder
        self.settings.setValue("library", str(folder))
        self.refresh_avatars()

    # ----- source ---------------------------------------------------------------------
    def _fill_sources(self) -> None:
        self.source_combo.clear()
        for camera in list_cameras():
            self.source_combo.addItem(camera.label, str(camera.index))
        self.source_combo.addItem(f"Sample clip ({SAMPLE_CLIP.name})", str(SAMPLE_CLIP))
        saved = str(self.settings.value("source", ""))
        if saved and self.source_combo.findData(saved) < 0 and (saved.isdigit() or Path(saved).exists()):
            self.source_combo.addItem(Path(saved).name, saved)
        if saved and self.source_combo.findData(saved) >= 0:
            self.source_combo.setCurrentIndex(self.source_combo.findData(saved))

    def choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Driving video", "", "Videos (*.mp4 *.mov *.avi *.mkv)")
        if path:
            self.set_source(path)

    def set_source(self, spec: str) -> None:
        index = self.source_combo.findData(spec)
        if index < 0:
            self.source_combo.addItem(Path(spec).name if not spec.isdigit() else f"Camera {spec}", spec)
            index = self.source_combo.count() - 1
        self.source_combo.setCurrentIndex(index)
        self.settings.setValue("source", spec)

    def _open_source(self):
        spec = self.source_combo.currentData()
        if spec is None:
            raise ValueError("no source: connect a webcam or choose a video file")
        if str(spec).isdigit():
            w, h = (int(v) for v in self.resolution_combo.currentText().split("x"))
            return CameraSource(int(spec), w, h, mirror=self.mirror_check.isChecked())
        return VideoFileSource(spec, loop=True, paced=True, mirror=self.mirror_check.isChecked())

    # ----- running --------------------------------------------------------------------
    def toggle_running(self) -> None:
        if self.session.running:
            self.session.stop()
            self.start_button.setText("Start")
            self.message.setText("Stopped.")
            return
        try:
            source = self._open_source()
            self.session.options = self._options()
            self.session.start(source)
        except Exception as exc:  # shown, not raised: the window stays usable
            self.message.setText(f"Cannot start: {exc}")
            return
        self.settings.setValue("source", str(self.source_combo.currentData()))
        self.start_button.setText("Stop")
        self.message.setText(f"Driving from {source.name}.")

    def _background_changed(self, choice: str) -> None:
        """Switch the background while running (it needs an avatar that predicts a mask)."""
        if choice != IMAGE_CHOICE:
            self.use_background(self.background_choices[choice])
            return
        path, _ = QFileDialog.getOpenFileName(self, "Background image", "", "Images (*.png *.jpg *.jpeg *.bmp *.webp)")
        if not path or not self.use_background(path):
            self._show_background_choice()  # cancelled or refused: the combo shows what is in use

    def use_background(self, spec: str) -> bool:
        """keep | blur | color:RRGGBB | an image path; False (with a message) when it cannot be used."""
        try:
            background = parse_background(spec)
        except BackgroundError as exc:
            self.message.setText(f"Cannot use that background: {exc}")
            return False
        problem = self.session.set_background(background)
        self.message.setText(problem or f"Background: {background.label}.")
        self._show_background_choice()
        return True

    def set_hires(self, on: bool) -> None:
        """512x512 output through the avatar's learned upsampler, switched while running."""
        problem = self.session.set_hires(on)
        self.message.setText(f"512x512 unavailable: {problem}" if problem else ("512x512 output on." if on else "Output at the avatar's own size."))

    def _show_background_choice(self) -> None:
        """Select what is in use in the combo (a colour from the command line gets its own entry)."""
        current = self.session.compositor.background
        names = {v: k for k, v in self.background_choices.items()}
        shown = IMAGE_CHOICE if current.kind == "image" else names.get(current.label)
        self.background_combo.blockSignals(True)
        if shown is None:
            shown = self.background_choices.setdefault(current.label, current.label)
            self.background_combo.insertItem(self.background_combo.count() - 1, shown)
        self.background_combo.setCurrentText(shown)
        self.background_combo.blockSignals(False)

    def use_tracker(self, kind: str) -> None:
        """Select tracker `kind` in the combo (which switches it, also while running)."""
        index = self.tracker_combo.findData(kind)
        if index >= 0:
            self.tracker_combo.setCurrentIndex(index)

    def _tracker_changed(self) -> None:
        kind = str(self.tracker_combo.currentData())
        problem = self.session.set_tracker(kind)
        if problem:
            self.message.setText(f"{problem}. Tracking stays with {TRACKER_NAMES[self.session.tracker]}.")
            self.tracker_combo.blockSignals(True)
            self.tracker_combo.setCurrentIndex(self.tracker_combo.findData(self.session.tracker))
            self.tracker_combo.blockSignals(False)
            return
        self.settings.setValue("tracker", kind)
        if not self._restoring:
            self.message.setText(f"Face tracker: {TRACKER_NAMES[kind]}.")

    def _mode_changed(self, mode: str) -> None:
        self.session.set_mode(mode)
        self.settings.setValue("mode", mode)

    def _options(self):
        from ...models.geometry.retarget import RetargetOptions

        return RetargetOptions(
            expression_scale=self.expression.value() / 100,
            pose_offset_deg=(float(self.yaw.value()), float(self.pitch.value()), float(self.roll.value())),
            lock_pose=self.lock_check.isChecked(),
            gaze_at_camera=self.gaze_check.isChecked(),
            smoothing=self.smoothing.value() / 100,
        )

    def _controls_changed(self) -> None:
        if self._restoring:
            return
        options = self._options()
        self.session.options = options
        if self.session.face is not None:
            current = self.session.face.options
            for field in ("expression_scale", "pose_offset_deg", "gaze_at_camera", "smoothing"):
                setattr(current, field, getattr(options, field))
            if current.lock_pose != options.lock_pose:
                current.lock_pose = options.lock_pose
                self.session.face.retargeter._locked = None
        for key, value in (
            ("lock", options.lock_pose), ("yaw", self.yaw.value()), ("pitch", self.pitch.value()),
            ("roll", self.roll.value()), ("expression", self.expression.value()),
            ("gaze", options.gaze_at_camera), ("smoothing", self.smoothing.value()),
        ):
            self.settings.setValue(f"controls/{key}", value)

    def _restore_controls(self) -> None:
        self._restoring = True
        try:
            self._restore_values()
        finally:
            self._restoring = False
        self._controls_changed()

    def _restore_values(self) -> None:
        s = self.settings
        as_bool = lambda v: str(v).lower() in ("true", "1")
        self.lock_check.setChecked(as_bool(s.value("controls/lock", False)))
        self.gaze_check.setChecked(as_bool(s.value("controls/gaze", False)))
        for slider, key, default in ((self.yaw, "yaw", 0), (self.pitch, "pitch", 0), (self.roll, "roll", 0),
                                     (self.expression, "expression", 100), (self.smoothing, "smoothing", 30)):
            slider.setValue(int(s.value(f"controls/{key}", default)))
        self.mirror_check.setChecked(as_bool(s.value("mirror", False)))
        self.mirror_check.toggled.connect(lambda v: self.settings.setValue("mirror", v))
        self.mode_combo.setCurrentText(str(s.value("mode", "head")))
        self.use_tracker(str(s.value("tracker", "mediapipe")))
        self.size_combo.setCurrentText(str(s.value("output_size", "1280x720")))
        self.size_combo.currentTextChanged.connect(self._size_changed)

    def _size_changed(self, text: str) -> None:
        self.settings.setValue("output_size", text)
        if self.vcam_check.isChecked():
            self.set_vcam(True)

    def recalibrate(self) -> None:
        self.session.recalibrate()
        self.message.setText("Recalibrating: look at the camera with a neutral face for a second.")

    # ----- output ---------------------------------------------------------------------
    def set_vcam(self, on: bool) -> None:
        if not on:
            self.session.close_vcam()
            self.vcam_label.setText("off")
            return
        size = OUTPUT_SIZES[self.size_combo.currentText()]
        try:
            cam = self.session.open_vcam(size, backend=str(self.settings.value("vcam/backend", "")) or None)
        except VirtualCameraError as exc:
            self.vcam_label.setText(f"unavailable, previewing only. {exc}")
            self.vcam_check.blockSignals(True)
            self.vcam_check.setChecked(False)
            self.vcam_check.blockSignals(False)
            return
        self.vcam_label.setText(f"on: {cam.backend} ({cam.device}), {size[0]}x{size[1]}")

    def toggle_recording(self) -> None:
        if self.session.recorder is not None:
            self.record_button.setText("Record…")
            try:
                recorder = self.session.stop_recording()
            except Exception as exc:
                self.message.setText(f"Recording failed: {exc}")
                return
            self.message.setText(f"Recorded {recorder.frames} frames to {recorder.path}.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Record to", "avatar.mp4", "MP4 video (*.mp4)")
        if path:
            self.start_recording(Path(path))

    def start_recording(self, path: Path) -> None:
        size = OUTPUT_SIZES[self.size_combo.currentText()]
        try:
            self.session.start_recording(path, size, 30.0, paced=True)
        except Exception as exc:
            self.message.setText(f"Cannot record: {exc}")
            return
        self.record_button.setText("Stop recording")

    def show_help(self) -> None:
        text = "\n".join(f"{key:12s} {what}" for key, what in SHORTCUTS)
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", text, QMessageBox.StandardButton.Close, self)
        box.setModal(False)
        box.open()
        self.help_box = box

    # ----- refresh --------------------------------------------------------------------
    def _tick(self) -> None:
        self._apply_loaded()
        if self.session.pipeline is not None and self.session.pipeline.error is not None:
            error = self.session.pipeline.error
            self.session.stop()
            self.start_button.setText("Start")
            self.message.setText(f"Stopped by an error: {error}. Press Start to try again.")
            return
        packet = self.session.latest()
        if packet is None or packet.output is None:
            return
        self.source_view.setPixmap(to_pixmap(landmarks_overlay(packet), PREVIEW))
        cond = np.where(packet.eyes.any(-1, keepdims=True), packet.eyes, packet.nmfc)
        self.cond_view.setPixmap(to_pixmap(cond, PREVIEW))
        output = packet.output
        fps = self.session.pipeline.stats.fps() if self.session.pipeline else 0.0
        if self.overlay_check.isChecked():
            import cv2

            output = output.copy()
            cv2.putText(output, f"{fps:4.1f} fps", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        self.output_view.setPixmap(to_pixmap(output, PREVIEW + 128))
        self.fps_label.setText(f"{fps:.1f} fps")
        self.stage_label.setText(self._stage_text())
        source_status = self.session.source.status if self.session.source else ""
        if "lost" in source_status:
            self.face_label.setText(source_status)
        elif packet.face_found:
            self.face_label.setText("face found")
        else:
            self.face_label.setText("No face in view: holding the last pose, then easing to neutral")

    def _stage_text(self) -> str:
        """Per-stage medians, capture-to-output latency p50/p95 and frames dropped so far."""
        pipeline = self.session.pipeline
        if pipeline is None:
            return ""
        stats = pipeline.stats
        parts = [" ".join(f"{k} {v:.0f}ms" for k, v in stats.medians().items() if k != "latency")]
        latency = stats.percentiles("latency")
        if latency is not None:
            parts.append(f"latency p50 {latency[0]:.0f} / p95 {latency[1]:.0f} ms")
        dropped, shown = pipeline.dropped, stats.delivered
        parts.append(f"dropped {dropped} ({100 * dropped / max(dropped + shown, 1):.1f}%)")
        return "  ·  ".join(parts)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if photos_in(dropped_paths(event)):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.photo_maker.make(dropped_paths(event)):
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.timer.stop()
        self.session.close()
        self.settings.sync()
        super().closeEvent(event)


def dropped_paths(event) -> list[Path]:
    """The local files of a drag-and-drop event."""
    data = event.mimeData()
    return [Path(url.toLocalFile()) for url in data.urls() if url.isLocalFile()] if data.hasUrls() else []


def fix_qt_plugin_path() -> None:
    """OpenCV points Qt at its own plugins; PySide6 must use its own."""
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if "cv2" in os.environ.get(var, ""):
            os.environ.pop(var)


def apply_cli_flags(window: MainWindow, args) -> None:
    """The command line's choices override the saved settings: avatar, source, mode, output
    size, virtual camera and recording (the engine is given to the window when it is made)."""
    if args.avatar:
        window.refresh_avatars(select=args.avatar)
        if args.avatar not in [e.name for e in window.entries]:
            window.message.setText(f"No avatar '{args.avatar}' in {window.library}; pick one from the list.")
    if args.source:
        window.set_source(args.source)
    elif window.source_combo.currentData() == str(SAMPLE_CLIP):
        window.message.setText("No webcam found: driving from the bundled sample clip. Press Start (Space).")
    if args.mode:
        window.mode_combo.setCurrentText(args.mode)
    if args.tracker:
        window.use_tracker(args.tracker)
    if args.size:
        window.size_combo.setCurrentText(args.size)
    if args.vcam:
        window.vcam_check.setChecked(True)
    if args.record:
        window.start_recording(Path(args.record))
    if getattr(args, "background", "keep") != "keep":
        window.use_background(args.background)


def run_gui(args) -> int:
    fix_qt_plugin_path()
    app = QApplication.instance() or QApplication([])
    settings = QSettings("h2h", "live")
    window = MainWindow(settings, Path(args.library) if args.library else None, args.engine)
    window.engine_device = args.device
    apply_cli_flags(window, args)
    window.resize(1280, 720)
    window.show()
    if args.start or args.source:
        QTimer.singleShot(500, window.start_when_ready)
    return app.exec()
