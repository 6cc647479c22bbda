"""Conditioning-only reenactment and the bench report, through the CLI."""
import json

import numpy as np

import pytest

from h2h.app.bench import delivery_stats
from h2h.app.cli import main
from h2h.models.video import probe, read_frames


def test_conditioning_only_reenactment_writes_one_frame_per_source_frame(prepared, short_clip, tmp_path, capsys):
    library, _ = prepared
    out = tmp_path / "reenact.mp4"
    argv = ["reenact", "--avatar", "sample", "--source", str(short_clip), "--out", str(out), "--conditioning-only"]
    assert main([*argv, "--library", str(library)]) == 0
    info = probe(out)
    assert (info.width, info.height) == (4 * 256, 256)
    frames = list(read_frames(out))
    assert len(frames) == len(list(read_frames(short_clip)))
    nmfc = frames[5][:, 256:512]
    assert nmfc.any(-1).mean() > 0.05  # the driven face is drawn


def test_face_mode_and_unknown_avatar(prepared, short_clip, tmp_path, capsys):
    library, _ = prepared
    base = ["reenact", "--source", str(short_clip), "--conditioning-only", "--library", str(library)]
    assert main([*base, "--avatar", "sample", "--mode", "face", "--out", str(tmp_path / "f.mp4")]) == 0
    assert main([*base, "--avatar", "ghost", "--out", str(tmp_path / "g.mp4")]) == 1
    assert "no avatar" in capsys.readouterr().err


def test_bench_reports_every_face_stage(short_clip, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--source", str(short_clip), "--json", str(out), "--realtime"]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert set(report["stages_ms"]) == {"decode", "track", "fit", "retarget", "render", "eyes"}
    assert report["frames"] == report["threaded_frames"] > 0
    assert report["avatar"] is None and report["plain_loop_fps"] > 0
    assert all(v > 0 for v in report["stages_ms"].values())
    assert np.isclose(report["face_total_ms"], sum(report["stages_ms"][k] for k in ("track", "fit", "retarget", "render", "eyes")), atol=0.01)
    paced = report["realtime"]  # the clip played at its frame rate, as a camera would
    assert 0 < paced["delivered"] <= paced["frames"] == report["frames"] - paced["settle_frames"]
    assert paced["latency_ms_p50"] > 0 and paced["latency_ms_p95"] >= paced["latency_ms_p50"]


def test_bench_times_the_densefacereg_tracker(short_clip, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--source", str(short_clip), "--frames", "15", "--tracker", "densefacereg", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tracker"] == "densefacereg" and report["frames"] == report["threaded_frames"] == 15
    assert report["stages_ms"]["track"] > 0 and report["stages_ms"]["fit"] > 0  # a face was tracked on the timed frames


def test_paced_delivery_scores_drops_bursts_latency_and_jitter():
    def run(shown):  # 30 fps, 40 ms latency; the first 5 frames settle
        return [(i, i / 30, 40.0) for i in shown]

    every = delivery_stats(40, run(range(40)), settle=5)
    assert every["delivered_share"] == 1.0 and every["longest_drop_run"] == 0
    assert every["interval_ms_p50"] == pytest.approx(33.3, abs=0.1) and every["jitter_ms"] == pytest.approx(0.0, abs=0.1)
    even = delivery_stats(40, run(i for i in range(40) if i % 4), settle=5)  # one frame in four dropped, evenly
    burst = delivery_stats(40, run([*range(0, 14), *range(22, 40)]), settle=5)  # as many dropped at once
    assert even["delivered_share"] < 0.8 and even["delivered_share"] == pytest.approx(burst["delivered_share"], abs=0.03)
    assert even["longest_drop_run"] == 1 and burst["longest_drop_run"] == 8
    assert burst["jitter_ms"] > 2 * even["jitter_ms"]
    assert delivery_stats(3, [], settle=5)["delivered_share"] is None  # a clip shorter than the settling time
