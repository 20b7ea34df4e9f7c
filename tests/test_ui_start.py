"""A start of regions (``DBSAL_START=regions``) as an annotator meets it: Label Studio's own page
in a real browser (Debian's chromium driven by Playwright), the real Label Studio of the e2e
suite and the backend as a server.

Connect; the instructions Label Studio shows first describe the gray regions; "Label All Tasks"
opens a seed task whose regions (polygons, the superpixels most different in colour) are drawn
and listed without a label; one is given a class by clicking its row and a label, the rest left,
and the annotation is read back (that region ``prediction-changed`` with its class, the others
unlabeled). The other seed tasks are answered through the SDK with each region's dominant class;
the first run trains on those answers and publishes step 1's regions, with pre-labels.
Skipped, saying why, when chromium or playwright is missing.
"""

from __future__ import annotations

import pytest
from backendproc import (CLASSES, RUN_TIMEOUT, Project, connect, dominant_answer,
                         make_project, module_backend, ours)
from lsserver import label_studio_server, ls, sdk  # noqa: F401

import lsbrowser

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

BROWSER = lsbrowser.find_browser()
if BROWSER is None:
    pytest.skip("browser tests skipped: no chromium or playwright (apt-get install -y chromium)",
                allow_module_level=True)

USABLE_BOUND = 60.0  # seconds; bench/ui.py measures the product's limits
START_REGIONS = 12
SETTINGS = {"DBSAL_MAX_SIDE": "96", "DBSAL_STEP_SIZE": "2", "DBSAL_INITIAL_BATCH": "3",
            "DBSAL_N_SEGMENTS": "150", "DBSAL_START": "regions",
            "DBSAL_START_REGIONS": str(START_REGIONS)}


backend = module_backend("ui-start", **SETTINGS)


@pytest.fixture(scope="module")
def project(ls, sdk) -> Project:
    return make_project(ls, sdk, "dbsal start of regions", 6, first=60, height=360, width=480)


@pytest.fixture(scope="module")
def flow(ls, sdk, backend, project, tmp_path_factory) -> dict:
    connect(sdk, backend, project)
    before_model = backend.status(project.id)
    seed = before_model["seed_batch"]
    asked = {t: ours(sdk, t)[0] for t in seed}
    with lsbrowser.launch_browser(BROWSER) as browser:
        context = lsbrowser.new_context(browser)
        page = context.new_page()
        started = lsbrowser.start_labeling(page, ls, project.id)
        opened, t0, instructions = started.task, started.t0, started.instructions
        expected = len(asked[opened]["result"]) if opened in asked else 0
        usable = lsbrowser.measure_usable(page, expected, timeout=USABLE_BOUND, t0=t0)
        listed = lsbrowser.count_regions(page)
        shot = lsbrowser.screenshot(page, tmp_path_factory.mktemp("shots") / "start.png")
        before = lsbrowser.region_label(page, 1)
        lsbrowser.select_region(page, 1)
        lsbrowser.set_label(page, CLASSES[1], group=1)  # the polygon tag's labels
        annotation = lsbrowser.submit(page)
        context.close()
    for task in seed:
        if task != opened:
            sdk.annotations.create(id=task,
                                   result=dominant_answer(asked[task], project.truth[task]))
    backend.wait_status(project.id, lambda s: s["al_step"] == 1 and s["training_state"] == "idle",
                        "the first step", RUN_TIMEOUT)
    return {"before_model": before_model, "seed": seed, "asked": asked, "opened": opened,
            "instructions": instructions, "usable": usable, "listed": listed, "shot": shot, "before": before,
            "annotation": annotation}


def test_the_instructions_describe_the_gray_regions_first(flow):
    assert "gray regions without labels" in flow["instructions"]


def test_the_status_says_what_the_start_asks(flow):
    status = flow["before_model"]
    assert status["start"] == "regions" and status["questions_ready"] == len(flow["seed"])
    assert status["what_to_do"].startswith("give each gray region of the seed tasks its class")


def test_label_all_tasks_opens_a_seed_task_of_class_less_regions(flow, record_property):
    assert flow["opened"] in flow["seed"]
    results = flow["asked"][flow["opened"]]["result"]
    assert len({r["id"].split(".")[0] for r in results}) == START_REGIONS
    assert all(r["type"] == "polygonlabels" and r["value"]["polygonlabels"] == [] for r in results)
    assert flow["listed"] == len(results) and flow["before"] == ""  # listed without a label
    usable = flow["usable"]
    record_property("usable_seconds_start_360x480", usable.seconds)
    assert not usable.timed_out and usable.seconds < USABLE_BOUND
    assert flow["shot"].stat().st_size > 10_000


def test_a_region_given_a_class_is_stored_with_it_and_the_rest_unlabeled(sdk, flow):
    stored = sdk.annotations.get(id=flow["annotation"]).model_dump(mode="json")["result"]
    assert len(stored) == len(flow["asked"][flow["opened"]]["result"])
    (changed,) = [r for r in stored if r.get("origin") == "prediction-changed"]
    assert changed["value"]["polygonlabels"] == [CLASSES[1]]
    assert all(not r["value"].get("polygonlabels") for r in stored if r is not changed)


def test_the_first_run_trains_on_the_answers_and_asks_regions_with_pre_labels(sdk, backend,
                                                                              project, flow):
    status = backend.status(project.id)
    assert status["model_version"] and status["al_step"] == 1
    queried = [t for t in project.truth if t not in flow["seed"] and ours(sdk, t)
               and ours(sdk, t)[0]["result"]]
    assert queried, "the first step asked nothing"
    for task in queried:
        results = ours(sdk, task)[0]["result"]
        assert all(r["value"].get("polygonlabels") or r["value"].get("brushlabels")
                   for r in results)  # each with the model's guess
