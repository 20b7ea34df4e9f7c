"""The page ``GET /`` shows a person in a browser, and the data behind it.

:func:`overview` is what ``GET /status`` (no ``project``) answers: every project the state knows,
each as ``/status?project=P`` answers it when connected, or saying that it is not connected or
that its state is damaged (one broken project never hides the others). :func:`render` turns that
same dict into one server-rendered HTML page: a card per project (state, what to do, labeling
budget, the steps so far with an inline SVG chart). No JavaScript, no external assets; every
value is escaped by Jinja2's autoescaping (titles and errors come from Label Studio and state).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from ..engine.checks import is_number
from .context import NotConnected
from .state import DamagedRecord

__all__ = ["chart", "overview", "project_overview", "render"]

logger = logging.getLogger(__name__)

#: How to connect a project (the page's empty state and an unconnected project's advice).
CONNECT_HINT = ("in Label Studio, open the project's Settings > Model > Connect Model and enter "
                "this backend's URL")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True)


# ---------------------------------------------------------------------------- the data


def project_overview(runtime: Any, project: int) -> dict[str, Any]:
    """One project as ``/status?project=P`` answers it, or a short entry when it is not
    connected (``connected: False``) or cannot be read (``damaged: True``, ``last_error``)."""
    try:
        return runtime.status(project)
    except NotConnected:
        try:
            record = runtime.state.get(project)
        except DamagedRecord as exc:
            return _damaged(project, str(exc))
        return {"project": project, "connected": False,
                "title": record.title if record else None,
                "what_to_do": f"connect it again: {CONNECT_HINT}"}
    except DamagedRecord as exc:
        return _damaged(project, str(exc))
    except Exception as exc:  # noqa: BLE001 - one project must not take the others' status down
        logger.exception("project %d: its status cannot be read", project)
        return _damaged(project, f"its status cannot be read ({type(exc).__name__}: "
                                 f"{str(exc)[:300]}); see the backend's log")


def _damaged(project: int, error: str) -> dict[str, Any]:
    return {"project": project, "connected": None, "damaged": True, "last_error": error,
            "what_to_do": error}


def overview(runtime: Any) -> dict[str, Any]:
    """Every project the backend knows (ascending id) and the backend's known problems: what
    ``GET /status`` without a project answers and what the page renders."""
    return {"projects": [project_overview(runtime, p) for p in runtime.state.projects()],
            "problems": runtime.health()["problems"]}


# ---------------------------------------------------------------------------- the chart

#: The chart's size and margins in SVG user units (it scales to the card's width).
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 44, 26, 34


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= value:
            return factor * power
    return 10 * power  # pragma: no cover


def chart(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Geometry of the steps chart: a bar per step for its regions (left axis) and a dot per
    step for the pre-labels kept, in percent (right axis, 0-100); None without steps."""
    if not steps:
        return None
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    regions = [_number(s.get("regions")) or 0 for s in steps]
    top = nice_ceiling(max(regions))
    slot = inner_w / len(steps)
    bar_w = max(min(slot * 0.6, 48), 2)
    bars, points = [], []
    for i, (step, count) in enumerate(zip(steps, regions)):
        centre = LEFT + slot * (i + 0.5)
        height = inner_h * count / top
        bars.append({"x": round(centre - bar_w / 2, 1), "y": round(TOP + inner_h - height, 1),
                     "w": round(bar_w, 1), "h": round(height, 1), "cx": round(centre, 1),
                     "step": step.get("step"), "regions": count})
        accuracy = _number(step.get("prelabel_accuracy"))
        if accuracy is not None:
            percent = max(0.0, min(100.0, 100 * accuracy))
            points.append({"x": round(centre, 1), "y": round(TOP + inner_h * (1 - percent / 100), 1),
                           "step": step.get("step"), "percent": percent})
    ticks = [{"y": round(TOP + inner_h * (1 - f), 1), "left": _amount(top * f),
              "right": f"{100 * f:.0f}%"} for f in (0, 0.25, 0.5, 0.75, 1)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": TOP + inner_h, "bars": bars, "points": points, "ticks": ticks,
            "line": " ".join(f"{p['x']},{p['y']}" for p in points),
            "label_every": max(1, math.ceil(len(steps) / 20))}


# ---------------------------------------------------------------------------- the page


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) \
        and math.isfinite(value) else None


def _amount(value: Any) -> str:
    """``12,345``; ``2.5``; ``-`` for nothing."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:,.0f}" if number == int(number) else f"{number:,.1f}"


def _when(value: Any) -> str:
    """A Unix time or an ISO 8601 string as ``2024-05-01 12:03 UTC``; ``-`` for nothing."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
        elif _number(value) is not None:
            moment = datetime.fromtimestamp(value, timezone.utc)
        else:
            return "-"
    except (ValueError, OverflowError, OSError):
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _percent(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{100 * number:.0f}%"


def _budget(status: dict[str, Any]) -> dict[str, Any] | None:
    """The budget line: ``N of M <unit> labeled`` and the bar's fill (None when unknown)."""
    budget = status.get("budget")
    if not isinstance(budget, dict):
        return None
    unit = budget.get("unit") or "regions"
    spent = budget.get("spent") if isinstance(budget.get("spent"), dict) else {}
    used = _number(spent.get(unit)) or 0
    limit = _number(budget.get("limit"))
    text = (f"{_amount(used)} of {_amount(limit)} {unit} labeled" if limit
            else f"{_amount(used)} {unit} labeled")
    also = ", ".join(f"{_amount(spent.get(other))} {other}" for other in ("images", "regions")
                     if other != unit and other in spent)
    return {"text": text, "fill": min(100.0, 100 * used / limit) if limit else None,
            "exhausted": bool(budget.get("exhausted")), "left": budget.get("left"), "unit": unit,
            "also": also}


def _badge(status: dict[str, Any]) -> tuple[str, str]:
    """(text, CSS class) of a project's state badge."""
    if status.get("damaged"):
        return "damaged", "bad"
    if not status.get("connected"):
        return "not connected", "off"
    state = str(status.get("training_state") or "idle")
    return {"idle": ("idle", "ok"), "queued": ("training queued", "busy"),
            "running": ("training", "busy"), "failed": ("last run failed", "bad")}.get(
        state, (state, "off"))


def render(data: dict[str, Any], backend_url: str = "", refresh: int = 30) -> str:
    """The HTML page for :func:`overview`'s ``data``; ``backend_url`` goes into the hint on how
    to connect a project; the page reloads itself every ``refresh`` seconds (0: never)."""
    cards = []
    for status in data.get("projects", []):
        badge, tone = _badge(status)
        steps = status.get("steps") if isinstance(status.get("steps"), list) else []
        cards.append({"s": status, "badge": badge, "tone": tone, "budget": _budget(status),
                      "steps": steps, "chart": chart(steps)})
    template = _ENV.get_template("dashboard.html")
    return template.render(cards=cards, problems=data.get("problems") or [],
                           backend_url=backend_url, connect_hint=CONNECT_HINT, refresh=refresh,
                           now=_when(datetime.now(timezone.utc).timestamp()),
                           amount=_amount, when=_when, percent=_percent)
