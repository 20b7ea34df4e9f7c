"""Drive the real Label Studio 1.23.2 labeling UI in a headless Chromium (Playwright, sync API).

Helpers for browser tests and the UI benchmark (``bench/ui_render.py``), written against the DOM
of Label Studio 1.23.2 and preferring role and text selectors:

- the login page: ``input[name=email]``, ``input[name=password]``, button "Log In";
- the Data Manager: button "Label All Tasks" (serves tasks by the project's sampling);
- the labeling UI: the image is ``img[alt=image]``; the regions panel ("Regions" tab, the
  outliner) is a ``tree`` whose ``treeitem`` s are named "<ordinal> <label> <score>", in result
  order, and is *virtualised*: only the rows that fit are in the DOM (:func:`count_regions`
  scrolls through it); a selected row carries rc-tree's ``lsf-tree-treenode-selected`` class and
  the Info panel then shows a button "Delete selected region"; labels are the ``lsf-label``
  chips under the image, each with its hotkey (1..9, 0, q, w, ...); Submit is the button
  "Submit current annotation".

The browser is Debian's ``chromium`` (``apt-get install chromium``), never one downloaded by
``playwright install``. :func:`find_browser` returns ``None`` when it or the ``playwright``
package is missing, so tests can skip; :func:`require_browser` raises
:class:`BrowserUnavailable` with instructions instead.

"Usable" (:func:`measure_usable`, :func:`wait_usable`), measured from ``t0`` (by default the
moment :func:`open_task` started the navigation), is the first moment at which all of these hold
and keep holding for ``quiet`` seconds (0.5 s):

1. the image is loaded and visible (``img[alt=image]`` complete, ``visibility: visible``);
2. the annotation in the editor holds exactly ``expected_regions`` regions and the regions panel
   shows rows for them (the panel is virtualised, so at least one row when there are regions;
   the count itself comes from the editor's store ``window.Htx``, which the panel renders);
3. every brush region's mask has been decoded and attached to its canvas layer (so it is drawn
   in the next frame), i.e. what a person sees is complete;
4. the page's main thread answers: a probe sent from Playwright, which runs a
   ``requestAnimationFrame`` then ``setTimeout(0)`` round trip in the page, comes back within
   ``budget`` seconds (0.1 s, the RAIL response budget). A click at that moment would be handled
   and painted within about 100 ms.

Probes run back to back (30 ms apart); the reported time is the start of the first probe of the
first run of successful probes lasting ``quiet`` seconds, so a page that answers once between two
freezes is not counted as usable. The page also records long tasks (``PerformanceObserver``,
``longtask``), the image's load event and the task API response, returned in :class:`Usable`,
and Event Timing entries, from which :func:`select_region` reports what a click on a region
costs (input event to the next paint): the check that "usable" means usable.

Typical use in a test (the server from ``tests/lsserver.py``)::

    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("no Chromium/Playwright")
    with launch_browser(browser_path) as browser:
        page = new_context(browser).new_page()
        started = start_labeling(page, server, project)  # log in, Label All Tasks
        seconds = wait_usable(page, expected_regions=5, timeout=120, t0=started.t0)
        select_region(page, 1)
        set_label(page, "Road")
        annotation_id = submit(page)
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from playwright.sync_api import Browser, BrowserContext, Page

__all__ = [
    "BrowserUnavailable",
    "LAUNCH_ARGS",
    "Started",
    "Usable",
    "UsableTimeout",
    "click_region",
    "count_regions",
    "current_task",
    "add_timeline",
    "find_browser",
    "label_all_tasks",
    "launch_browser",
    "login",
    "measure_usable",
    "new_context",
    "open_data_manager",
    "open_task",
    "region_is_selected",
    "region_label",
    "require_browser",
    "screenshot",
    "select_region",
    "set_label",
    "start_labeling",
    "submit",
    "wait_next_task",
    "wait_usable",
]

#: Where Debian (and most distributions) install Chromium; ``CHROMIUM`` overrides.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags that work in this sandbox-less, offline container.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserUnavailable(RuntimeError):
    """Chromium or the ``playwright`` package is missing."""


def find_browser() -> str | None:
    """Path of a usable Chromium, or ``None`` if it or the ``playwright`` package is missing.

    ``CHROMIUM`` (environment) names the executable explicitly; otherwise
    :data:`CHROMIUM_CANDIDATES` are tried. Nothing is downloaded.
    """
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    candidates = [os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else CHROMIUM_CANDIDATES
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    return found


def require_browser() -> str:
    """Like :func:`find_browser`, but raise :class:`BrowserUnavailable` saying how to fix it."""
    path = find_browser()
    if path is None:
        try:
            import playwright.sync_api  # noqa: F401

            what = "no Chromium executable (tried CHROMIUM, " + ", ".join(CHROMIUM_CANDIDATES) + ")"
        except ImportError:
            what = "the playwright package is not installed"
        raise BrowserUnavailable(
            f"browser tests need Chromium and Playwright: {what}. Install with "
            "`apt-get install -y chromium` and `.venv/bin/pip install playwright`; "
            "do not run `playwright install` (it downloads a browser)."
        )
    return path


@contextmanager
def launch_browser(executable: str | None = None, headless: bool = True) -> Iterator[Browser]:
    """Start Chromium through Playwright; close it (and Playwright) on exit.

    Each launch uses a fresh temporary profile (Playwright's default).
    """
    from playwright.sync_api import sync_playwright

    path = executable or require_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=path,
            headless=headless,
            args=LAUNCH_ARGS if headless else [a for a in LAUNCH_ARGS if a != "--headless"],
        )
        try:
            yield browser
        finally:
            browser.close()


# Runs in every document before the page's own scripts: records long tasks, the image's load
# event and keeps enough resource timing entries.
_INIT_SCRIPT = r"""
(() => {
  if (window.__lsb) return;
  const s = window.__lsb = {longTasks: [], imageLoaded: null};
  try { performance.setResourceTimingBufferSize(5000); } catch (e) {}
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) s.longTasks.push([e.startTime, e.duration]);
    }).observe({type: "longtask", buffered: true});
  } catch (e) { s.noLongTasks = String(e); }
  s.events = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries())
        s.events.push([e.name, e.startTime, e.processingStart, e.processingEnd, e.duration]);
    }).observe({type: "event", durationThreshold: 16, buffered: true});
  } catch (e) { s.noEvents = String(e); }
  document.addEventListener("load", (ev) => {
    const t = ev.target;
    if (t && t.tagName === "IMG" && t.alt === "image" && s.imageLoaded === null)
      s.imageLoaded = performance.now();
  }, true);
})();
"""


def new_context(
    browser: Browser,
    storage_state: dict | str | None = None,
    viewport: tuple[int, int] = (1600, 1000),
    device_scale_factor: float = 1,
) -> BrowserContext:
    """A new browser context (cookies from ``storage_state``, e.g. from :func:`login`).

    The context carries the recording script that :func:`measure_usable` reads.
    ``device_scale_factor`` 2 emulates a HiDPI screen (Label Studio's canvases get 4x the pixels).
    """
    context = browser.new_context(
        storage_state=storage_state,
        viewport={"width": viewport[0], "height": viewport[1]},
        device_scale_factor=device_scale_factor,
    )
    context.add_init_script(_INIT_SCRIPT)
    return context


def login(page: Page, base_url: str, email: str, password: str, timeout: float = 60.0) -> dict:
    """Log in through Label Studio's login page; return the context's storage state.

    The storage state (session cookie) can be passed to :func:`new_context` to skip logging in
    again.
    """
    page.goto(f"{base_url}/user/login/", timeout=timeout * 1000)
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(password)
    with page.expect_navigation(timeout=timeout * 1000):
        page.get_by_role("button", name="Log In").click()
    if "/user/login" in page.url:
        raise RuntimeError(f"login as {email} failed (still on {page.url})")
    return page.context.storage_state()


def open_data_manager(page: Page, base_url: str, project: int, timeout: float = 60.0) -> None:
    """Open a project's Data Manager and wait for its "Label All Tasks" button."""
    page.goto(f"{base_url}/projects/{project}/data", timeout=timeout * 1000)
    page.get_by_role("button", name="Label All Tasks").wait_for(timeout=timeout * 1000)


def label_all_tasks(page: Page, timeout: float = 60.0) -> tuple[int, float]:
    """Press the Data Manager's primary button "Label All Tasks".

    Returns ``(task id, t0)``: the task the server handed out and the ``time.monotonic()`` of the
    click (pass it to :func:`measure_usable`). The labeling view's URL in 1.23.2 is
    ``?tab=N&labeling=1`` without the task, so the id is read from the ``next_task`` answer
    (``/api/dm/actions?id=next_task``), and from a ``task=`` URL parameter when there is one.
    """

    def is_next_task(response: Any) -> bool:
        return "/api/dm/actions" in response.url and "next_task" in response.url

    button = page.get_by_role("button", name="Label All Tasks")
    button.wait_for(timeout=timeout * 1000)
    with page.expect_response(is_next_task, timeout=timeout * 1000) as info:
        t0 = time.monotonic()
        button.click()
    response = info.value
    task_id = None
    try:
        task_id = response.json().get("id")
    except Exception:  # noqa: BLE001 - fall back to the URL
        pass
    if task_id is None:
        match = re.search(r"[?&]task=(\d+)", page.url)
        if match is None:
            raise RuntimeError(f"no task was opened (next_task answered {response.status})")
        task_id = int(match.group(1))
    return int(task_id), t0


def dismiss_instructions(page: Page, timeout: float = 10.0,
                         shot: str | os.PathLike | None = None) -> str | None:
    """Close the "Labeling Instructions" window Label Studio opens when labeling starts in a
    project whose instructions are shown before labeling (after a screenshot to ``shot``, when
    given); return its text (None when none came within ``timeout`` seconds)."""
    title = page.get_by_text("Labeling Instructions", exact=True)
    try:
        title.wait_for(state="visible", timeout=timeout * 1000)
    except Exception:  # noqa: BLE001 - Playwright's TimeoutError: no instructions shown
        return None
    # the outermost element of the window (title, body and buttons)
    dialog = title.locator("xpath=ancestor::*[contains(@class, 'modal')][last()]")
    text = dialog.inner_text() if dialog.count() else title.inner_text()
    if shot is not None:
        screenshot(page, shot)
    for name in ("OK", "Ok", "Close"):
        button = dialog.get_by_role("button", name=name)
        if button.count():
            button.first.click()
            break
    else:
        page.keyboard.press("Escape")
    title.wait_for(state="hidden", timeout=timeout * 1000)
    return text


@dataclass
class Started:
    """What :func:`start_labeling` saw: the task handed out, the ``time.monotonic()`` of the
    click (``t0`` for :func:`measure_usable`) and the instructions window's text (None: none)."""

    task: int
    t0: float
    instructions: str | None


def start_labeling(page: Page, server: Any, project: int, *, log_in: bool = True,
                   shot: str | os.PathLike | None = None) -> Started:
    """What a person does to start labeling a project: log in (unless ``log_in`` is False: the
    page's context is logged in already), open its Data Manager, press "Label All Tasks" and
    close the instructions window when the project shows one (after a screenshot to ``shot``).

    ``server`` has the ``url``, ``email`` and ``password`` of a Label Studio user
    (``tests/lsserver.py``).
    """
    if log_in:
        login(page, server.url, server.email, server.password)
    open_data_manager(page, server.url, project)
    task, t0 = label_all_tasks(page)
    return Started(task, t0, dismiss_instructions(page, shot=shot))


def open_task(page: Page, base_url: str, project: int, task: int, timeout: float = 60.0) -> float:
    """Open one task in the labeling UI by URL (``/projects/P/data?task=T``); return ``t0``.

    ``t0`` is ``time.monotonic()`` just before the navigation; the call returns once the
    document has loaded (DOMContentLoaded), not when the task is usable.
    """
    t0 = time.monotonic()
    page.goto(
        f"{base_url}/projects/{project}/data?task={task}",
        wait_until="domcontentloaded",
        timeout=timeout * 1000,
    )
    return t0


# One probe: the state of the labeling UI, then a requestAnimationFrame + setTimeout(0) round trip.
_PROBE = r"""
async () => {
  const t = performance.now();
  const img = document.querySelector('img[alt="image"]');
  const imageShown = !!(img && img.complete && img.naturalWidth > 0
                        && getComputedStyle(img).visibility === "visible");
  const rows = document.querySelectorAll('[role="tree"] [role="treeitem"]').length;
  const H = window.Htx;
  const ann = H && H.annotationStore && H.annotationStore.selected;
  let regions = null, drawn = null;
  const store = !!(H && H.annotationStore);
  if (ann) {
    const rs = ann.regions;
    regions = rs.length; drawn = 0;
    for (const r of rs) {
      if (r.type !== "brushregion") { drawn++; continue; }
      const layer = r.layerRef;
      const node = layer && layer.findOne && layer.findOne("Image");
      if (node && node.image && node.image()) drawn++;
    }
  }
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  return {t, t_end: performance.now(), imageShown, rows, regions, drawn, store};
}
"""

_TIMELINE = r"""
() => {
  const s = window.__lsb || {longTasks: [], imageLoaded: null};
  const api = performance.getEntriesByType("resource")
    .filter((e) => /\/api\/tasks\/\d+(\?|$)/.test(e.name))
    .map((e) => [e.name, e.startTime, e.responseEnd]);
  return {longTasks: s.longTasks, imageLoaded: s.imageLoaded, api, now: performance.now(),
          noLongTasks: s.noLongTasks || null};
}
"""


@dataclass
class Usable:
    """Timings of one task load, in seconds from ``t0`` (``None``: not seen)."""

    seconds: float | None
    """Until usable (see the module docstring); ``None`` if it timed out."""
    timed_out: bool
    task_json: float | None = None
    """The task API answer (``GET /api/tasks/T``) received."""
    image_loaded: float | None = None
    """The image element's load event (the image is painted in the following frame)."""
    regions_listed: float | None = None
    """First probe that saw the expected region count in the editor and rows in the panel."""
    regions_drawn: float | None = None
    """First probe that saw every brush mask attached to its layer."""
    blocking: float = 0.0
    """Total blocking time from ``t0`` on: sum of (long task - 50 ms)."""
    longest_task: float = 0.0
    long_tasks: list[tuple[float, float]] = field(default_factory=list)
    """Long tasks as ``(start, duration)`` from ``t0``."""
    probes: int = 0
    last_state: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "long_tasks"}
        out["long_tasks"] = [[round(a, 3), round(b, 3)] for a, b in self.long_tasks]
        return out


