"""The offline simulator: oracle answers, and a whole tiny run through the command line."""

import json

import numpy as np
import pytest
from PIL import Image

from dbsal_backend.constants import IGNORE_INDEX
from dbsal_backend.simulate import Oracle, StepRecord, aggregate, main, mean_selected_fraction, miou_at


def _scene(rng, h=32, w=48):
    """A synthetic street-like scene: background 0, a red box (1), a blue disc (2), void border."""
    img = np.zeros((h, w, 3), np.uint8) + rng.integers(20, 60)
    lbl = np.zeros((h, w), np.uint8)
    y, x = rng.integers(2, h - 14), rng.integers(2, w - 14)
    img[y:y + 10, x:x + 10] = (200, 30, 30)
    lbl[y:y + 10, x:x + 10] = 1
    cy, cx = rng.integers(6, h - 6), rng.integers(6, w - 6)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
    img[disc] = (30, 30, 210)
    lbl[disc] = 2
    lbl[0, :] = 9  # void, remapped to the ignore index by --ignore-value 9
    img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
    return img, lbl


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 4)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            img, lbl = _scene(rng)
            Image.fromarray(img).save(root / split / "images" / f"s{i:02d}.png")
            Image.fromarray(lbl).save(root / split / "labels" / f"s{i:02d}.png")
    return root


def test_oracle_full_answers_ground_truth_inside_queried_superpixels():
    gt = np.array([[0, 1, 1], [2, 2, IGNORE_INDEX]], np.uint8)
    sp = np.array([[0, 0, 1], [2, 2, 1]], np.int32)
    oracle = Oracle([gt], [sp], mode="full")
    out = oracle.regions(0, [1])
    assert out.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 1], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert np.array_equal(oracle.whole_image(0), gt)


def test_oracle_dominant_gives_one_class_per_superpixel():
    gt = np.array([[0, 1, 1, 1], [IGNORE_INDEX] * 4], np.uint8)
    sp = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.int32)
    oracle = Oracle([gt], [sp], mode="dominant", n_classes=3)
    out = oracle.regions(0, [0, 1])
    # superpixel 0: majority class 1 everywhere; superpixel 1: no labeled pixel -> ignored
    assert out.tolist() == [[1, 1, 1, 1], [IGNORE_INDEX] * 4]


def test_oracle_rejects_bad_mode():
    with pytest.raises(ValueError, match="oracle mode"):
        Oracle([], [], mode="nope")


def test_aggregate_and_interpolation():
    recs = {0: [StepRecord(0, 2, 10, 100, 0.1, 0.2), StepRecord(1, 4, 15, 150, 0.15, 0.4)],
            1: [StepRecord(0, 2, 10, 100, 0.1, 0.4), StepRecord(1, 4, 15, 150, 0.15, 0.6)]}
    rows = aggregate({"dbsal": recs})["dbsal"]
    assert [r["miou"] for r in rows] == pytest.approx([0.3, 0.5])
    assert miou_at(rows, 0.125) == pytest.approx(0.4)
    assert miou_at(rows, 0.5) is None


def test_mean_selected_fraction():
    recs = [StepRecord(1, 0, 0, 0, 0, 0, [3, 1], [0.3, 0.1])]
    assert mean_selected_fraction(recs) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        mean_selected_fraction([StepRecord(0, 0, 0, 0, 0, 0)])


def test_simulator_end_to_end(dataset, tmp_path):
    out = tmp_path / "sim.json"
    result = main([
        "--data", str(dataset), "--n-classes", "3", "--ignore-value", "9",
        "--strategies", "dbsal", "static", "random", "full", "--seeds", "0",
        "--arch", "unet", "--pretrained", "false", "--init-images", "2", "--step-size", "2",
        "--steps", "2", "--epochs-initial", "3", "--epochs-step", "2", "--epochs-full", "2",
        "--mc-samples", "3", "--n-segments", "24", "--batch-size", "2",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ])
    saved = json.loads(out.read_text())
    assert (tmp_path / "sim.png").stat().st_size > 1000
    assert set(saved["strategies"]) == {"dbsal", "static", "random", "full"}
    for name in ("dbsal", "static", "random"):
        rows = saved["strategies"][name]
        assert [r["step"] for r in rows] == [0, 1, 2]
        for key in ("images", "superpixels", "pixels_fraction", "miou"):
            assert all(key in r for r in rows)
        # the budget only grows, and mIoU is a fraction
        assert all(a["pixels_fraction"] < b["pixels_fraction"] for a, b in zip(rows, rows[1:]))
        assert all(0.0 <= r["miou"] <= 1.0 for r in rows)
    # same seed set for every strategy: step 0 spends the same budget
    assert len({saved["strategies"][n][0]["pixels_fraction"] for n in ("dbsal", "static", "random")}) == 1
    # superpixel strategies spend less than whole images per selected image
    assert saved["strategies"]["dbsal"][2]["pixels_fraction"] < saved["strategies"]["random"][2]["pixels_fraction"]
    assert saved["strategies"]["full"][0]["pixels_fraction"] == 1.0
    assert 0 < saved["settings"]["static_fraction_used"] <= 1
    assert saved["dbsal_selected_per_image"]["median"] >= 1
    assert result["settings"]["pool_images"] == 10
    # the plot can be redrawn from the results alone
    (tmp_path / "sim.png").unlink()
    again = main(["--replot", str(out)])
    assert again["strategies"] == saved["strategies"]
    assert (tmp_path / "sim.png").stat().st_size > 1000


def test_simulator_requires_data(capsys):
    with pytest.raises(SystemExit):
        main(["--strategies", "dbsal"])
    assert "--data and --n-classes are required" in capsys.readouterr().err


def test_simulator_is_repeatable(dataset, tmp_path):
    args = ["--data", str(dataset), "--n-classes", "3", "--ignore-value", "9",
            "--strategies", "dbsal", "--seeds", "3", "--arch", "unet", "--pretrained", "false",
            "--init-images", "2", "--step-size", "2", "--steps", "1", "--epochs-initial", "1",
            "--epochs-step", "1", "--mc-samples", "2", "--n-segments", "24", "--batch-size", "2",
            "--cache-dir", str(tmp_path / "cache")]
    a = main(args + ["--out", str(tmp_path / "a.json")])
    b = main(args + ["--out", str(tmp_path / "b.json")])
    assert a["strategies"] == b["strategies"]
