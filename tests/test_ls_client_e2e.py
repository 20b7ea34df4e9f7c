"""LabelStudioClient against a real Label Studio 1.23.2 server (see tests/lsserver.py).

The tests marked ``e2e`` share one server per session; the two unmarked ones need no server.
"""

from __future__ import annotations

import io
import time

import httpx
import jwt
import numpy as np
import pytest
from lsserver import LabelStudioServer, free_port, label_studio_server  # noqa: F401
from PIL import Image

from dbsal_backend.label_config import EXAMPLE_LABEL_CONFIG, parse_label_config
from dbsal_backend.ls_annotations import annotation_to_label_map
from dbsal_backend.ls_client import ImageFetchError, LabelStudioClient, LabelStudioError
from dbsal_backend.ls_predictions import superpixel_prediction
from dbsal_backend.rle import mask_to_rle

CONFIG = parse_label_config(EXAMPLE_LABEL_CONFIG)
N_IMAGES = 5
EXIF_ORIENTATION = 0x0112


def synthetic_image(k: int) -> np.ndarray:
    """A small RGB image, different for each ``k`` (sizes differ too)."""
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, size=(10 + k, 14 + 2 * k, 3), dtype=np.uint8)


def png_bytes(image: np.ndarray, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    exif = pil.getexif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    pil.save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(label_studio_server: LabelStudioServer) -> LabelStudioServer:  # noqa: F811
    return label_studio_server


@pytest.fixture(scope="module")
def project(server, tmp_path_factory):
    """A project with EXAMPLE_LABEL_CONFIG and uploaded images: ``(id, {task id: image})``.

    The last image carries EXIF orientation 6 (shown rotated 90 degrees clockwise).
    """
    client = LabelStudioClient(server.url, server.token, tmp_path_factory.mktemp("cache"))
    project_id = client.sdk.projects.create(title="dbsal e2e", label_config=EXAMPLE_LABEL_CONFIG).id
    images, files = {}, {}
    for k in range(N_IMAGES):
        image = synthetic_image(k)
        if k == N_IMAGES - 1:
            files[f"img{k}.png"] = png_bytes(image, orientation=6)
            images[f"img{k}.png"] = np.rot90(image, k=-1)
        else:
            files[f"img{k}.png"] = png_bytes(image)
            images[f"img{k}.png"] = image
    task_ids = server.upload_files(project_id, files)
    client.close()
    return project_id, {task_ids[name]: images[name] for name in files}


@pytest.fixture
def client(server, tmp_path):
    with LabelStudioClient(server.url, server.token, tmp_path / "cache") as c:
        yield c


def tasks_by_id(client, project_id):
    return {task["id"]: task for task in client.list_tasks(project_id)}


@pytest.mark.e2e
def test_list_tasks_streams_all_with_upload_urls(client, project):
    project_id, images = project
    tasks = list(client.list_tasks(project_id, page_size=2))  # three pages
    assert sorted(t["id"] for t in tasks) == sorted(images)
    for task in tasks:
        assert task["data"][CONFIG.image_value].startswith("/data/upload/")
        assert "annotations" in task and "predictions" in task


@pytest.mark.e2e
def test_load_image_with_legacy_token_and_cache(client, project):
    project_id, images = project
    tasks = tasks_by_id(client, project_id)
    for task_id, expected in images.items():
        np.testing.assert_array_equal(client.load_image(tasks[task_id], "image"), expected)
    cached = sorted(client.cache_dir.iterdir())
    assert len(cached) == N_IMAGES

    # Served from the cache: corrupt bytes there are reported and dropped, then re-downloaded.
    for path in cached:
        path.write_bytes(b"not an image")
    task_id = next(iter(images))
    with pytest.raises(ImageFetchError, match="not a readable image"):
        client.load_image(tasks[task_id], "image")
    assert len(list(client.cache_dir.iterdir())) == N_IMAGES - 1
    np.testing.assert_array_equal(client.load_image(tasks[task_id], "image"), images[task_id])
    assert len(list(client.cache_dir.iterdir())) == N_IMAGES


@pytest.mark.e2e
def test_load_image_with_personal_access_token(server, project, tmp_path):
    project_id, images = project
    pat = server.personal_access_token()
    assert pat.count(".") == 2  # a JWT, not a legacy token
    with LabelStudioClient(server.url, pat, tmp_path / "pat-cache") as client:
        assert client.get_project(project_id)["id"] == project_id
        tasks = tasks_by_id(client, project_id)
        task_ids = list(images)
        np.testing.assert_array_equal(
            client.load_image(tasks[task_ids[0]], "image"), images[task_ids[0]]
        )
        # A stale access token is renewed after the server answers 401.
        client._access, client._access_expiry = "stale", float("inf")
        np.testing.assert_array_equal(
            client.load_image(tasks[task_ids[1]], "image"), images[task_ids[1]]
        )
        assert client._access != "stale"
        assert pat not in repr(client)


@pytest.mark.e2e
def test_errors_are_clear(server, project, tmp_path):
    project_id, images = project
    with LabelStudioClient(server.url, server.token, tmp_path / "b") as client:
        task = tasks_by_id(client, project_id)[next(iter(images))]
        with pytest.raises(ImageFetchError, match="HTTP 404"):
            client.load_image({"id": 1, "data": {"image": "/data/nothing-here.png"}}, "image")
        with pytest.raises(ImageFetchError, match="no image URL"):
            client.load_image({"id": 1, "data": {}}, "image")
        with pytest.raises(ImageFetchError, match="cannot download"):
            client.load_image({"id": 1, "data": {"image": "s3://bucket/x.png"}}, "image")
        with pytest.raises(LabelStudioError, match="HTTP 404"):
            client.get_project(10**6)
    with LabelStudioClient(server.url, "0" * 40, tmp_path / "a") as wrong:
        with pytest.raises(LabelStudioError, match="HTTP 401") as info:
            wrong.get_project(project_id)
        assert info.value.status_code == 401
        with pytest.raises(ImageFetchError, match="HTTP 401"):
            wrong.load_image(task, "image")
    with LabelStudioClient(f"http://127.0.0.1:{free_port()}", server.token, tmp_path / "c") as c:
        with pytest.raises(LabelStudioError, match="cannot reach Label Studio"):
            c.get_project(project_id)


def brush_result(mask: np.ndarray, label: str) -> dict:
    return {
        "from_name": CONFIG.brush_name,
        "to_name": CONFIG.image_name,
        "type": "brushlabels",
        "original_width": mask.shape[1],
        "original_height": mask.shape[0],
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
    }


@pytest.mark.e2e
def test_annotations_round_trip(client, project):
    project_id, images = project
    labeled, skipped = list(images)[:2]
    h, w = images[labeled].shape[:2]
    road = np.zeros((h, w), bool)
    road[: h // 2, : w // 2] = True
    sky = np.zeros((h, w), bool)
    sky[h // 3 :, w // 3 :] = True
    sdk = client.sdk
    sdk.annotations.create(id=labeled, result=[brush_result(road, "building")])
    sdk.annotations.create(id=labeled, result=[brush_result(road, "road"),
                                               brush_result(sky, "sky")])
    sdk.annotations.create(id=skipped, result=[], was_cancelled=True)

    chosen = client.annotations(project_id)
    assert set(chosen) == {labeled}
    label_map, warnings = annotation_to_label_map(
        chosen[labeled]["result"], CONFIG, h, w, CONFIG.class_index
    )
    expected = np.full((h, w), 255, np.uint8)
    expected[road] = CONFIG.class_index["road"]
    expected[sky] = CONFIG.class_index["sky"]
    assert warnings == []
    np.testing.assert_array_equal(label_map, expected)
    assert sorted(client.unlabeled_task_ids(project_id)) == sorted(set(images) - {labeled})


def predictions_for(task_scores: dict[int, float], images, model_version="dbsal"):
    """One superpixel prediction per task: 2x2 tiles, every other tile queried."""
    predictions = []
    for task_id, score in task_scores.items():
        h, w = images[task_id].shape[:2]
        rows, cols = np.indices((h, w))
        sp = (rows // 2) * ((w + 1) // 2) + cols // 2
        n = sp.max() + 1
        prediction = superpixel_prediction(
            sp, np.arange(0, n, 2), (sp % 5), np.linspace(0, 2, n), CONFIG, model_version, score
        )
        predictions.append({"task": task_id, **prediction})
    return predictions


@pytest.mark.e2e
def test_predictions_queue_and_cleanup(client, project):
    project_id, images = project
    unlabeled = client.unlabeled_task_ids(project_id)
    assert len(unlabeled) >= 3
    scores = dict(zip(unlabeled, np.linspace(0.2, 0.9, len(unlabeled)).round(3).tolist()))

    view = client.ensure_queue_view(project_id)
    assert client.push_predictions(project_id, predictions_for(scores, images), batch=2) == len(
        scores
    )
    client.set_project_model_version(project_id, "dbsal")
    assert client.project_model_version(project_id) == "dbsal"
    for task_id in scores:
        stored = client.sdk.predictions.list(task=task_id)
        assert [p.model_version for p in stored] == ["dbsal"]
        assert stored[0].score == pytest.approx(scores[task_id])
        assert len(stored[0].result) > 0
    by_score = sorted(scores, key=scores.get, reverse=True)
    assert client.queue(project_id, view) == by_score  # labeled task filtered out

    # The tab is updated, never duplicated; duplicates from elsewhere are removed.
    assert client.ensure_queue_view(project_id) == view
    client.sdk.views.create(project=project_id, data={"title": "DBSAL queue"})
    assert client.ensure_queue_view(project_id) == view
    titles = [(v.data or {}).get("title") for v in client.sdk.views.list(project=project_id)]
    assert titles.count("DBSAL queue") == 1

    # A second round with reversed scores; the older round is deleted.
    new_scores = {task_id: round(1.0 - s, 3) for task_id, s in scores.items()}
    client.push_predictions(project_id, predictions_for(new_scores, images))
    assert client.delete_predictions(project_id, model_version="other") == 0
    assert client.delete_predictions(project_id, "dbsal", keep_latest=True) == len(scores)
    for task_id in scores:
        stored = client.sdk.predictions.list(task=task_id)
        assert [p.score for p in stored] == [pytest.approx(new_scores[task_id])]
    assert client.queue(project_id, view) == by_score[::-1]


@pytest.mark.e2e
def test_push_predictions_rejections(client, project):
    project_id, images = project
    task_id = next(iter(images))
    bad_score = predictions_for({task_id: 0.5}, images)
    bad_score[0]["score"] = 1.5
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\]"):
        client.push_predictions(project_id, bad_score)
    wrong_label = predictions_for({task_id: 0.5}, images)
    wrong_label[0]["result"][0]["value"]["brushlabels"] = ["cat"]
    with pytest.raises(LabelStudioError, match="stored 0 of 1"):
        client.push_predictions(project_id, wrong_label)


@pytest.mark.e2e
def test_empty_project_queue_and_all_deletions(client):
    project_id = client.sdk.projects.create(title="empty e2e", label_config=EXAMPLE_LABEL_CONFIG).id
    view = client.ensure_queue_view(project_id, title="Q")
    assert client.queue(project_id, view) == []
    assert client.unlabeled_task_ids(project_id) == []
    assert client.annotations(project_id) == {}
    assert client.delete_predictions(project_id) == 0
    assert client.project_model_version(project_id) == ""


def test_key_goes_only_to_label_studio(tmp_path):
    png = png_bytes(synthetic_image(0))
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        return httpx.Response(200, content=png)

    with LabelStudioClient("http://ls.test:8080/", "k" * 40, tmp_path) as client:
        client._http.close()
        client._http = httpx.Client(transport=httpx.MockTransport(handler))
        for url in ("/data/upload/1/a.png", "http://ls.test:8080/b.png", "https://cdn.test/c.png"):
            image = client.load_image({"id": 1, "data": {"image": url}}, "image")
            np.testing.assert_array_equal(image, synthetic_image(0))
        assert "k" * 40 not in repr(client)
    assert seen == [("ls.test", "Token " + "k" * 40)] * 2 + [("cdn.test", None)]


def test_expired_personal_access_token_is_refused(tmp_path):
    expired = jwt.encode({"token_type": "refresh", "exp": int(time.time()) - 60}, "s" * 32)
    with pytest.raises(LabelStudioError, match="expired"):
        LabelStudioClient("http://ls.test", expired, tmp_path)
    with pytest.raises(ValueError, match="http"):
        LabelStudioClient("ls.test", "k", tmp_path)
    with pytest.raises(ValueError, match="api_key"):
        LabelStudioClient("http://ls.test", " ", tmp_path)