class UsableTimeout(TimeoutError):
    """The task did not become usable in time; ``timing`` holds what was seen."""

    def __init__(self, message: str, timing: Usable) -> None:
        super().__init__(message)
        self.timing = timing


def _conditions_met(state: dict, expected: int) -> tuple[bool, bool, bool]:
    """(regions listed, regions drawn, image shown) for one probe's state."""
    if state["regions"] is None:
        if state["store"]:  # the editor has not loaded the annotation yet
            return False, False, bool(state["imageShown"])
        # The editor's store is not exposed (another version): fall back to the panel's rows,
        # which for 0 regions cannot tell "empty" from "not rendered yet" beyond the image.
        listed = state["rows"] >= min(expected, 1)
        drawn = listed
    else:
        listed = state["regions"] == expected and (expected == 0 or state["rows"] > 0)
        drawn = listed and state["drawn"] == expected
    return listed, drawn, bool(state["imageShown"])


def measure_usable(
    page: Page,
    expected_regions: int,
    timeout: float = 120.0,
    *,
    t0: float | None = None,
    budget: float = 0.1,
    quiet: float = 0.5,
    interval: float = 0.03,
) -> Usable:
    """Wait until the opened task is usable (module docstring) and return its timings.

    Parameters
    ----------
    page : Page
        A page on which a task is being opened (:func:`open_task`, :func:`label_all_tasks`).
    expected_regions : int
        Regions the task's annotation (or pre-labeling prediction) has.
    timeout : float
        Seconds from ``t0``; :class:`UsableTimeout` is raised after that.
    t0 : float, optional
        ``time.monotonic()`` of the start (default: now).
    budget : float
        Longest acceptable probe round trip (seconds).
    quiet : float
        How long the conditions and responsiveness must hold (seconds).
    interval : float
        Pause between probes (seconds).
    """
    t0 = time.monotonic() if t0 is None else t0
    deadline = t0 + timeout
    result = Usable(seconds=None, timed_out=True)
    window_start: float | None = None
    best_rtt, offset = float("inf"), None  # page clock (ms) -> monotonic (s)
    while True:
        sent = time.monotonic()
        if sent > deadline:
            break
        try:
            state = page.evaluate(_PROBE)
        except Exception as exc:  # noqa: BLE001 - page navigating, context destroyed, ...
            if "Execution context was destroyed" in str(exc) or "navigation" in str(exc).lower():
                window_start = None
                time.sleep(interval)
                continue
            raise
        back = time.monotonic()
        result.probes += 1
        result.last_state = state
        rtt = back - sent
        if rtt < best_rtt:
            best_rtt, offset = rtt, sent + rtt / 2 - state["t_end"] / 1000.0
        listed, drawn, shown = _conditions_met(state, expected_regions)
        if listed and result.regions_listed is None:
            result.regions_listed = sent - t0
        if drawn and result.regions_drawn is None:
            result.regions_drawn = sent - t0
        if listed and drawn and shown and rtt < budget:
            if window_start is None:
                window_start = sent
            if back - window_start >= quiet:
                result.seconds = window_start - t0
                result.timed_out = False
                break
        else:
            window_start = None
        time.sleep(interval)
    add_timeline(page, result, t0, offset)
    if result.timed_out:
        raise UsableTimeout(
            f"task not usable within {timeout:.0f} s (last state {result.last_state})", result
        )
    return result


