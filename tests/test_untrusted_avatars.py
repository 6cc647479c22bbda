"""Avatar folders and packages someone sends are untrusted: every tampered input below is
built for real and must give a one-line error naming the file (or a safe fallback), never a
traceback, a hang, a read outside the folder or code run from the folder."""
import json
import logging
import os
import shutil
import stat

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from h2h.app.cli import main
from h2h.app.session import available_avatars
from h2h.engines import EngineError, engine_status, load
from h2h.models.avatar import Avatar, AvatarError

LIVE = ["live", "--headless", "--frames", "2"]


@pytest.fixture
def lib(exported, tmp_path):
    """A fresh library holding a full copy of the exported sample avatar as 'x'."""
    library, _ = exported
    shutil.copytree(library / "sample", tmp_path / "x", ignore=shutil.ignore_patterns("checkpoints", "preview"))
    _edit_manifest(tmp_path / "x", lambda m: m.update(name="x"))
    return tmp_path


def _edit_manifest(folder, change):
    manifest = json.loads((folder / "avatar.json").read_text())
    change(manifest)
    (folder / "avatar.json").write_text(json.dumps(manifest))


def _one_line_error(argv, capsys, code=1) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("h2h ")]
    assert len(lines) == 1, err
    return lines[0]


def _live(lib, short_clip) -> list[str]:
    return [*LIVE, "--avatar", "x", "--source", str(short_clip), "--library", str(lib)]


