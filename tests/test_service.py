"""The active-learning loop (Service) against an in-memory stand-in for Label Studio.

The real server is exercised by the e2e suite; here a fake client holds tasks, annotations and
predictions in dicts, so every branch of a run is fast and inspectable.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from dbsal_backend.constants import IGNORE_INDEX
from dbsal_backend.label_config import parse_label_config
from dbsal_backend.ls_annotations import label_map_to_results, select_annotations
from dbsal_backend.ls_client import ImageFetchError
from dbsal_backend.rle import rle_to_mask
from dbsal_backend.service import Service, _fit_to_budget, max_uncertainty
from dbsal_backend.selection import Budget
from dbsal_backend.settings import Settings
from dbsal_backend.state import StateStore

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Background"/><Label value="Square"/>
  </BrushLabels>
</View>"""
LABELS = ["Background", "Square"]


def _scene(rng, size=48):
    img = np.full((size, size, 3), 40, np.uint8)
    lbl = np.zeros((size, size), np.uint8)
    y, x = rng.integers(4, size - 20, 2)
    img[y:y + 16, x:x + 16] = (220, 60, 60)
    lbl[y:y + 16, x:x + 16] = 1
    img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    return img, lbl


def brush_results(label_map, only=None):
    """Brush results painting ``label_map`` (optionally only where ``only`` is True)."""
    return label_map_to_results(label_map, parse_label_config(CONFIG), only=only)


class FakeClient:
    """The subset of LabelStudioClient the service uses, over dicts."""

    def __init__(self, n_tasks=8, seed=0):
        rng = np.random.default_rng(seed)
        self.images, self.truth, self.tasks = {}, {}, {}
        for tid in range(1, n_tasks + 1):
            self.images[tid], self.truth[tid] = _scene(rng)
            self.tasks[tid] = {"id": tid, "data": {"image": f"/data/upload/{tid}.png"},
                               "annotations": []}
        self.predictions: dict[int, dict] = {}
        self.model_version = ""
        self.views = 0
        self.broken: set[int] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def list_tasks(self, project, include=None):
        for task in self.tasks.values():
            yield {"id": task["id"], "data": task["data"]}

    def annotations(self, project):
        return select_annotations({t: task["annotations"] for t, task in self.tasks.items()
                                   if task["annotations"]})

    def load_image(self, task, key):
        tid = task["id"]
        if tid in self.broken:
            raise ImageFetchError(f"task {tid}: image cannot be decoded")
        return self.images[tid].copy()

    def delete_predictions(self, project, model_version=None):
        self.predictions.clear()

    def push_predictions(self, project, predictions):
        for p in predictions:
            assert 0.0 <= p["score"] <= 1.0
            self.predictions[p["task"]] = p
        return len(predictions)

    def project_model_version(self, project):
        return self.model_version

    def set_project_model_version(self, project, version):
        self.model_version = version

    def ensure_queue_view(self, project, title):
        self.views = 1
        return 1

    def annotate(self, tid, results, cancelled=False, when="2026-11-25T10:00:00Z"):
        self.tasks[tid]["annotations"].append({
            "id": len(self.tasks[tid]["annotations"]) + 100 * tid, "result": results,
            "was_cancelled": cancelled, "created_at": when, "updated_at": when})


@pytest.fixture
def settings(tmp_path):
    return dataclasses.replace(
        Settings(), model_dir=tmp_path / "models", arch="unet", pretrained=False,
        initial_batch=3, step_size=2, n_segments=30, mc_samples=3, epochs=3, batch_size=2,
        lr=1e-3, max_side=48, device="cpu")


def make_service(settings, client):
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    state = StateStore(settings.model_dir / "state.sqlite3")
    state.update_project(1, label_config=CONFIG)
    return Service(settings, state, lambda: client), state


def test_first_run_without_annotations_queues_a_seed_batch(settings):
    client = FakeClient()
    service, state = make_service(settings, client)
    result = service.run(1)
    seed = result["seed_batch"]
    assert len(seed) == 3 and result["trained"] is False
    # every task gets a priority; seed tasks first, with no regions (whole images)
    assert set(client.predictions) == set(client.tasks)
    assert {t for t, p in client.predictions.items() if p["score"] == 1.0} == set(seed)
    assert all(p["result"] == [] for p in client.predictions.values())
    assert [t for t, _ in state.queue(1)][:3] == seed
    assert client.model_version == "dbsal" and client.views == 1
    # the seed set is charged to the budget: 3 whole images
    budget = Budget.from_dict(state.get_project(1)["budget"])
    assert budget.images == 3 and budget.pixels == 3 * 48 * 48


def test_on_setup_seeds_in_the_background(settings):
    client = FakeClient()
    service, state = make_service(settings, client)
    service.on_setup(1, parse_label_config(CONFIG))
    for t in threading.enumerate():
        if t.name == "dbsal-seed-1":
            t.join(30)
    assert len(state.get_project(1)["seed_batch"]) == 3