def add_timeline(page: Page, result: Usable, t0: float, offset: float | None = None) -> None:
    """Fill the page-recorded times (long tasks, image load, task JSON) into ``result``.

    ``offset`` maps the page's clock (ms) to ``time.monotonic()``; by default it is taken from
    one call now (good to a few ms while the page is idle).
    """
    try:
        timeline = page.evaluate(_TIMELINE)
    except Exception:  # noqa: BLE001 - best effort (page closed or navigating)
        return
    if offset is None:
        sent = time.monotonic()
        offset = sent - timeline["now"] / 1000.0

    def rel(ms: float) -> float:
        return offset + ms / 1000.0 - t0

    tasks = [rel(end) for _, _, end in timeline["api"] if end and rel(end) > -0.05]
    result.task_json = min(tasks) if tasks else None
    if timeline["imageLoaded"] is not None:
        result.image_loaded = rel(timeline["imageLoaded"])
    long_tasks = [(rel(s), d / 1000.0) for s, d in timeline["longTasks"] if rel(s + d) > 0]
    result.long_tasks = long_tasks
    result.blocking = sum(max(0.0, d - 0.05) for _, d in long_tasks)
    result.longest_task = max((d for _, d in long_tasks), default=0.0)


def wait_usable(page: Page, expected_regions: int, timeout: float = 120.0, **kwargs: Any) -> float:
    """Seconds until the opened task is usable (:func:`measure_usable`); raises on timeout."""
    return measure_usable(page, expected_regions, timeout, **kwargs).seconds  # type: ignore[return-value]