MANIFESTS = {
    "camera block empty": (lambda m: m.update(camera={}), "camera.scale_mean"),
    "string in the camera block": (lambda m: m["camera"].update(scale_mean="large"), "camera.scale_mean"),
    "camera vector too short": (lambda m: m["camera"].update(translation_mean=[1.0, 2.0]), "camera.translation_mean"),
    "resolution 7": (lambda m: m.update(resolution=7), "resolution 7"),
    "resolution -256": (lambda m: m.update(resolution=-256), "resolution -256"),
    "split past the last frame": (lambda m: m["split"].update(test=[24, 99]), "split.test [24, 99]"),
    "empty split": (lambda m: m["split"].update(test=[50, 10]), "split.test [50, 10]"),
    "fps infinite": (lambda m: m.update(fps=float("inf")), "'fps'"),
    "fps NaN": (lambda m: m.update(fps=float("nan")), "'fps'"),
    "fps zero": (lambda m: m.update(fps=0), "'fps'"),
    "fps negative": (lambda m: m.update(fps=-5), "'fps'"),
    "frame count as a string": (lambda m: m["counts"].update(frames="36"), "counts.frames"),
    "crop box of two numbers": (lambda m: m.update(crop_box=[0, 0]), "crop_box"),
    "name of another folder": (lambda m: m.update(name="other"), "names the avatar 'other'"),
    "name with a trailing newline": (lambda m: m.update(name="x\n"), "'name'"),
    "missing field": (lambda m: m.pop("split"), "'split'"),
    "not an object": (lambda m: m.clear(), "'format'"),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_tampered_manifest_is_a_one_line_error(lib, short_clip, capsys, case):
    change, expected = MANIFESTS[case]
    _edit_manifest(lib / "x", change)
    line = _one_line_error(_live(lib, short_clip), capsys)
    assert "avatar.json" in line and expected in line


def test_infinite_fps_no_longer_hangs_reenact(lib, short_clip, tmp_path, capsys):
    _edit_manifest(lib / "x", lambda m: m.update(fps=float("inf")))
    argv = ["reenact", "--avatar", "x", "--source", str(short_clip), "--out", str(tmp_path / "o.mp4"), "--library", str(lib)]
    assert "'fps'" in _one_line_error(argv, capsys)


def _save_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _tracks(lib):
    with np.load(lib / "x" / "tracks.npz") as data:
        return {k: data[k] for k in data.files}


ARRAYS = {
    "tracks.npz that is a plain .npy": (lambda lib: np.save(open(lib / "x" / "tracks.npz", "wb"), np.zeros(3)), "single array"),
    "truncated identity.npz": (
        lambda lib: (lib / "x" / "identity.npz").write_bytes((lib / "x" / "identity.npz").read_bytes()[:200]), "identity.npz"),
    "identity of the wrong shape": (lambda lib: _save_npz(lib / "x" / "identity.npz", neutral=np.zeros((467, 3), np.float32)), "467"),
    "pickled object array": (
        lambda lib: _save_npz(lib / "x" / "tracks.npz", **dict(_tracks(lib), valid=np.array([{"a": 1}] * 36, dtype=object))), "pickle"),
    "NaN rotations": (lambda lib: _save_npz(lib / "x" / "tracks.npz", **dict(_tracks(lib), rotation=np.full((36, 3, 3), np.nan))), "NaN"),
    "tracks of another frame count": (
        lambda lib: _save_npz(lib / "x" / "tracks.npz", **{k: v[:20] for k, v in _tracks(lib).items()}), "expected"),
    "missing track array": (lambda lib: _save_npz(lib / "x" / "tracks.npz", **{k: v for k, v in _tracks(lib).items() if k != "pupils"}), "'pupils'"),
}


@pytest.mark.parametrize("case", list(ARRAYS))
def test_damaged_arrays_are_a_one_line_error(lib, short_clip, capsys, case):
    damage, expected = ARRAYS[case]
    damage(lib)
    line = _one_line_error(_live(lib, short_clip), capsys)
    assert ".npz" in line and expected in line


def test_symlinks_are_refused_everywhere(lib, short_clip, tmp_path, capsys):
    outside = tmp_path / "secret.txt"
    outside.write_text("not for avatars")
    (lib / "x" / "thumbnail.png").unlink()
    (lib / "x" / "thumbnail.png").symlink_to(outside)
    entry = next(e for e in available_avatars(lib) if e.name == "x")
    assert entry.thumbnail is None  # listed, but the link is never read
    line = _one_line_error(["package", "x", "--out", str(tmp_path / "pk"), "--library", str(lib)], capsys)
    assert "thumbnail.png" in line and "symbolic link" in line
    assert not (tmp_path / "pk" / "x").exists()

    onnx_file = lib / "x" / "engines" / "generator.onnx"
    onnx_file.rename(tmp_path / "real.onnx")
    onnx_file.symlink_to(tmp_path / "real.onnx")
    assert "symbolic link" in _one_line_error(_live(lib, short_clip), capsys)


def test_a_linked_avatar_folder_or_manifest_is_refused(lib, tmp_path, capsys):
    (lib / "linked").symlink_to(lib / "x")
    assert "linked" not in [e.name for e in available_avatars(lib)]
    with pytest.raises(AvatarError, match="symbolic link"):
        Avatar.open(lib, "linked")
    manifest = lib / "x" / "avatar.json"
    manifest.rename(tmp_path / "avatar.json")
    manifest.symlink_to(tmp_path / "avatar.json")
    with pytest.raises(AvatarError, match="symbolic link"):
        Avatar.open(lib, "x")


def test_a_fifo_in_the_folder_cannot_hang_a_read(lib, tmp_path, capsys):
    (lib / "x" / "thumbnail.png").unlink()
    os.mkfifo(lib / "x" / "thumbnail.png")
    assert Avatar.open(lib, "x").thumbnail() is None
    line = _one_line_error(["package", "x", "--out", str(tmp_path / "pk"), "--library", str(lib)], capsys)
    assert "not a regular file" in line


def _generator_graph(size=256, external=None, names=("cond", "prev", "frame"), corr=None) -> bytes:
    """A tiny ONNX with the generator step's interface; `external` makes its one weight point
    at a file by path (as a malicious avatar would); `corr`: channels of a one-shot step's
    correspondence input."""
    cond = helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, 18, size, size])
    prev = helper.make_tensor_value_info(names[1], TensorProto.FLOAT, [1, 6, size, size])
    extra = [helper.make_tensor_value_info("corr", TensorProto.FLOAT, [1, corr, size, size])] if corr else []
    frame = helper.make_tensor_value_info(names[2], TensorProto.FLOAT, [1, 3, size, size])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 18, 1, 1], np.ones(18, np.float32))
    if external:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "72")):
            weight.external_data.add(key=key, value=value)
    conv = helper.make_node("Conv", [names[0], "w"], ["one"])
    tile = helper.make_node("Concat", ["one", "one", "one"], [names[2]], axis=1)
    graph = helper.make_graph([conv, tile], "g", [cond, prev, *extra], [frame], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def _planted(packaged, library, model: bytes) -> None:
    """A copy of the packaged sample in `library` with `model` as its engine (checksum updated)."""
    import hashlib

    shutil.copytree(packaged / "sample", library / "sample")
    folder = library / "sample"
    (folder / "engines" / "generator.onnx").write_bytes(model)
    sums = json.loads((folder / "checksums.json").read_text())
    sums["files"]["engines/generator.onnx"] = hashlib.sha256(model).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(sums))


