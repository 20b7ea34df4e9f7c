"""The HTTP wiring (_wsgi.py, model.py) over the real Flask app with a fake service.

No Label Studio server is needed: requests are shaped like the ones Label Studio 1.23 sends
(see /work/shared/docs/label-studio-notes.md).
"""

import io
import logging
import os
import tempfile
import threading
from pathlib import Path
from unittest import mock

import pytest
import requests
from werkzeug.serving import make_server

import model
from dbsal_backend.label_config import LabelConfigError, parse_label_config
from dbsal_backend.settings import Settings

WAIT = 10.0

GOOD = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="crop"/><Label value="weed"/>
  </BrushLabels>
</View>"""
GOOD_3 = GOOD.replace('<Label value="weed"/>', '<Label value="weed"/><Label value="soil"/>')
BAD = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="car"/></RectangleLabels>
</View>"""


def _refusal(xml):
    """The LabelConfigError message for ``xml``."""
    with pytest.raises(LabelConfigError) as info:
        parse_label_config(xml)
    return str(info.value)


class FakeService:
    """Records what the wiring asks; ``gate`` holds training runs; ``fail`` makes them raise."""

    def __init__(self, settings, state):
        self.settings, self.state = settings, state
        self.setups, self.predicted, self.runs = [], [], []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = None
        self.answer_count = None  # predict returns this many predictions when set

    def on_setup(self, project, label_config):
        self.setups.append((project, label_config))

    def predict(self, project, tasks, label_config):
        self.predicted.append((project, [t["id"] for t in tasks], label_config))
        n = len(tasks) if self.answer_count is None else self.answer_count
        return [{"result": [], "score": 0.1 * t["id"]} for t in tasks[:n]]

    def run(self, project):
        self.runs.append(project)
        assert self.gate.wait(WAIT)
        if self.fail:
            raise self.fail

    def status(self, project):
        return {"fake": True, "runs": len(self.runs)}


def _build(model_dir, **overrides):
    saved = model.service_factory
    model.service_factory = FakeService
    try:
        return model.build_runtime(Settings(model_dir=Path(model_dir), **overrides))
    finally:
        model.service_factory = saved


# _wsgi builds the runtime when imported: give it a fake one first, and a MODEL_DIR to create.
_boot_dir = tempfile.TemporaryDirectory()
_boot = _build(_boot_dir.name)
model.set_runtime(_boot)
with mock.patch.dict(os.environ, {"MODEL_DIR": _boot_dir.name}):
    import _wsgi  # noqa: E402


@pytest.fixture
def rt(tmp_path):
    runtime = _build(tmp_path, train_after=2, budget=100)
    model.set_runtime(runtime)
    yield runtime
    runtime.service.gate.set()
    runtime.scheduler.shutdown(timeout=WAIT)
    runtime.state.close()
    model.set_runtime(_boot)


@pytest.fixture
def client(rt):
    return _wsgi.app.test_client()


def _setup(client, project="12.1700000000", schema=GOOD):
    return client.post("/setup", json={"project": project, "schema": schema, "hostname": "http://ls",
                                       "access_token": "tok", "model_version": None})


def _event(action, project_id=12, label_config=GOOD, **extra):
    project = {"id": project_id, "title": "weeds", "label_config": label_config}
    return {"action": action, "project": project, **extra}


ANNOTATION = {"id": 5, "result": [], "task": 3}
PAYLOADS = {
    "ANNOTATION_CREATED": dict(annotation=ANNOTATION, task={"id": 3}),
    "ANNOTATION_UPDATED": dict(annotation=ANNOTATION, task={"id": 3}),
    "ANNOTATION_DELETED": dict(annotation=ANNOTATION),
    "ANNOTATIONS_CREATED": dict(annotation=[ANNOTATION]),
    "ANNOTATIONS_DELETED": dict(annotations=[{"id": 5}]),
    "TASKS_CREATED": dict(tasks=[{"id": 3}]),
    "TASKS_DELETED": dict(tasks=[{"id": 3}]),
    "PROJECT_UPDATED": {},
    "START_TRAINING": {},
}