# --- the regions panel -------------------------------------------------------------------------

# Walks the virtualised outliner tree: scrolls it page by page and collects the rows' ordinals
# (each row's text starts with the region's 1-based ordinal). With ``target`` it stops once that
# row is rendered and returns its index among the rendered treeitems.
_WALK_TREE = r"""
async ({target}) => {
  const tree = document.querySelector('[role="tree"]');
  if (!tree) return {ordinals: [], index: -1};
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const scroller = [tree, ...tree.querySelectorAll("*")].find(
    (e) => e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== "visible");
  const seen = new Set();
  const read = () => {
    const items = [...tree.querySelectorAll('[role="treeitem"]')];
    let index = -1;
    items.forEach((e, i) => {
      const m = /^\s*(\d+)/.exec(e.innerText);
      if (m) { seen.add(+m[1]); if (+m[1] === target) index = i; }
    });
    return index;
  };
  const start = scroller ? scroller.scrollTop : 0;
  let index = read();
  if (scroller && (target === null || index < 0)) {
    scroller.scrollTop = 0; await frame(); index = read();
    while ((target === null || index < 0)
           && scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1) {
      scroller.scrollTop += Math.max(20, scroller.clientHeight - 40);
      scroller.dispatchEvent(new Event("scroll"));
      await frame(); await frame();
      index = read();
    }
    if (target === null) { scroller.scrollTop = start; await frame(); }
  }
  return {ordinals: [...seen].sort((a, b) => a - b), index};
}
"""