def test_training_run_queries_superpixels_and_survives_restart(settings):
    client = FakeClient(n_tasks=8)
    service, state = make_service(settings, client)
    seed = service.run(1)["seed_batch"]
    for tid in seed:  # a person labels the seed images completely
        client.annotate(tid, brush_results(client.truth[tid]))
    broken = max(set(client.tasks) - set(seed))
    client.broken.add(broken)  # one task's image cannot be read: skipped, the rest proceed
    result = service.run(1)
    assert result["trained"] and result["step"] == 1
    assert result["skipped"] == 1
    queried = result["queried"]
    assert 1 <= len(queried) <= 2 and not set(queried) & set(seed)
    for tid, ids in queried.items():
        pred = client.predictions[tid]
        assert len(pred["result"]) == len(ids) >= 1
        for region in pred["result"]:
            assert region["value"]["brushlabels"][0] in LABELS
            mask = rle_to_mask(region["value"]["rle"], 48, 48)
            assert mask.any()
        # the queried tasks are the most uncertain ones: first in the queue
    queue = [t for t, _ in state.queue(1)]
    assert set(queue[:len(queried)]) == set(queried)
    assert set(queue) == set(client.tasks) - set(seed) - {broken}
    scores = [s for _, s in state.queue(1)]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    # labeled tasks are not re-queued and get no prediction
    assert not set(seed) & set(client.predictions)
    status = service.status(1)
    assert status["al_step"] == 1 and status["model_loaded"]
    assert status["budget"]["superpixels"] > 0

    # answer the queried regions only (low-uncertainty superpixels stay unlabeled = ignored)
    for tid, pred in client.predictions.items():
        if pred["result"]:
            covered = np.zeros((48, 48), bool)
            for region in pred["result"]:
                covered |= rle_to_mask(region["value"]["rle"], 48, 48)
            client.annotate(tid, brush_results(client.truth[tid], only=covered))

    client.broken.clear()
    # a restart: a new Service over the same MODEL_DIR resumes model, step and budget
    restarted = Service(settings, StateStore(settings.model_dir / "state.sqlite3"), lambda: client)
    assert restarted.status(1)["model_loaded"] and restarted.status(1)["al_step"] == 1
    result2 = restarted.run(1)
    assert result2["step"] == 2
    assert not set(result2["queried"]) & set(queried)


def test_predict_returns_one_prediction_per_task(settings):
    client = FakeClient()
    service, _ = make_service(settings, client)
    config = parse_label_config(CONFIG)
    tasks = [client.tasks[1], client.tasks[2]]
    before = service.predict(1, tasks, config)  # no model yet: empty results
    assert [p["result"] for p in before] == [[], []]
    seed = service.run(1)["seed_batch"]
    for tid in seed:
        client.annotate(tid, brush_results(client.truth[tid]))
    service.run(1)
    client.broken.add(2)
    after = service.predict(1, tasks, config)
    assert len(after) == 2
    assert after[0]["result"] and after[0]["model_version"] == "dbsal"
    assert after[1]["result"] == []  # unreadable image: empty, logged, no crash


def test_malformed_annotation_is_skipped(settings):
    client = FakeClient()
    service, _ = make_service(settings, client)
    seed = service.run(1)["seed_batch"]
    client.annotate(seed[0], brush_results(client.truth[seed[0]]))
    bad = brush_results(client.truth[seed[1]])
    bad[0]["value"]["rle"] = [1, 2, 3]  # malformed RLE
    client.annotate(seed[1], bad)
    wrong_size = brush_results(client.truth[seed[2]])
    wrong_size[0]["original_width"] = 99
    client.annotate(seed[2], wrong_size)
    result = service.run(1)  # trains on the one good annotation
    assert result["trained"]


def test_newest_annotation_wins_and_cancelled_are_skipped(settings):
    client = FakeClient()
    service, _ = make_service(settings, client)
    seed = service.run(1)["seed_batch"]
    client.annotate(seed[0], [], cancelled=True)
    labeled, unlabeled = service._fetch_tasks(client, 1)
    assert seed[0] not in [t["id"] for t, _ in labeled]
    client.annotate(seed[1], [], when="2026-11-25T09:00:00Z")
    client.annotate(seed[1], brush_results(client.truth[seed[1]]), when="2026-11-25T11:00:00Z")
    labeled, _ = service._fetch_tasks(client, 1)
    (task, ann), = [(t, a) for t, a in labeled if t["id"] == seed[1]]
    assert ann["result"]


def test_budget_limits_queried_regions(settings):
    client = FakeClient()
    limited = dataclasses.replace(settings, budget=3 * 48 * 48 + 5, budget_unit="pixels")
    service, state = make_service(limited, client)
    seed = service.run(1)["seed_batch"]
    for tid in seed:
        client.annotate(tid, brush_results(client.truth[tid]))
    result = service.run(1)
    budget = Budget.from_dict(state.get_project(1)["budget"])
    assert budget.pixels <= limited.budget
    assert sum(len(v) for v in result["queried"].values()) <= 5
    status = service.status(1)
    assert status["budget"]["left"] == limited.budget - budget.pixels


def test_fit_to_budget_keeps_the_most_uncertain():
    ids = np.array([0, 2, 3])
    scores = np.array([0.9, 0.1, 0.5, 0.7])
    sizes = np.array([10, 10, 10, 10])
    assert _fit_to_budget(ids, scores, sizes, Budget("superpixels", 2)).tolist() == [0, 3]
    assert _fit_to_budget(ids, scores, sizes, Budget("pixels", 25)).tolist() == [0, 3]
    assert _fit_to_budget(ids, scores, sizes, Budget("images", 0)).tolist() == []


def test_max_uncertainty_normalises_into_unit_range():
    assert max_uncertainty("entropy", 4) == 2.0
    assert max_uncertainty("authors", 4) == 4.0
    assert max_uncertainty("margin", 11) == 1.0
