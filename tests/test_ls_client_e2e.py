"""LabelStudioClient and ImageFetcher against a real Label Studio 1.23.2 server
(see tests/lsserver.py).

The tests marked ``e2e`` share one server per session; the unmarked one needs no server.
"""

from __future__ import annotations

import io
import time

import jwt
import numpy as np
import pytest
from backendproc import brush
from lsserver import LabelStudioServer, free_port, label_studio_server  # noqa: F401
from PIL import Image

from dbsal_backend.engine.active import Query
from dbsal_backend.labelstudio.images import ImageFetcher, ImageFetchError
from dbsal_backend.labelstudio.label_config import EXAMPLE_LABEL_CONFIG, parse_label_config
from dbsal_backend.labelstudio.annotations import annotation_to_label_map, select_annotations
from dbsal_backend.labelstudio.client import LabelStudioClient, LabelStudioError
from dbsal_backend.labelstudio.predictions import empty_prediction, query_prediction
from dbsal_backend.engine.regions import Region

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
def project(server):
    """A project with EXAMPLE_LABEL_CONFIG and uploaded images: ``(id, {task id: image})``.

    The last image carries EXIF orientation 6 (shown rotated 90 degrees clockwise).
    """
    with LabelStudioClient(server.url, server.token) as client:
        project_id = client.sdk.projects.create(title="dbsal e2e",
                                                label_config=EXAMPLE_LABEL_CONFIG).id
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
    return project_id, {task_ids[name]: images[name] for name in files}


@pytest.fixture
def client(server):
    with LabelStudioClient(server.url, server.token) as c:
        yield c


def tasks_by_id(client, project_id):
    return {task["id"]: task for task in client.tasks(project_id)}


@pytest.mark.e2e
def test_tasks_stream_all_with_upload_urls(client, project):
    project_id, images = project
    tasks = list(client.tasks(project_id, page_size=2))  # three pages
    assert sorted(t["id"] for t in tasks) == sorted(images)
    for task in tasks:
        assert task["data"][CONFIG.image_value].startswith("/data/upload/")
        assert task["total_annotations"] == 0 or task["id"] in images


@pytest.mark.e2e
def test_images_with_legacy_token_and_cache(client, project, tmp_path):
    project_id, images = project
    tasks = tasks_by_id(client, project_id)
    fetcher = ImageFetcher(client.url, client.auth_header, cache_dir=tmp_path)
    try:
        for task_id, expected in images.items():
            np.testing.assert_array_equal(fetcher.load(tasks[task_id], "image"), expected)
        cached = sorted(tmp_path.iterdir())
        assert len(cached) == N_IMAGES
        # Damaged bytes in the cache are dropped and downloaded again.
        for path in cached:
            path.write_bytes(b"not an image")
        task_id = next(iter(images))
        np.testing.assert_array_equal(fetcher.load(tasks[task_id], "image"), images[task_id])
        assert len(list(tmp_path.iterdir())) == N_IMAGES
    finally:
        fetcher.close()


@pytest.mark.e2e
def test_images_with_personal_access_token(server, project):
    project_id, images = project
    pat = server.personal_access_token()
    assert pat.count(".") == 2  # a JWT, not a legacy token
    with LabelStudioClient(server.url, pat) as client:
        assert client.get_project(project_id)["id"] == project_id
        tasks = tasks_by_id(client, project_id)
        fetcher = ImageFetcher(client.url, client.auth_header)
        task_ids = list(images)
        np.testing.assert_array_equal(fetcher.load(tasks[task_ids[0]], "image"),
                                      images[task_ids[0]])
        # A stale access token is renewed after the server answers 401.
        client._access, client._access_expiry = "stale", float("inf")
        np.testing.assert_array_equal(fetcher.load(tasks[task_ids[1]], "image"),
                                      images[task_ids[1]])
        assert client._access != "stale"
        assert pat not in repr(client)
        fetcher.close()


