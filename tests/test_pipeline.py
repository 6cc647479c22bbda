"""The threaded live pipeline: order when keeping up, newest-wins when overloaded, no-face path."""
import json
import shutil
import time

import numpy as np
import pytest

from h2h.app.pipeline import FaceStage, GeneratorStage, Pipeline
from h2h.engines.base import generator_specs
from h2h.models.avatar import Avatar
from h2h.models.video import read_frames


class FailingEngine:
    provider, precision, sequential = "test", "fp32", True

    def run(self, cond, prev):
        raise RuntimeError("engine exploded")


def test_a_failing_stage_stops_the_pipeline_and_reports_it(prepared, model, short_clip):
    library, _ = prepared
    frames = list(read_frames(short_clip, 10))
    pipeline = Pipeline(iter(frames), _stage(library, model), GeneratorStage(FailingEngine()), [], realtime=False)
    pipeline.start()
    pipeline.join(20)
    assert not any(t.is_alive() for t in pipeline._threads)  # nothing hangs in offline mode
    assert isinstance(pipeline.error, RuntimeError)


class SlowEngine:
    """A stand-in generator that takes `delay` seconds and returns mid-grey."""

    provider, precision, sequential = "test", "fp32", True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inputs, self.outputs = generator_specs(256)

    def run(self, cond, prev):
        time.sleep(self.delay)
        return np.zeros((1, 3, 256, 256), np.float32)


def _stage(library, model):
    avatar = Avatar.open(library, "sample")
    return FaceStage(model, avatar.subject, "head")


def _paced(frames, interval):
    for f in frames:
        time.sleep(interval)
        yield f


def _in_step(frames, seen, patience=10.0):
    """A camera that never outruns the pipeline: frame i comes once frame i-1 reached the sink."""
    for i, f in enumerate(frames):
        deadline = time.perf_counter() + patience
        while len(seen) < i and time.perf_counter() < deadline:
            time.sleep(0.002)
        yield f


def test_every_frame_arrives_in_order_when_the_pipeline_keeps_up(prepared, model, short_clip):
    library, _ = prepared
    frames = list(read_frames(short_clip, 20))
    seen = []
    pipeline = Pipeline(_in_step(frames, seen), _stage(library, model), GeneratorStage(SlowEngine(0.005)), [lambda p: seen.append(p.index)])
    pipeline.start().wait()
    assert seen == list(range(20)) and pipeline.dropped == 0


def test_overloaded_pipeline_drops_oldest_frames_and_never_blocks_capture(prepared, model, short_clip):
    library, _ = prepared
    frames = list(read_frames(short_clip, 30))
    seen = []
    pipeline = Pipeline(_paced(frames, 0.01), _stage(library, model), GeneratorStage(SlowEngine(0.08)), [lambda p: seen.append(p.index)])
    started = time.perf_counter()
    pipeline.start()
    while pipeline.captured < 30 and time.perf_counter() - started < 5:
        time.sleep(0.01)
    capture_seconds = time.perf_counter() - started
    pipeline.wait()
    assert pipeline.captured == 30 and pipeline.error is None
    assert capture_seconds < 30 * 0.08  # capture ran ahead of the 80 ms generator
    assert pipeline.dropped > 0 and len(seen) < 30
    assert seen == sorted(seen) and seen[-1] == 29  # newest wins, order kept


def test_lost_face_holds_then_eases_to_neutral(prepared, model, short_clip):
    library, _ = prepared
    stage = _stage(library, model)
    from h2h.app.pipeline import Packet

    frame = next(iter(read_frames(short_clip, 1)))
    blank = np.full_like(frame, 128)
    first = stage.process(Packet(0, 0.0, frame))
    held = stage.process(Packet(1, 0.1, blank))
    eased = stage.process(Packet(2, 3.0, blank))
    stage.close()
    assert first.face_found and not held.face_found and not eased.face_found
    assert np.array_equal(first.nmfc, held.nmfc)  # held briefly
    assert eased.nmfc.any() and not np.array_equal(first.nmfc, eased.nmfc)  # then neutral, still a face


def test_videos_are_h264_that_players_and_browsers_open(tmp_path):
    import av

    from h2h.models.video import VideoWriter, read_frames

    frames = [np.full((64, 96, 3), v, np.uint8) for v in range(0, 250, 25)]
    with VideoWriter(tmp_path / "a.mp4", 25.0, (96, 64)) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec == "h264"
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    decoded = list(read_frames(tmp_path / "a.mp4"))
    assert len(decoded) == len(frames)
    assert all(abs(int(d.mean()) - int(f.mean())) <= 3 for d, f in zip(decoded, frames))


def test_without_an_h264_encoder_videos_fall_back_to_mp4v_with_a_note(tmp_path, monkeypatch, caplog):
    import av

    from h2h.models.video import VideoWriter, read_frames

    monkeypatch.setattr(av.codec, "codecs_available", frozenset(c for c in av.codec.codecs_available if "264" not in c))
    with VideoWriter(tmp_path / "b.mp4", 25.0, (96, 64)) as writer:
        writer.write(np.zeros((64, 96, 3), np.uint8))
    assert writer.codec == "mp4v" and "as mp4v" in caplog.text
    assert len(list(read_frames(tmp_path / "b.mp4"))) == 1


