"""The HTTP layer: routes, auth, limits, JSON errors, logs (Flask test client, fake Label Studio).

A bad-input battery and property-based tests (hypothesis) send what an attacker or a broken
client would: no answer may be a 5xx, every answer is JSON, no project gets registered by
/predict or /webhook, and nothing secret reaches the log.
"""

from __future__ import annotations

import base64
import json
import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from dbsal_backend.server.logs import configure_logging
from dbsal_backend.server.runtime import build_runtime, set_runtime
from dbsal_backend.server.app import init_app
from dbsal_backend.server.settings import Settings
from fakels import BACKEND_URL, CONFIG, FakeLabelStudio, brush_results
from model import DBSALModel

AUTH = ("labelstudio", "pa55-word")


@pytest.fixture(scope="module")
def ls():
    fake = FakeLabelStudio(n_tasks=6)
    yield fake
    fake.close()


def make_app(tmp_path, ls, **changes):
    values = dict(label_studio_url=ls.url, label_studio_api_key="ls-api-key-123456",
                  model_dir=tmp_path / "m", public_url=BACKEND_URL, arch="unet",
                  pretrained=False, initial_batch=2, step_size=2, n_segments=20, mc_samples=2,
                  epochs=1, batch_size=2, max_side=48, device="cpu", train_after=2,
                  max_tasks_per_request=20, max_request_bytes=64 * 1024)
    values.update(changes)
    settings = Settings.model_validate(values)
    runtime = build_runtime(settings, client_factory=ls.client, in_process=True)
    set_runtime(runtime)
    app = init_app(model_class=DBSALModel)
    return app, runtime


@pytest.fixture
def open_app(tmp_path, ls):
    app, runtime = make_app(tmp_path, ls)
    yield app, runtime
    runtime.scheduler.shutdown(timeout=60)
    set_runtime(None)


@pytest.fixture
def auth_app(tmp_path, ls):
    app, runtime = make_app(tmp_path, ls, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    yield app, runtime
    runtime.scheduler.shutdown(timeout=60)
    set_runtime(None)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def connect(runtime, project: int = 1) -> None:
    with runtime.service.client_factory() as client:
        assert runtime.service.connect(client, project) is not None


def test_health_is_open_and_says_who_it_is(auth_app):
    app, _ = auth_app
    response = app.test_client().get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "UP" and len(body["instance"]) == 32 and body["problems"] == []


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("POST", "/setup"), ("POST", "/predict"), ("POST", "/webhook"),
    ("GET", "/status?project=1"), ("GET", "/versions"), ("POST", "/train"),
    ("GET", "/is_training?project=1"), ("GET", "/nowhere")])
def test_every_route_but_health_needs_basic_auth(auth_app, method, path):
    app, _ = auth_app
    client = app.test_client()
    for headers in ({}, basic(AUTH[0], "wrong"), basic("other", AUTH[1]),
                    {"Authorization": "Basic !!!"}, {"Authorization": f"Token {AUTH[1]}"}):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, (path, headers)
        assert response.is_json and "basic auth" in response.get_json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    ok = client.open(path, method=method, headers=basic(*AUTH), json={})
    assert ok.status_code != 401


def test_setup_answers_the_title_and_confirms_in_the_background(open_app, ls):
    app, runtime = open_app
    response = app.test_client().post("/setup", json={"project": "1.1700000000", "schema": CONFIG,
                                                      "hostname": ls.url, "access_token": "x"})
    assert response.status_code == 200 and response.get_json() == {"model_version": "dbsal"}
    for thread in threading.enumerate():
        if thread.name == "dbsal-confirm-1":
            thread.join(30)
    assert runtime.state.get(1).connected


def test_setup_refuses_an_unusable_config_with_the_reason(open_app):
    app, _ = open_app
    response = app.test_client().post("/setup", json={
        "project": 1, "schema": '<View><Image name="i" value="$image"/></View>'})
    assert response.status_code == 400
    assert "BrushLabels" in response.get_json()["error"]
    assert "BrushLabels" in response.status  # Label Studio shows the reason phrase


@pytest.mark.parametrize("value", ["²", "0", "-1", str(2**63), "1e3", "12a", True, 1.5, [1],
                                   None, "", " 1", "١"])
def test_project_ids_are_ascii_integers_in_range(open_app, value):
    app, runtime = open_app
    response = app.test_client().post("/setup", json={"project": value, "schema": CONFIG})
    assert response.status_code == 400 and "project id" in response.get_json()["error"]
    assert runtime.state.projects() == []


PROJECT_ROUTES = [("POST", "/setup", "project"), ("POST", "/predict", "project"),
                  ("POST", "/webhook", "project"), ("POST", "/train", "project"),
                  ("GET", "/status", None), ("GET", "/is_training", None)]