@pytest.mark.e2e
def test_errors_are_clear(server, project):
    project_id, images = project
    with LabelStudioClient(server.url, server.token) as client:
        task = tasks_by_id(client, project_id)[next(iter(images))]
        fetcher = ImageFetcher(client.url, client.auth_header)
        with pytest.raises(ImageFetchError, match="HTTP 404"):
            fetcher.load({"id": 1, "data": {"image": "/data/nothing-here.png"}}, "image")
        with pytest.raises(ImageFetchError, match="no image URL"):
            fetcher.load({"id": 1, "data": {}}, "image")
        with pytest.raises(ImageFetchError, match="refusing to download"):
            fetcher.load({"id": 1, "data": {"image": "http://169.254.169.254/x.png"}}, "image")
        with pytest.raises(LabelStudioError, match="HTTP 404"):
            client.get_project(10**6)
        fetcher.close()
    with LabelStudioClient(server.url, "0" * 40) as wrong:
        with pytest.raises(LabelStudioError, match="401") as info:
            wrong.get_project(project_id)
        assert info.value.status_code == 401
        fetcher = ImageFetcher(wrong.url, wrong.auth_header)
        with pytest.raises(ImageFetchError, match="HTTP 401"):
            fetcher.load(task, "image")
        fetcher.close()
    with LabelStudioClient(f"http://127.0.0.1:{free_port()}", server.token) as c:
        with pytest.raises(LabelStudioError, match="cannot reach Label Studio"):
            c.get_project(project_id)


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
    sdk.annotations.create(id=labeled, result=[brush(road, "building")])
    sdk.annotations.create(id=labeled, result=[brush(road, "road"),
                                               brush(sky, "sky")])
    sdk.annotations.create(id=skipped, result=[], was_cancelled=True)

    chosen = client.annotations(list(images))
    assert set(chosen) == {labeled}
    label_map, warnings = annotation_to_label_map(
        chosen[labeled]["result"], CONFIG, h, w, CONFIG.class_index
    )
    expected = np.full((h, w), 255, np.uint8)
    expected[road] = CONFIG.class_index["road"]
    expected[sky] = CONFIG.class_index["sky"]
    assert warnings == []
    np.testing.assert_array_equal(label_map, expected)
    counts = {t["id"]: t["total_annotations"] for t in client.tasks(project_id)}
    assert counts[labeled] == 2 and select_annotations({skipped: []}) == {}


def tile_query(image: np.ndarray, score: float) -> Query:
    """2x2 tiles as superpixels; every other tile is a region."""
    h, w = image.shape[:2]
    rows, cols = np.indices((h, w))
    sp = ((rows // 2) * ((w + 1) // 2) + cols // 2).astype(np.int32)
    n = int(sp.max()) + 1
    regions = [Region((k,), k % len(CONFIG.labels), 0.5, int((sp == k).sum()))
               for k in range(0, n, 2)]
    return Query(key=0, score=score, size=(h, w), superpixels=sp, regions=regions,
                 table_size=n)


@pytest.mark.e2e
def test_predictions_are_stored_and_deleted(client, project):
    project_id, images = project
    task_ids = list(images)
    uncertainty = dict(zip(task_ids, np.linspace(0.1, 0.8, len(task_ids)).round(3).tolist()))
    predictions = [{"task": t, **query_prediction(tile_query(images[t], u), CONFIG, "dbsal-1")}
                   for t, u in uncertainty.items()]
    assert client.push_predictions(project_id, predictions, batch=2) == len(task_ids)
    client.update_project(project_id, model_version="dbsal-1")
    assert client.get_project(project_id)["model_version"] == "dbsal-1"
    for task_id, u in uncertainty.items():
        stored = client.sdk.predictions.list(task=task_id)
        assert [p.model_version for p in stored] == ["dbsal-1"]
        assert stored[0].score == pytest.approx(1 - u)  # a confidence
        assert len(stored[0].result) == len(tile_query(images[task_id], u).regions)

    other = [{"task": t, **empty_prediction("dbsal-2", 0.5)} for t in task_ids]
    client.push_predictions(project_id, other)
    client.delete_predictions(project_id, "dbsal-1")
    for task_id in task_ids:
        stored = client.sdk.predictions.list(task=task_id)
        assert [(p.model_version, p.result) for p in stored] == [("dbsal-2", [])]


@pytest.mark.e2e
def test_push_predictions_rejections(client, project):
    project_id, images = project
    task_id = next(iter(images))
    bad_score = [{"task": task_id, **empty_prediction("dbsal", 0.5)}]
    bad_score[0]["score"] = 1.5
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\]"):
        client.push_predictions(project_id, bad_score)
    wrong_label = [{"task": task_id,
                    **query_prediction(tile_query(images[task_id], 0.5), CONFIG, "dbsal")}]
    for result in wrong_label[0]["result"]:
        result["value"]["brushlabels"] = ["cat"]
    with pytest.raises(LabelStudioError, match="stored 0 of 1"):
        client.push_predictions(project_id, wrong_label)


def test_expired_personal_access_token_is_refused():
    expired = jwt.encode({"token_type": "refresh", "exp": int(time.time()) - 60}, "s" * 32)
    with pytest.raises(LabelStudioError, match="expired"):
        LabelStudioClient("http://ls.test", expired)
    with pytest.raises(LabelStudioError, match="API_KEY"):
        LabelStudioClient("http://ls.test", " ")