def test_a_slow_encoder_never_holds_up_a_paced_recording_and_the_file_keeps_real_time(tmp_path, monkeypatch):
    from h2h.app.sinks import Recorder
    from h2h.models.video import VideoWriter, read_frames

    write = VideoWriter.write
    monkeypatch.setattr(VideoWriter, "write", lambda self, rgb: (time.sleep(0.02), write(self, rgb)))
    recorder = Recorder(tmp_path / "paced.mp4", (64, 64), 25.0, paced=True)
    waits = []
    for k in range(60):  # 60 frames at 100 fps, each stamped with its capture time: 0.6 s of video
        started = time.perf_counter()
        recorder.send(np.full((32, 32, 3), 4 * k, np.uint8), timestamp=k / 100)
        waits.append(time.perf_counter() - started)
    recorder.close()
    assert max(waits) < 0.01  # a 20 ms encoder: send only queues
    assert recorder.left_out > 0  # the encoder fell behind and frames were left out ...
    assert recorder.frames == len(list(read_frames(tmp_path / "paced.mp4"))) == 15  # ... yet 0.6 s at 25 fps


def test_an_unpaced_recording_keeps_every_frame_in_order(tmp_path):
    from h2h.app.sinks import Recorder
    from h2h.models.video import read_frames

    recorder = Recorder(tmp_path / "all.mp4", (64, 64), 25.0)
    for k in range(40):
        recorder.send(np.full((32, 32, 3), 5 * k, np.uint8))
    recorder.close()
    decoded = list(read_frames(tmp_path / "all.mp4"))
    assert recorder.frames == len(decoded) == 40 and recorder.left_out == 0
    assert all(abs(int(d.mean()) - 5 * k) <= 3 for k, d in enumerate(decoded))


def test_a_recording_that_cannot_be_written_says_so_and_does_not_hang(tmp_path, monkeypatch):
    from h2h.app.sinks import Recorder, RecordingError
    from h2h.models.video import VideoWriter

    def full_disk(self, rgb):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(VideoWriter, "write", full_disk)
    recorder = Recorder(tmp_path / "full.mp4", (64, 64), 25.0)
    with pytest.raises(RecordingError, match="full.mp4.*No space left"):
        for _ in range(50):
            recorder.send(np.zeros((32, 32, 3), np.uint8))
            time.sleep(0.005)
    with pytest.raises(RecordingError):
        recorder.close()


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 0.0, -3.0])
def test_a_video_cannot_be_written_at_a_nonsense_frame_rate(tmp_path, fps):
    from h2h.models.video import VideoError, VideoWriter

    with pytest.raises(VideoError, match="frames per second"):
        VideoWriter(tmp_path / "c.mp4", fps, (64, 64))


def test_each_avatar_gets_the_eye_sketch_it_was_trained_on(prepared, model, tmp_path):
    """New avatars (conditioning version 3) have brows in their sketches and the eye detail in
    their meshes, in prepare's images, in training and live; an avatar made before brows
    (version 1: no version in its avatar.json) keeps its brow-less sketches."""
    from h2h.app.pipeline import Packet
    from h2h.models.geometry.eyes import BROW_COLOR

    library, _ = prepared
    shutil.copytree(library / "sample", tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "avatar.json").read_text())
    del manifest["conditioning"]
    (tmp_path / "old" / "avatar.json").write_text(json.dumps(dict(manifest, name="old")))
    new, demo = Avatar.open(library, "sample"), Avatar.open(tmp_path, "old")
    assert new.brows and new.manifest["conditioning"] == 3 and not demo.brows
    assert new.subject.eye_detail and not demo.subject.eye_detail
    has_brows = lambda eyes: np.all(eyes == BROW_COLOR, -1).sum() > 20  # noqa: E731
    assert has_brows(new.read_image("eyes", 0))
    from .conftest import SAMPLE_CLIP

    frame = next(read_frames(SAMPLE_CLIP))
    stage = FaceStage(model, new.subject, "head", brows=new.brows)
    try:
        assert has_brows(stage.process(Packet(0, 0.0, frame)).eyes)
        stage.set_target(demo.subject, demo.poses(demo.split_indices("train")), brows=demo.brows)  # switch avatars live
        assert not has_brows(stage.process(Packet(1, 0.033, frame)).eyes)
    finally:
        stage.close()


def test_the_face_tracker_switches_between_frames_and_a_failed_switch_keeps_the_old_one(model, short_clip, monkeypatch):
    from h2h.app import pipeline
    from h2h.app.bench import _default_target

    frames = list(read_frames(short_clip, 4))
    face = FaceStage(model, _default_target())
    try:
        assert face.process(pipeline.Packet(0, 0.0, frames[0])).face_found
        face.set_tracker("densefacereg")
        assert face.process(pipeline.Packet(1, 0.03, frames[1])).face_found and face.tracker == "densefacereg"

        def broken(kind, video_mode=True):
            raise RuntimeError("no such provider")

        monkeypatch.setattr(pipeline, "create_tracker", broken)
        face.set_tracker("mediapipe")
        assert face.process(pipeline.Packet(2, 0.06, frames[2])).face_found and face.tracker == "densefacereg"
    finally:
        face.close()