# -- health, setup ------------------------------------------------------------------------


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "UP"


def test_setup_with_a_good_config(client, rt):
    response = _setup(client)
    assert response.status_code == 200
    assert response.get_json() == {"model_version": "dbsal"}
    assert rt.state.get_project(12)["label_config"] == GOOD
    project, config = rt.service.setups[-1]
    assert project == 12 and list(config.labels) == ["crop", "weed"]


def test_setup_with_a_bad_config_answers_400_with_the_reason(client, rt):
    response = _setup(client, schema=BAD)
    assert response.status_code == 400
    message = _refusal(BAD)
    assert response.get_json()["error"] == message
    # Label Studio shows only str(requests.HTTPError), built from the reason phrase:
    assert response.status == "400 " + " ".join(message.split())
    assert rt.state.get_project(12) is None and rt.service.setups == []


@pytest.mark.parametrize(
    "kwargs",
    [dict(data="not json", content_type="application/json"), dict(json=[1, 2]),
     dict(json={"schema": GOOD}), dict(json={"project": "abc", "schema": GOOD}),
     dict(json={"project": True, "schema": GOOD}), dict(json={"project": 3}),
     dict(json={"project": 3, "schema": 7}), dict(json={"project": 3, "schema": "<View"})],
)
def test_setup_with_malformed_requests(client, kwargs):
    response = client.post("/setup", **kwargs)
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_bad_config_message_reaches_a_requests_client(rt):
    """Over real HTTP, as Label Studio's MLApi sees it (it keeps only str(HTTPError))."""
    server = make_server("127.0.0.1", 0, _wsgi.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/setup"
        response = requests.post(url, json={"project": "12.1", "schema": BAD}, timeout=WAIT)
        with pytest.raises(requests.HTTPError) as info:
            response.raise_for_status()
    finally:
        server.shutdown()
        thread.join(WAIT)
    assert str(info.value).startswith("400 Client Error: " + " ".join(_refusal(BAD).split()))


# -- predict ------------------------------------------------------------------------------


def _tasks(*ids, project=12):
    return [{"id": i, "project": project, "data": {"image": f"/data/upload/{i}.png"}} for i in ids]


def test_predict_gives_one_result_per_task_in_order(client, rt):
    _setup(client)
    response = client.post("/predict", json={"tasks": _tasks(4, 2, 9), "project": "12.1700000000",
                                             "label_config": GOOD, "params": {"login": None}})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == "dbsal"
    assert [r["score"] for r in body["results"]] == pytest.approx([0.4, 0.2, 0.9])
    assert all(r["model_version"] == "dbsal" and r["result"] == [] for r in body["results"])
    project, ids, config = rt.service.predicted[-1]
    assert (project, ids, config.brush_name) == (12, [4, 2, 9], "tag")


def test_predict_without_project_or_config_uses_the_tasks_and_the_stored_config(client, rt):
    _setup(client)
    response = client.post("/predict", json={"tasks": _tasks(1)})
    assert response.status_code == 200 and len(response.get_json()["results"]) == 1
    assert rt.service.predicted[-1][2].labels == rt.service.setups[-1][1].labels


def test_predict_with_no_tasks(client, rt):
    _setup(client)
    response = client.post("/predict", json={"tasks": [], "project": "12.1", "label_config": GOOD})
    assert response.status_code == 200 and response.get_json()["results"] == []


def test_predict_for_an_unknown_project_registers_it_when_the_config_comes_along(client, rt):
    response = client.post("/predict", json={"tasks": _tasks(1, project=30), "project": "30.1",
                                             "label_config": GOOD})
    assert response.status_code == 200
    assert rt.state.get_project(30)["label_config"] == GOOD
    response = client.post("/predict", json={"tasks": _tasks(1, project=31), "project": "31.1"})
    assert response.status_code == 404 and "unknown project 31" in response.get_json()["error"]


def test_predict_with_a_wrong_number_of_predictions_is_an_error(client, rt):
    _setup(client)
    rt.service.answer_count = 1
    response = client.post("/predict", json={"tasks": _tasks(1, 2), "project": "12.1",
                                             "label_config": GOOD})
    assert response.status_code == 500
    assert "1 predictions for 2 tasks" in response.get_json()["error"]


@pytest.mark.parametrize(
    "body,status",
    [({"project": "12.1"}, 400), ({"tasks": "all", "project": "12.1"}, 400),
     ({"tasks": [1, 2], "project": "12.1"}, 400), ({"tasks": [{"id": 1}]}, 400),
     ({"tasks": _tasks(1), "project": "12.1", "label_config": 5}, 400),
     ({"tasks": _tasks(1), "project": "12.1", "label_config": BAD}, 400)],
)
def test_predict_with_malformed_requests(client, rt, body, status):
    _setup(client)
    response = client.post("/predict", json=body)
    assert response.status_code == status and response.get_json()["error"]


# -- webhook ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(PAYLOADS))
def test_webhook_accepts_every_action(client, rt, action):
    _setup(client)
    response = client.post("/webhook", json=_event(action, **PAYLOADS[action]))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["project"], body["action"]) == (12, action)
    expected = {"START_TRAINING": "started", "TASKS_CREATED": "ignored", "TASKS_DELETED": "ignored",
                "PROJECT_UPDATED": "ignored"}.get(action, "counted")
    assert body["training"] == expected
    assert rt.scheduler.wait_idle(12, timeout=WAIT)
    assert rt.service.runs == ([12] if expected == "started" else [])


