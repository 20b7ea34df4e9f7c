"""Projects as people make them: Label Studio's own segmentation templates, labeled before the
backend is connected, against a real Label Studio 1.23.2 and the backend as a real server.

"Semantic Segmentation with Polygons" (``PolygonLabels`` alone) and "Semantic Segmentation with
Masks" (``BrushLabels`` alone), each with the template's attributes (Header, zoom, strokeWidth,
pointSize, opacity, colours). In each project some tasks are labeled with the template's own tool
before the backend is connected; connecting must train on them by itself (no webhook, no Start
Training), ask only for the missing seed tasks, put regions of the template's kind on the queried
tasks, and train again from answers given with the same tool. The polygon project's queried task
is also opened in a real browser through "Label All Tasks", relabeled and submitted.
"""

from __future__ import annotations

import numpy as np
import pytest
from backendproc import (CLASSES, RUN_TIMEOUT, TITLE, Project, make_project, ours,
                         module_backend, region_masks)
from lsserver import label_studio_server, ls, sdk  # noqa: F401

from dbsal_backend.labelstudio.label_config import parse_label_config
from dbsal_backend.labelstudio.annotations import label_map_to_results

pytestmark = pytest.mark.e2e

COLOURS = ("red", "blue", "green")
#: Label Studio 1.23.2's "Semantic Segmentation with Polygons", with this suite's classes.
POLYGON_TEMPLATE = (
    '<View>\n  <Header value="Select label and click the image to start"/>\n'
    '  <Image name="image" value="$image" zoom="true"/>\n'
    '  <PolygonLabels name="label" toName="image"\n'
    '                 strokeWidth="3" pointSize="small"\n                 opacity="0.9">\n'
    + "".join(f'    <Label value="{c}" background="{k}"/>\n' for c, k in zip(CLASSES, COLOURS))
    + "  </PolygonLabels>\n</View>\n")
#: Label Studio 1.23.2's "Semantic Segmentation with Masks", with this suite's classes.
MASK_TEMPLATE = (
    '<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
    '  <BrushLabels name="tag" toName="image">\n'
    + "".join(f'    <Label value="{c}" background="rgba({r}, {g}, {b}, 0.7)"/>\n'
              for c, (r, g, b) in zip(CLASSES, ((255, 0, 0), (0, 0, 255), (0, 255, 0))))
    + "  </BrushLabels>\n</View>\n")
N_IMAGES = 8
SETTINGS = {"DBSAL_INITIAL_BATCH": "3", "DBSAL_STEP_SIZE": "2", "DBSAL_TRAIN_AFTER": "2"}
TEMPLATES = {"polygons": (POLYGON_TEMPLATE, 3, "polygonlabels"),  # labeled before: 3 (all seed)
             "masks": (MASK_TEMPLATE, 2, "brushlabels")}  # 2: one seed task still asked


def results(config: str, truth: np.ndarray, where: np.ndarray | None = None) -> list[dict]:
    """The ground truth as the template's own tool stores it (polygons or brush masks)."""
    labels = truth if where is None else np.where(where, truth, 255).astype(np.uint8)
    return label_map_to_results(labels, parse_label_config(config))


backend = module_backend("templates", **SETTINGS)


@pytest.fixture(scope="module")
def projects(ls, sdk) -> dict[str, Project]:
    made = {}
    for k, (name, (config, labeled, _)) in enumerate(TEMPLATES.items()):
        project = make_project(ls, sdk, f"template {name}", N_IMAGES, first=200 + 20 * k,
                               config=config)
        for task in sorted(project.truth)[:labeled]:  # labeled by hand, no backend yet
            sdk.annotations.create(id=task, result=results(config, project.truth[task]))
        made[name] = project
    return made


@pytest.fixture(scope="module")
def connected(sdk, backend, projects) -> dict[str, dict]:
    """Both projects connected; each trains on its labels and makes its first step by itself."""
    out = {}
    for name, project in projects.items():
        ml = sdk.ml.create(url=backend.url, project=project.id, title=TITLE)
        out[name] = {"ml": ml}
    for name, project in projects.items():
        status = backend.wait_status(
            project.id, lambda s: s["al_step"] == 1 and s["training_state"] == "idle",
            f"the {name} project's first run on its existing labels", RUN_TIMEOUT)
        labeled = sorted(project.truth)[:TEMPLATES[name][1]]
        unlabeled = [t for t in project.truth if t not in labeled]
        predictions = {t: ours(sdk, t) for t in unlabeled}
        queried = sorted(t for t, p in predictions.items() if p and p[0]["result"])
        out[name].update(status=status, labeled=labeled, predictions=predictions,
                         queried=queried)
    return out


def test_connecting_trains_on_existing_labels_without_a_webhook(connected):
    for name, step in connected.items():
        status = step["status"]
        assert status["model_version"], name
        assert status["steps"][0]["labeled_tasks"] == TEMPLATES[name][1], name
        assert step["queried"], f"{name}: the first step queried nothing"


def test_the_seed_batch_asks_only_for_what_is_missing(connected):
    assert connected["polygons"]["status"]["seed_batch"] == []  # 3 labeled: none missing
    masks = connected["masks"]["status"]["seed_batch"]
    assert len(masks) == 1 and not set(masks) & set(connected["masks"]["labeled"])