def count_regions(page: Page) -> int:
    """Number of regions the regions panel lists (scrolling through its virtualised list)."""
    return len(page.evaluate(_WALK_TREE, {"target": None})["ordinals"])


def _row(page: Page, ordinal: int) -> Any:
    """The panel row of region ``ordinal`` (1-based, as shown), scrolled into the DOM."""
    found = page.evaluate(_WALK_TREE, {"target": int(ordinal)})
    if found["index"] < 0:
        raise LookupError(f"the regions panel has no region {ordinal} (has {found['ordinals'][-3:]}...)")
    return page.get_by_role("tree").get_by_role("treeitem").nth(found["index"])


def click_region(page: Page, ordinal: int) -> None:
    """Click the row of region ``ordinal`` (1-based) in the regions panel."""
    _row(page, ordinal).click()


def region_is_selected(page: Page, ordinal: int) -> bool:
    """Whether region ``ordinal``'s row is shown selected."""
    classes = _row(page, ordinal).get_attribute("class") or ""
    return "treenode-selected" in classes


def select_region(page: Page, ordinal: int, timeout: float = 10.0) -> float:
    """Select region ``ordinal`` by clicking its row in the regions panel; return the latency.

    The latency is what a person sees: from the click's input event to the next paint after
    the page handled it (the Event Timing API's ``duration``, the longest of the click's
    pointer/mouse events; ``0.016`` when none took 16 ms or more, the API's threshold). The call
    returns once the row shows the region selected.
    """
    row = _row(page, ordinal)
    since = page.evaluate("performance.now()")
    start = time.monotonic()
    row.click(timeout=timeout * 1000)
    page.get_by_role("button", name="Delete selected region").wait_for(timeout=timeout * 1000)
    while not region_is_selected(page, ordinal):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"region {ordinal} not selected after {timeout} s")
        time.sleep(0.02)
    wall = time.monotonic() - start
    names = ("pointerdown", "mousedown", "pointerup", "mouseup", "click")
    deadline = time.monotonic() + 2.0
    while True:  # entries arrive after the paint that ends them
        events = page.evaluate(
            "(since) => (window.__lsb && window.__lsb.noEvents === undefined)"
            " ? window.__lsb.events.filter((e) => e[1] >= since) : null",
            since,
        )
        if events is None:
            return wall
        durations = [e[4] / 1000.0 for e in events if e[0] in names]
        if any(e[0] == "click" for e in events) or time.monotonic() > deadline:
            return max(durations, default=0.016)
        time.sleep(0.05)