def test_webhook_payloads_with_keys_missing(client, rt):
    _setup(client)
    for action in PAYLOADS:  # no annotation, task or label_config keys at all
        response = client.post("/webhook", json={"action": action, "project": {"id": 12}})
        assert response.status_code == 200, action
    assert rt.scheduler.wait_idle(12, timeout=WAIT)


def test_annotation_events_start_training_at_the_threshold(client, rt):
    _setup(client)
    first = client.post("/webhook", json=_event("ANNOTATION_CREATED", **PAYLOADS["ANNOTATION_CREATED"]))
    assert first.get_json()["training"] == "counted"
    assert rt.state.get_project(12)["annotations_since_run"] == 1
    second = client.post("/webhook", json=_event("ANNOTATION_UPDATED", **PAYLOADS["ANNOTATION_UPDATED"]))
    assert second.get_json()["training"] == "started"
    assert rt.scheduler.wait_idle(12, timeout=WAIT)
    assert rt.service.runs == [12]
    record = rt.state.get_project(12)
    assert record["training_state"] == "idle" and record["last_trained"] is not None


def test_webhook_answers_while_training_runs_and_coalesces(client, rt):
    _setup(client)
    rt.service.gate.clear()  # the run blocks until the gate opens
    assert client.post("/webhook", json=_event("START_TRAINING")).get_json()["training"] == "started"
    answers = [client.post("/webhook", json=_event("ANNOTATION_CREATED")).get_json()["training"]
               for _ in range(10)]
    assert answers[-1] == "queued"
    assert client.get("/status?project=12").get_json()["follow_up_run"] is True
    rt.service.gate.set()
    assert rt.scheduler.wait_idle(12, timeout=WAIT)
    assert rt.service.runs == [12, 12]  # the run and exactly one follow-up


