"""The active-learning loop (Service) against an in-memory Label Studio (tests/fakels.py).

Images are served over real HTTP on 127.0.0.1, so the image fetcher runs for real; the real
Label Studio is exercised by the e2e suites.
"""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import torch

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.server.connect import annotator_instructions as instructions
from dbsal_backend.labelstudio.client import UNCERTAINTY_SAMPLING
from dbsal_backend.labelstudio.rle import rle_to_mask
from dbsal_backend.server.service import NotConnected, Service
from dbsal_backend.server.settings import Settings
from dbsal_backend.server.state import StateStore
from fakels import BACKEND_URL, CONFIG, LABELS, FakeLabelStudio, brush_results

SIZE = 48


@pytest.fixture
def ls():
    fake = FakeLabelStudio(n_tasks=8)
    yield fake
    fake.close()


def make_settings(tmp_path, ls, **changes) -> Settings:
    values = dict(label_studio_url=ls.url, label_studio_api_key="x", model_dir=tmp_path / "m",
                  public_url=BACKEND_URL, arch="unet", pretrained=False, initial_batch=3,
                  step_size=2, n_segments=30, mc_samples=3, epochs=3, batch_size=2,
                  max_side=SIZE, device="cpu", prefetch=2)
    values.update(changes)
    return Settings.model_validate(values)


def make_service(tmp_path, ls, **changes) -> Service:
    settings = make_settings(tmp_path, ls, **changes)
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    return Service(settings, StateStore(settings.model_dir / "state.sqlite3"), ls.client)


def connected(service: Service, project: int = 1):
    with service.client_factory() as client:
        return service.connect(client, project)


def ours(ls, task: int, title: str = "dbsal") -> list[dict]:
    return [p for p in ls.predictions.get(task, []) if p["model_version"] == title]


def label_seed(ls, seed: list[int]) -> None:
    for tid in seed:  # a person labels the seed images completely
        ls.annotate(tid, brush_results(ls.truth[tid]))


def test_setup_confirms_over_the_api_then_prepares_and_seeds(tmp_path, ls):
    service = make_service(tmp_path, ls)
    assert service.setup(1, CONFIG) == "dbsal"
    for thread in threading.enumerate():
        if thread.name == "dbsal-confirm-1":
            thread.join(30)
    record = service.state.get(1)
    assert record.connected and record.label_config == CONFIG and record.title == "dbsal"
    assert ls.projects[1]["sampling"] == UNCERTAINTY_SAMPLING
    # shown before labeling; brush layers (a region per class) are repainted
    assert ls.projects[1]["expert_instruction"] == instructions("repaint")
    assert ls.projects[1]["show_instruction"] is True
    seed = list(record.seed_batch)
    assert len(seed) == 3
    # the seed tasks, and only they, carry a prediction: no regions, confidence 0
    assert {t for t in ls.tasks if ours(ls, t)} == set(seed)
    assert all(ours(ls, t)[0] == {"task": t, "result": [], "score": 0.0, "model_version": "dbsal"}
               for t in seed)
    assert ls.projects[1]["model_version"] == "dbsal"


def test_setup_of_a_project_that_did_not_connect_registers_nothing(tmp_path, ls, monkeypatch):
    monkeypatch.setattr("dbsal_backend.server.connect.CONFIRM_SECONDS", 1.5)
    ls.add_project(2, connected=False)
    service = make_service(tmp_path, ls)
    service.setup(2, CONFIG)
    service.setup(99, CONFIG)  # no such project in Label Studio
    time.sleep(2.5)
    assert service.state.get(2) is None and service.state.get(99) is None
    assert not ls.predictions
    with pytest.raises(NotConnected):
        service.predict(2, [{"id": 1}])


def test_a_bad_config_is_refused_at_setup(tmp_path, ls):
    from dbsal_backend.labelstudio.label_config import LabelConfigError

    with pytest.raises(LabelConfigError):
        make_service(tmp_path, ls).setup(1, "<View><Image name='i' value='$image'/></View>")


def test_webhook_gets_basic_auth_when_it_is_on(tmp_path, ls):
    service = make_service(tmp_path, ls, basic_auth_user="ls", basic_auth_pass="s3cret")
    connected(service)
    assert ls.hooks[1][0]["headers"]["Authorization"] == "Basic bHM6czNjcmV0"