@pytest.mark.parametrize("case,model,expected", [
    ("external data outside the folder", _generator_graph(external="../../../../../etc/passwd"), "external data"),
    ("external data beside the model", _generator_graph(external="weights.bin"), "external data"),
    ("another graph's inputs", _generator_graph(names=("x", "y", "z")), "not the generator step"),
    ("another resolution", _generator_graph(size=128), "1xCx256x256"),
    ("not ONNX at all", b"\x00garbage" * 100, "not an ONNX model"),
    ("a correspondence that is not 3 channels a photo", _generator_graph(corr=4), "3 channels"),
    ("a correspondence for more photos than an avatar can have", _generator_graph(corr=3000), "3 channels"),
])
def test_unsafe_or_foreign_onnx_is_refused(packaged, tmp_path, caplog, case, model, expected):
    _planted(packaged, tmp_path, model)
    avatar = Avatar.open(tmp_path, "sample")
    with pytest.raises(EngineError, match=expected):
        load(avatar, "onnx")
    with pytest.raises(EngineError, match=expected):
        load(avatar)  # auto: no checkpoint in a package, so nothing else to fall back to


def test_a_correspondence_engine_in_an_avatar_without_photos_is_refused_with_a_message(packaged, tmp_path):
    """A video avatar whose engine asks for photos' correspondence: loading says so (the GUI
    shows it), and the engine runs whatever correspondence a frame carries (none, or one
    rendered for the avatar before a switch)."""
    from h2h.app.session import load_avatar

    _planted(packaged, tmp_path, _generator_graph(corr=3))
    entry = next(e for e in available_avatars(tmp_path) if e.name == "sample")
    with pytest.raises(AvatarError, match="expects 1 photos"):
        load_avatar(entry)
    engine = load(Avatar.open(tmp_path, "sample"), "onnx")
    cond, prev = np.ones((1, 18, 256, 256), np.float32), np.zeros((1, 6, 256, 256), np.float32)
    for corr in (None, np.ones((1, 6, 256, 256), np.float32), np.ones((1, 3, 256, 256), np.float32)):
        assert engine.run(cond, prev, corr).shape == (1, 3, 256, 256)


def test_the_plain_generator_onnx_passes_the_check(exported):
    from h2h.engines.onnx_check import check_generator_onnx

    _, avatar = exported
    check_generator_onnx((avatar.path / "engines" / "generator.onnx").read_bytes(), 256, "generator.onnx")
    model = onnx.load_model_from_string((avatar.path / "engines" / "generator.onnx").read_bytes())
    assert model.graph.initializer  # weights inside the file