@pytest.mark.parametrize(
    "kwargs,status",
    [
        (dict(data="garbage", content_type="text/plain"), 400),
        (dict(data=b"\xff\xfe{", content_type="application/json"), 400),
        (dict(json=None), 400),
        (dict(json=["START_TRAINING"]), 400),
        (dict(json={"project": {"id": 12}}), 400),
        (dict(json={"action": 5, "project": {"id": 12}}), 400),
        (dict(json={"action": "START_TRAINING"}), 400),
        (dict(json={"action": "START_TRAINING", "project": 12}), 400),
        (dict(json={"action": "START_TRAINING", "project": {"id": "twelve"}}), 400),
        (dict(json={"action": "START_TRAINING", "project": {}}), 400),
        (dict(json={"action": "START_TRAINING", "project": {"id": 99}}), 404),
        (dict(json={"action": "START_TRAINING", "project": {"id": 99, "label_config": BAD}}), 400),
    ],
)
def test_webhook_garbage_gets_4xx_and_the_server_lives_on(client, rt, kwargs, status):
    _setup(client)
    response = client.post("/webhook", **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"]
    assert rt.service.runs == []
    assert client.get("/health").status_code == 200


def test_webhook_for_an_unknown_project_with_a_config_registers_it(client, rt):
    response = client.post("/webhook", json=_event("START_TRAINING", project_id=40))
    assert response.status_code == 200 and response.get_json()["training"] == "started"
    assert rt.state.get_project(40)["label_config"] == GOOD
    assert rt.scheduler.wait_idle(40, timeout=WAIT)


def test_project_updated_revalidates_the_config(client, rt):
    _setup(client)
    bad = client.post("/webhook", json=_event("PROJECT_UPDATED", label_config=BAD))
    assert bad.status_code == 400 and bad.get_json()["error"] == _refusal(BAD)
    assert rt.state.get_project(12)["label_config"] == GOOD
    good = client.post("/webhook", json=_event("PROJECT_UPDATED", label_config=GOOD_3))
    assert good.status_code == 200
    assert rt.state.get_project(12)["label_config"] == GOOD_3
    assert list(rt.service.setups[-1][1].labels) == ["crop", "weed", "soil"]


def test_train_route_starts_a_run(client, rt):
    _setup(client)
    response = client.post("/train", json={"annotations": [], "project": "12.1700000000"})
    assert response.status_code == 201 and response.get_json()["training"] == "started"
    assert rt.scheduler.wait_idle(12, timeout=WAIT) and rt.service.runs == [12]
    assert client.post("/train", json={"project": "77.1"}).status_code == 404


# -- status, versions ---------------------------------------------------------------------


def test_status(client, rt):
    _setup(client)
    body = client.get("/status?project=12").get_json()
    assert body["project"] == 12 and body["training_state"] == "idle" and body["al_step"] == 0
    assert (body["budget"]["limit"], body["budget"]["spent"], body["budget"]["left"]) == (100, 0, 100)
    assert (body["queue_length"], body["last_error"], body["service"]["fake"]) == (0, None, True)
    budget = {"unit": "superpixels", "limit": 100, "images": 3, "superpixels": 40, "pixels": 5000}
    rt.state.record_step(12, 1, {3: [1, 2]}, queue=[(4, 0.9), (5, 0.1)], budget=budget,
                         model_version="dbsal-1")
    body = client.get("/status?project=12").get_json()
    assert (body["al_step"], body["model_version"], body["queue_length"]) == (1, "dbsal-1", 2)
    assert (body["budget"]["spent"], body["budget"]["left"]) == (40, 60)


def test_status_shows_a_failed_run(client, rt):
    _setup(client)
    rt.service.fail = RuntimeError("CUDA out of memory")
    client.post("/webhook", json=_event("START_TRAINING"))
    assert rt.scheduler.wait_idle(12, timeout=WAIT)
    body = client.get("/status?project=12").get_json()
    assert body["training_state"] == "failed"
    assert body["last_error"] == "RuntimeError: CUDA out of memory"
    training = client.get("/is_training?project=12").get_json()
    assert training["is_training"] is False


@pytest.mark.parametrize("query,status", [("", 400), ("?project=abc", 400), ("?project=55", 404)])
def test_status_with_bad_queries(client, rt, query, status):
    _setup(client)
    response = client.get("/status" + query)
    assert response.status_code == status and response.get_json()["error"]


def test_versions_answers_get_and_post(client):
    assert client.get("/versions").get_json()["versions"] == ["dbsal"]
    assert client.post("/versions", json={"project": "12.1"}).get_json()["versions"] == ["dbsal"]


def test_service_errors_become_500_and_the_server_lives_on(client, rt, monkeypatch):
    _setup(client)
    monkeypatch.setattr(rt.service, "status", lambda project: 1 / 0)
    response = client.get("/status?project=12")
    assert response.status_code == 500 and "ZeroDivisionError" in response.get_json()["error"]
    assert client.get("/health").status_code == 200


# -- runtime and model --------------------------------------------------------------------


def test_restart_keeps_counters_and_marks_interrupted_runs(tmp_path):
    first = _build(tmp_path, train_after=2)
    first.setup(12, GOOD)
    assert first.scheduler.notify(12, "ANNOTATION_CREATED") == "counted"
    first.state.update_project(13, training_state="running")  # as if the process died mid-run
    first.state.update_project(14, training_state="failed", last_error="OSError: disk full")
    first.scheduler.shutdown(timeout=WAIT)
    first.state.close()
    second = _build(tmp_path, train_after=2)
    try:
        record = second.state.get_project(13)
        assert record["training_state"] == "failed" and "interrupted" in record["last_error"]
        assert second.scheduler.status(13)["state"] == "failed"
        assert second.scheduler.status(14)["last_error"] == "OSError: disk full"
        assert second.scheduler.notify(13, "ANNOTATION_CREATED") == "counted"
        assert second.state.get_project(13)["training_state"] == "failed"  # not reset by an event
        assert second.scheduler.notify(12, "ANNOTATION_CREATED") == "started"  # 1 + 1 = threshold
        assert second.scheduler.wait_idle(12, timeout=WAIT)
    finally:
        second.scheduler.shutdown(timeout=WAIT)
        second.state.close()


def test_model_validates_its_label_config(rt):
    with pytest.raises(LabelConfigError):
        model.DBSALModel(label_config=BAD)
    assert model.DBSALModel(label_config=GOOD).config.image_name == "image"
    with pytest.raises(ValueError, match="project"):
        model.DBSALModel().fit()
    with pytest.raises(ValueError, match="project"):
        model.DBSALModel(label_config=GOOD).setup()


# -- logging ------------------------------------------------------------------------------


def test_secret_filter_masks_the_key_and_tokens():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_wsgi.SecretFilter(["key-0123456789abcdef"]))
    log = logging.getLogger("test_server.secrets")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("using %s", "key-0123456789abcdef")
        log.warning('body: {"access_token": "abcdef123", "password": "hunter2"}')
        log.warning("Authorization: Token 0f0f0f0f")
        try:
            raise RuntimeError("refused key-0123456789abcdef")
        except RuntimeError:
            log.exception("call failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    for secret in ["key-0123456789abcdef", "abcdef123", "hunter2", "0f0f0f0f"]:
        assert secret not in text
    assert 'body: {"access_token": "***", "password": "***"}' in text
    assert "using ***" in text and "Token ***" in text and "RuntimeError: refused ***" in text


def test_configure_logging_installs_one_masking_handler():
    root = logging.getLogger()
    level = root.level
    try:
        _wsgi.configure_logging(Settings(label_studio_api_key="abc-secret", log_level="DEBUG"))
        _wsgi.configure_logging(Settings(label_studio_api_key="abc-secret", log_level="DEBUG"))
        ours = [h for h in root.handlers if getattr(h, "_dbsal", False)]
        assert len(ours) == 1 and root.level == logging.DEBUG
        assert ours[0].filters[0].mask("key=abc-secret") == "key=***"
    finally:
        root.setLevel(level)