@pytest.mark.parametrize("method, path, field", PROJECT_ROUTES)
@pytest.mark.parametrize("value", ["0", str(2**63), "²", True, 1.5])
def test_every_route_checks_the_project_id_where_it_enters(open_app, method, path, field, value):
    """Project ids are checked once, here: the service, the state and the Label Studio
    client trust the ints they are given."""
    app, runtime = open_app
    client = app.test_client()
    if field is None:
        if not isinstance(value, str):
            return  # a query string holds text only
        response = client.open(path, method=method, query_string={"project": value})
    else:
        body = {field: value, "schema": CONFIG, "action": "ANNOTATION_CREATED", "tasks": []}
        response = client.open(path, method=method, json=body)
    assert response.status_code == 400 and "project id" in response.get_json()["error"]
    assert runtime.state.projects() == []


def test_predict_and_webhook_never_register_a_project(open_app):
    app, runtime = open_app
    client = app.test_client()
    predict = client.post("/predict", json={"tasks": [{"id": 1}], "project": "1.17",
                                            "label_config": CONFIG})
    webhook = client.post("/webhook", json={"action": "PROJECT_UPDATED",
                                            "project": {"id": 1, "label_config": CONFIG}})
    status = client.get("/status?project=1")
    assert [r.status_code for r in (predict, webhook, status)] == [404, 404, 404]
    assert "not connected" in predict.get_json()["error"]
    assert runtime.state.projects() == []


def test_predict_for_a_connected_project(open_app, ls):
    app, runtime = open_app
    connect(runtime)
    response = app.test_client().post("/predict", json={
        "tasks": [{"id": 1}, {"id": 2}], "project": "1.17", "label_config": CONFIG})
    body = response.get_json()
    assert response.status_code == 200 and body["model_version"] == "dbsal"
    assert [p["result"] for p in body["results"]] == [[], []]  # no model yet: whole images


def test_request_limits(open_app):
    app, runtime = open_app
    connect(runtime)
    client = app.test_client()
    many = client.post("/predict", json={"tasks": [{"id": i} for i in range(1, 30)],
                                         "project": 1})
    assert many.status_code == 413 and "at most 20" in many.get_json()["error"]
    huge = client.post("/webhook", data=b'{"action": "' + b"x" * 100_000 + b'"}',
                       content_type="application/json")
    assert huge.status_code == 413 and huge.is_json
    deep = client.post("/webhook", data=b"[" * 5_000, content_type="application/json")
    assert deep.status_code == 400 and "nested too deeply" in deep.get_json()["error"]
    for bad in (b"", b"null", b"[]", b"\xff\xfe", b'{"tasks": 5}', b"{'a': 1}"):
        response = client.post("/predict", data=bad, content_type="application/json")
        assert response.status_code == 400 and response.is_json, bad


def test_unknown_routes_and_methods_answer_json(open_app):
    app, _ = open_app
    client = app.test_client()
    for response, code in ((client.get("/nowhere"), 404), (client.get("/setup"), 405),
                           (client.delete("/predict"), 405)):
        assert response.status_code == code and response.is_json
        assert response.get_json()["status"] == code


def test_webhooks_count_and_start_training(open_app, ls):
    app, runtime = open_app
    connect(runtime)
    client = app.test_client()
    with runtime.service.client_factory() as c:
        runtime.service.seed(c, 1)
    seed = list(runtime.state.get(1).seed_batch)
    for tid in seed:
        ls.annotate(tid, brush_results(ls.truth[tid]))
    answers = [client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1},
                                            "task": {"id": tid}}).get_json()["training"]
               for tid in seed]
    assert answers == ["counted", "started"]
    assert runtime.scheduler.wait_idle(1, timeout=120)
    status = client.get("/status?project=1").get_json()
    assert status["al_step"] == 1 and status["last_error"] is None
    assert status["training_state"] == "idle" and status["model_version"].startswith("dbsal-1-")
    assert status["what_to_do"].startswith("press Label All Tasks")
    other = client.post("/webhook", json={"action": "TASKS_DELETED", "project": {"id": 1}})
    assert other.get_json()["training"] == "ignored"
    assert client.get("/is_training?project=1").get_json()["is_training"] is False