def test_a_plan_in_an_avatar_folder_is_never_deserialized(exported, tmp_path, monkeypatch):
    """On a machine with TensorRT, plans come only from the per-user cache, and only ones whose
    parity check passed there."""
    from h2h.engines import tensorrt_engine as trt
    from h2h.engines.cache import EngineKey, engine_path, write_record

    _, avatar = exported
    monkeypatch.setenv("H2H_CACHE", str(tmp_path / "cache"))
    key_of = lambda onnx, precision, kind="generator": EngineKey("Test GPU", (8, 9), "10.9", trt.bytes_sha256(onnx), precision, kind)  # noqa: E731
    onnx = (avatar.path / "engines" / "generator.onnx").read_bytes()
    planted = avatar.path / "engines" / key_of(onnx, "fp16").filename()
    planted.write_bytes(b"a serialized engine is code")
    deserialized = []

    class RecordingEngine:
        provider, precision, sequential = "TensorRT", "fp16", True

        def __init__(self, plan, precision="fp16", sequential=True):
            deserialized.append((plan, precision))

    monkeypatch.setattr(trt, "tensorrt_missing", lambda: None)
    monkeypatch.setattr(trt, "current_key", key_of)
    monkeypatch.setattr(trt, "TensorRTEngine", RecordingEngine)
    try:
        assert engine_status(avatar) == "ONNX"  # the planted plan does not count
        assert load(avatar).provider.startswith("ONNX Runtime")  # live never builds one itself
        with pytest.raises(EngineError, match="h2h export NAME --trt"):
            load(avatar, "trt")
        built = engine_path(key_of(onnx, "fp32"))  # as h2h export --trt --fp32 leaves it
        built.parent.mkdir(parents=True)
        built.write_bytes(b"built and checked here")
        write_record(built, "rejected", detail="drifted")
        assert engine_status(avatar) == "ONNX"  # a rejected build is never used
        write_record(built, "passed", max_abs_error=1e-4)
        assert engine_status(avatar) == "TensorRT"
        assert load(avatar).provider == "TensorRT"  # the fp32 engine is picked up too
        assert deserialized == [(built, "fp32")]
        assert planted.read_bytes() == b"a serialized engine is code"
    finally:
        planted.unlink()


def test_a_package_holds_checked_regular_files_others_can_read(packaged):
    folder = packaged / "sample"
    sums = json.loads((folder / "checksums.json").read_text())["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"checksums.json"}
    assert set(sums) == on_disk
    assert not any(name.endswith(".plan") or "cache" in name for name in on_disk)
    assert not (folder / "frames").exists() and not (folder / "checkpoints").exists()
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path, oct(mode))  # group and others can read it
    avatar = Avatar.open(packaged, "sample")
    assert avatar.live_only and load(avatar).provider.startswith("ONNX Runtime")


def test_a_file_changed_after_packaging_is_a_clear_error(packaged, tmp_path, short_clip, capsys):
    shutil.copytree(packaged / "sample", tmp_path / "sample")
    onnx_file = tmp_path / "sample" / "engines" / "generator.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\x00")
    argv = [*LIVE, "--avatar", "sample", "--source", str(short_clip), "--library", str(tmp_path)]
    line = _one_line_error(argv, capsys)
    assert "generator.onnx" in line and "changed after packaging" in line
    (tmp_path / "sample" / "checksums.json").unlink()
    assert "checksums.json" in _one_line_error(argv, capsys)


def test_a_file_added_to_a_package_is_not_read(packaged, tmp_path, caplog):
    shutil.copytree(packaged / "sample", tmp_path / "sample")
    (tmp_path / "sample" / "engines" / "generator.int8.onnx").write_bytes(b"added later")
    with caplog.at_level(logging.INFO):
        engine = load(Avatar.open(tmp_path, "sample"))
    assert engine.precision == "fp32" and "not part of the package" in caplog.text


def test_package_is_named_after_the_avatar_asked_for_and_never_replaces_other_folders(exported, tmp_path, capsys):
    library, _ = exported
    out = tmp_path / "out"
    (out / "sample").mkdir(parents=True)
    (out / "sample" / "my-notes.txt").write_text("keep me")
    line = _one_line_error(["package", "sample", "--out", str(out), "--overwrite", "--library", str(library)], capsys)
    assert "not an avatar" in line and (out / "sample" / "my-notes.txt").exists()
    assert main(["package", "sample", "--out", str(tmp_path / "ok"), "--library", str(library)]) == 0
    assert main(["package", "sample", "--out", str(tmp_path / "ok"), "--overwrite", "--library", str(library)]) == 0
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["sample"]