def test_regions_are_of_the_templates_own_kind(connected):
    for name, step in connected.items():
        kind = TEMPLATES[name][2]
        for task in step["queried"]:
            regions = step["predictions"][task][0]["result"]
            assert {r["type"] for r in regions} == {kind}, (name, task)
            assert {r["from_name"] for r in regions} == {"label" if kind == "polygonlabels"
                                                         else "tag"}


@pytest.fixture(scope="module")
def answered(ls, sdk, backend, projects, connected, browsed) -> dict[str, dict]:
    """The queried tasks answered with the template's tool (inside the regions); the polygon
    project's least confident one in the browser (when there is one)."""
    out = {}
    for name, project in projects.items():
        config = TEMPLATES[name][0]
        step = connected[name]
        for task in step["queried"]:
            if browsed and name == "polygons" and task == browsed["opened"]:
                continue
            inside = np.logical_or.reduce(region_masks(step["predictions"][task][0]))
            sdk.annotations.create(id=task, result=results(config, project.truth[task], inside))
        if len(step["queried"]) < int(SETTINGS["DBSAL_TRAIN_AFTER"]):
            sdk.ml.train(id=step["ml"].id)
        status = backend.wait_status(
            project.id, lambda s: s["al_step"] == 2 and s["training_state"] == "idle",
            f"the {name} project's run on its answers", RUN_TIMEOUT)
        out[name] = status
    return out


def test_answers_given_with_the_templates_tool_train_again(answered, connected):
    for name, status in answered.items():
        step = status["steps"][-1]
        assert step["labeled_tasks"] == TEMPLATES[name][1] + len(connected[name]["queried"])
        # the first step's pre-labels were judged against the answers when they were read
        assert status["steps"][0]["prelabels_judged"], name


# ---------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def browsed(request, ls, sdk, projects, connected, tmp_path_factory) -> dict | None:
    """"Label All Tasks" in the polygon project: the least confident queried task opens, its
    polygons render and are listed; one is relabeled and the annotation submitted. Not when
    the browser tests are deselected (``-m "... not ui"``, ``make test-e2e``): then the task is
    answered over the API like the others."""
    import lsbrowser

    executable = lsbrowser.find_browser()
    if executable is None or "not ui" in (request.config.option.markexpr or ""):
        return None
    project = projects["polygons"]
    queried = {t: connected["polygons"]["predictions"][t][0]
               for t in connected["polygons"]["queried"]}
    with lsbrowser.launch_browser(executable) as browser:
        context = lsbrowser.new_context(browser)
        page = context.new_page()
        shots = tmp_path_factory.mktemp("shots")
        started = lsbrowser.start_labeling(page, ls, project.id, shot=shots / "instructions.png")
        opened, t0, instructions = started.task, started.t0, started.instructions
        expected = len(queried[opened]["result"]) if opened in queried else 0
        usable = lsbrowser.measure_usable(page, expected, timeout=60, t0=t0)
        listed = lsbrowser.count_regions(page)
        shot = lsbrowser.screenshot(page, shots / "polygons.png")
        before = lsbrowser.region_label(page, 1)
        lsbrowser.select_region(page, 1)
        new_label = next(c for c in CLASSES if c != before)
        lsbrowser.set_label(page, new_label, group=0)  # the template's only label set
        annotation = lsbrowser.submit(page)
        context.close()
    return {"opened": opened, "instructions": instructions, "queried": queried,
            "usable": usable, "listed": listed,
            "shot": shot, "new_label": new_label, "annotation": annotation}


def need_browser(browsed: dict | None) -> dict:
    if browsed is None:
        pytest.skip("browser tests skipped: no chromium or playwright (apt-get install -y "
                    "chromium)")
    return browsed


@pytest.mark.ui
def test_label_all_tasks_opens_a_queried_polygon_task_whose_regions_render(browsed):
    browsed = need_browser(browsed)
    # the backend's instructions, shown by Label Studio before labeling starts
    assert "Areas without a region need nothing" in (browsed["instructions"] or "")
    # polygons: a region is one superpixel, answered with one class (DBSAL_ANSWERS=auto)
    assert "Never redraw parts: one class per region" in browsed["instructions"]
    queried = browsed["queried"]
    least = min(queried, key=lambda t: (queried[t]["score"], t))
    assert browsed["opened"] == least
    assert browsed["listed"] == len(queried[least]["result"]) >= 1
    assert not browsed["usable"].timed_out
    assert browsed["shot"].stat().st_size > 10_000


@pytest.mark.ui
def test_a_polygon_relabeled_in_the_browser_is_stored_and_trains(sdk, browsed, answered):
    browsed = need_browser(browsed)
    stored = sdk.annotations.get(id=browsed["annotation"]).model_dump(mode="json")
    results_ = stored["result"]
    assert {r["type"] for r in results_} == {"polygonlabels"}
    (changed,) = [r for r in results_ if r.get("origin") == "prediction-changed"]
    assert changed["value"]["polygonlabels"] == [browsed["new_label"]]
    assert answered["polygons"]["al_step"] == 2
