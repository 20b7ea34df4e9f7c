"""Where runs compute: in-process, and on a local Ray cluster with the same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dbsal_backend.engine.active import QueryPolicy
from dbsal_backend.server.compute import LocalCompute, RayCompute
from dbsal_backend.labelstudio.images import ImageFetcher
from dbsal_backend.engine.networks import UNet
from dbsal_backend.engine.scoring import Scorer
from dbsal_backend.server.settings import Settings
from dbsal_backend.engine.superpixels import SlicParams, SuperpixelCache
from dbsal_backend.engine.training import Recipe
from fakels import TOKEN, FakeLabelStudio

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ls():
    fake = FakeLabelStudio(n_tasks=12, seed=3)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def setup(ls, tmp_path_factory):
    torch.manual_seed(0)
    model = UNet(2, base_channels=4, depth=3).eval()
    scorer = Scorer(model, 2, mc_samples=3, max_side=48, seed=5, batch_size=3,
                    class_weights=[0.5, 1.5])
    cache = SuperpixelCache(tmp_path_factory.mktemp("sp"), SlicParams(n_segments=20))
    fetcher = ImageFetcher(ls.url, lambda renew: {"Authorization": f"Token {TOKEN}"})
    tasks = list(ls.client().tasks_by_id(1, sorted(ls.tasks)).values())
    tasks[4] = {**tasks[4], "data": {"image": "/data/upload/gone.png"}}  # one broken image
    return model, scorer, cache, fetcher, tasks


def run_step(compute, setup, policy):
    model, scorer, cache, fetcher, tasks = setup
    skipped = []
    result = compute.step(tasks, fetcher, "image", scorer, cache.get, policy,
                          lambda task, exc: skipped.append(task), budget_left=None)
    return result, skipped


@pytest.fixture(scope="module")
def local_ray():
    compute = RayCompute("local", {"label_studio_url": "http://unused", "api_key": TOKEN,
                                   "allowed_image_origins": [], "max_image_bytes": 2**20,
                                   "max_image_pixels": 10**7, "image_timeout": 10.0})
    yield compute
    ray.shutdown()


@pytest.mark.parametrize("diversity", [1, 2])
def test_ray_gives_the_same_step_as_in_process(ls, setup, local_ray, diversity, monkeypatch):
    local_ray.worker_settings["label_studio_url"] = ls.url
    policy = QueryPolicy(images=3, grouping="connected", smoothing=1, diversity=diversity)
    here, skipped_here = run_step(LocalCompute(prefetch_workers=2), setup, policy)
    ranked = []
    rank = local_ray.rank
    monkeypatch.setattr(local_ray, "rank", lambda *a, **k: ranked.append(rank(*a, **k))
                        or ranked[-1])
    there, skipped_there = run_step(local_ray, setup, policy)
    # layouts are computed (and held, at most 2 x images x diversity) only to diversify
    layouts = ranked[0][1]
    assert len(layouts) == 0 if diversity == 1 else 0 < len(layouts) <= 2 * 3 * diversity
    assert skipped_here == skipped_there == [setup[4][4]["id"]]
    assert here.priorities.keys() == there.priorities.keys()
    assert max(abs(here.priorities[k] - there.priorities[k]) for k in here.priorities) < 1e-5
    assert [q.key for q in here.queries] == [q.key for q in there.queries]
    for a, b in zip(here.queries, there.queries):
        # Batches are grouped differently on Ray: confidences agree to float rounding.
        assert [(r.superpixels, r.label, r.pixels) for r in a.regions] == \
            [(r.superpixels, r.label, r.pixels) for r in b.regions]
        np.testing.assert_allclose([r.confidence for r in a.regions],
                                   [r.confidence for r in b.regions], atol=1e-5)
        assert np.array_equal(a.superpixels, b.superpixels)


def test_ray_trains_like_in_process(setup, local_ray):
    model, scorer, cache, fetcher, tasks = setup
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    labels = [(im[..., 0] > 128).astype(np.uint8) for im in images]
    recipe = Recipe(epochs=2, batch_size=2, seed=1)
    torch.manual_seed(0)
    a = LocalCompute().train(UNet(2, base_channels=4, depth=2), images, labels, recipe,
                             torch.device("cpu"))
    torch.manual_seed(0)
    b = local_ray.train(UNet(2, base_channels=4, depth=2), images, labels, recipe,
                        torch.device("cpu"))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name


def test_local_workers_give_the_same_step_and_restore_the_threads(setup):
    policy = QueryPolicy(images=3, grouping="connected", smoothing=1)
    before = torch.get_num_threads()
    one, _ = run_step(LocalCompute(prefetch_workers=2, score_workers=1), setup, policy)
    many, skipped = run_step(LocalCompute(prefetch_workers=2, score_workers=3), setup, policy)
    assert torch.get_num_threads() == before
    assert skipped == [setup[4][4]["id"]]
    assert one.priorities.keys() == many.priorities.keys()
    assert max(abs(one.priorities[k] - many.priorities[k]) for k in one.priorities) < 1e-6
    assert [q.key for q in one.queries] == [q.key for q in many.queries]
    assert [[(r.superpixels, r.label) for r in q.regions] for q in one.queries] == \
        [[(r.superpixels, r.label) for r in q.regions] for q in many.queries]


@pytest.mark.parametrize("name, raw", [("DBSAL_SCORE_WORKERS", "-1"), ("DBSAL_PREFETCH", "1.5"),
                                       ("DBSAL_SCORE_WORKERS", "true")])
def test_local_compute_checks_its_parameters(name, raw):
    """LocalCompute's parameters are checked where they enter (make_compute's settings)."""
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})