def test_int8_that_is_garbage_or_stale_falls_back_to_fp32_with_the_reason(exported, tmp_path, caplog):
    library, _ = exported
    shutil.copytree(library / "sample", tmp_path / "sample", ignore=shutil.ignore_patterns("checkpoints", "frames", "conditioning"))
    engines = tmp_path / "sample" / "engines"
    parent = json.loads((engines / "generator.onnx.json").read_text())["onnx_sha256"]
    meta = {"from": "generator.onnx", "parent_onnx_sha256": parent, "psnr_vs_fp32_db": 40.0}
    (engines / "generator.int8.onnx").write_bytes(b"garbage")
    (engines / "generator.int8.onnx.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO):
        assert load(Avatar.open(tmp_path, "sample")).precision == "fp32"
    assert "int8 skipped" in caplog.text and "not an ONNX model" in caplog.text
    caplog.clear()
    shutil.copy(library / "sample" / "engines" / "generator.onnx", engines / "generator.int8.onnx")
    (engines / "generator.int8.onnx.json").write_text(json.dumps(dict(meta, parent_onnx_sha256="f" * 64)))
    with caplog.at_level(logging.INFO):
        assert load(Avatar.open(tmp_path, "sample")).precision == "fp32"
    assert "stale" in caplog.text
    (engines / "generator.int8.onnx.json").write_text(json.dumps(dict(meta, psnr_vs_fp32_db=20.0)))
    assert load(Avatar.open(tmp_path, "sample")).precision == "fp32"  # failed its gate
    (engines / "generator.int8.onnx.json").write_text(json.dumps(meta))
    assert load(Avatar.open(tmp_path, "sample")).precision == "int8"  # current and good: used


def test_reenact_accepts_a_package_and_says_what_needs_the_full_folder(packaged, short_clip, tmp_path, capsys):
    argv = ["reenact", "--avatar", "sample", "--source", str(short_clip), "--library", str(packaged), "--frames", "6"]
    assert main([*argv, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b.mp4"), "--conditioning-only"]) == 0
    line = _one_line_error(["reenact", "--avatar", "sample", "--mode", "self", "--out", str(tmp_path / "c.mp4"),
                            "--library", str(packaged)], capsys)
    assert "live-only package" in line
    assert "live-only package" in _one_line_error(["eval", "sample", "--library", str(packaged)], capsys)
    assert "live-only package" in _one_line_error(["train", "sample", "--library", str(packaged)], capsys)


def test_names_with_a_newline_and_runs_that_leave_the_folder_are_refused(exported, short_clip, capsys):
    library, _ = exported
    line = _one_line_error(["prepare", str(short_clip), "--name", "x\n", "--library", str(library)], capsys)
    assert "invalid avatar name" in line
    with pytest.raises(SystemExit) as exited:
        main(["train", "sample", "--run", "../../x", "--library", str(library)])
    assert exited.value.code == 2 and "invalid run name" in capsys.readouterr().err
    assert not (library.parent / "x").exists()


class _Payload:
    """Unpickling this would run code (create a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_in_a_checkpoint_is_never_run(exported, tmp_path, capsys):
    library, _ = exported
    marker = tmp_path / "pwned"
    folder = library / "sample" / "checkpoints" / "evil"
    folder.mkdir(parents=True)
    import torch

    torch.save({"generator": _Payload(marker), "train_config": {}}, folder / "state.pt")
    line = _one_line_error(["train", "sample", "--preset", "tiny", "--run", "evil", "--resume", "--library", str(library)], capsys)
    assert "not a readable h2h checkpoint" in line and not marker.exists()
    shutil.rmtree(folder)


def _function_with_hidden_external_data() -> bytes:
    """The generator interface, whose one node calls a model-local function holding an If
    whose branch has an initializer naming an outside file (found by review)."""
    secret = helper.make_tensor("secret", TensorProto.FLOAT, [1], [0.0])
    secret.ClearField("float_data")
    secret.data_location = TensorProto.EXTERNAL
    secret.external_data.add(key="location", value="sub/secret.bin")
    branch = helper.make_graph([], "then", [], [helper.make_tensor_value_info("secret", TensorProto.FLOAT, [1])], [secret])
    other = helper.make_graph([helper.make_node("Constant", [], ["z"], value_float=0.0)], "else", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [])])
    body = [helper.make_node("If", ["flag"], ["out"], then_branch=branch, else_branch=other)]
    function = helper.make_function("evil", "Leak", ["flag"], ["out"], body, [helper.make_opsetid("", 18)])
    model = onnx.load_model_from_string(_generator_graph())
    model.functions.append(function)
    model.graph.node.append(helper.make_node("Leak", ["flag"], ["leak"], domain="evil"))
    return model.SerializeToString()


def _ep_context() -> bytes:
    """A com.microsoft EPContext node: it embeds a compiled engine (code) for an execution provider."""
    model = onnx.load_model_from_string(_generator_graph())
    model.graph.node.append(helper.make_node("EPContext", ["cond"], ["ctx"], domain="com.microsoft", embed_mode=1, ep_cache_context="plan"))
    return model.SerializeToString()


@pytest.mark.parametrize("model,expected", [
    (_function_with_hidden_external_data(), "external data"),
    (_ep_context(), "com.microsoft"),
])
def test_external_data_or_engines_hidden_deeper_are_refused(model, expected):
    from h2h.engines.onnx_check import check_generator_onnx

    with pytest.raises(EngineError, match=expected):
        check_generator_onnx(model, 256, "generator.onnx")


def test_a_link_planted_in_a_run_folder_stops_training_before_it_writes(exported, tmp_path, capsys):
    library, _ = exported
    outside = tmp_path / "notes.txt"
    outside.write_text("mine")
    run = library / "sample" / "checkpoints" / "planted"
    run.mkdir(parents=True)
    (run / "log.csv").symlink_to(outside)
    try:
        argv = ["train", "sample", "--preset", "tiny", "--run", "planted", "--max-steps", "10", "--library", str(library)]
        assert "symbolic link" in _one_line_error(argv, capsys)
        assert outside.read_text() == "mine" and not (run / "state.pt").exists()
    finally:
        shutil.rmtree(run)


def test_one_damaged_folder_does_not_hide_the_others(lib):
    (lib / "x" / "engines").rename(lib / "elsewhere")
    (lib / "x" / "engines").symlink_to(lib / "elsewhere")
    problems = []
    names = [e.name for e in available_avatars(lib, problems)]
    assert "x" not in names and "d6" in names
    assert problems and problems[0].startswith("x: ") and "symbolic link" in problems[0]


def _npz_with_header_only(path, key, shape):
    """An .npz whose member declares a huge array in its header (a few bytes on disk)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{key}.npy", header.getvalue())


def test_sizes_are_checked_before_anything_big_is_read(lib, short_clip, capsys):
    _npz_with_header_only(lib / "x" / "identity.npz", "neutral", (100_000_000, 3))
    line = _one_line_error(_live(lib, short_clip), capsys)
    assert "identity.npz" in line and "expected float 468x3" in line
    meta = lib / "x" / "checkpoints" / "main" / "generator.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"config": {"n_blocks_encoder": 10_000_000}}))
    (meta.parent / "generator.safetensors").write_bytes(b"")
    with pytest.raises(EngineError, match="n_blocks_encoder"):
        load(Avatar.open(lib, "x", arrays=False), "torch")


def test_deeply_nested_json_is_a_clear_error(lib, short_clip, capsys, caplog):
    deep = "[" * 100_000 + "]" * 100_000
    (lib / "x" / "engines" / "generator.onnx.json").write_text(deep)
    with caplog.at_level(logging.WARNING):
        assert load(Avatar.open(lib, "x")).provider.startswith("ONNX Runtime")
    assert "generator.onnx.json" in caplog.text
    (lib / "x" / "avatar.json").write_text(deep)
    assert "avatar.json" in _one_line_error(_live(lib, short_clip), capsys)


def test_a_negative_seed_is_refused_up_front(exported, capsys):
    library, _ = exported
    with pytest.raises(SystemExit):
        main(["train", "sample", "--seed", "-1", "--library", str(library)])
    assert "--seed" in capsys.readouterr().err
