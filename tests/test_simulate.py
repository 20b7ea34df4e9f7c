"""The offline simulator: the product's step, the simulated annotator, results and the CLI."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dbsal_backend import simulator

from dbsal_backend.engine import active

from dbsal_backend.server import compute

from dbsal_backend.server import context
from dbsal_backend.engine.data import load_split
from dbsal_backend.server.settings import Settings
from dbsal_backend.engine.training import FINE_TUNE, Recipe
from dbsal_backend.simulator import (STRATEGIES, SimConfig, SimulatedStep, Simulation, aggregate,
                                     clicks_to_reach, combine, compare_at_clicks, main)
from dbsal_backend.simulator import loop
from dbsal_backend.engine import start
from dbsal_backend.engine.selection import random_images

ROW_KEYS = {"step", "images", "regions", "corrections", "clicks", "cai_clicks",
            "pixels_fraction", "miou",
            "miou_std", "seeds", "regions_per_image_median", "prelabel_accuracy"}


def _scene(rng, h=32, w=48):
    """Background 0, a red box (1), a blue disc (2), a void top row."""
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
    lbl[0, :] = 9
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


def args(dataset, tmp_path, *extra):
    return ["--data", str(dataset), "--n-classes", "3", "--ignore-value", "9",
            "--arch", "unet", "--pretrained", "false", "--init-images", "2",
            "--images-per-step", "2", "--steps", "2", "--first-epochs", "2", "--epochs", "1",
            "--full-epochs", "1", "--mc-samples", "2", "--max-side", "48", "--batch-size", "2",
            "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *extra]


def test_the_simulator_runs_the_products_step():
    assert loop.active_step is active.active_step is compute.active_step
    assert context.make_compute is compute.make_compute
    default = STRATEGIES["default"]
    settings = Settings.model_validate({})
    assert default.policy == settings.query_policy(polygons=True) == STRATEGIES["capped"].policy
    assert default.superpixels == settings.slic_params() == STRATEGIES["capped"].superpixels
    brush = STRATEGIES["default_brush"]
    assert brush.policy == settings.query_policy(polygons=False) == STRATEGIES["class"].policy
    # default_balanced is what DBSAL_CLASS_BALANCED=true makes of the backend's step
    balanced = Settings.model_validate({"class_balanced": True})
    assert STRATEGIES["default_balanced"].policy == balanced.query_policy(polygons=True)
    assert STRATEGIES["default_balanced"].policy != default.policy


def test_simulator_end_to_end(dataset, tmp_path):
    out = tmp_path / "sim.json"
    result = main(args(dataset, tmp_path, "--strategies", "default", "dbsal", "static",
                       "random", "full", "--seeds", "0", "1", "--default", "default",
                       "--out", str(out)))
    saved = json.loads(out.read_text())
    assert saved["default_strategy"] == "default" and saved["settings"]["seeds"] == [0, 1]
    assert "approxPolyDP" in saved["cost_model"]
    assert (tmp_path / "sim.png").stat().st_size > 1000
    strategies = saved["strategies"]
    assert set(strategies) == {"default", "dbsal", "static", "random", "full"}
    for name in ("default", "dbsal", "static", "random"):
        rows = strategies[name]
        assert [r["step"] for r in rows] == [0, 1, 2]
        assert all(set(r) == ROW_KEYS for r in rows)
        assert all(a["clicks"] < b["clicks"] and a["pixels_fraction"] < b["pixels_fraction"]
                   for a, b in zip(rows, rows[1:]))
        assert all(0.0 <= r["miou"] <= 1.0 and r["seeds"] == 2 for r in rows)
    # every strategy of a seed starts from the same seed set
    assert len({strategies[n][0]["clicks"] for n in ("default", "dbsal", "static", "random")}) == 1
    for name in ("default", "dbsal", "static"):
        step = strategies[name][1]
        assert step["regions_per_image_median"] >= 1 and 0 <= step["prelabel_accuracy"] <= 1
    assert strategies["random"][1]["prelabel_accuracy"] is None
    (full,) = strategies["full"]
    assert full["pixels_fraction"] == 1.0 and full["images"] == 10
    assert full["clicks"] > strategies["random"][-1]["clicks"]
    matched = saved["runs"]["static"]["0"][1]["superpixel_fraction"]
    assert matched and all(0 < f <= 1 for f in matched)
    comparison = saved["at_equal_clicks"]
    assert comparison["reference"] == "default"
    assert set(comparison["differences"]) == {"dbsal", "static", "random"}
    assert result["full_supervision"]["clicks"] == full["clicks"]


def test_simulator_is_repeatable_and_results_combine(dataset, tmp_path):
    common = args(dataset, tmp_path, "--strategies", "dbsal", "--steps", "1")
    a = main(common + ["--seeds", "3", "--out", str(tmp_path / "a.json")])
    # another cache: trained and run again from nothing, not resumed from a's files
    b = main(common + ["--seeds", "3", "--out", str(tmp_path / "b.json"),
                       "--cache-dir", str(tmp_path / "cache_b")])
    assert a["strategies"] == b["strategies"]
    c = main(common + ["--seeds", "4", "--out", str(tmp_path / "c.json")])
    both = main(["--combine", str(tmp_path / "a.json"), str(tmp_path / "c.json"),
                 "--data", "x", "--n-classes", "3", "--out", str(tmp_path / "ac.json")])
    assert both["settings"]["seeds"] == [3, 4]
    assert both["strategies"]["dbsal"][0]["seeds"] == 2
    assert both["strategies"]["dbsal"][1]["miou"] == pytest.approx(
        (a["strategies"]["dbsal"][1]["miou"] + c["strategies"]["dbsal"][1]["miou"]) / 2)
    # The settings are the default strategy's run's; another run's differences are recorded.
    other = json.loads((tmp_path / "a.json").read_text())
    other["runs"] = {"random": other["runs"]["dbsal"]}
    other["settings"]["first_epochs"] += 7
    mixed = combine([other, json.loads((tmp_path / "c.json").read_text())], default="dbsal")
    assert mixed["settings"]["first_epochs"] == c["settings"]["first_epochs"]
    assert mixed["settings"]["combined_from"][0]["differs"] == {
        "first_epochs": c["settings"]["first_epochs"] + 7}
    (tmp_path / "ac.png").unlink()
    main(["--replot", "--data", "x", "--n-classes", "3", "--out", str(tmp_path / "ac.json")])
    assert (tmp_path / "ac.png").exists()


def test_the_seed_model_is_trained_once_per_setting_and_kept(dataset, tmp_path, caplog):
    common = args(dataset, tmp_path, "--strategies", "control", "--steps", "1", "--seeds", "5")
    kept = tmp_path / "cache" / "seed_models"
    a = main(common + ["--out", str(tmp_path / "a.json")])
    assert len(list(kept.glob("*.pt"))) == 1
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        b = main(common + ["--out", str(tmp_path / "b.json")])
    assert "seed model from" in caplog.text
    assert a["strategies"] == b["strategies"]
    main(common + ["--first-epochs", "1", "--out", str(tmp_path / "c.json")])
    files = sorted(kept.glob("*.pt"))
    assert len(files) == 2
    for f in files:  # a damaged file is trained again, not fatal
        f.write_bytes(b"not a model")
    d = main(common + ["--out", str(tmp_path / "d.json")])
    assert d["strategies"]["control"][0]["miou"] == pytest.approx(
        a["strategies"]["control"][0]["miou"], abs=1e-6)
    assert sorted(kept.iterdir()) == files  # no temporary file left behind


def _steps(result):
    return {name: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
            for name, by_seed in result["runs"].items() for records in by_seed.values()}


def test_a_longer_run_goes_on_from_where_a_shorter_one_ended(dataset, tmp_path, caplog):
    common = args(dataset, tmp_path, "--strategies", "default", "random", "--seeds", "6")
    whole = main(common + ["--steps", "3", "--out", str(tmp_path / "whole.json"),
                           "--cache-dir", str(tmp_path / "other")])
    main(common + ["--steps", "1", "--out", str(tmp_path / "short.json")])
    saved = sorted(p.name for p in (tmp_path / "cache" / "runs").glob("*.pt"))
    assert [name.split("_")[:2] for name in saved] == [["default", "6"], ["random", "6"]]
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        longer = main(common + ["--steps", "3", "--out", str(tmp_path / "longer.json")])
    assert caplog.text.count("resumed after step 1") == 2
    assert _steps(longer) == _steps(whole)  # the same steps as a run made in one go
    caplog.clear()
    # a shorter run again does not go back on the longer one's file, nor resume from it
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        again = main(common + ["--steps", "2", "--out", str(tmp_path / "again.json")])
    assert "resumed" not in caplog.text
    assert _steps(again) == {k: v[:3] for k, v in _steps(whole).items()}
    caplog.clear()
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        main(common + ["--steps", "4", "--out", str(tmp_path / "four.json")])
    assert caplog.text.count("resumed after step 3") == 2
    # settings that change the steps are another run; a damaged file is run again
    for f in (tmp_path / "cache" / "runs").glob("*.pt"):
        f.write_bytes(b"damaged")
    caplog.clear()
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        redone = main(common + ["--steps", "3", "--out", str(tmp_path / "redone.json")])
    assert "resumed" not in caplog.text and "cannot read" in caplog.text
    assert _steps(redone) == _steps(whole)
    caplog.clear()
    with caplog.at_level("INFO", logger="dbsal_backend.simulator"):
        main(common + ["--steps", "3", "--epochs", "2", "--out", str(tmp_path / "e2.json")])
    assert "resumed" not in caplog.text


def test_on_step_sees_every_step_when_the_run_does_not_resume(dataset, tmp_path):
    cfg = simulator.SimConfig(n_classes=3, init_images=2, images_per_step=2, steps=2, arch="unet",
                              pretrained=False, mc_samples=2, max_side=48,
                              recipe=Recipe(epochs=1, batch_size=2), first_epochs=2,
                              device="cpu", cache_dir=str(tmp_path / "cache"))
    pool_x, pool_y, _ = load_split(str(dataset), "train", ignore_value=9)
    val_x, val_y, _ = load_split(str(dataset), "val", ignore_value=9)
    sim = simulator.Simulation(pool_x, pool_y, val_x, val_y, cfg)
    seen = []

    def look(step, model, labeled):
        seen.append((step, len(labeled), sim.evaluate(model)))

    first = sim.run(STRATEGIES["default"], 1, on_step=look)
    assert [(s, n) for s, n, _ in seen] == [(1, 4), (2, 6)]
    assert [m for *_, m in seen] == pytest.approx([r.miou for r in first[1:]])
    seen.clear()
    sim.run(STRATEGIES["default"], 1, on_step=look)  # resumed after step 2: nothing to run
    assert seen == []
    again = sim.run(STRATEGIES["default"], 1, on_step=look, resume=False)
    assert [(s, n) for s, n, _ in seen] == [(1, 4), (2, 6)]
    assert [r.miou for r in again] == [r.miou for r in first]
    # the last kept step, read back without running: its model, labels and records
    model, labeled, records = sim.saved_run(STRATEGIES["default"], 1)
    assert len(labeled) == 6 and [r.miou for r in records] == [r.miou for r in first]
    assert sim.evaluate(model) == pytest.approx(first[-1].miou)
    assert sim.saved_run(STRATEGIES["random"], 1) is None  # a run never made


def test_self_labeled_fine_tunes_on_its_own_prelabels_but_not_the_seed_model(dataset, tmp_path,
                                                                            monkeypatch):
    strategy, balanced = STRATEGIES["self_labeled"], STRATEGIES["class_self_labeled"]
    assert (strategy.self_label, strategy.self_label_share) == (0.9, None)
    assert (balanced.self_label, balanced.self_label_share) == (None, 0.2)
    assert strategy.policy == balanced.policy == STRATEGIES["default"].policy
    recipe = Settings.model_validate({}).recipe()
    assert (STRATEGIES["default"].self_label, STRATEGIES["default"].self_label_share) == (
        recipe.self_label, recipe.self_label_share)
    used = []
    real_fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, images, labels, recipe, device, exact:
                        used.append((recipe.epochs, recipe.self_label, recipe.self_label_share))
                        or real_fit(model, images, labels, recipe, device, exact))
    result = main(args(dataset, tmp_path, "--strategies", "self_labeled", "class_self_labeled",
                       "default", "--seeds", "0", "--out", str(tmp_path / "self.json")))
    # the seed model (2 epochs) alone without; then each strategy's 2 steps with its own
    assert used == [(2, None, None), (1, 0.9, None), (1, 0.9, None), (1, None, 0.2),
                    (1, None, 0.2), (1, None, None), (1, None, None)]
    rows = result["strategies"]
    assert rows["self_labeled"][0] == rows["class_self_labeled"][0] == rows["default"][0]
    settings = result["settings"]["strategies"]
    assert settings["self_labeled"]["self_label"] == 0.9
    assert settings["class_self_labeled"]["self_label_share"] == 0.2


def test_trimmed_trims_each_fine_tuning_but_not_the_seed_model(dataset, tmp_path, monkeypatch):
    strategy = STRATEGIES["trimmed"]
    assert strategy == replace(STRATEGIES["seed5"], name="trimmed", trim=0.2, trim_whole=True)
    # the default since it won: trimmed_answers' (the backend's DBSAL_TRIM); brushes alone have
    # repainted answers, none trimmed
    assert STRATEGIES["default"] == replace(STRATEGIES["trimmed_answers"], name="default")
    assert STRATEGIES["default_brush"].trim is None and STRATEGIES["seed5"].trim is None
    with pytest.raises(ValueError, match="fine_tune='off'"):
        replace(strategy, fine_tune="off")  # nothing trained to judge the labels
    with pytest.raises(ValueError, match=r"trim must be in \(0, 0.5\]"):
        replace(strategy, trim=0.9)
    used = []
    real_fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, images, labels, recipe, device, exact:
                        used.append((recipe.epochs, recipe.trim, exact))
                        or real_fit(model, images, labels, recipe, device, exact))
    result = main(args(dataset, tmp_path, "--strategies", "trimmed", "trimmed_answers", "seed5",
                       "--seeds", "0", "--out", str(tmp_path / "trimmed.json")))
    # the seed model (2 epochs) without; then trimmed's 2 steps with, every image trimmed;
    # trimmed_answers' 2 steps with, the 2 seed images (whole) kept whole and the 2 answered by
    # regions a step trimmed; seed5's without
    assert used[:3] + used[5:] == [(2, None, None), (1, 0.2, None), (1, 0.2, None),
                                   (1, None, None), (1, None, None)]
    for (epochs, trim, exact), images in zip(used[3:5], (4, 6)):
        assert (epochs, trim) == (1, 0.2)
        assert len(exact) == images and sum(exact) == 2
    assert STRATEGIES["trimmed_answers"] == replace(strategy, name="trimmed_answers",
                                                    trim_whole=False)
    # the backend's DBSAL_TRIM is trimmed_answers' (never the whole images)
    assert strategy.trim_whole and not STRATEGIES["default"].trim_whole
    assert result["settings"]["strategies"]["trimmed"]["trim"] == 0.2
    assert result["settings"]["strategies"]["trimmed_answers"]["trim_whole"] is False
    # each keeps its own cache file; a recipe without trim is described as before the field
    assert "trim" not in loop._recipe_key(Recipe())
    assert loop._recipe_key(Recipe(trim=0.2))["trim"] == 0.2
    for name in ("trimmed", "trimmed_answers", "seed5"):
        assert len(list((tmp_path / "cache" / "runs").glob(f"{name}_0_*.pt"))) == 1


def test_a_strategys_ema_ends_each_fine_tuning_with_the_average_but_not_the_seed_model(
        dataset, tmp_path, monkeypatch):
    # not a named strategy: measured on one more step's fine-tuning alone
    # (bench/fresh_training.py's step_ema), where it did not win
    assert STRATEGIES["default"].ema is None
    monkeypatch.setitem(STRATEGIES, "averaged",
                        replace(STRATEGIES["default"], name="averaged", ema=0.998))
    with pytest.raises(ValueError, match=r"ema must be in \(0, 1\)"):
        replace(STRATEGIES["default"], ema=1.0)
    used = []
    real_fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, images, labels, recipe, device, exact:
                        used.append((recipe.epochs, recipe.ema, recipe.trim))
                        or real_fit(model, images, labels, recipe, device, exact))
    result = main(args(dataset, tmp_path, "--strategies", "averaged", "default", "--seeds", "0",
                       "--out", str(tmp_path / "averaged.json")))
    # one seed model (2 epochs) without; averaged's 2 steps with it, the default's without
    assert used == [(2, None, None), (1, 0.998, 0.2), (1, 0.998, 0.2), (1, None, 0.2),
                    (1, None, 0.2)]
    assert result["settings"]["strategies"]["averaged"]["ema"] == 0.998
    # a recipe or strategy without it is described as before the field (the cache's files)
    assert "ema" not in loop._recipe_key(Recipe())
    assert loop._recipe_key(Recipe(ema=0.99))["ema"] == 0.99
    for name in ("averaged", "default"):
        assert len(list((tmp_path / "cache" / "runs").glob(f"{name}_0_*.pt"))) == 1


def test_diverse_is_the_default_with_diverse_images(dataset, tmp_path):
    default, diverse = STRATEGIES["repaint"], STRATEGIES["diverse"]
    assert diverse.policy.diversity == 3 and default.policy.diversity == 1
    assert replace(diverse, name="repaint",
                   policy=replace(diverse.policy, diversity=1)) == default
    result = main(args(dataset, tmp_path, "--strategies", "diverse", "--seeds", "0",
                       "--images-per-step", "2", "--out", str(tmp_path / "diverse.json")))
    rows = result["strategies"]["diverse"]
    assert [(r["step"], r["images"]) for r in rows] == [(0, 2), (1, 4), (2, 6)]
    assert result["settings"]["strategies"]["diverse"]["policy"]["diversity"] == 3


def test_a_strategy_can_query_more_images_a_step_than_the_run(dataset, tmp_path):
    default = STRATEGIES["repaint"]
    assert STRATEGIES["wide"] == replace(default, name="wide", images_per_step=20)
    assert STRATEGIES["spread"] == replace(default, name="spread", images_per_step=20,
                                           policy=replace(default.policy, max_regions=20))
    result = main(args(dataset, tmp_path, "--strategies", "wide", "default", "--seeds", "0",
                       "--out", str(tmp_path / "wide.json")))
    # a pool of 10, 2 in the seed set: wide asks about the other 8 at once, default 2 a step
    assert [r["images"] for r in result["strategies"]["wide"]] == [2, 10]
    assert [r["images"] for r in result["strategies"]["default"]] == [2, 4, 6]
    assert result["settings"]["strategies"]["wide"]["images_per_step"] == 20


def test_the_default_answers_regions_with_their_dominant_class(dataset, tmp_path):
    """The product's default (one superpixel a region) asks for dominant-class answers;
    ``repaint`` is the same queries answered with repaints."""
    assert STRATEGIES["default"].answers == "dominant" == STRATEGIES["dominant"].answers
    # the run's seed set, untrimmed (as measured before trimming won)
    assert STRATEGIES["dominant"] == replace(STRATEGIES["default"], name="dominant",
                                             init_images=None, trim=None)
    assert STRATEGIES["repaint"] == replace(STRATEGIES["default"], name="repaint",
                                            answers="repaint", init_images=None, trim=None)
    assert STRATEGIES["default_brush"].answers == "repaint"  # a region is a whole class
    with pytest.raises(ValueError, match="answers"):
        replace(STRATEGIES["default"], answers="paint")
    result = main(args(dataset, tmp_path, "--strategies", "repaint", "dominant", "--seeds", "0",
                       "--out", str(tmp_path / "dominant.json")))
    runs = result["runs"]
    a, b = runs["repaint"]["0"][1], runs["dominant"]["0"][1]
    # the same first queries (the same model); dominant answers cost only the relabels
    assert (a["regions"], a["corrections"]) == (b["regions"], b["corrections"])
    assert b["clicks"] == runs["repaint"]["0"][0]["clicks"] + 2 * b["corrections"] <= a["clicks"]
    assert b["pixels"] == a["pixels"]


@pytest.mark.parametrize("fine_tune", ["first", "doubling", "last", "off"])
def test_each_step_trains_the_model_fine_tune_names(dataset, tmp_path, monkeypatch, fine_tune):
    """``first``: every step from the seed model; ``doubling``: from the last step that
    doubled the labels (2 seed images; 4 after step 1: its model; 6 at step 2 does not renew
    it), also after a run resumes; ``last``: from the last step's (a chain); ``off``: from new
    weights, for the seed model's epochs."""
    assert STRATEGIES["anchored"] == replace(STRATEGIES["seed5"], name="anchored",
                                             fine_tune="first")
    assert STRATEGIES["doubling"] == replace(STRATEGIES["seed5"], name="doubling",
                                             fine_tune="doubling")
    assert STRATEGIES["seed5"].fine_tune == "last"
    assert STRATEGIES["default"].fine_tune == Settings().fine_tune  # the backend's
    with pytest.raises(ValueError, match="fine_tune"):
        replace(STRATEGIES["seed5"], fine_tune="chain")
    starts, ends = [], []
    real_fit = loop.fit

    def fit(model, images, labels, recipe, device, exact):
        starts.append(({k: v.clone() for k, v in model.state_dict().items()}, recipe.epochs))
        out = real_fit(model, images, labels, recipe, device, exact)
        ends.append({k: v.clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(loop, "fit", fit)
    cfg = SimConfig(n_classes=3, init_images=2, images_per_step=2, steps=2, arch="unet",
                    pretrained=False, mc_samples=2, max_side=48, first_epochs=2,
                    recipe=Recipe(epochs=1, batch_size=2), device="cpu",
                    cache_dir=str(tmp_path / "cache"))
    pool = load_split(dataset, "train", ignore_value=9)[:2]
    val = load_split(dataset, "val", ignore_value=9)[:2]
    strategy = replace(STRATEGIES["seed5"], name=fine_tune, fine_tune=fine_tune,
                       init_images=None)  # untrimmed: off has no model to judge labels by
    Simulation(*pool, *val, cfg).run(strategy, 0)
    # step 3 in a new process: resumed from the cache after step 2 (the seed model is cached)
    sim = Simulation(*pool, *val, replace(cfg, steps=3))
    records = sim.run(strategy, 0)
    assert len(records) == 4 and len(starts) == 4  # the seed model, then 3 steps

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    seed_model, fresh = ends[0], starts[0][0]
    anchor = {"first": seed_model, "doubling": ends[1]}.get(fine_tune)
    for step in (2, 3):
        start, epochs = starts[step]
        assert same(start, seed_model) == (fine_tune == "first")
        assert same(start, ends[step - 1]) == (fine_tune == "last" or (fine_tune, step) == (
            "doubling", 2))
        assert anchor is None or same(start, anchor)
        assert same(start, fresh) == (fine_tune == "off")
        assert epochs == (2 if fine_tune == "off" else 1)
    # a run of one setting never resumes from another's file
    paths = {sim._progress_path(replace(strategy, fine_tune=f), None, 0, {}) for f in FINE_TUNE}
    assert len(paths) == len(FINE_TUNE)


def test_a_cheaper_start_is_part_of_the_runs_seed_set(dataset, tmp_path):
    """``seed5`` is the default from the first 5 images of the run's seed set (here: 1 of 2);
    the run's own seed set is the one every other strategy starts from."""
    assert STRATEGIES["seed5"] == replace(STRATEGIES["default"], name="seed5", init_images=5,
                                          trim=None)  # the default before trimming won
    fine = STRATEGIES["fine"]  # the same on finer superpixels
    assert fine == replace(STRATEGIES["seed5"], name="fine", superpixels=fine.superpixels)
    assert fine.superpixels == replace(STRATEGIES["seed5"].superpixels, n_segments=600)
    assert STRATEGIES["default"].init_images == Settings().seed_tasks()  # the backend's start
    # the backend's start of regions (DBSAL_START=regions) is the simulator's colour_start
    regions = simulator.product_default(settings=Settings(start="regions"))
    assert replace(regions, name="colour_start") == STRATEGIES["colour_start"]
    assert simulator.product_default(False, Settings(start="regions")) == \
        STRATEGIES["default_brush"]  # brush layers: whole images
    with pytest.raises(ValueError, match="init_images"):
        replace(STRATEGIES["default"], init_images=0)
    pool, _, _ = load_split(dataset, "train", ignore_value=9)
    sim = Simulation(pool, [np.zeros(p.shape[:2], np.uint8) for p in pool], pool[:1],
                     [np.zeros(pool[0].shape[:2], np.uint8)], SimConfig(n_classes=3, init_images=4))
    for seed in (0, 1, 2):
        run_set = sim.seed_set(seed)
        assert len(run_set) == 4 and run_set == sorted(random_images(
            list(range(10)), 4, np.random.default_rng(seed)))  # as it always was
        assert set(sim.seed_set(seed, 2)) < set(run_set) and len(sim.seed_set(seed, 2)) == 2
        assert sim.seed_set(seed, 6) == run_set  # never more than the run's
    with pytest.raises(ValueError, match="at least one"):
        sim.seed_set(0, 0)
    # a run: the seed model of the smaller seed set is its own, the steps as the default's
    cheap = replace(STRATEGIES["seed5"], name="seed1", init_images=1)
    sim = Simulation(*load_split(dataset, "train", ignore_value=9)[:2],
                     *load_split(dataset, "val", ignore_value=9)[:2],
                     SimConfig(n_classes=3, init_images=2, images_per_step=2, steps=1,
                               arch="unet", pretrained=False, first_epochs=1, max_side=48,
                               mc_samples=2, device="cpu", cache_dir=str(tmp_path / "c"),
                               recipe=Recipe(epochs=1, batch_size=2)))
    full_start = sim.run(STRATEGIES["dominant"], 0)
    cheap_start = sim.run(cheap, 0)
    assert (full_start[0].images, cheap_start[0].images) == (2, 1)
    assert 0 < cheap_start[0].clicks < full_start[0].clicks
    assert cheap_start[1].images == 3 and cheap_start[1].regions > 0


def test_a_region_start_asks_random_superpixels_of_many_images_and_relabels_each(
        dataset, tmp_path, monkeypatch):
    """``region_start``: no whole images; ``start_regions`` random superpixels of each of
    ``init_images`` pool images, each answered with its class and priced as a relabel (no
    model, no guess), the seed model trained its own ``first_epochs``; then the default's
    steps."""
    strategy = STRATEGIES["region_start"]
    assert strategy == replace(STRATEGIES["default"], name="region_start", init_images=30,
                               start_regions=40, first_epochs=20)
    for name, bad in (("start_regions", 0), ("first_epochs", True), ("start_regions", 2.0)):
        with pytest.raises(ValueError, match=name):
            replace(strategy, **{name: bad})
    epochs = []
    real_fit = loop.fit
    monkeypatch.setattr(loop, "fit", lambda model, images, labels, recipe, device, exact:
                        epochs.append((recipe.epochs, len(images), recipe.trim, exact))
                        or real_fit(model, images, labels, recipe, device, exact))
    cfg = SimConfig(n_classes=3, init_images=2, images_per_step=2, steps=1, arch="unet",
                    pretrained=False, first_epochs=2, max_side=48, mc_samples=2, device="cpu",
                    cache_dir=str(tmp_path / "c"), recipe=Recipe(epochs=1, batch_size=2))
    pool_x, pool_y, _ = load_split(dataset, "train", ignore_value=9)
    sim = Simulation(pool_x, pool_y, *load_split(dataset, "val", ignore_value=9)[:2], cfg)
    small = replace(strategy, init_images=3, start_regions=5, first_epochs=3)
    records = sim.run(small, 0)
    start = records[0]
    assert start.images == 3 and start.regions == 15
    assert start.corrections == 15 and start.clicks == 30  # every region relabeled: 2 clicks
    assert start.cai_clicks == 15  # one a region asked
    assert epochs[0][:3] == (3, 3, None)  # its own epochs, on its 3 images, untrimmed
    assert epochs[1][2] == 0.2 and not any(epochs[1][3])  # then trimmed: no whole image
    assert records[1].images == 5
    # the answers: each labeled pixel carries its superpixel's dominant class, 5 superpixels
    labeled, tally = sim.region_start(0, 3, 5, strategy.superpixels)
    assert tally.regions == 15 and sorted(labeled) == sorted(random_images(
        list(range(len(pool_x))), 3, np.random.default_rng([0, 3])))
    cache = sim.superpixels(strategy.superpixels)
    for i, labels in labeled.items():
        segments, truth = cache.get(pool_x[i]), pool_y[i]
        asked = np.unique(segments[labels != loop.IGNORE_INDEX])
        assert 1 <= asked.size <= 5
        for sp in asked:
            inside = (segments == sp) & (truth != loop.IGNORE_INDEX)
            assert len(np.unique(labels[inside])) == 1
            assert labels[inside][0] == np.bincount(truth[inside]).argmax()
    # the same start again (a resumed run) is the same draw; another seed another
    assert all(np.array_equal(labeled[i], sim.region_start(0, 3, 5, strategy.superpixels)[0][i])
               for i in labeled)
    assert sim.region_start(1, 3, 5, strategy.superpixels)[0].keys() != labeled.keys() or any(
        not np.array_equal(labeled[i], v)
        for i, v in sim.region_start(1, 3, 5, strategy.superpixels)[0].items())
    # its seed model and run files are its own; a whole start's keep their names (cache files)
    described = sim._progress_path(STRATEGIES["default"], None, 0, {})
    assert described == sim._progress_path(replace(STRATEGIES["default"], first_epochs=None,
                                                   start_regions=None), None, 0, {})
    assert sim._seed_key(0, {}) == sim._seed_key(0, {}, cfg.first_epochs)
    assert sim._seed_key(0, {}, 3) != sim._seed_key(0, {})


def test_a_colour_start_asks_each_images_superpixels_most_different_in_colour(dataset):
    """``colour_start``: ``region_start`` whose regions are the farthest-first superpixels in
    mean colour (:func:`start.colour_regions`), so a rare colour is asked before any model."""
    strategy = STRATEGIES["colour_start"]
    assert strategy == replace(STRATEGIES["region_start"], name="colour_start",
                               start_pick="colour")
    with pytest.raises(ValueError, match="start_pick"):
        replace(strategy, start_pick="colours")
    # an image of grey superpixels and one red one: the red one is asked, whatever the draw
    image = np.full((20, 40, 3), 120, np.uint8)
    image[:, 35:] = (220, 20, 20)
    segments = np.repeat(np.arange(8, dtype=np.int32), 5)[None].repeat(20, 0)
    image[:, 5:10] += 1  # a slightly different grey
    for seed in range(5):
        asked = start.colour_regions(image, segments, 2, np.random.default_rng(seed), 3)
        assert [r.superpixels for r in asked][-1] == (7,) and len(asked) == 2
        assert all(r.label == 3 and r.pixels == 100 for r in asked)
    # fewer colours than regions wanted: made up with random ones; never more than there are
    flat = np.full((20, 40, 3), 9, np.uint8)
    assert len(start.colour_regions(flat, segments, 5, np.random.default_rng(0), 3)) == 5
    assert len(start.colour_regions(image, segments, 50, np.random.default_rng(0), 3)) == 8
    # in the simulator: the same images as region_start's, other superpixels, a run key of
    # its own
    cfg = SimConfig(n_classes=3, init_images=2, max_side=48, device="cpu")
    pool_x, pool_y, _ = load_split(dataset, "train", ignore_value=9)
    sim = Simulation(pool_x, pool_y, *load_split(dataset, "val", ignore_value=9)[:2], cfg)
    coloured, tally = sim.region_start(0, 3, 5, strategy.superpixels, pick="colour")
    randomly, _ = sim.region_start(0, 3, 5, strategy.superpixels)
    assert coloured.keys() == randomly.keys() and tally.regions == 15
    assert any(not np.array_equal(coloured[i], randomly[i]) for i in coloured)
    with pytest.raises(ValueError, match="pick"):
        sim.region_start(0, 3, 5, strategy.superpixels, pick="colours")
    assert sim._progress_path(strategy, None, 0, {}).name[13:] != sim._progress_path(
        replace(strategy, start_pick="random"), None, 0, {}).name[13:]


def test_cai_clicks_price_each_region_asked_at_one_click(dataset, tmp_path):
    result = main(args(dataset, tmp_path, "--strategies", "default", "random", "--seeds", "0",
                       "--out", str(tmp_path / "cai.json")))
    for name, by_seed in result["runs"].items():
        for r in by_seed["0"]:
            assert r["cai_clicks"] == r["clicks"] - 2 * r["corrections"] + r["regions"]
    assert [r["cai_clicks"] for r in result["strategies"]["random"]] == \
        [r["clicks"] for r in result["strategies"]["random"]]  # no regions: the same clicks
    # Records from before cai_clicks was kept get it when results are combined.
    old = json.loads((tmp_path / "cai.json").read_text())
    for by_seed in old["runs"].values():
        for r in by_seed["0"]:
            del r["cai_clicks"]
    again = combine([old])
    assert again["strategies"] == result["strategies"]
    # Runs can be combined under new names (an earlier default under the name it has now).
    renamed = main(["--combine", str(tmp_path / "cai.json"), "--data", "x", "--n-classes", "3",
                    "--rename", "default=repaint", "random=default", "--default", "default",
                    "--out", str(tmp_path / "renamed.json")])
    assert set(renamed["strategies"]) == {"repaint", "default"}
    assert renamed["strategies"]["repaint"] == result["strategies"]["default"]
    assert renamed["settings"]["renamed"] == {"default": "repaint", "random": "default"}
    assert renamed["settings"]["strategies"]["default"]["kind"] == "random"
    assert list(renamed["at_equal_clicks"]["differences"]) == ["repaint"]


def _records(points):
    return [SimulatedStep(step=k, images=0, regions=0, corrections=0, clicks=c, pixels=0,
                       pixels_fraction=0.0, miou=m) for k, (c, m) in enumerate(points)]


def test_comparison_at_equal_clicks_interpolates_on_each_seed():
    runs = {"default": {0: _records([(100, 0.2), (150, 0.4)]), 1: _records([(100, 0.3), (140, 0.5)])},
            "random": {0: _records([(100, 0.2), (300, 0.4)]), 1: _records([(100, 0.3), (120, 0.6)])}}
    (row,) = compare_at_clicks(runs, "default", ["random"])["random"]
    # seed 0: random at 150 clicks = 0.25 -> +0.15; seed 1: 140 is beyond random's 120 -> left out
    assert row["seeds"] == 1 and row["miou_difference"] == pytest.approx(0.15)
    rows = aggregate({"default": runs["default"]})["default"]
    assert rows[1]["clicks"] == 145 and rows[1]["miou"] == pytest.approx(0.45)
    assert clicks_to_reach(rows, 0.35) == pytest.approx(100 + (0.1 / 0.2) * 45)
    assert clicks_to_reach(rows, 0.9) is None


def test_the_control_adds_no_labels_and_is_compared_step_by_step(dataset, tmp_path):
    result = main(args(dataset, tmp_path, "--strategies", "default", "control", "--seeds", "0",
                       "--default", "default", "--out", str(tmp_path / "control.json")))
    rows = result["strategies"]["control"]
    assert [r["step"] for r in rows] == [0, 1, 2]
    # the seed set's clicks and pixels, and nothing more, yet it trains at every step
    assert len({(r["clicks"], r["images"], r["pixels_fraction"]) for r in rows}) == 1
    assert rows[0]["clicks"] == result["strategies"]["default"][0]["clicks"]
    assert "control" not in result["at_equal_clicks"]["differences"]
    against = result["against_control"]
    assert [r["step"] for r in against] == [1, 2]
    default = result["strategies"]["default"]
    for r in against:
        assert r["miou_difference"] == pytest.approx(default[r["step"]]["miou"]
                                                     - rows[r["step"]]["miou"])


def test_compare_at_steps_pairs_seeds_and_steps():
    runs = {"default": {0: _records([(100, 0.2), (150, 0.4)]), 1: _records([(100, 0.3), (140, 0.5)])},
            "control": {0: _records([(100, 0.2), (100, 0.25)]), 1: _records([(100, 0.3)])}}
    (row,) = simulator.compare_at_steps(runs, "default", "control")
    assert row["seeds"] == 1 and row["miou_difference"] == pytest.approx(0.15)


def test_comparison_anchored_on_the_control_starts_each_step_from_its_training():
    runs = {"default": {0: _records([(100, 0.2), (150, 0.4)])},
            "random": {0: _records([(100, 0.2), (300, 0.6)])},
            "control": {0: _records([(100, 0.2), (100, 0.3)])}}
    free = compare_at_clicks(runs, "default", ["random"])["random"][0]
    anchored = compare_at_clicks(runs, "default", ["random"], anchor="control")["random"][0]
    # from the seed point: random at 150 = 0.3; from the control's step 1 (0.3): 0.375
    assert free["miou_difference"] == pytest.approx(0.1)
    assert anchored["miou_difference"] == pytest.approx(0.025)