def test_the_loop_seed_train_query_answer_and_measure(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    first = service.run(1)  # no annotation yet: the seed batch
    seed = first["seed_batch"]
    label_seed(ls, seed)
    compute, steps = service.context.compute, []  # the step's scores, as computed
    step = compute.step
    compute.step = lambda *args, **kwargs: steps.append(step(*args, **kwargs)) or steps[-1]
    result = service.run(1)
    assert result["trained_on"] == 3 and result["step"] == 1
    record = service.state.get(1)
    assert record.checkpoint.startswith("project-1/") and (tmp_path / "m" / record.checkpoint).is_file()
    assert record.spent.images == 3 and record.spent.pixels == 3 * SIZE * SIZE
    queried = [t for t in ls.tasks if ours(ls, t)]
    assert 1 <= len(queried) <= 2 and not set(queried) & set(seed)
    (ranked,) = [s.priorities for s in steps]
    assert len(ranked) == len(ls.tasks) - len(seed) == result["scored"]  # every unlabeled task
    unqueried_scores = [s for t, s in ranked.items() if t not in queried]
    for tid in queried:
        prediction = ours(ls, tid)[0]
        regions = prediction["result"]
        assert regions, "a queried task carries regions"
        confidences = [r["score"] for r in regions]
        assert confidences == sorted(confidences), "least confident region first"
        assert all(0 <= c <= 1 for c in confidences)
        assert all(r["value"]["brushlabels"][0] in LABELS for r in regions)
        masks = [rle_to_mask(r["value"]["rle"], SIZE, SIZE) for r in regions]
        assert all(m.any() for m in masks)
        assert not np.any(np.sum(masks, axis=0) > 1), "regions do not overlap"
        # the task score is the model's confidence: the queried tasks are the least confident
        assert prediction["score"] <= 1 - max(unqueried_scores, default=0) + 1e-6
    status = service.status(1)
    assert status["al_step"] == 1 and status["questions_ready"] == len(queried)
    assert status["steps"][0]["queried"] == len(queried)

    # a person keeps every pre-label of the first queried task, and relabels all of the second
    keep = queried[0]
    ls.annotate(keep, ours(ls, keep)[0]["result"])
    if len(queried) > 1:
        flipped = [dict(r, value=dict(r["value"], brushlabels=[
            LABELS[1 - LABELS.index(r["value"]["brushlabels"][0])]])) for r in ours(ls, queried[1])[0]["result"]]
        ls.annotate(queried[1], flipped)
    service.state.mark_answered(1, queried)
    second = service.run(1)
    assert second["step"] == 2 and second["trained_on"] == 3 + len(queried)
    steps = {s["step"]: s for s in service.status(1)["steps"]}
    kept = service.state.queries(1)[keep]
    assert kept.prelabels_right == kept.prelabels_judged == len(ours_before := kept.regions) > 0
    if len(queried) > 1:
        other = service.state.queries(1)[queried[1]]
        assert other.prelabels_right == 0 and other.prelabels_judged > 0
    assert steps[1]["prelabel_accuracy"] is not None
    # answered tasks are never queried again
    assert not set(t for t in ls.tasks if ours(ls, t) and ours(ls, t)[0]["result"]) & set(queried)
    del ours_before


def _weights(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fine_tune", ["first", "doubling", "last", "off"])
def test_each_run_fine_tunes_the_model_fine_tune_names(tmp_path, ls, fine_tune, caplog):
    """``DBSAL_FINE_TUNE``: every run after the first from the first run's model (kept as
    ``anchor-model.pt``), from the last run that doubled the labeled images (the anchor,
    renewed), from the last run's, or from new weights for the first run's epochs."""
    service = make_service(tmp_path, ls, fine_tune=fine_tune, first_epochs=2, epochs=1)
    connected(service)
    label_seed(ls, service.run(1)["seed_batch"])
    compute, starts, ends, sizes = service.context.compute, [], [], []
    train = compute.train

    def recorded(model, images, labels, recipe, device, exact):
        sizes.append(len(images))
        starts.append((_weights(model), recipe.epochs))
        trained = train(model, images, labels, recipe, device, exact=exact)
        ends.append(_weights(trained))
        return trained

    compute.train = recorded
    anchor = tmp_path / "m" / "project-1" / "anchor-model.pt"
    anchored = fine_tune in ("first", "doubling")
    for run in range(3):
        service.run(1)
        for task in [t for t in ls.tasks if ours(ls, t) and ours(ls, t)[0]["result"]]:
            if not ls.tasks[task]["annotations"]:
                ls.annotate(task, ours(ls, task)[0]["result"])  # a person keeps the pre-labels
        assert anchor.is_file() == anchored
    assert sizes == [3, 5, 7]  # labeled images: the third run's doubles the first's
    assert [epochs for _, epochs in starts] == [2, 2, 2] if fine_tune == "off" else [2, 1, 1]
    for run in (1, 2):
        start = {"first": ends[0], "doubling": ends[0], "last": ends[run - 1],
                 "off": starts[0][0]}[fine_tune]
        assert _same(starts[run][0], start), run
    # the third run tells the first model, the last one and new weights apart
    assert [_same(starts[2][0], w) for w in (ends[0], ends[1], starts[0][0])] == [
        anchored, fine_tune == "last", fine_tune == "off"]
    if anchored:
        from dbsal_backend.engine.checkpoints import load_checkpoint

        # the anchor: the first run's; under doubling the third run's (7 images >= 2 x 3)
        assert _same(_weights(load_checkpoint(anchor)[0]), ends[2 if fine_tune == "doubling"
                                                                 else 0])
        service.run(1)
        assert _same(starts[-1][0], ends[2 if fine_tune == "doubling" else 0])
        # the anchor lost (or for other classes): the run starts anew and becomes the anchor
        anchor.unlink()
        with caplog.at_level("WARNING"):
            service.run(1)
        assert "no anchor model to fine-tune" in caplog.text
        assert starts[-1][1] == 2 and _same(starts[-1][0], starts[0][0])
        assert _same(_weights(load_checkpoint(anchor)[0]), ends[-1])


@pytest.mark.parametrize("answers", ["dominant", "auto"])
def test_only_fine_tuning_trims_the_labels_of_region_answers(tmp_path, ls, answers):
    """``DBSAL_TRIM`` (on by default): the first run has no model to judge the labels by; later
    runs trim the tasks answered by regions with their dominant class, never the whole images
    labeled pixel by pixel (the seed batch); repainted answers (``auto`` for this config of
    brushes alone) are never trimmed."""
    service = make_service(tmp_path, ls, first_epochs=2, epochs=1, answers=answers)
    connected(service)
    seed_batch = service.run(1)["seed_batch"]
    label_seed(ls, seed_batch)
    compute, trims = service.context.compute, []
    train = compute.train
    compute.train = lambda model, images, labels, recipe, device, exact: (
        trims.append((recipe.trim, list(exact)))
        or train(model, images, labels, recipe, device, exact=exact))
    answered = []  # the tasks answered by regions after each run
    for run in range(2):
        service.run(1)
        answered.append([])
        for task in [t for t in ls.tasks if ours(ls, t) and ours(ls, t)[0]["result"]]:
            if not ls.tasks[task]["annotations"]:
                ls.annotate(task, ours(ls, task)[0]["result"])
                answered[-1].append(task)
    assert answered[0] and not set(answered[0]) & set(seed_batch)
    (first, whole), (trim, exact) = trims
    assert first is None and whole == [True] * len(seed_batch)
    # the second run: the seed batch exact, the first run's region answers trimmed
    assert trim == (0.2 if answers == "dominant" else None)
    assert len(exact) == len(seed_batch) + len(answered[0])
    assert sum(exact) == len(seed_batch)


def test_predict_on_demand(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    before, version = service.predict(1, [{"id": 1}, {"id": 2}])
    assert version == "dbsal"
    assert [p["result"] for p in before] == [[], []] and before[0]["score"] == 0.0
    seed = service.run(1)["seed_batch"]
    label_seed(ls, seed)
    service.run(1)
    other = ls.add_task(2, *next(iter([(ls.images[1], ls.truth[1])])))  # a task of project 2
    ls.add_project(2)
    task = lambda t: {"id": t, "project": 1, "data": ls.tasks[t]["data"]}  # noqa: E731
    after, _ = service.predict(1, [task(4), task(other), {"id": 12345, "data": {}}])
    assert len(after) == 3
    assert after[0]["result"] and after[0]["model_version"] == "dbsal"
    # a task of another project (whatever the request says) and an unknown one: no regions
    assert after[1]["result"] == [] and after[2]["result"] == []
    # the image is the one Label Studio holds for the task, not the request's
    ls.image_requests.clear()
    poisoned, _ = service.predict(1, [{"id": 4, "data": {"image": "http://169.254.169.254/x.png"}},
                                   {"id": 5, "data": ls.tasks[other]["data"]}])
    assert poisoned[0]["result"] == after[0]["result"] and poisoned[1]["result"]
    assert ls.tasks[other]["data"]["image"] not in [path for path, _ in ls.image_requests]
    assert 4 in service.state.queries(1)


def test_broken_images_and_annotations_are_skipped(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    seed = service.run(1)["seed_batch"]
    label_seed(ls, seed[:1])
    bad = brush_results(ls.truth[seed[1]])
    bad[0]["value"]["rle"] = [1, 2, 3]
    ls.annotate(seed[1], bad)
    ls.tasks[5]["data"]["image"] = "/data/upload/missing.png"
    result = service.run(1)
    assert result["trained_on"] == 1 and result["skipped"] >= 1


def test_budget_in_regions_limits_what_a_step_asks(tmp_path, ls):
    service = make_service(tmp_path, ls, budget=3 * 1 + 2, budget_unit="regions")
    connected(service)
    label_seed(ls, service.run(1)["seed_batch"])
    spent_before = 3  # one brush result per class present: at most 2 per seed image
    result = service.run(1)
    spent = service.state.get(1).spent.regions
    assert spent >= spent_before
    offered = sum(len(ours(ls, t)[0]["result"]) for t in ls.tasks if ours(ls, t))
    assert offered <= max(5 - spent, 0)
    status = service.status(1)["budget"]
    assert status["limit"] == 5 and status["unit"] == "regions"
    if status["exhausted"]:
        assert result.get("budget_spent") and offered == 0


def test_with_every_task_annotated_a_run_trains_and_asks_nothing(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    label_seed(ls, service.run(1)["seed_batch"])
    first = service.run(1)
    assert first["step"] == 1 and first["queried"] > 0
    # a person labels every task left, queried or not
    label_seed(ls, [t for t in ls.tasks if not ls.tasks[t]["annotations"]])
    last = service.run(1)
    # trained on every label; no step recorded, no regions left on any task
    assert last["trained_on"] == len(ls.tasks) and last["pool_done"]
    assert last["step"] == 1 == service.state.get(1).al_step
    assert not any(ours(ls, t) for t in ls.tasks)


def test_a_project_that_disconnects_is_left_alone(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    ls.ml[1] = []
    with pytest.raises(NotConnected):
        service.run(1)
    assert not service.state.get(1).connected
    with pytest.raises(NotConnected):
        service.predict(1, [{"id": 1}])


def test_a_copied_model_dir_serves_its_own_models(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    label_seed(ls, service.run(1)["seed_batch"])
    service.run(1)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "m", copy)
    original = service.state.get(1).checkpoint
    shutil.rmtree(tmp_path / "m" / "project-1")  # the original's models are gone
    moved = Service(make_settings(tmp_path, ls, model_dir=copy),
                    StateStore(copy / "state.sqlite3"), ls.client)
    record = moved.state.get(1)
    assert record.checkpoint == original
    served = moved.context.served(record, moved.context.config(record))
    assert served is not None
    assert moved.predict(1, [{"id": 6, "data": ls.tasks[6]["data"]}])[0][0]["result"]


def test_pre_labels_are_corrected_for_the_class_weights(tmp_path, ls):
    service = make_service(tmp_path, ls)
    connected(service)
    label_seed(ls, service.run(1)["seed_batch"])
    service.run(1)
    context = service.context
    served = context.served(service.state.get(1), context.config(service.state.get(1)))
    weights = served.meta["class_weights"]
    assert len(weights) == 2 and weights[1] > weights[0]  # the square is the rarer class
    assert context.scorer(served, 2)._prior is not None
    assert IGNORE_INDEX == 255


def confirm(service: Service, project: int = 1) -> None:
    service.setup(project, CONFIG)
    for thread in threading.enumerate():
        if thread.name == f"dbsal-confirm-{project}":
            thread.join(30)


def test_labels_made_before_connecting_start_the_first_run_and_shrink_the_seed(tmp_path, ls):
    label_seed(ls, [2, 5])  # labeled by hand before the backend was connected
    service = make_service(tmp_path, ls)
    asked: list[int] = []
    service.on_labels_found = asked.append
    confirm(service)
    assert asked == [1]  # the first run, without a webhook or Start Training
    seed = list(service.state.get(1).seed_batch)
    assert len(seed) == 3 - 2 and not set(seed) & {2, 5}  # only what is missing
    result = service.run(1)  # what the scheduler runs
    assert result["trained_on"] == 2 and result["step"] == 1 and result["queried"] > 0


def test_enough_labels_before_connecting_need_no_seed_batch(tmp_path, ls):
    label_seed(ls, [1, 2, 3, 4])
    service = make_service(tmp_path, ls)
    asked: list[int] = []
    service.on_labels_found = asked.append
    confirm(service)
    assert asked == [1] and service.state.get(1).seed_batch == ()
    assert not [t for t in ls.tasks if ours(ls, t)]  # no whole-image task is put first


def test_a_project_without_labels_waits_for_its_seed_batch(tmp_path, ls):
    service = make_service(tmp_path, ls)
    asked: list[int] = []
    service.on_labels_found = asked.append
    confirm(service)
    assert asked == [] and len(service.state.get(1).seed_batch) == 3


POLYGON_CONFIG = """<View>
  <Header value="Select label and click the image to start"/>
  <Image name="image" value="$image" zoom="true"/>
  <PolygonLabels name="label" toName="image" strokeWidth="3" pointSize="small" opacity="0.9">
    <Label value="Background" background="red"/><Label value="Square" background="blue"/>
  </PolygonLabels>
</View>"""


def test_a_polygon_only_project_trains_on_polygons_and_gets_polygon_regions(tmp_path, ls):
    from dbsal_backend.labelstudio.label_config import parse_label_config
    from dbsal_backend.labelstudio.annotations import label_map_to_results

    ls.projects[1]["label_config"] = POLYGON_CONFIG
    config = parse_label_config(POLYGON_CONFIG)
    service = make_service(tmp_path, ls)
    connected(service)
    seed = service.run(1)["seed_batch"]
    for tid in seed:  # answered with the template's own tool
        ls.annotate(tid, label_map_to_results(ls.truth[tid], config))
    assert {r["type"] for t in seed for r in ls.tasks[t]["annotations"][0]["result"]} == \
        {"polygonlabels"}
    result = service.run(1)
    assert result["trained_on"] == len(seed) and result["queried"] > 0
    regions = [r for t in ls.tasks for p in ours(ls, t) for r in p["result"]]
    assert regions and {r["type"] for r in regions} == {"polygonlabels"}
    assert {r["from_name"] for r in regions} == {"label"}


def test_a_projects_own_instructions_are_kept_and_the_setting_turns_ours_off(tmp_path, ls):
    ls.projects[1]["expert_instruction"] = "<p>Our own rules</p>"
    connected(make_service(tmp_path / "a", ls))
    assert ls.projects[1]["expert_instruction"] == "<p>Our own rules</p>"
    ls.projects[1]["expert_instruction"] = ""
    connected(make_service(tmp_path / "b", ls, set_instructions=False))
    assert ls.projects[1]["expert_instruction"] == ""
    for answers in ("dominant", "repaint"):
        assert "Areas without a region need nothing" in instructions(answers)
    assert "Never redraw parts" in instructions("dominant")
    assert "redraw that part" in instructions("repaint")


POLYGONS = CONFIG.replace("BrushLabels", "PolygonLabels")


@pytest.mark.parametrize("config, changes, answers, start", [
    (POLYGONS, {}, "dominant", "images"),  # polygons: a region is one superpixel, one class each
    (POLYGONS, {"regions": "connected"}, "repaint", "images"),  # larger regions are repainted
    (POLYGONS, {"answers": "repaint"}, "repaint", "images"),
    (CONFIG, {}, "repaint", "images"),  # brush alone: a region is a whole predicted class
    (CONFIG, {"answers": "dominant"}, "dominant", "images"),
    (POLYGONS, {"start": "regions"}, "dominant", "regions"),  # the start's gray regions
    (CONFIG, {"start": "regions"}, "repaint", "images"),  # brush alone starts with images
])
def test_the_instructions_ask_for_the_answers_the_regions_suit(tmp_path, ls, config, changes,
                                                                answers, start):
    ls.projects[1]["expert_instruction"] = ""
    ls.projects[1]["label_config"] = config
    try:
        connected(make_service(tmp_path, ls, **changes))
        text = ls.projects[1]["expert_instruction"]
        assert text == instructions(answers, start)
        assert ("gray regions without labels" in text) == (start == "regions")
    finally:
        ls.projects[1]["label_config"] = CONFIG


def test_a_start_of_regions_asks_class_less_polygons_and_trains_on_their_answers(tmp_path, ls):
    """DBSAL_START=regions: each seed task asks its superpixels most different in colour, with
    no class and no score, first in the queue; a person gives each its class (one left
    unanswered); the first run trains on those pixels alone, for the start's first epochs,
    and the start is not counted as pre-labels kept."""
    from dbsal_backend.labelstudio.label_config import parse_label_config
    from dbsal_backend.labelstudio.polygons import polygon_to_mask

    ls.projects[1]["label_config"] = POLYGON_CONFIG
    config = parse_label_config(POLYGON_CONFIG)
    service = make_service(tmp_path, ls, start="regions", start_regions=4, initial_batch=None,
                           first_epochs=None)
    assert service.context.recipe(config, first=True).epochs == 20
    connected(service)
    seed = service.run(1)["seed_batch"]
    assert len(seed) == min(30, len(ls.tasks)) == len(ls.tasks)  # auto: 30 tasks of regions
    assert {t for t in ls.tasks if ours(ls, t)} == set(seed)
    for tid in seed:
        (prediction,) = ours(ls, tid)
        assert prediction["score"] == 0.0  # first in the queue
        results = prediction["result"]
        assert 4 <= len(results) and len({r["id"].split(".")[0] for r in results}) == 4
        assert all(r["type"] == "polygonlabels" and r["value"]["polygonlabels"] == []
                   and "score" not in r for r in results)
    assert service.status(1)["start"] == "regions"
    stored = service.state.queries(1)
    assert set(stored) == set(seed) and {q.step for q in stored.values()} == {0}
    assert all(label == len(config.labels) for q in stored.values() for label, _, _ in q.regions)
    # a re-seed (new tasks, a run before the first model) asks the same regions
    before = {t: ours(ls, t)[0]["result"] for t in seed}
    service.run(1)
    assert {t: ours(ls, t)[0]["result"] for t in seed} == before
    # each region answered with the class covering most of it; the last one left without
    for tid in seed:
        answered = []
        for k, result in enumerate(ours(ls, tid)[0]["result"]):
            mask = polygon_to_mask(result["value"]["points"], SIZE, SIZE)
            value = {k_: v for k_, v in result["value"].items() if k_ != "polygonlabels"}
            if k < len(before[tid]) - 1:
                value["polygonlabels"] = [LABELS[int(np.bincount(
                    ls.truth[tid][mask], minlength=2).argmax())]]
            answered.append(dict(result, value=value))
        ls.annotate(tid, answered)
    service.state.mark_answered(1, seed)
    trained = []
    train = service.context.compute.train
    service.context.compute.train = lambda model, images, labels, recipe, *a, **k: (
        trained.append((labels, recipe)) or train(model, images, labels, recipe, *a, **k))
    result = service.run(1)
    assert result["trained_on"] == len(seed)
    ((labels, recipe),) = trained
    assert recipe.epochs == 20 and recipe.trim is None
    labeled = np.mean([(m != IGNORE_INDEX).mean() for m in labels])
    assert 0 < labeled < 0.9  # the answered regions alone, never the whole image
    assert all(q.prelabels_judged == 0 for q in service.state.queries(1).values() if q.step == 0)
    assert result["pool_done"]  # every task answered: nothing left to ask


def test_a_seed_task_whose_image_cannot_be_loaded_is_asked_whole(tmp_path, ls):
    ls.projects[1]["label_config"] = POLYGON_CONFIG
    ls.tasks[2]["data"]["image"] = "/data/upload/missing.png"
    service = make_service(tmp_path, ls, start="regions", start_regions=3, initial_batch=None)
    connected(service)
    seed = service.run(1)["seed_batch"]
    assert 2 in seed
    assert ours(ls, 2)[0]["result"] == [] and ours(ls, 2)[0]["score"] == 0.0
    assert all(ours(ls, t)[0]["result"] for t in seed if t != 2)
    assert set(service.state.queries(1)) == set(seed) - {2}  # its answer is a whole image