def test_the_first_run_waits_for_the_whole_seed_batch(tmp_path):
    """DBSAL_TRAIN_AFTER counts toward later runs; the first model learns from the whole start
    (the seed batch), as the simulator's seed model does."""
    fake = FakeLabelStudio(n_tasks=6)
    app, runtime = make_app(tmp_path, fake, initial_batch=3, train_after=2)
    try:
        connect(runtime)
        client = app.test_client()
        with runtime.service.client_factory() as c:
            runtime.service.seed(c, 1)
        seed = list(runtime.state.get(1).seed_batch)
        assert len(seed) == 3
        before = client.get("/status?project=1").get_json()
        assert before["train_after"] == 3
        assert "after 3 annotations (the whole seed batch)" in before["what_to_do"]
        answers = []
        for tid in seed:
            fake.annotate(tid, brush_results(fake.truth[tid]))
            answers.append(client.post("/webhook", json={
                "action": "ANNOTATION_CREATED", "project": {"id": 1},
                "task": {"id": tid}}).get_json()["training"])
        assert answers == ["counted", "counted", "started"]
        assert runtime.scheduler.wait_idle(1, timeout=120)
        after = client.get("/status?project=1").get_json()
        assert after["al_step"] == 1 and after["train_after"] == 2  # DBSAL_TRAIN_AFTER from now
        assert runtime.service.train_after(1) == 2
    finally:
        runtime.scheduler.shutdown(timeout=60)
        set_runtime(None)
        fake.close()
    only_on_request, rt = make_app(tmp_path / "zero", FakeLabelStudio(n_tasks=4), train_after=0)
    try:
        connect(rt)
        assert rt.service.train_after(1) == 0  # only Start Training, before the model too
        assert "starts on Start Training" in only_on_request.test_client().get(
            "/status?project=1").get_json()["what_to_do"]
    finally:
        rt.scheduler.shutdown(timeout=60)
        set_runtime(None)


def test_logs_hold_no_bodies_and_no_credentials(tmp_path, ls, capsys):
    app, runtime = make_app(tmp_path, ls, basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1],
                            log_level="DEBUG")
    try:
        configure_logging(runtime.settings)
        client = app.test_client()
        marker = "BODY-MARKER-42"
        client.post("/setup", json={"project": 1, "schema": CONFIG, "access_token": marker},
                    headers={**basic(*AUTH), "Cookie": "sessionid=COOKIE-MARKER"})
        client.post("/setup", json={"project": marker}, headers=basic(*AUTH))
        client.get("/status?project=1", headers=basic(AUTH[0], "guess"))
        logging.getLogger("test").info("Authorization: Basic abc Cookie: x=1 %s",
                                       runtime.settings.api_key)
        text = capsys.readouterr().err
        assert "POST /setup" in text and "Authorization: ***" in text
        for secret in (marker, "COOKIE-MARKER", AUTH[1], base64.b64encode(
                f"{AUTH[0]}:{AUTH[1]}".encode()).decode(), "ls-api-key-123456", "Basic abc"):
            assert secret not in text, secret
    finally:
        for thread in threading.enumerate():  # the confirmation logs too: let it finish here
            if thread.name.startswith("dbsal-confirm-"):
                thread.join(30)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_dbsal", False)]:
            root.removeHandler(handler)  # its stream is the test's captured stderr
        runtime.scheduler.shutdown(timeout=60)
        set_runtime(None)


ROUTES = [("POST", "/setup"), ("POST", "/predict"), ("POST", "/webhook"), ("POST", "/train"),
          ("GET", "/status"), ("GET", "/is_training"), ("GET", "/versions")]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["project", "tasks", "id", "action", "schema", "task", "data", "image",
                         "label_config", "annotation", "x"]), children, max_size=5),
    max_leaves=20)


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), body=json_values,
       query=st.text(max_size=30), raw=st.binary(max_size=200))
def test_no_input_gives_a_server_error(open_app, route, body, query, raw):
    app, runtime = open_app
    client = app.test_client()
    method, path = route
    for response in (client.open(path, method=method, json=body, query_string={"project": query}),
                     client.open(path, method=method, data=raw,
                                 content_type="application/json")):
        assert response.status_code < 500, (route, body, response.get_data()[:300])
        assert response.is_json
    assert all(runtime.state.get(p).connected for p in runtime.state.projects())


def test_a_damaged_project_row_fails_alone(tmp_path, ls):
    app, runtime = make_app(tmp_path, ls)
    try:
        connect(runtime, 1)
        ls.add_project(2)
        connect(runtime, 2)
        runtime.state._conn.execute("UPDATE projects SET spent='{not json' WHERE project_id=2")
        client = app.test_client()
        assert client.get("/status?project=1").status_code == 200
        damaged = client.get("/status?project=2")
        assert damaged.status_code == 409 and "damaged" in damaged.get_json()["error"]
    finally:
        runtime.scheduler.shutdown(timeout=60)
        set_runtime(None)
    again = build_runtime(Settings.model_validate({**runtime.settings.model_dump(),
                                                   "label_studio_api_key": "k"}),
                          client_factory=ls.client, in_process=True)
    assert again.scheduler.status(2)["state"] == "failed"
    assert again.state.get(1).connected
    json.dumps(again.health())