def region_label(page: Page, ordinal: int) -> str:
    """The label shown in region ``ordinal``'s row ("" when it has none)."""
    lines = [x.strip() for x in _row(page, ordinal).inner_text().splitlines() if x.strip()]
    # "<ordinal>", "<label>", "<score>"
    rest = [x for x in lines[1:] if not re.fullmatch(r"[\d.]+", x)]
    return rest[0] if rest else ""


def set_label(page: Page, label: str, hotkey: bool = False, group: int = 0) -> None:
    """Give the selected region ``label``: click its chip under the image, or press its hotkey.

    ``group`` picks the control whose chips to use when the config has several (0: the first,
    e.g. ``BrushLabels``; 1: the second, e.g. ``PolygonLabels``): a region takes the labels of
    its own control.
    """
    chips = page.locator(".lsf-labels").nth(group).locator(".lsf-label")
    chip = chips.filter(has=page.get_by_text(label, exact=True)).first
    if hotkey:
        key = chip.locator(".lsf-label__hotkey").inner_text().strip()
        page.keyboard.press(key)
    else:
        chip.click()


def submit(page: Page, timeout: float = 60.0) -> int:
    """Press Submit; return the id of the annotation the server created."""

    def is_create(response: Any) -> bool:
        return (
            response.request.method == "POST"
            and re.search(r"/api/tasks/\d+/annotations", response.url) is not None
        )

    with page.expect_response(is_create, timeout=timeout * 1000) as info:
        page.get_by_role("button", name="Submit current annotation").click()
    response = info.value
    if response.status not in (200, 201):
        raise RuntimeError(f"submitting answered {response.status}: {response.text()[:300]}")
    return int(response.json()["id"])


def current_task(page: Page) -> int | None:
    """Id of the task the labeling view holds (``None`` while none is loaded)."""
    return page.evaluate(
        "() => { const H = window.Htx; return H && H.task ? H.task.id : null; }")


def wait_next_task(page: Page, previous: int | None, timeout: float = 120.0) -> int:
    """Wait until the labeling view holds a task other than ``previous`` (after Submit the
    stream loads the next one); return its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = current_task(page)
        if task is not None and task != previous:
            return int(task)
        time.sleep(0.05)
    raise TimeoutError(f"no next task after {previous} within {timeout} s")


def screenshot(page: Page, path: str | os.PathLike, full_page: bool = False) -> Path:
    """Save a PNG screenshot (parent folders created); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
