"""The page at ``GET /`` and ``GET /status`` for every project (Flask test client; the app of
``test_server.py``): machines keep their JSON, browsers get the page, the page renders what
``/status`` answers, escapes what comes from Label Studio and state, and needs basic auth."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest

from dbsal_backend.server import dashboard
from dbsal_backend.engine.labeling_budget import Effort
from dbsal_backend.server.state import QueryRecord
from fakels import CONFIG
from test_server import AUTH, auth_app, basic, ls, make_app, open_app  # noqa: F401 (fixtures)

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                     "image/webp,*/*;q=0.8"}
INDEX_JSON = {"name": "dbsal", "status": "UP",
              "routes": ["/health", "/setup", "/predict", "/webhook", "/status", "/versions"]}
#: Three finished steps: regions, median regions per image, pre-labels (right, judged) or None.
STEPS = [(1, 37, 6.0, (18, 30)), (2, 52, 7.5, (33, 40)), (3, 44, 5.0, None)]


def fill_project(state, project: int = 1, title: str = "dbsal", **changes) -> None:
    """A connected project with :data:`STEPS` finished (queries, pre-label counts, history)."""
    state.update(project, connected=True, title=title, label_config=CONFIG,
                 seed_batch=(1, 2, 3), spent=Effort(images=9, regions=133, pixels=40_000),
                 last_trained=time.time())
    task = 100
    for step, regions, median, prelabels in STEPS:
        queries = [QueryRecord(task + k, step, "slico-20", ((1, (1, 2), 0.8),)) for k in range(3)]
        state.record_step(project, step, queries,
                          {"scored": 12, "skipped": 0, "queried": 3, "regions": regions,
                           "regions_per_image_median": median, "labeled_tasks": 3 + 3 * step,
                           "model_version": f"{title}-{step}-abc"},
                          model_version=f"{title}-{step}-abc", checkpoint=f"p{project}-{step}.pt")
        if prelabels:
            state.set_prelabels(project, task, *prelabels)
        task += 3
    if changes:
        state.update(project, **changes)


def page_text(response) -> str:
    """The page's visible text, roughly (tags dropped, entities decoded, spaces collapsed)."""
    html = re.sub(r"<(style|title)[^>]*>.*?</\1>", " ", response.get_data(as_text=True), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize("headers, query", [
    ({}, ""), ({"Accept": "*/*"}, ""), ({"Accept": "application/json"}, ""),
    (BROWSER, "?format=json"), ({"Accept": "application/json, text/html;q=0.5"}, "")])
def test_machines_still_get_the_json_index(open_app, headers, query):
    app, _ = open_app
    response = app.test_client().get("/" + query, headers=headers)
    assert response.status_code == 200 and response.is_json
    assert response.get_json() == INDEX_JSON


@pytest.mark.parametrize("headers, query", [(BROWSER, ""), ({}, "?format=html"),
                                            ({"Accept": "text/html"}, "")])
def test_browsers_get_the_page(open_app, headers, query):
    app, _ = open_app
    response = app.test_client().get("/" + query, headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "Accept" in response.headers["Vary"]
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script" not in policy
    body = response.get_data(as_text=True)
    assert "<script" not in body and "http://" not in body.split("</style>")[0]


def test_with_no_project_the_page_says_how_to_connect_one(open_app):
    app, _ = open_app
    text = page_text(app.test_client().get("/", headers=BROWSER))
    assert "No project is connected yet" in text
    assert "Settings > Model > Connect Model" in text
    assert "http://backend.test:9090" in text  # DBSAL_PUBLIC_URL, else the URL asked for


def test_status_without_a_project_lists_every_project_as_status_does(open_app):
    app, runtime = open_app
    fill_project(runtime.state, 1)
    runtime.state.update(2, connected=False, title="gone")
    fill_project(runtime.state, 3)
    runtime.state._conn.execute("UPDATE projects SET spent='{not json' WHERE project_id=3")
    client = app.test_client()
    listed = client.get("/status")
    assert listed.status_code == 200 and listed.is_json
    body = listed.get_json()
    assert [p["project"] for p in body["projects"]] == [1, 2, 3] and body["problems"] == []
    one, two, three = body["projects"]
    assert one == client.get("/status?project=1").get_json()
    assert [s["prelabel_accuracy"] for s in one["steps"]] == [0.6, 0.825, None]
    assert two["connected"] is False and "Connect Model" in two["what_to_do"]
    assert three["damaged"] is True and "damaged" in three["last_error"]
    assert client.get("/status?project=").status_code == 400  # a bad id is still refused


def test_the_page_shows_state_budget_steps_and_chart(tmp_path, ls):
    app, runtime = make_app(tmp_path, ls, budget=40, budget_unit="images")
    try:
        fill_project(runtime.state, 7, title="street scenes")
        response = app.test_client().get("/", headers=BROWSER)
        html = response.get_data(as_text=True)
        text = page_text(response)
        status = runtime.status(7)
        assert "Project 7" in text and "street scenes" in text and "idle" in text
        assert status["what_to_do"] in text and "What to do:" in text
        assert "9 of 40 images labeled 133 regions · 31 images left" in text
        assert 'style="width: 22.5%"' in html
        rows = re.findall(r'<tr class="step-row">(.*?)</tr>', html, flags=re.S)
        cells = [re.findall(r"<td>(.*?)</td>", r) for r in rows]
        assert [c[0] for c in cells] == ["3", "2", "1"]  # newest first
        assert [c[2:5] for c in cells] == [["3", "44", "5"], ["3", "52", "7.5"], ["3", "37", "6"]]
        assert cells[2][5].startswith("60%") and cells[1][5].startswith("82%")
        assert cells[0][5] == "-"
        svg = re.search(r"<svg.*?</svg>", html, flags=re.S).group(0)
        assert svg.count('<rect class="bar"') == 3 and svg.count('<circle class="acc"') == 2
        assert "step 2: 52 regions" in svg and "step 2: 82% of pre-labels kept" in svg
    finally:
        runtime.scheduler.shutdown(timeout=60)


def test_the_page_escapes_titles_and_errors(open_app):
    app, runtime = open_app
    fill_project(runtime.state, 1, title="<script>alert('title')</script>",
                 training_state="failed", last_error='boom <img src=x onerror="alert(1)">')
    runtime.state.update(2, connected=False, title="</h2><script>alert(2)</script>")
    response = app.test_client().get("/", headers={**BROWSER, "Host": "<script>x</script>"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    text = page_text(response)
    assert "last run failed" in text and "Last error: boom <img" in text
    assert "the last run failed" in text  # what_to_do of a failed run


def test_an_unconnected_or_damaged_project_shows_without_breaking_the_page(open_app):
    app, runtime = open_app
    fill_project(runtime.state, 1)
    runtime.state.update(2, connected=False)
    fill_project(runtime.state, 3)
    runtime.state._conn.execute("UPDATE projects SET seed_batch='[true' WHERE project_id=3")
    fill_project(runtime.state, 4)
    runtime.state._conn.execute("UPDATE queries SET regions='x' WHERE project_id=4")
    response = app.test_client().get("/", headers=BROWSER)
    assert response.status_code == 200
    text = page_text(response)
    for shown in ("Project 1 · dbsal", "Project 2 not connected", "Project 3 damaged",
                  "Project 4 damaged"):
        assert shown in text, shown
    assert text.count("damaged") >= 4  # two badges, two messages
    assert "remove the project from the backend" in text


def test_the_page_and_all_projects_status_need_basic_auth(auth_app):
    app, runtime = auth_app
    fill_project(runtime.state, 1)
    client = app.test_client()
    for path, headers in (("/", BROWSER), ("/?format=html", {}), ("/status", {})):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 401 and refused.is_json, path
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        wrong = client.get(path, headers={**headers, **basic(AUTH[0], "nope")})
        assert wrong.status_code == 401, path
        assert client.get(path, headers={**headers, **basic(*AUTH)}).status_code == 200, path
    assert client.get("/health").status_code == 200


def test_chart_geometry():
    assert dashboard.chart([]) is None
    steps = [{"step": 1, "regions": 40, "prelabel_accuracy": 0.5},
             {"step": 2, "regions": 100, "prelabel_accuracy": None},
             {"step": 3, "regions": None, "prelabel_accuracy": 1.0}]
    chart = dashboard.chart(steps)
    bars = chart["bars"]
    assert [b["regions"] for b in bars] == [40, 100, 0]
    assert bars[1]["y"] == chart["top"] and bars[1]["h"] == chart["bottom"] - chart["top"]
    assert bars[0]["h"] == pytest.approx(0.4 * bars[1]["h"], abs=0.1) and bars[2]["h"] == 0
    assert [p["step"] for p in chart["points"]] == [1, 3]
    assert chart["points"][1]["y"] == chart["top"]
    assert [t["left"] for t in chart["ticks"]] == ["0", "25", "50", "75", "100"]
    assert [dashboard.nice_ceiling(v) for v in (0, 1, 3, 7, 11, 180, 2400)] == \
        [1, 1, 5, 10, 20, 200, 2500]


def test_render_survives_odd_values():
    html = dashboard.render({"projects": [
        {"project": 5, "connected": True, "training_state": "weird", "steps": [
            {"step": 1, "finished_at": "not a time", "regions": float("nan"),
             "prelabel_accuracy": True}], "budget": {"unit": "pixels", "limit": None,
                                                     "spent": {"pixels": 12345}},
         "last_trained": "2024-05-01T12:03:00+00:00"}]})
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "12,345 pixels labeled" in text and "no labeling budget set" in text
    assert "2024-05-01 12:03 UTC" in text and "weird" in text
