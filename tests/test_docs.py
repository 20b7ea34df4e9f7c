"""The documents stay true to the code and to the measurements: every setting and route in the
README, every module in the architecture notes, every relative link, and every figure quoted
from ``bench/results/*.json`` (the registry ``FIGURES`` below)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from dbsal_backend.server.settings import Settings, _variable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [_variable(Settings, name) for name in Settings.model_fields
               if f"`{_variable(Settings, name)}`" not in readme]
    assert not missing, f"README.md does not describe {missing}"
    assert "make serve" in readme and "make test" in readme


def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; details belong in docs/"


def test_the_readme_lists_every_route():
    source = (ROOT / "dbsal_backend" / "server" / "app.py").read_text()
    routes = []
    for verb, path, methods in re.findall(
            r'@app\.(get|post|route)\("([^"]+)"(?:,\s*methods=\[([^\]]*)\])?\)', source):
        names = re.findall(r'"([A-Z]+)"', methods) if verb == "route" else [verb.upper()]
        routes.append(f"`{'|'.join(names)} {path}")
    assert len(routes) >= 9, routes
    readme = (ROOT / "README.md").read_text().replace("\\|", "|")
    missing = [r for r in routes if r not in readme]
    assert not missing, f"README.md's HTTP API does not list {missing}"


def test_the_architecture_notes_list_every_module():
    notes = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "dbsal_backend"
    modules = sorted(".".join(p.relative_to(package).with_suffix("").parts).removesuffix(".__init__")
                     for p in package.rglob("*.py")
                     if p.parent != package or p.stem != "__init__")
    modules = [m for m in modules if not m.endswith("__main__")]
    missing = [m for m in modules if f"`{m}`" not in notes]
    assert not missing, f"docs/architecture.md does not describe {missing}"


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------
# Written on other branches of the same issue; drop an entry once that branch is merged (the
# test then checks the link like any other).
PENDING: set[str] = set()

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_relative_link_resolves():
    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in _LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            name = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)
            if not file.exists():
                if name not in PENDING:
                    broken.append(f"{doc.name}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"


# --------------------------------------------------------------------------------------------
# Figures quoted from bench/results/*.json
# --------------------------------------------------------------------------------------------
# Each entry: (document, JSON file under bench/results/, text). Every {...} in the text is a
# Python expression over that JSON (``d``) and the helpers below, optionally with a format spec
# ({expression:.0f}); the filled-in text must occur in the document word for word (line breaks
# and runs of spaces count as one space). Rounding is Python's (``format``). So a figure changed in a document, or a JSON file re-measured
# without its documents, fails here. When a bench is re-run, update the documents until this
# passes; when a figure is quoted anew, add its entry.


def k(x: float) -> str:
    """Clicks in thousands: 5900.3 -> '5.9k'."""
    return f"{x / 1000:.1f}k"


def pc(x: float, digits: int = 0) -> str:
    """A share as a percentage number: 0.524 -> '52'."""
    return f"{100 * x:.{digits}f}"


def mi(x: float) -> str:
    """mIoU (or a difference of mIoU) in points, one decimal: 0.3763 -> '37.6'."""
    return f"{100 * x:.1f}"


def sg(x: float) -> str:
    """A signed difference in points, typographic minus; zero unsigned: '+3.2', '−0.7', '0.0'."""
    text = f"{100 * x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text.replace("-", "\u2212")


def f1(x: float) -> str:
    return f"{x:.1f}"


def join(values, fn, sep: str = ", ") -> str:
    return sep.join(fn(v) for v in values)


def opt(fn):
    """``fn`` for a value that may be missing (None: '—')."""
    return lambda x: "—" if x is None else fn(x)


def span(values, fn, sep: str = "-") -> str:
    values = list(values)
    return f"{fn(min(values))}{sep}{fn(max(values))}"


@cache
def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _interp(xs, ys, x):
    if x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def _reach(rows, miou):
    """Clicks at which a curve first reaches ``miou`` (as simulate.clicks_to_reach); None if never."""
    for a, b in zip(rows, rows[1:]):
        if a["miou"] >= miou:
            return a["clicks"]
        if b["miou"] >= miou:
            return a["clicks"] + (miou - a["miou"]) / (b["miou"] - a["miou"]) * (b["clicks"] - a["clicks"])
    return None


def namespace(d: dict) -> dict:
    """The helpers a figure's expressions use, bound to one results file ``d``."""
    kinds = {"eq": "at_equal_clicks", "eqt": "at_equal_clicks_and_training"}

    def S(name):                      # the strategy's mean curve, step 0 (the seed set) first
        return d["strategies"][name]

    def col(name, key, steps=slice(None)):
        return [row[key] for row in S(name)[steps]]

    def pm(row):
        return f"{mi(row['miou'])}±{mi(row['miou_std'])}"

    def D(kind, other):               # the default minus other, per step (paired per seed)
        return [r["miou_difference"] for r in d[kinds[kind]]["differences"][other]
                if r["miou_difference"] is not None]

    def SD(kind, other):              # their standard deviations over the seeds
        return [r["std"] for r in d[kinds[kind]]["differences"][other] if r["seeds"] > 1]

    def M(kind, other):               # mean over steps
        return d[kinds[kind]]["mean_over_steps"][other]

    def cost(name):                   # clicks of each step
        c = col(name, "clicks")
        return [b - a for a, b in zip(c, c[1:])]

    def seeds(name):                  # the seeds a strategy was run with, in order
        return sorted(d["runs"][name], key=int)

    def runs(name, seed):
        return d["runs"][name][str(seed)]

    def seed_diff(ref, other, seed):  # a seed's mean over steps of ref minus other at equal clicks
        theirs = runs(other, seed)
        diffs = [r["miou"] - v for r in runs(ref, seed)[1:]
                 if (v := _interp([t["clicks"] for t in theirs], [t["miou"] for t in theirs],
                                  r["clicks"])) is not None]
        return float(np.mean(diffs)) if diffs else None  # None: the curves do not overlap

    def peak(name):                   # the step of a mean curve's highest mIoU, and its row
        step = int(np.argmax(col(name, "miou")))
        return step, S(name)[step]

    def seed_diffs(other, ref="default"):  # seed_diff of each of ref's seeds, in order
        return [seed_diff(ref, other, s) for s in sorted(d["runs"][ref], key=int)]

    def reach_seed(name, seed, share):  # clicks at which a seed's curve reaches share of full
        return _reach(runs(name, seed), share * full["miou"])

    def run_of(side, epochs):         # a train_time.json run
        return next(r for r in d["runs"] if (r["max_side"], r["first_epochs"]) == (side, epochs))

    def step_cost(name, seeds_of, step=1):  # a step's clicks, mean over the seeds of seeds_of
        seeds = sorted(d["runs"][seeds_of], key=int)
        return float(np.mean([runs(name, s)[step]["clicks"] - runs(name, s)[step - 1]["clicks"]
                              for s in seeds]))

    full = d.get("full_supervision", {})

    def per_region(width):            # seconds a brush region adds to a page load (ui_render)
        main = {r["regions"]: r["seconds_median"] for r in d["results"]
                if r["variant"] == "main" and r["width"] == width}
        return (main[40] - main[0]) / 40

    def U(i, pick):                   # the seconds of a ui.json project's stream tasks that pick
        return [t["seconds"] for t in d["projects"][i]["stream"] if pick(t)]

    def at(rows, clicks):             # a curve's mIoU at some clicks
        return float(np.interp(clicks, [r["clicks"] for r in rows], [r["miou"] for r in rows]))

    return {**globals(), "d": d, "S": S, "col": col, "pm": pm, "D": D, "SD": SD, "M": M,
            "cost": cost, "seeds": seeds, "runs": runs, "seed_diff": seed_diff,
            "seed_diffs": seed_diffs, "peak": peak, "reach_seed": reach_seed, "step_cost": step_cost, "run_of": run_of, "full": full, "at": at,
            "reach": _reach, "per_region": per_region, "U": U, "np": np}


def _row(name):
    """A 4-step table row's clicks and mIoU cells."""
    return (f"| {{join(col('{name}', 'clicks'), k, ' / ')}} | "
            f"{{join(S('{name}'), pm, ' / ')}} |")


def _region_cells(name):
    return (f"| {{join(col('{name}', 'regions_per_image_median', slice(1, None)), "
            f"lambda x: f'{{x:g}}', ' / ')}} | {{pc(S('{name}')[1]['prelabel_accuracy'])}}%")


def _comparison(label, other):
    return (f"| {label} | **{{sg(M('eq', '{other}'))}}** ({{'per step ' if '{other}' == 'random' "
            f"else ''}}{{join(D('eq', '{other}'), sg)}}) | **{{sg(M('eqt', '{other}'))}}** "
            f"({{join(D('eqt', '{other}'), sg)}}) |")


def _answers_section():
    """The paragraphs of docs/results.md's section on the default (dominant-class answers), as
    (results file, template) in order: the section is these, rendered, one after the other."""
    out = []
    for name, title in (("camvid", "CamVid"), ("peanut", "Peanut")):
        f = f"{name}_al_answers.json"
        out += [
            (f, f"**{title}** (seeds of the default: {{join(seeds('default'), str, ', ')}}; "
                f"the others: {{join(seeds('random'), str, ', ')}}), after the seed set and steps 1..4:"),
            (f, "| strategy | clicks | Cai et al.'s count | mIoU (%) | pre-labels right, step 1 |\n|---|---|---|---|---|"),
            *[(f, f"| {label} | {{join(col('{o}', 'clicks'), k, ' / ')}} | "
                  f"{{join(col('{o}', 'cai_clicks'), k, ' / ')}} | {{join(S('{o}'), pm, ' / ')}} | "
                  f"{{pc(S('{o}')[1]['prelabel_accuracy'])}}% |")
              for o, label in (("default", "**default**: dominant-class answers"),
                               ("repaint", "`repaint`: the same regions, repainted"),
                               ("dbsal", "`dbsal`, the paper"), ("static", "`static`, matched to dbsal"))],
            (f, "| `random` whole images | {join(col('random', 'clicks'), k, ' / ')} | "
                "{join(col('random', 'cai_clicks'), k, ' / ')} | {join(S('random'), pm, ' / ')} | — |"),
            (f, "| `control`: no new labels | {k(S('control')[1]['clicks'])} (every step) | — | "
                "{join(S('control'), pm, ' / ')} | — |"),
            (f, "| `full` supervision | {k(full['clicks'])} | {k(full['cai_clicks'])} | {mi(full['miou'])} (one run) | — |"),
            (f, "`default` minus the other at equal clicks, mean over steps 1-4 (per step), and the same "
                "with each curve started from the control's point (the same training):"),
            (f, "| `default` minus | at equal clicks | at equal clicks and training |\n|---|---|---|"),
            *[(f, f"| `{o}` | **{{sg(M('eq', '{o}'))}}** ({{join(D('eq', '{o}'), sg)}}) | "
                  f"**{{sg(M('eqt', '{o}'))}}** ({{join(D('eqt', '{o}'), sg)}}) |")
              for o in ("repaint", "random", "dbsal", "static")],
            (f, "Per seed ({join(seeds('default'), str, ', ')}), the default minus `repaint` at "
                "equal clicks is {join(seed_diffs('repaint'), sg)}, "
                "minus random whole images {join(seed_diffs('random'), sg)}. "
                "The default beats the control by {join([r['miou_difference'] for r in d['against_control']], sg)} "
                "at steps 1-4. At step 1 it asks the same regions as `repaint` (the same model): "
                "repainting was {pc(1 - step_cost('default', 'default') / step_cost('repaint', 'default'))}% "
                "of that step's clicks ({step_cost('repaint', 'default'):.0f} against "
                "{step_cost('default', 'default'):.0f}, mean over the default's seeds)."
                + (" The default passes 90% of full supervision's mIoU at "
                   "{k(full['clicks_for_90_percent'])} clicks ({pc(full['share_of_full_clicks'], 1)}% of "
                   "the pool's) and ends at {pc(S('default')[-1]['miou'] / full['miou'])}% with "
                   "{pc(S('default')[-1]['clicks'] / full['clicks'], 1)}%." if name == "peanut" else
                   " After 4 steps it is at {pc(S('default')[-1]['miou'] / full['miou'])}% of full "
                   "supervision's mIoU with {pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of "
                   "the pool's clicks.")),
        ]
    f = "camvid_al_long20_answers.json"
    out += [(f, "**CamVid's long protocol, its first 5 steps** (20 queried images a step, 20 epochs "
                "each; seeds {join(seeds('default'), str, ', ')} of the default; "
                "`bench/results/camvid_al_long20_answers.json`): the default ends at "
                "{mi(S('default')[-1]['miou'])} mIoU with {k(S('default')[-1]['clicks'])} clicks "
                "({pc(S('default')[-1]['miou'] / full['miou'])}% of full supervision with "
                "{pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the pool's clicks). At equal "
                "clicks the default minus `repaint` is {sg(M('eq', 'repaint'))} "
                "({sg(M('eqt', 'repaint'))} at equal training; per step {join(D('eq', 'repaint'), sg)}), "
                "minus random whole images {sg(M('eq', 'random'))} ({sg(M('eqt', 'random'))}), minus "
                "`dbsal` {sg(M('eq', 'dbsal'))} ({sg(M('eqt', 'dbsal'))}).")]
    return out


def _seeds(name):
    return f"{{join(sorted(d['runs']['{name}'], key=int), str, ', ')}}"


def _start_section():
    """docs/results.md's section on the cheaper start (the default since it won), as (results
    file, template) in order, rendered like ANSWERS_SECTION."""
    out = []
    labels = {"default": "**default**: 5 whole images, then dominant-class answers",
              "seed10": "`seed10`: 10 whole images, then the same",
              "repaint": "`repaint`: 10 whole images, regions repainted",
              "dbsal": "`dbsal`, the paper", "static": "`static`, matched to dbsal",
              "random": "`random` whole images"}
    for f, title, protocol, level in (
            ("camvid_al_long20_start.json", "CamVid, the long protocol", "20 queried images a step", 0.8),
            ("peanut_al_start.json", "Peanut", "10 queried images a step", 0.9)):
        reach = (f"{{k(c) if (c := reach(S(o), {level} * full['miou'])) is not None else "
                 f"'not reached'}}")
        out += [
            (f, f"**{title}** ({protocol}, 20 epochs of fine-tuning each; seeds of the default: "
                f"{_seeds('default')}, of `seed10`: {_seeds('seed10')}, of the others: "
                f"{_seeds('random')}), at the last step of each curve, and the clicks at which "
                f"its mean curve first reaches {pc(level)}% of full supervision's mIoU:"),
            (f, f"| strategy | steps | clicks | Cai et al.'s count | mIoU (%) | pre-labels right, "
                f"step 1 | clicks to {pc(level)}% of full |\n|---|---|---|---|---|---|---|"),
            *[(f, f"| {labels[o]} | {{len(S('{o}')) - 1}} | {{k(S('{o}')[-1]['clicks'])}} | "
                  f"{{k(S('{o}')[-1]['cai_clicks'])}} | {{pm(S('{o}')[-1])}} | "
                  + ("—" if o == "random" else f"{{pc(S('{o}')[1]['prelabel_accuracy'])}}%")
                  + f" | {reach.replace('S(o)', f'S({o!r})')} |")
              for o in ("default", "seed10", "repaint", "dbsal", "static", "random")],
            (f, "| `full` supervision | — | {k(full['clicks'])} | {k(full['cai_clicks'])} | "
                "{mi(full['miou'])} (one run) | — | — |"),
            (f, "`default` minus the other at equal clicks: the mean over the default's steps that "
                "the other's curve reaches (their number), paired per seed:"),
            (f, "| `default` minus | `seed10` | `repaint` | `random` | `dbsal` | `static` |\n"
                "|---|---|---|---|---|---|"),
            (f, "| at equal clicks | " + " | ".join(
                f"**{{sg(M('eq', '{o}'))}}** ({{len(D('eq', '{o}'))}})"
                for o in ("seed10", "repaint", "random", "dbsal", "static")) + " |"),
            (f, f"Per seed ({_seeds('default')}), the default reaches {pc(level)}% of full at "
                f"{{join([reach_seed('default', s, {level}) for s in seeds('default')], opt(k))}} "
                f"clicks, `seed10` at "
                f"{{join([reach_seed('seed10', s, {level}) for s in seeds('default')], opt(k))}} "
                f"(— : not within its steps); the default minus `seed10` at equal clicks is "
                f"{{join(seed_diffs('seed10'), opt(sg))}} "
                f"(— : the curves do not overlap). "
                "Its first model (5 whole images, {k(S('default')[0]['clicks'])} clicks) scores "
                "{mi(S('default')[0]['miou'])} mIoU against `seed10`'s {mi(S('seed10')[0]['miou'])} "
                "({k(S('seed10')[0]['clicks'])} clicks). It ends at "
                "{pc(S('default')[-1]['miou'] / full['miou'])}% of full supervision's mIoU with "
                "{pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the pool's clicks"
                "{', passing 90% at ' + pc(full['share_of_full_clicks'], 1) + '%' if full.get('share_of_full_clicks') else ''}."),
        ]
    return out


# The product's default since trimming the region answers won, against the others (CamVid's long
# protocol, Peanut): the README's results and issue 24's goals.
README_DEFAULT = ("camvid_al_default.json", "peanut_al_default.json")


def _margin_rows(label, other, threshold, points):
    """Issue 24's goal "the default >= ``other`` + ``points`` mIoU at equal clicks": a row for
    CamVid's long protocol, one for Peanut."""
    verdict = (f"{{('met' + ('' if M('eqt', '{other}') is None else ' (both readings)' if "
               f"M('eqt', '{other}') >= {threshold} else ' on the plain reading, not on the fairer "
               f"one')) if M('eq', '{other}') >= {threshold} else '**missed**'}}")
    cells = (f"{{sg(M('eq', '{other}'))}} ({{len(D('eq', '{other}'))}} steps); "
             f"{{'no step' if M('eqt', '{other}') is None else sg(M('eqt', '{other}'))}} at equal "
             f"clicks and training | {verdict}")
    return [
        (README_DEFAULT[0], f"| default ≥ {label} + {points} mIoU at equal clicks | "
                            f"CamVid: {cells} |"),
        (README_DEFAULT[1], f"| (Peanut) | Peanut: {cells} |"),
    ]


def _goals_24():
    """docs/results.md's table of issue 24's goals for the default, row by row (rendered like
    ANSWERS_SECTION): CamVid's long protocol and Peanut, with the cheaper start."""
    c, p = README_DEFAULT
    prelabels = ("{pc(S('default')[1]['prelabel_accuracy'])}% (seeds: {join([runs('default', s)[1]"
                 "['prelabels_right'] / runs('default', s)[1]['prelabels_judged'] for s in "
                 "seeds('default')], pc, ', ')}; `seed10`: "
                 "{pc(S('seed10')[1]['prelabel_accuracy'])}%) |"
                 " {'met' if S('default')[1]['prelabel_accuracy'] >= 0.6 else '**missed**'} |")
    return [
        (c, "| goal | measured | |\n|---|---|---|"),
        (c, "| CamVid: ≥ 90% of full supervision's mIoU with ≤ 5% of the pool's clicks, ≥ 95% with "
            "≤ 10% | the long protocol (seeds {join(seeds('default'), str, ', ')}): "
            "the default's {len(S('default')) - 1} steps end at {pc(S('default')[-1]['miou'] / full['miou'])}% of full "
            "with {pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the clicks; at 5% of the clicks "
            "it is at {pc(at(S('default'), 0.05 * full['clicks']) / full['miou'], 1)}% of full (seeds: "
            "{join([at(runs('default', s), 0.05 * full['clicks']) / full['miou'] for s in seeds('default')], lambda x: pc(x, 1), ', ')}); "
            "{'it passes 90% at ' + pc(full['share_of_full_clicks'], 1) + '%' if full.get('share_of_full_clicks') else 'its mean curve does not reach 90%'}"
            " (seeds: {join([reach_seed('default', s, 0.9) for s in seeds('default')], lambda c: 'not reached' if c is None else pc(c / full['clicks'], 1) + '%', ', ')}) | "
            "{'met' if (full.get('share_of_full_clicks') or 1) <= 0.05 else '**missed**'} at 5%; "
            "95%: its runs end at {pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the "
            "clicks{', every pool image asked (the default asks an image once: 10% is out of its reach on this pool)' if S('default')[-1]['images'] == 367 else ', short of 10% (' + str(S('default')[-1]['images']) + ' of the 367 pool images asked)'}, and over their last 5 steps "
            "({k(S('default')[-5]['clicks'])}-{k(S('default')[-1]['clicks'])} clicks) the mean "
            "curve stays at {span([r['miou'] / full['miou'] for r in S('default')[-5:]], pc)}% of "
            "full; no curve measured reaches it (at 10% of the clicks: {join([(o, at(S(o), 0.1 * full['clicks']) / full['miou']) for o in ('repaint', 'dbsal', 'static', 'random')], lambda x: '`' + x[0] + '` ' + pc(x[1]) + '%', ', ')} of full) |"),
        (p, "| Peanut: ≥ 90% of full with ≤ 5% of the pool's clicks | "
            "{'passes 90% at ' + pc(full['share_of_full_clicks'], 1) + '% of the clicks' if full.get('share_of_full_clicks') else 'does not reach 90%'} | "
            "{'met' if (full.get('share_of_full_clicks') or 1) <= 0.05 else '**missed**'} |"),
        *_margin_rows("random whole images", "random", 0.05, "5"),
        *_margin_rows("`dbsal`", "dbsal", 0.03, "3"),
        (c, "| ≤ 40 regions per queried image (median) | CamVid: "
            "{max(col('default', 'regions_per_image_median', slice(1, None))):g} at most over the steps;"),
        (p, "Peanut: {max(col('default', 'regions_per_image_median', slice(1, None))):g} | "
            "{'met' if max(col('default', 'regions_per_image_median', slice(1, None))) <= 40 else '**missed**'} |"),
        (c, "| step-1 pre-labels ≥ 60% right | CamVid: " + prelabels),
        (p, "| (Peanut) | Peanut: " + prelabels),
        ("train_time_start.json", "| first queried regions within 5 minutes of the last start answer "
            "(360x480, this CPU) | {run_of(240, 120)['minutes']:.1f} minutes from the 5 whole images, "
            "one torch thread; the first model is the simulator's seed model of `seed5` | "
            "{'met' if run_of(240, 120)['minutes'] <= 5 else '**missed**'} |"),
    ]


def _readme_cells(o):
    diff = "—" if o == "default" else f"{{sg(M('eq', '{o}'))}}"
    return (f"| {{k(S('{o}')[-1]['clicks'])}} | {{k(S('{o}')[-1]['cai_clicks'])}} | "
            f"{{pm(S('{o}')[-1])}} | {diff} |")


# The README's results table: (first cell, the cells of one data set), filled from each
# *_default.json
README_START_ROWS = [
    *[(label, _readme_cells(o)) for label, o in (
        ("| **default**: 5 whole images, then the 40 least confident superpixels of each queried "
         "image, each answered with its class; fine-tuning leaves out the fifth of those labels "
         "the model finds least likely", "default"),
        ("| `seed5`: the same, every label trained on (the default before)", "seed5"),
        ("| `seed10`: `seed5` from 10 whole images", "seed10"),
        ("| `repaint`: 10 whole images, the same regions repainted", "repaint"),
        ("| `dbsal`, the paper's dynamic budget: the natural-breaks high group of each image", "dbsal"),
        ("| `static`: the same share of superpixels in every image, matched to `dbsal`", "static"),
        ("| `random` whole images", "random"))],
    ("| `full` labels, the whole pool",
     "| {k(full['clicks'])} | {k(full['cai_clicks'])} | {mi(full['miou'])} | — |"),
]
README_START_INTRO = [
    ("camvid_al_default.json",
     "On two data sets, CamVid (street scenes: 367 pool images, 101 to score; the default "
     "{len(S('default')) - 1} steps of 20 queried images, seeds "
     "{join(seeds('default'), str, ', ')}, `bench/results/camvid_al_default.json`)"),
    ("peanut_al_default.json",
     "and Peanut (crop and weed fields: 280 and 60; {len(S('default')) - 1} steps of 10, seeds "
     "{join(seeds('default'), str, ', ')}, `peanut_al_default.json`), the backend's own "
     "step in the [offline simulator](docs/simulator.md) (5 whole images, then queried images, 20 "
     "epochs of fine-tuning a step; `seed5` too; the others from 10 whole images, fewer steps, "
     "seeds {join(seeds('random'), str, ', ')}). Clicks by the simulator's cost "
     "model; Cai et al.'s: one per region looked at. Last steps; \"default "
     "minus it\": mIoU at equal clicks over the default's steps the other reaches, paired per seed:"),
]
README_START_AFTER = [
    ("peanut_al_default.json",
     "On Peanut the default passes 90% of full supervision's mIoU at {k(full['clicks_for_90_percent'])} "
     "clicks ({pc(full['share_of_full_clicks'], 1)}% of the pool's), `seed5` at "
     "{k(reach(S('seed5'), 0.9 * full['miou']))}, and does not fall as `seed5` does: it peaks at "
     "{mi(peak('default')[1]['miou'])} (step {peak('default')[0]}) and ends at "
     "{mi(S('default')[-1]['miou'])}, `seed5` at {mi(peak('seed5')[1]['miou'])} and "
     "{mi(S('seed5')[-1]['miou'])};"),
    ("camvid_al_default.json",
     "on CamVid it reaches 80% at {k(reach(S('default'), 0.8 * full['miou']))} clicks, `seed5` at "
     "{k(reach(S('seed5'), 0.8 * full['miou']))}, and "
     "{('90% at ' + k(full['clicks_for_90_percent']) + ' (' + pc(full['share_of_full_clicks'], 1) + '%') if full.get('share_of_full_clicks') else ('ends at ' + pc(S('default')[-1]['miou'] / full['miou']) + '% with ' + pc(S('default')[-1]['clicks'] / full['clicks'], 1) + '% (90% not reached')}; "
     "seeds: {join([reach_seed('default', s, 0.9) for s in seeds('default')], lambda c: 'not within ' + str(len(S('default')) - 1) + ' steps' if c is None else pc(c / full['clicks'], 1) + '%', ', ')}). "
     "Missed ([why](docs/results.md#goals-as-measured)): CamVid's 90% by 5% of the clicks "
     "({pc(at(S('default'), 0.05 * full['clicks']) / full['miou'], 1)}% there"
     "{'' if (full.get('share_of_full_clicks') or 1) > 0.05 else ', yet met: a verdict to update'}; 95% by 10% "
     "{'out of reach: asking every image once costs ' if S('default')[-1]['images'] == 367 else 'not measured: runs end at '}{pc(S('default')[-1]['clicks'] / full['clicks'], 1)}%) and its step-1 "
     "pre-labels ({pc(S('default')[1]['prelabel_accuracy'])}% right: a first model from 5 images)."),
    ("peanut_al_default.json",
     "On Peanut it leads random whole images by {sg(M('eq', 'random'))} (goal +5) and `dbsal` by "
     "{sg(M('eq', 'dbsal'))} (goal +3) over the {len(D('eq', 'random'))} steps where the curves "
     "overlap{': both met' if M('eq', 'random') >= 0.05 and M('eq', 'dbsal') >= 0.03 else ', not both met: a verdict to update'}."),
]
START_SECTION = _start_section()


def _fine_section():
    """docs/results.md's comparison of ``fine`` (the default on SLICO 600) with the default, a row
    per data set (rendered like ANSWERS_SECTION)."""
    row = (" | {len(S('fine')) - 1} | {k(S('fine')[-1]['clicks'])}, {pm(S('fine')[-1])} | "
           "{mi(at(S('default'), S('fine')[-1]['clicks']))} | "
           "**{sg(M('eq', 'fine'))}** ({len(D('eq', 'fine'))}; "
           "{join(seed_diffs('fine'), opt(sg))}) | "
           "{'no step' if M('eqt', 'fine') is None else sg(M('eqt', 'fine'))} | "
           "{pc(S('fine')[-1]['pixels_fraction'], 1)}% / "
           "{pc(S('default')[len(S('fine')) - 1]['pixels_fraction'], 1)}% | "
           "{pc(S('fine')[1]['prelabel_accuracy'])}% / {pc(S('default')[1]['prelabel_accuracy'])}% |")
    return [
        ("camvid_al_long20_start.json",
         "| data set | steps of `fine` | its last step: clicks, mIoU | the default's mIoU at those "
         "clicks | the default minus `fine` at equal clicks (the default's steps compared; per seed) | at equal clicks "
         "and training | pool labeled at `fine`'s last step: `fine` / the default | step-1 "
         "pre-labels right: `fine` / the default |\n|---|---|---|---|---|---|---|---|"),
        ("camvid_al_long20_start.json", "| CamVid, 20 images a step" + row),
        ("peanut_al_start.json", "| Peanut, 10 images a step" + row),
    ]


FINE_SECTION = _fine_section()


def _region_start_section():
    """docs/results.md's table of bench/region_start.py: a row per data set and start."""
    out = [("region_start_camvid.json",
            "| data set | start | images | clicks | first model: mIoU | after step 1: clicks, "
            "mIoU | minus the whole images after step 1 (per seed) | step-1 pre-labels right "
            "|\n|---|---|---|---|---|---|---|---|")]
    for name, title in (("camvid", "CamVid"), ("peanut", "Peanut")):
        for arm, label in (("whole5", f"{title} | 5 whole images (the product's)"),
                           ("regions", " | `regions`: 40 a pool image, 120 epochs"),
                           ("regions_fast", " | `regions_fast`: the same, the whole images' "
                            "passes ({span([r['regions_fast']['epochs'] for r in d['seeds'].values()], "
                            "str)} epochs)"),
                           ("hybrid", " | `hybrid`: 2 of the whole images, then random regions "
                            "(the same passes)"),
                           ("colour", " | `colour`: 40 a pool image most different in colour "
                            "(the same passes)")):
            diff = ("—" if arm == "whole5" else
                    f"{{sg(d['summary']['{arm}']['step1_miou_minus_whole5']['mean'])}} "
                    f"({{join(d['summary']['{arm}']['step1_miou_minus_whole5']['per_seed'], sg, ', ')}})")
            out.append((f"region_start_{name}.json",
                        f"| {label} | {{span([r['{arm}']['images'] for r in d['seeds'].values()], "
                        f"str) if '{arm}' != 'whole5' else 5}} | "
                        f"{{k(d['summary']['{arm}']['clicks'])}} | "
                        f"{{mi(d['summary']['{arm}']['first_miou'])}} | "
                        f"{{k(d['summary']['{arm}']['step1_clicks'])}}, "
                        f"{{mi(d['summary']['{arm}']['step1_miou'])}} | {diff} | "
                        f"{{pc(d['summary']['{arm}']['step1_prelabels_right'])}}% |"))
    return out


REGION_START_SECTION = _region_start_section()


def _superpixel_row(variant, label):
    """A row of docs/results.md's table of superpixel settings (answer_noise.json)."""
    def cells(data):
        m = f"d['superpixels']['{data}']['{variant}']"
        return (f"{{pc({m}['wrong'], 1)}}% | {{pc({m}['mixed'])}}% | {{{m}['pixels']:.0f}} | "
                f"{{{m}['regions']:.0f}} | {{{m}['vertices']:g}} |")
    return ("answer_noise.json", f"| {label} | {cells('camvid')} {cells('peanut')}")


SUPERPIXEL_ROWS = [_superpixel_row(v, label) for v, label in (
    ("default", "default (SLICO, 300)"), *[(v, v) for v in (
        "SLIC, compactness 10", "SLIC, compactness 5", "SLIC, compactness 2.5",
        "MSLIC, compactness 10", "SLICO, 150", "SLICO, 600")])]


def _ui_row(i, config):
    """A row of docs/results.md's table of bench/ui.py's projects (``d['projects'][i]``)."""
    def cell(pick, count=False):  # median (range) of the stream's seconds that pick selects
        return ("{'—' if not (v := U(%d, %s)) else f1(np.median(v)) + "
                "(' (' + span(v, f1) + ')' if len(v) > 1 else '')%s}"
                % (i, pick, " + f', {len(v)} tasks'" if count else ""))
    during = cell("lambda t: t['queried'] and t['run_going']")
    demand = cell("lambda t: not t['queried']", count=True)
    return (f"| {config} | {{(p := d['projects'][{i}])['size']}} | "
            "{p['regions_per_queried_task_median']:.0f} | "
            f"**{{f1(np.median(q := U({i}, lambda t: t['queried'])))}}** ({{span(q, f1)}}), "
            f"{{len(q)}} tasks | {during} | {demand} | "
            "{pc(p['prelabel_accuracy'])}% | "
            "{'seed task' if p['label_all_tasks']['before_first_step']['is_seed_task'] else 'another task'} / "
            "{'least confident queried' if p['label_all_tasks']['after_first_step']['is_least_confident_queried'] else 'another task'} | "
            "{p['first_step_seconds']:.0f} s |")


UI_ROWS = [_ui_row(i, c) for i, c in enumerate(["Brush and Polygon", "Brush and Polygon",
                                                "Brush alone", "Brush alone"])]
ANSWERS_SECTION = _answers_section()
GOALS_24 = _goals_24()

# PixelPick's CamVid figures (MobileNetV2 DeepLabv3+ at 360x480; the README of NoelShin/PixelPick):
# labeled pixels an image -> mIoU, and its full supervision. Our pool has 367 images.
PIXELPICK = {20: 50.8, 40: 53.9, 100: 55.9}
PIXELPICK_FULL = 58.2
_PP = "at(S('default'), {n} * 367)"
_PP_CAI = ("float(np.interp({n} * 367, col('default', 'cai_clicks'), col('default', 'miou')))")
PIXELPICK_SECTION = [
    ("camvid_al_default.json",
     "**Against PixelPick, per label.** PixelPick (Shin et al., CVPR 2021; the README of "
     "NoelShin/PixelPick) reports on CamVid, with a MobileNetV2 DeepLabv3+ at 360x480 whose full "
     f"supervision scores {PIXELPICK_FULL}: "
     + ", ".join((f"{pc(v / PIXELPICK_FULL)}% of it ({v}) with {n} labeled pixels an image "
                  f"({k(n * 367)} labels for our pool of 367)") if i == 0 else
                 f"{pc(v / PIXELPICK_FULL)}% ({v}) with {n} ({k(n * 367)})"
                 for i, (n, v) in enumerate(PIXELPICK.items()))
     + ". At 7.3k clicks the default is at {pc(" + _PP.format(n=20) + " / full['miou'])}% of its full "
     "supervision ({mi(" + _PP.format(n=20) + ")} against {mi(full['miou'])}), at 7.3k of Cai et al.'s "
     "count (a click per region looked at) at {pc(" + _PP_CAI.format(n=20) + " / full['miou'])}%; its "
     "{len(S('default')) - 1} steps end at {pc(S('default')[-1]['miou'] / full['miou'])}% with "
     "{k(S('default')[-1]['clicks'])} clicks{', short of ' + k(40 * 367) if S('default')[-1]['clicks'] < 40 * 367 else ''}"
     "{'' if S('default')[-1]['clicks'] < 40 * 367 else '; at ' + k(40 * 367) + ' it is at ' + pc(" + _PP.format(n=40) + " / full['miou']) + '%'}. Per label it is "
     "{'behind' if " + _PP.format(n=20) + " / full['miou'] < " + f"{PIXELPICK[20] / PIXELPICK_FULL:.4f}"
     + " else 'not behind'} PixelPick, on the ratios to each one's own full supervision."),
]
_LONG = "docs/results.md"
# docs/results.md on the default's Peanut curve after its peak (peanut_al_start.json) and the fresh
# models trained on its last labels (fresh_training_peanut.json)
PEANUT_FALL = [
    ("peanut_al_start.json",
     "Its mean curve peaks at {mi((p := peak('default'))[1]['miou'])} mIoU at step {p[0]} "
     "({k(p[1]['clicks'])} clicks) and ends at {mi(S('default')[-1]['miou'])} at step {len(S('default')) - 1}; seed by seed "
     "({join(seeds('default'), str, ', ')}) it peaks at "
     "{join([max(r['miou'] for r in runs('default', s)) for s in seeds('default')], mi)} and "
     "ends at {join([runs('default', s)[-1]['miou'] for s in seeds('default')], mi)}."),
    ("fresh_training_peanut.json",
     "trains a fresh model from the ImageNet weights for {d['settings']['fresh_epochs']} epochs on "
     "each seed's labels of step {d['settings']['steps']}: it scores "
     "{mi((e := d['summary'][str(d['settings']['steps'])])['fresh']['miou'])} mIoU against the "
     "fine-tuned model's {mi(e['warm']['miou'])} (fresh minus fine-tuned "
     "{join(e['fresh_minus_warm']['per_seed'], sg)} on seeds {join(d['seeds'], str, ', ')})"),
]


# Fine-tuning the first model (results.md, after the fall): one step's training from the seed
# model on the labels of the default's last step, against the chain.
_ANCHOR = ("it scores {mi((e := d['summary'][str(d['settings']['steps'])])['anchor']['miou'])} "
           "mIoU against the chain's {mi(e['warm']['miou'])} "
           "({join(e['anchor_minus_warm']['per_seed'], sg)} on seeds {join(d['seeds'], str, ', ')})")
ANCHOR_SECTION = [
    ("anchor_training_peanut.json", "On Peanut (step {d['settings']['steps']}) " + _ANCHOR),
    ("anchor_training_camvid.json", "On CamVid (step {d['settings']['steps']}) "
     + _ANCHOR.replace(" mIoU against the chain's", " against")),
    ("anchor40_training_camvid.json", "fine-tuned {d['settings']['anchor_epochs']} epochs instead "
     "of {d['settings']['epochs']} (`--anchor-epochs {d['settings']['anchor_epochs']}`, "
     "`bench/results/anchor40_training_*.json`) the first model is at "
     "{join((e := d['summary'][str(d['settings']['steps'])])['anchor_minus_warm']['per_seed'], sg, ' and ')} "
     "against the chain on CamVid (seeds {join(d['seeds'], str, ', ')})"),
    ("anchor40_training_peanut.json", "and "
     "{join(d['summary'][str(d['settings']['steps'])]['anchor_minus_warm']['per_seed'], sg)} on "
     "Peanut (seed {join(d['seeds'], str, ', ')})."),
    ("peanut_al_anchor.json", "the anchored run spends the chain's clicks "
     "({k(runs('anchored', 0)[-1]['clicks'])} at step {len(runs('anchored', 0)) - 1} against "
     "{k(runs('default', 0)[-1]['clicks'])}) and does not fall as the chain does: it peaks at "
     "{mi((a := runs('anchored', 0)[int(np.argmax([r['miou'] for r in runs('anchored', 0)]))])['miou'])} "
     "mIoU at step {a['step']} ({k(a['clicks'])} clicks) and ends at "
     "{mi(runs('anchored', 0)[-1]['miou'])}, where seed 0 of the default peaks at "
     "{mi((b := runs('default', 0)[int(np.argmax([r['miou'] for r in runs('default', 0)]))])['miou'])} "
     "at step {b['step']} and ends at {mi(runs('default', 0)[-1]['miou'])}. At equal clicks the "
     "default trails it by {mi(-M('eq', 'anchored'))} mIoU over the {len(D('eq', 'anchored'))} steps "
     "where both curves exist, by {mi(-np.mean(D('eq', 'anchored')[8:]))} over steps "
     "9-{len(D('eq', 'anchored'))}."),
    ("anchor_training_camvid.json", "11 classes, {span([r['seed_miou'] for r in d['seeds'].values()], pc)} "
     "mIoU) is a weaker start than"),
    ("anchor_training_peanut.json", "Peanut's ({span([r['seed_miou'] for r in d['seeds'].values()], pc)})."),
    ("camvid_al_anchor.json", "End to end on CamVid (seed 0, {len(runs('anchored', 0)) - 1} steps; "
     "`bench/results/camvid_al_anchor.json`) it costs: it ends at {mi(runs('anchored', 0)[-1]['miou'])} "
     "against the chain's {mi(runs('default', 0)[-1]['miou'])}, and the default leads it by "
     "{mi(M('eq', 'anchored'))} mIoU at equal clicks over the {len(D('eq', 'anchored'))} steps where "
     "both curves exist (behind at {sum(x < 0 for x in D('eq', 'anchored'))} of them)."),
    ("fresh_training_peanut.json", "above the fresh model "
     "({mi(d['summary'][str(d['settings']['steps'])]['fresh']['miou'])})"),
    ("peanut_al_anchor.json", "On Peanut (seed 0) it peaks at "
     "{mi((a := runs('doubling', 0)[int(np.argmax([r['miou'] for r in runs('doubling', 0)]))])['miou'])} "
     "mIoU at step {a['step']} and ends at {mi(runs('doubling', 0)[-1]['miou'])} (the chain "
     "{mi(runs('default', 0)[-1]['miou'])}, `first` {mi(runs('anchored', 0)[-1]['miou'])}), and the "
     "default minus it at equal clicks is {sg(M('eq', 'doubling'))} over the "
     "{len(D('eq', 'doubling'))} steps ({sg(np.mean(D('eq', 'doubling')[8:]))} over steps "
     "9-{len(D('eq', 'doubling'))})"),
    ("camvid_al_anchor.json", "on CamVid it ends at "
     "{join([runs('doubling', s)[-1]['miou'] for s in seeds('doubling')], mi, ' and ')} "
     "(seeds {join(seeds('doubling'), str, ', ')}; the chain "
     "{join([runs('default', int(s))[-1]['miou'] for s in seeds('doubling')], mi, ' and ')}), "
     "and the default minus it is "
     "{join([seed_diff('default', 'doubling', int(s)) for s in seeds('doubling')], sg, ' and ')}."),
    ("warm_more_training_peanut.json", "the default's model of step {d['settings']['steps']} "
     "trained {d['settings']['fresh_epochs']} epochs more scores "
     "{mi((e := d['summary'][str(d['settings']['steps'])])['warm_more']['miou'])} against "
     "{mi(e['warm']['miou'])} ({join(e['warm_more_minus_warm']['per_seed'], sg)} on seeds "
     "{join(d['seeds'], str, ', ')}; `bench/fresh_training.py "
     "--from-cache --arms {join(d['settings']['arms'], str, ' ')}`, "
     "`bench/results/warm_more_training_peanut.json`)"),
    ("answer_noise.json", "answers carry the pixels of other classes inside them "
     "({pc(d['peanut']['0']['wrong'], 1)}% of the labeled pixels when every"),
    ("label_noise.json", "the queried, uncertain ones are much worse: "
     "{pc(d['peanut']['mean']['noise'], 1)}% of the region-labeled pixels of the default's step "
     "{d['peanut']['settings']['steps']} are of another class on Peanut, "
     "{pc(d['camvid']['mean']['noise'], 1)}% of its step {d['camvid']['settings']['steps']} on "
     "CamVid, {len(d['peanut']['seeds'])} seeds,"),
    ("fresh_training.json", "a fresh model scored "
     "{mi(-(e := d['summary'][str(d['settings']['steps'])])['fresh_minus_warm']['mean'])} below "
     "the chain there, and {d['settings']['fresh_epochs']} more epochs of the chain "
     "{mi(e['warm_more_minus_warm']['mean'])} above it"),
]



# Trimming the labels the model finds least likely (results.md, A cheaper start): what it leaves
# out (label_noise.json) and the trimmed runs against the default's, seeds paired.
_TRIMMED_SEEDS = "seeds('trimmed')"
_VS = ("{join([seed_diff('%s', '%s', int(s)) for s in " + _TRIMMED_SEEDS + "], sg, ' and ')}")
_EACH = "{join([%s for s in " + _TRIMMED_SEEDS + "], mi, ' and ')}"
TRIM_SECTION = [
    ("label_noise.json", "Judged by the run's own last model, a share of "
     "{d['peanut']['settings']['shares'][2]:g} leaves out "
     "{pc(d['peanut']['mean']['trim']['0.2']['wrong_left_out'])}% (Peanut) and "
     "{pc(d['camvid']['mean']['trim']['0.2']['wrong_left_out'])}% (CamVid) of the wrong labels "
     "and {pc(d['peanut']['mean']['trim']['0.2']['right_left_out'])}% and "
     "{pc(d['camvid']['mean']['trim']['0.2']['right_left_out'])}% of the right ones"),
    ("peanut_al_trim.json", "On Peanut (seeds {join(" + _TRIMMED_SEEDS + ", str, ', ')}, "
     "{len(runs('trimmed', 0)) - 1} steps) it spends the default's clicks and does not fall: it "
     "ends at " + _EACH % "runs('trimmed', int(s))[-1]['miou']" + " mIoU (its peaks "
     + _EACH % "max(r['miou'] for r in runs('trimmed', int(s)))" + "), where the default ends "
     "at " + _EACH % "runs('default', int(s))[-1]['miou']" + " (its peaks "
     + _EACH % "max(r['miou'] for r in runs('default', int(s)))" + "). The default minus it at "
     "equal clicks is " + _VS % ("default", "trimmed") + " over the "
     "{len(D('eq', 'trimmed'))} steps where both curves exist "
     "({sg(np.mean(D('eq', 'trimmed')[8:]))} over steps 9-{len(D('eq', 'trimmed'))}, on the "
     "mean of the seeds); it passes 90% of full supervision at "
     "{join([reach_seed('trimmed', int(s), 0.9) for s in " + _TRIMMED_SEEDS + "], k, ' and ')} "
     "clicks, the default at "
     "{join([reach_seed('default', int(s), 0.9) for s in " + _TRIMMED_SEEDS + "], k, ' and ')}. "
     "Against random whole images (at equal clicks, over the steps both curves reach) it is at "
     + _VS % ("trimmed", "random") + " where the default is at " + _VS % ("default", "random")
     + ", against `dbsal` at " + _VS % ("trimmed", "dbsal") + " where the default is at "
     + _VS % ("default", "dbsal") + "."),
    ("peanut_al_trim_8.json", "Over the first {len(runs('trimmed', 0)) - 1} steps (the runs' "
     "first parts, `bench/results/peanut_al_trim_8.json`, seeds "
     "{join(" + _TRIMMED_SEEDS + ", str, ', ')}) the default minus it at equal clicks is "
     + _VS % ("default", "trimmed") + " (seed by seed, over the default's steps that its curve "
     "reaches)."),
    ("camvid_al_trim.json", "On CamVid (seeds {join(" + _TRIMMED_SEEDS + ", str, ', ')}, "
     "{len(runs('trimmed', 0)) - 1} steps; `bench/results/camvid_al_trim.json`) it ends at "
     "{join([runs('trimmed', s)[-1]['miou'] for s in " + _TRIMMED_SEEDS + "], mi, ' and ')} mIoU "
     "against the default's "
     "{join([runs('default', s)[-1]['miou'] for s in " + _TRIMMED_SEEDS + "], mi, ' and ')}, "
     "and the default minus it at equal clicks is " + _VS % ("default", "trimmed")
     + " ({sg(M('eq', 'trimmed'))} on the mean, behind it at "
     "{sum(x < 0 for x in D('eq', 'trimmed'))} of the {len(D('eq', 'trimmed'))} steps). Seed "
     "0's run falls to {mi(runs('trimmed', 0)[3]['miou'])} at step 3 (from "
     "{mi(runs('trimmed', 0)[2]['miou'])}; the default's seed 0 is at "
     "{mi(runs('default', 0)[3]['miou'])}) and is back at {mi(runs('trimmed', 0)[4]['miou'])} the "
     "step after. From step 6 on the default is "
     "{'behind it at every step' if all(x < 0 for x in D('eq', 'trimmed')[5:]) else 'not always behind it'} "
     "({sg(np.mean(D('eq', 'trimmed')[5:]))} over steps 6-{len(D('eq', 'trimmed'))}, "
     "{sg(np.mean(D('eq', 'trimmed')[:5]))} over steps 1-5)."),
]
TRIM_SECTION.append(
    ("peanut_al_trim.json", "removed the fall on seeds {join(" + _TRIMMED_SEEDS + ", str, ' and ')} "
     "and lifted those margins there to " + _VS % ("trimmed", "random") + " against random whole "
     "images and " + _VS % ("trimmed", "dbsal") + " against `dbsal` (`seed5`'s: "
     + _VS % ("default", "random") + " against random, " + _VS % ("default", "dbsal")
     + " against `dbsal`)"))
# Trimming the region answers alone (trimmed_answers, what DBSAL_TRIM does) against the default
# and trimmed, seeds paired.
_TA_SEEDS = "seeds('trimmed_answers')"
_TA_VS = ("{join([seed_diff('%s', '%s', int(s)) for s in " + _TA_SEEDS + "], sg, ' and ')}")
_TA_EACH = "{join([%s for s in " + _TA_SEEDS + "], mi, ' and ')}"
TRIM_SECTION += [
    ("camvid_al_trim.json", "On CamVid (seeds {join(" + _TA_SEEDS + ", str, ', ')}, "
     "{len(runs('trimmed_answers', 0)) - 1} steps) it is at "
     + _TA_EACH % "runs('trimmed_answers', int(s))[len(runs('default', int(s))) - 1]['miou']"
     + " mIoU at step {len(runs('default', 0)) - 1}, the default's last, against the default's "
     + _TA_EACH % "runs('default', int(s))[-1]['miou']" + " (`trimmed`, seeds "
     "{join(" + _TRIMMED_SEEDS + ", str, ', ')}: " + _EACH % "runs('trimmed', int(s))[-1]['miou']"
     + "); the default minus it at equal clicks is " + _TA_VS % ("default", "trimmed_answers")
     + " ({sg(M('eq', 'trimmed_answers'))} on the mean of the seeds, behind it at "
     "{sum(x < 0 for x in D('eq', 'trimmed_answers'))} of the {len(D('eq', 'trimmed_answers'))} "
     "steps; `trimmed`: " + _VS % ("default", "trimmed") + "). Its early steps lose less: over steps 1-5 the "
     "default leads it by {sg(np.mean(D('eq', 'trimmed_answers')[:5]))} on the mean of the "
     "seeds, where it leads `trimmed` by {sg(np.mean(D('eq', 'trimmed')[:5]))}; from step 6 on "
     "the default is at {sg(np.mean(D('eq', 'trimmed_answers')[5:]))} ({sg(np.mean(D('eq', "
     "'trimmed')[5:]))} against `trimmed`)."),
    ("peanut_al_trim.json", "Over 16 steps (seeds {join(" + _TA_SEEDS + ", str, ', ')}) it does "
     "not fall either: it ends at " + _TA_EACH % "runs('trimmed_answers', int(s))[-1]['miou']"
     + " mIoU (its peaks " + _TA_EACH % "max(r['miou'] for r in runs('trimmed_answers', int(s)))"
     + "), the default at " + _TA_EACH % "runs('default', int(s))[-1]['miou']" + "; the default "
     "minus it at equal clicks is " + _TA_VS % ("default", "trimmed_answers") + " (`trimmed`, "
     "seeds {join(" + _TRIMMED_SEEDS + ", str, ', ')}: " + _VS % ("default", "trimmed") + "). "
     "Against random whole images it "
     "is at " + _TA_VS % ("trimmed_answers", "random") + " where the default is at "
     + _TA_VS % ("default", "random") + ", against `dbsal` at "
     + _TA_VS % ("trimmed_answers", "dbsal") + " where the default is at "
     + _TA_VS % ("default", "dbsal") + "."),
    ("peanut_al_trim_8.json", "On Peanut (seeds {join(" + _TA_SEEDS + ", str, ', ')}, the first "
     "{len(runs('trimmed_answers', 0)) - 1} steps) the default minus it at equal clicks is "
     + _TA_VS % ("default", "trimmed_answers") + " (`trimmed` on the same seeds: "
     + _TA_VS % ("default", "trimmed") + "), and it ends step {len(runs('trimmed_answers', 0)) - 1} "
     "at " + _TA_EACH % "runs('trimmed_answers', int(s))[-1]['miou']" + " mIoU (the default "
     + _TA_EACH % "runs('default', int(s))[len(runs('trimmed_answers', int(s))) - 1]['miou']"
     + ", `trimmed` " + _TA_EACH % "runs('trimmed', int(s))[-1]['miou']" + ")."),
]
TRIM_SECTION_ROWS = [("docs/results.md", f, text) for f, text in TRIM_SECTION]

FIGURES = [
    *[("docs/results.md", f, text)
      for f, text in START_SECTION + ANSWERS_SECTION + GOALS_24 + SUPERPIXEL_ROWS + FINE_SECTION
      + PEANUT_FALL + ANCHOR_SECTION + TRIM_SECTION + REGION_START_SECTION],
    ("docs/results.md", "peanut_al_start.json",
     "where the curves overlap (its steps 9-16) it led random whole images by "
     "{sg(M('eq', 'random'))} and `dbsal` by {sg(M('eq', 'dbsal'))}"),
    ("docs/results.md", "peanut_al_start.json",
     "Over its steps past the seed set ({span(col('random', 'clicks', slice(1, None)), k)} clicks) "
     "the random whole images' curve averages\n  {mi(np.mean(col('random', 'miou', slice(1, None))))} "
     "mIoU; 5 more is {mi(np.mean(col('random', 'miou', slice(1, None))) + 0.05)}, against full "
     "supervision's {mi(full['miou'])}"),
    ("docs/results.md", "prelabels_start.json",
     "product's is right for {pc(d['pooled_accuracy']['product'])}% of the regions, the others for "
     "{span([v for k, v in d['pooled_accuracy'].items() if k != 'product'], pc)}%. The best is the "
     "product's soft\n  vote plus the votes of the 15 labeled superpixels most alike in the encoder's "
     "features\n  (`{max((v, k) for k, v in d['pooled_accuracy'].items() if k != 'product')[1]}`): "
     "{pc(d['pooled_accuracy']['soft_neighbours'])}% (by seed "
     "{join([s['accuracy']['soft_neighbours'] - s['accuracy']['product'] for s in d['seeds'].values()], sg)} "
     "points on the product's)"),
    ("docs/results.md", "weight_averaging_camvid.json",
     "at the default's last step ({d['settings']['steps']}, every pool image asked), each\n"
     "seed's model was fine-tuned once more on its own labels as a step does (its trimming, "
     "{d['settings']['epochs']} epochs), with and without a moving average of the weights "
     "(`Recipe.ema` {d['settings']['ema']}, the same shuffling and augmentation; "
     "`bench/fresh_training.py --arms step step_ema`, `bench/results/weight_averaging_camvid.json`). "
     "The average scores {sg(d['summary']['19']['step_ema_minus_step']['mean'])} mIoU over the plain "
     "fine-tuning (by seed {join(d['summary']['19']['step_ema_minus_step']['per_seed'], sg, ', ')}), "
     "where one more plain fine-tuning moves the model by "
     "{sg(d['summary']['19']['step_minus_warm']['mean'])} (by seed "
     "{join(d['summary']['19']['step_minus_warm']['per_seed'], sg, ', ')})"),
    ("docs/how-it-works.md", "camvid_al_default.json",
     "task has an annotation (on CamVid's 367 pool images, after {len(S('default')) - 1} steps of 20 "
     "and {pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the clicks"),
    ("docs/results.md", "camvid_al_default.json",
     "so at its {len(S('default')) - 1}th step every one of the 367\n  pool images has been asked, "
     "with {pc(S('default')[-1]['clicks'] / full['clicks'], 1)}% of the clicks, and nothing is left "
     "to ask. Its last step asks\n  the pool's last {S('default')[-1]['images'] - S('default')[-2]['images']:.0f} "
     "images ({S('default')[-1]['clicks'] - S('default')[-2]['clicks']:.0f} clicks) and moves the mean by "
     "{sg(S('default')[-1]['miou'] - S('default')[-2]['miou'])} mIoU (seeds "
     "{join([runs('default', s)[-1]['miou'] - runs('default', s)[-2]['miou'] for s in seeds('default')], sg, ', ')})"),
    ("docs/results.md", "prelabels_start.json",
     "The right class is one of that vote's two likeliest for {pc(d['pooled_top2'])}% of the regions"),
    ("docs/results.md", "region_start_camvid.json",
     "On CamVid a whole image is many polygons "
     "({span([r['whole5']['clicks'] / r['whole5']['images'] for r in d['seeds'].values()], lambda x: f'{x:.0f}')} "
     "clicks an image, by seed), and 40 random superpixels of "
     "{span([r['regions']['images'] for r in d['seeds'].values()], str)} images"),
    ("docs/results.md", "region_start_camvid.json",
     "though a first model trained as fast as today's is only level "
     "({sg(d['summary']['regions_fast']['first_miou_minus_whole5']['mean'])}). On Peanut "
     "({span([r['whole5']['clicks'] / r['whole5']['images'] for r in load('region_start_peanut.json')['seeds'].values()], lambda x: f'{x:.0f}')} "
     "clicks a whole image)"),
    ("docs/results.md", "region_start_peanut.json",
     "the first model from random regions is "
     "{span([-d['summary'][a]['first_miou_minus_whole5']['mean'] for a in ('regions', 'regions_fast')], mi)} "
     "mIoU behind and still "
     "{span([-d['summary'][a]['step1_miou_minus_whole5']['mean'] for a in ('regions', 'regions_fast')], mi)} "
     "behind after step 1"),
    ("docs/results.md", "region_start_peanut.json",
     "its step-1 pre-labels are right for "
     "{span([d['summary'][a]['step1_prelabels_right'] for a in ('regions', 'regions_fast')], pc)}% of "
     "the regions against {pc(d['summary']['whole5']['step1_prelabels_right'])}%"),
    ("docs/results.md", "region_start_camvid.json",
     "The hybrid leads on CamVid by {sg(d['summary']['hybrid']['step1_miou_minus_whole5']['mean'])} "
     "and trails on Peanut by "
     "{sg(load('region_start_peanut.json')['summary']['hybrid']['step1_miou_minus_whole5']['mean'])} "
     "(by seed {join(load('region_start_peanut.json')['summary']['hybrid']['step1_miou_minus_whole5']['per_seed'], sg, ', ')}). "
     "`colour` leads on CamVid by {sg(d['summary']['colour']['step1_miou_minus_whole5']['mean'])} "
     "(by seed {join(d['summary']['colour']['step1_miou_minus_whole5']['per_seed'], sg, ', ')}) "
     "and is level on Peanut, "
     "{sg(load('region_start_peanut.json')['summary']['colour']['step1_miou_minus_whole5']['mean'])} "
     "(by seed {join(load('region_start_peanut.json')['summary']['colour']['step1_miou_minus_whole5']['per_seed'], sg, ', ')})"),
    ("docs/results.md", "region_start_camvid.json",
     "the best of all the starts on both sets: {pc(d['summary']['colour']['step1_prelabels_right'])}% "
     "on CamVid against the whole images' {pc(d['summary']['whole5']['step1_prelabels_right'])}%, "
     "{pc(load('region_start_peanut.json')['summary']['colour']['step1_prelabels_right'])}% on Peanut "
     "against {pc(load('region_start_peanut.json')['summary']['whole5']['step1_prelabels_right'])}%"),
    ("docs/results.md", "region_start_peanut.json",
     "weeds are {pc(d['summary']['colour']['class_shares'][2], 1)}% of the pixels its start labels on "
     "Peanut (random regions {pc(d['summary']['regions']['class_shares'][2], 1)}%, the whole images "
     "{pc(d['summary']['whole5']['class_shares'][2], 1)}%) and crop "
     "{pc(d['summary']['colour']['class_shares'][1], 1)}% "
     "({pc(d['summary']['regions']['class_shares'][1], 1)}%, "
     "{pc(d['summary']['whole5']['class_shares'][1], 1)}%)"),
    ("docs/results.md", "region_start_camvid.json",
     "asks buildings more ({pc(d['summary']['colour']['class_shares'][1], 1)}% against "
     "{pc(d['summary']['whole5']['class_shares'][1], 1)}% in the whole images) and road less "
     "({pc(d['summary']['colour']['class_shares'][3], 1)}% against "
     "{pc(d['summary']['whole5']['class_shares'][3], 1)}%)"),
    ("docs/results.md", "region_start_peanut.json",
     "its first model on Peanut is still {mi(-d['summary']['colour']['first_miou_minus_whole5']['mean'])} "
     "mIoU behind the whole images' ({mi(d['summary']['colour']['first_miou'])} against "
     "{mi(d['summary']['whole5']['first_miou'])})"),
    ("docs/results.md", "peanut_al_region.json",
     "ran Peanut's protocol for {len(S('colour_start')) - 1} steps (seeds "
     "{join(seeds('colour_start'), str, ', ')}; `bench/results/peanut_al_region.json`): it leads "
     "the default by {sg(-M('eq', 'colour_start'))} mIoU at equal clicks over the default's "
     "{len(D('eq', 'colour_start'))} steps its curve reaches, by seed "
     "{join([-x for x in seed_diffs('colour_start')], sg, ', ')}"),
    ("docs/results.md", "peanut_al_region.json",
     "whose 5 whole images cost the most ({join([runs('default', s)[0]['clicks'] for s in seeds('default')], k, ', ')} "
     "clicks by seed). Its mean curve passes 90% of full supervision at "
     "{k(reach(S('colour_start'), 0.9 * full['miou']))} clicks (the default's at "
     "{k(reach(S('default'), 0.9 * full['miou']))}) and is still rising at its "
     "{len(S('colour_start')) - 1}th step: {mi(S('colour_start')[-1]['miou'])} mIoU "
     "({pc(S('colour_start')[-1]['miou'] / full['miou'])}% of full) at "
     "{k(S('colour_start')[-1]['clicks'])} clicks, where the default is at "
     "{mi(at(S('default'), S('colour_start')[-1]['clicks']))} (its peak: "
     "{mi(max(r['miou'] for r in S('default')))}); its step-1 pre-labels are right for "
     "{pc(S('colour_start')[1]['prelabel_accuracy'])}% of the regions (the default's "
     "{pc(S('default')[1]['prelabel_accuracy'])}%)"),
    ("docs/results.md", "camvid_al_region.json",
     "On CamVid it ran {len(S('colour_start')) - 1} steps (`bench/results/camvid_al_region.json`; "
     "run anew to {len(S('colour_start')) - 1} steps, its first 4 identical to the stored 4-step "
     "run): it leads the default by {sg(-M('eq', 'colour_start'))} mIoU at equal clicks over the "
     "default's {len(D('eq', 'colour_start'))} steps its curve reaches (by seed "
     "{join([-x for x in seed_diffs('colour_start')], sg, ', ')}), but by step the lead is "
     "{join([-x for x in D('eq', 'colour_start')], sg, ', ')}: its mean curve passes 80% of full "
     "supervision at {k(reach(S('colour_start'), 0.8 * full['miou']))} clicks (the default's at "
     "{k(reach(S('default'), 0.8 * full['miou']))}), then stops rising at its 6th step "
     "({join([r['miou'] for r in S('colour_start')[5:]], mi, ', ')} mIoU at steps 5-8; each seed "
     "peaks at step {span([max(range(len(runs('colour_start', s))), key=lambda i: runs('colour_start', s)[i]['miou']) for s in seeds('colour_start')], str, ' or ')}) "
     "while the default's goes on, and it ends at {mi(S('colour_start')[-1]['miou'])} mIoU with "
     "{k(S('colour_start')[-1]['clicks'])} clicks, where the default is at "
     "{mi(at(S('default'), S('colour_start')[-1]['clicks']))} "
     "({pc(S('colour_start')[-1]['miou'] / full['miou'])}% of full against 90% needed by "
     "{k(0.05 * full['clicks'])}). Its step-1 pre-labels are right for "
     "{pc(S('colour_start')[1]['prelabel_accuracy'])}% of the regions (the default's "
     "{pc(S('default')[1]['prelabel_accuracy'])}%, the random regions' "
     "{pc(S('region_start')[1]['prelabel_accuracy'])}%)"),
    ("docs/results.md", "camvid_al_seed3.json",
     "ran CamVid's long protocol for {len(S('seed3')) - 1} steps (seeds "
     "{join(seeds('seed3'), str, ', ')}; `bench/results/camvid_al_seed3.json`): its start costs "
     "{join([runs('seed3', s)[0]['clicks'] for s in seeds('seed3')], k, ', ')} clicks by seed (the "
     "default's {join([runs('default', s)[0]['clicks'] for s in seeds('seed3')], k, ', ')}) and its "
     "first model scores {mi(S('seed3')[0]['miou'])} mIoU (the default's "
     "{mi(S('default')[0]['miou'])}). It leads the default by {sg(-M('eq', 'seed3'))} mIoU at equal "
     "clicks over the default's {len(D('eq', 'seed3'))} steps its curve reaches (by seed "
     "{join([-x for x in seed_diffs('seed3')], sg, ', ')}), but by step the lead is "
     "{join([-x for x in D('eq', 'seed3')], sg, ', ')}: its mean curve passes 80% of full "
     "supervision at {k(reach(S('seed3'), 0.8 * full['miou']))} clicks (the default's at "
     "{k(reach(S('default'), 0.8 * full['miou']))}), falls behind at the default's "
     "{next(i + 1 for i, x in enumerate(D('eq', 'seed3')) if x > 0)}th step and further at each "
     "one after, and ends at {mi(S('seed3')[-1]['miou'])} mIoU with {k(S('seed3')[-1]['clicks'])} "
     "clicks, where the default is at {mi(at(S('default'), S('seed3')[-1]['clicks']))}. Its step-1 "
     "pre-labels are right for {pc(S('seed3')[1]['prelabel_accuracy'])}% of the regions (the "
     "default's {pc(S('default')[1]['prelabel_accuracy'])}%)"),
    ("docs/results.md", "fresh_training_seed3.json",
     "trains on each seed's labels of `seed3`'s step {d['settings']['steps']} a fresh model from the "
     "ImageNet weights for {d['settings']['fresh_epochs']} epochs, which scores "
     "{mi((e := d['summary'][str(d['settings']['steps'])])['fresh']['miou'])} mIoU against the "
     "chain's {mi(e['warm']['miou'])} ({join(e['fresh_minus_warm']['per_seed'], sg, ', ')} on seeds "
     "{join(d['seeds'], str, ', ')}), and the first model fine-tuned {d['settings']['epochs']} epochs "
     "once, which scores {mi(e['anchor']['miou'])} ({join(e['anchor_minus_warm']['per_seed'], sg, ', ')})"),
    ("docs/results.md", "peanut_al_seed3.json",
     "On Peanut ({len(S('seed3')) - 1} steps, seeds {join(seeds('seed3'), str, ', ')}; "
     "`bench/results/peanut_al_seed3.json`) its start costs "
     "{join([runs('seed3', s)[0]['clicks'] for s in seeds('seed3')], k, ', ')} clicks by seed (the "
     "default's {join([runs('default', s)[0]['clicks'] for s in seeds('seed3')], k, ', ')}) and its "
     "first model scores {mi(S('seed3')[0]['miou'])} mIoU (the default's "
     "{mi(S('default')[0]['miou'])}). It is level with the default at equal clicks: "
     "{sg(-M('eq', 'seed3'))} mIoU over the default's {len(D('eq', 'seed3'))} steps its curve "
     "reaches (by seed {join([-x for x in seed_diffs('seed3')], sg, ', ')}; by step "
     "{join([-x for x in D('eq', 'seed3')], sg, ', ')}). Its mean curve passes 90% of full "
     "supervision at {k(reach(S('seed3'), 0.9 * full['miou']))} clicks (the default's at "
     "{k(reach(S('default'), 0.9 * full['miou']))}; by seed "
     "{join([reach_seed('seed3', s, 0.9) for s in seeds('seed3')], k, ', ')} against "
     "{join([reach_seed('default', s, 0.9) for s in seeds('seed3')], k, ', ')}), and its step-1 "
     "pre-labels are right for {pc(S('seed3')[1]['prelabel_accuracy'])}% of the regions (the "
     "default's {pc(S('default')[1]['prelabel_accuracy'])}%)"),
    ("docs/results.md", "ui_start.json",
     "\"Label All Tasks\" opened a seed task of {d['projects'][0]['seed_task']['regions']} class-less "
     "polygons, all listed, usable {d['projects'][0]['seed_task']['seconds']:.1f} s (360x480) and "
     "{d['projects'][1]['seed_task']['seconds']:.1f} s (1024x2048) after the click: usable as soon "
     "as the instructions window, shown first, was closed (at "
     "{d['projects'][0]['seed_task']['instructions_closed']:.1f} s and "
     "{d['projects'][1]['seed_task']['instructions_closed']:.1f} s;"),
    ("docs/results.md", "ui_start.json",
     "The first step came {d['projects'][0]['first_step_seconds']:.0f} s and "
     "{d['projects'][1]['first_step_seconds']:.0f} s after the last start answer"),
    ("docs/results.md", "ui_start.json",
     "usable in {d['projects'][0]['seconds_until_usable_median']:.1f} s and "
     "{d['projects'][1]['seconds_until_usable_median']:.1f} s (medians; at most "
     "{d['projects'][0]['seconds_until_usable_max']:.1f} s and "
     "{d['projects'][1]['seconds_until_usable_max']:.1f} s), 40 regions each, their pre-labels right "
     "for {pc(d['projects'][0]['prelabel_accuracy'])}% and {pc(d['projects'][1]['prelabel_accuracy'])}% "
     "of the regions"),
    ("docs/results.md", "camvid_al_region.json",
     "ran CamVid's long protocol for {len(S('region_start')) - 1} steps (seeds "
     "{join(seeds('region_start'), str, ', ')}; `bench/results/camvid_al_region.json`): it leads "
     "the default by {sg(-M('eq', 'region_start'))} mIoU at equal clicks over the default's "
     "{len(D('eq', 'region_start'))} steps its curve reaches (by seed "
     "{join([-x for x in seed_diffs('region_start')], sg, ', ')}), and its step-1 pre-labels are "
     "right for {pc(S('region_start')[1]['prelabel_accuracy'])}% of the regions. By step its lead "
     "is {join([-x for x in D('eq', 'region_start')], sg, ', ')}: it holds to the default's step "
     "{len(D('eq', 'region_start'))} ({k(S('default')[len(D('eq', 'region_start'))]['clicks'])} "
     "clicks), where the default is at "
     "{pc(S('default')[len(D('eq', 'region_start'))]['miou'] / full['miou'])}% of full supervision"),
    ("docs/results.md", "region_start_camvid.json",
     "CamVid's step-1 pre-labels stay far from 60% "
     "({span([d['summary'][a]['step1_prelabels_right'] for a in ('regions', 'regions_fast')], pc)}%)"),
    ("docs/results.md", "region_start_camvid.json",
     "at the same clicks, the step-1 pre-labels are right for "
     "{pc(d['summary']['regions']['step1_prelabels_right'])}% (a first model of 120 epochs) and "
     "{pc(d['summary']['regions_fast']['step1_prelabels_right'])}% (as fast as today's) of the regions"),
    ("docs/results.md", "prelabels.json",
     "behind the product's ({pc(d['pooled_accuracy']['soft_neighbours'])}% against "
     "{pc(d['pooled_accuracy']['product'])}%, `bench/results/prelabels.json`)"),
    ("docs/results.md", "answer_noise.json",
     "{pc(d['camvid']['0']['wrong'], 1)}% (CamVid) and {pc(d['peanut']['0']['wrong'], 1)}% (Peanut) of the labeled "
     "pixels of the default superpixels"),
    ("docs/results.md", "camvid_al_long20_answers.json",
     "With 10 whole images first the default was at {pc(S('default')[-1]['miou'] / full['miou'])}% with "
     "{pc(S('default')[-1]['clicks'] / full['clicks'], 1)}%"),
    ("docs/simulator.md", "answer_noise.json",
     "a 2-pixel band removed {pc(1 - d['peanut']['2']['kept'])}% (Peanut) and "
     "{pc(1 - d['camvid']['2']['kept'])}% (CamVid) of the labeled pixels but cut the wrong ones only "
     "from {pc(d['peanut']['0']['wrong'], 1)}% to {pc(d['peanut']['2']['wrong'], 1)}% and from "
     "{pc(d['camvid']['0']['wrong'], 1)}% to {pc(d['camvid']['2']['wrong'], 1)}%"),
    # ---- the 4-step protocol (camvid_al.json)
    *[("docs/results.md", "camvid_al.json", _row(name) + " " + _region_cells(name)[2:])
      for name in ("default", "dbsal", "static", "self_labeled", "class_self_labeled",
                   "default_balanced", "diverse", "spread", "wide")],
    ("docs/results.md", "prelabels.json",
     "| {pc(d['pooled_accuracy']['product'])}% "
     "({join([s['accuracy']['product'] for s in d['seeds'].values()], pc)}) |"),
    ("docs/results.md", "camvid_al.json", "| `random` whole images " + _row("random") + " — | — |"),
    ("docs/results.md", "camvid_al.json",
     "| {k(S('control')[1]['clicks'])} (every step) | {join(S('control'), pm, ' / ')} |"),
    ("docs/results.md", "camvid_al.json", "| {k(full['clicks'])} | {mi(full['miou'])} (one run) |"),
    ("docs/results.md", "camvid_al.json", _comparison("`random` whole images", "random")),
    ("docs/results.md", "camvid_al.json", _comparison("`static`", "static")),
    ("docs/results.md", "camvid_al.json", _comparison("`dbsal`", "dbsal")),
    ("docs/results.md", "camvid_al.json",
     "alone is worth {sg(S('control')[1]['miou'] - S('control')[0]['miou'])} to "
     "{sg(S('control')[4]['miou'] - S('control')[0]['miou'])} mIoU over 4 steps"),
    ("docs/results.md", "camvid_al.json",
     "beats the control by {join([r['miou_difference'] for r in d['against_control'][:2]], sg)},\n"
     "{join([r['miou_difference'] for r in d['against_control'][2:]], sg)} at steps 1-4: its "
     "{span(cost('default'), lambda x: f'{round(x, -1):.0f}')} clicks a step"),
    ("docs/results.md", "camvid_al.json",
     "(random\n+{mi(M('eq', 'random'))}, static +{mi(M('eq', 'static'))})"),
    ("docs/results.md", "camvid_al.json",
     "equal clicks by **{mi(M('eq', 'self_labeled'))}** mIoU (per step {join(D('eq', 'self_labeled')[:2], mi)},\n"
     "{join(D('eq', 'self_labeled')[2:], mi)}; per seed "
     "{join(seed_diffs('self_labeled'), mi)}) and by "
     "{mi(M('eqt', 'self_labeled'))} at equal clicks and training"),
    ("docs/results.md", "camvid_al.json",
     "pre-labels are worse ({span(col('self_labeled', 'prelabel_accuracy', slice(2, 5)), pc)}% right "
     "at steps 2-4 against the default's {span(col('default', 'prelabel_accuracy', slice(2, 5)), pc)}%)"),
    ("docs/results.md", "camvid_al.json",
     "**{sg(M('eq', 'class_self_labeled'))}** mIoU (per step {join(D('eq', 'class_self_labeled'), sg)},\n"
     "each ± {span(SD('eq', 'class_self_labeled'), mi)}\nover the seeds), "
     "{sg(M('eqt', 'class_self_labeled'))} at equal clicks and training; its pre-labels at steps 2-4 "
     "are {span(col('class_self_labeled', 'prelabel_accuracy', slice(2, 5)), pc)}% right"),
    ("docs/results.md", "camvid_al.json",
     "it at equal clicks: {join(D('eq', 'default_balanced'), sg)} at steps 1-3 (each ± "
     "{span(SD('eq', 'default_balanced'), mi)} over the seeds; its step 4 ends\nat "
     "{k(S('default_balanced')[4]['clicks'])} clicks, short of the default's "
     "{k(S('default')[4]['clicks'])}"),
    ("docs/results.md", "camvid_al.json",
     "step by step\n{join([a - b for a, b in zip(col('default', 'miou')[1:], col('default_balanced', 'miou')[1:])], sg)}, "
     "a mean of {sg(np.mean([a - b for a, b in zip(col('default', 'miou')[1:], col('default_balanced', 'miou')[1:])]))}. "
     "Its step-1 pre-labels are {pc(S('default_balanced')[1]['prelabel_accuracy'])}% right."),
    ("docs/results.md", "camvid_al.json",
     "at equal clicks **{sg(M('eq', 'diverse'))}** mIoU\n(per step {join(D('eq', 'diverse'), sg)}, "
     "each ± {span(SD('eq', 'diverse'), mi)} over the seeds) and {sg(M('eqt', 'diverse'))} at equal "
     "clicks and\ntraining, with {span([a / b - 1 for a, b in zip(col('diverse', 'clicks')[1:], col('default', 'clicks')[1:])], pc)}% more clicks"),
    ("docs/results.md", "camvid_al.json",
     "is **{sg(M('eq', 'spread'))}** mIoU (per step {join(D('eq', 'spread'), sg)}, each ±\n"
     "{span(SD('eq', 'spread'), mi)} over the seeds) and {sg(M('eqt', 'spread'))} at equal clicks"),
    ("docs/results.md", "camvid_al.json",
     "({pc(S('spread')[1]['prelabel_accuracy'])}% right at step 1\nagainst "
     "{pc(S('default')[1]['prelabel_accuracy'])}%"),
    ("docs/results.md", "camvid_al.json",
     "spread would stand\nat about {sg(M('eq', 'random') - M('eq', 'spread'))}"),
    ("docs/results.md", "camvid_al.json",
     "Default minus wide is {sg(M('eq', 'wide'))} at equal clicks and {sg(M('eqt', 'wide'))} at equal"),
    ("docs/results.md", "camvid_al.json",
     "dbsal minus\nstatic at equal clicks {join(seed_diffs('static', 'dbsal'), sg)} "
     "on seeds 0-2 (mean {sg(np.mean(seed_diffs('static', 'dbsal')))})"),
    ("docs/results.md", "camvid_al.json",
     "shrinks from {span([f for s in range(3) for f in runs('dbsal', s)[1]['superpixel_fraction']], lambda x: f'{x:.2f}')} "
     "of an image's superpixels at\nstep 1 to {span([f for s in range(3) for f in runs('dbsal', s)[4]['superpixel_fraction']], lambda x: f'{x:.2f}')} at step 4"),
    ("docs/results.md", "camvid_al.json",
     "(standard deviation\n{span([np.std(runs('dbsal', s)[t]['superpixel_fraction']) for s in range(3) for t in range(1, 5)], lambda x: f'{x:.2f}')} "
     "of the superpixels)"),
    ("docs/results.md", "camvid_al.json",
     "The 4-step protocol ends at {mi(S('default')[4]['miou'])} mIoU with {k(S('default')[4]['clicks'])} clicks"),
    ("docs/results.md", "camvid_al.json",
     "Ten random whole CamVid images cost {span(cost('random'), k)} polygon\n  clicks a step. The "
     "default's lead over random grows with the steps ({sg(D('eq', 'random')[0])} → {sg(D('eq', 'random')[3])}; "
     "at equal\n  training {sg(D('eqt', 'random')[0])} → {sg(D('eqt', 'random')[3])})"),
    ("docs/results.md", "camvid_al.json",
     "four steps of {span(cost('default'), lambda x: f'{round(x, -1):.0f}')} clicks"),
    ("docs/results.md", "camvid_al.json", "per step {join(D('eqt', 'static'), sg)}"),
    ("docs/results.md", "camvid_al.json", "| default ≥ random whole images + 5 mIoU | 4-step protocol: "
     "{sg(M('eq', 'random'))}; {sg(M('eqt', 'random'))} at equal clicks and training."),
    ("docs/results.md", "camvid_al.json", "4-step protocol: {sg(M('eq', 'static'))} at equal clicks; "
     "{sg(M('eqt', 'static'))} at equal clicks and training."),
    # ---- the earlier 40-epoch protocol (camvid_al_e40.json)
    ("docs/results.md", "camvid_al_e40.json",
     "leads ({sg(M('eq', 'random'))} over random, {sg(M('eq', 'static'))} over static)"),
    ("docs/results.md", "camvid_al_e40.json",
     "fine-tuning alone gained {f'{100 * (S(\"control\")[1][\"miou\"] - S(\"control\")[0][\"miou\"]):.0f}'}-"
     "{f'{100 * max(col(\"control\", \"miou\")[1:]) - 100 * S(\"control\")[0][\"miou\"]:.0f}'} mIoU over 4 steps"),
    ("docs/results.md", "camvid_al_e40.json",
     "its leads were {sg(M('eqt', 'random'))} over random and {sg(M('eqt', 'static'))} over static"),
    ("docs/results.md", "camvid_al_e40.json",
     "They cost {span([c for n in ('merged', 'smoothed', 'coarse', 'step', 'balanced', 'default_brush') for c in cost(n)], k)} "
     "clicks a step against the\ndefault's {span(cost('default'), lambda x: f'{round(x, -1):.0f}')}, and the default "
     "led each by {span([M('eq', n) for n in ('merged', 'smoothed', 'coarse', 'step', 'balanced', 'default_brush')], sg, ' to ')} "
     "at equal clicks and by {span([M('eqt', n) for n in ('merged', 'smoothed', 'coarse', 'step', 'balanced', 'default_brush')], sg, ' to ')}"),
    # ---- the long protocol with the product's training (camvid_al_long20.json)
    ("docs/results.md", "camvid_al_long20.json",
     "| default: clicks | {join(col('default', 'clicks'), k, ' | ')} |"),
    ("docs/results.md", "camvid_al_long20.json",
     "| default: mIoU (%) | {join(S('default'), pm, ' | ')} |"),
    ("docs/results.md", "camvid_al_long20.json",
     "| default: pre-labels right | — | {join(col('default', 'prelabel_accuracy')[1:], lambda x: pc(x) + '%', ' | ')} |"),
    ("docs/results.md", "camvid_al_long20.json",
     "| control: mIoU (%) | {join(col('control', 'miou'), mi, ' | ')} |"),
    *[("docs/results.md", "camvid_al_long20.json",
       f"| {label}: clicks / mIoU (%) | {{join(S('{name}'), lambda r: k(r['clicks']) + ' / ' + mi(r['miou']), ' | ')}} |")
      for label, name in (("`dbsal`", "dbsal"), ("`static`", "static"), ("`random`", "random"))],
    ("docs/results.md", "camvid_al_long20.json",
     "| `random` whole images | **{sg(M('eq', 'random'))}** (steps 1-11: {join(D('eq', 'random'), sg)}) | "
     "**{sg(M('eqt', 'random'))}** ({join(D('eqt', 'random'), sg)}) |"),
    ("docs/results.md", "camvid_al_long20.json",
     "| `static` | **{sg(M('eq', 'static'))}** (steps 1-10: {join(D('eq', 'static'), sg)}) | "
     "**{sg(M('eqt', 'static'))}** ({join(D('eqt', 'static'), sg)}) |"),
    ("docs/results.md", "camvid_al_long20.json",
     "| `dbsal` | **{sg(M('eq', 'dbsal'))}** (steps 1-11: {join(D('eq', 'dbsal')[:10], sg)}; step 11 one seed, "
     "{sg(D('eq', 'dbsal')[10])}) | **{sg(M('eqt', 'dbsal'))}** ({join(D('eqt', 'dbsal'), sg)}) |"),
    ("docs/results.md", "camvid_al_long20.json",
     "ahead of random whole images by {mi(M('eq', 'random'))} mIoU, of\nthe matched static budget by "
     "{mi(M('eq', 'static'))} and of the paper's dynamic budget by {mi(M('eq', 'dbsal'))} (by "
     "{mi(M('eqt', 'random'))}, {mi(M('eqt', 'static'))} and {mi(M('eqt', 'dbsal'))}"),
    ("docs/results.md", "camvid_al_long20.json",
     "Each per-step difference is ± {span([s for o in ('random', 'static', 'dbsal') for s in SD('eq', o)], mi)} over the seeds"),
    ("docs/results.md", "camvid_al_long20.json",
     "beats the control by {span([r['miou_difference'] for r in d['against_control']], sg, ' to ')} (step by step)"),
    ("docs/results.md", "camvid_al_long20.json",
     "(over `dbsal` to {span(D('eq', 'dbsal')[8:], sg, ' to ')} at steps 9-11)"),
    ("docs/results.md", "camvid_al_long20.json",
     "reaches {mi(0.9 * full['miou'])} mIoU (90% of full's {mi(full['miou'])})\nat "
     "**{k(full['clicks_for_90_percent'])} clicks, {pc(full['share_of_full_clicks'], 1)}% of the pool's "
     "{k(full['clicks'])}**"),
    ("docs/results.md", "camvid_al_long20.json",
     "stands at\n{mi(at(S('default'), 0.1 * full['clicks']))} ({pc(at(S('default'), 0.1 * full['clicks']) / full['miou'], 1)}%) "
     "at 10% of the clicks. Seed by seed it is narrower: at 10% of the clicks seeds 0-2 are\nat "
     "{mi(at(runs('default', 0), 0.1 * full['clicks']))}, {mi(at(runs('default', 1), 0.1 * full['clicks']))} and "
     "{mi(at(runs('default', 2), 0.1 * full['clicks']))}; seed 1 passes 90% at "
     "{k(reach(runs('default', 1), 0.9 * full['miou']))} clicks ({pc(reach(runs('default', 1), 0.9 * full['miou']) / full['clicks'], 1)}%), "
     "seed 0 at {k(reach(runs('default', 0), 0.9 * full['miou']))}\n({pc(reach(runs('default', 0), 0.9 * full['miou']) / full['clicks'], 1)}%), "
     "and seed 2 peaks at {mi(max(col2 := [r['miou'] for r in runs('default', 2)]))} "
     "({pc(max(col2) / full['miou'], 1)}%) without passing"),
    ("docs/results.md", "camvid_al_long20.json",
     "the mean of 3 seeds passes 90% at {k(full['clicks_for_90_percent'])} clicks "
     "(**{pc(full['share_of_full_clicks'], 1)}%**) and is at {mi(at(S('default'), 0.1 * full['clicks']))} "
     "({pc(at(S('default'), 0.1 * full['clicks']) / full['miou'], 1)}%) at 10%; seeds 0-2 at 10%: "
     "{join([at(runs('default', s), 0.1 * full['clicks']) for s in range(3)], mi)}."),
    ("docs/results.md", "camvid_al_long20.json",
     "one at {pc(reach(runs('default', 0), 0.9 * full['miou']) / full['clicks'], 1)}%, one peaks at "
     "{pc(max(r['miou'] for r in runs('default', 2)) / full['miou'], 1)}% |"),
    ("docs/results.md", "camvid_al_long20.json",
     "so seed 2 peaks at {pc(max(r['miou'] for r in runs('default', 2)) / full['miou'], 1)}% and seed 0 "
     "passes at {pc(reach(runs('default', 0), 0.9 * full['miou']) / full['clicks'], 1)}%"),
    ("docs/results.md", "camvid_al_long20.json",
     "one seed\nof three stays at {pc(max(r['miou'] for r in runs('default', 2)) / full['miou'], 1)}%"),
    ("docs/results.md", "camvid_al_long20.json",
     "90% of full is {mi(0.9 * full['miou'])} mIoU; 10% of the pool is {k(0.1 * full['clicks'])} clicks"),
    ("docs/results.md", "camvid_al_long20.json",
     "(below) it does: {join(seed_diffs('static', 'dbsal'), sg)}\n"
     "(mean {sg(np.mean(seed_diffs('static', 'dbsal')))})"),
    ("docs/results.md", "camvid_al_long20.json",
     "Long protocol with 20 epochs a step: {sg(M('eq', 'random'))}; {sg(M('eqt', 'random'))} at equal "
     "clicks and training."),
    ("docs/results.md", "camvid_al_long20.json",
     "(11 steps of 20 images, 3 seeds): {sg(M('eq', 'static'))}; {sg(M('eqt', 'static'))} at equal clicks and training"),
    ("docs/results.md", "camvid_al_long20.json",
     "Long protocol with 20 epochs a step (20 images): {pc(S('default')[1]['prelabel_accuracy'])}%"),
    ("docs/results.md", "camvid_al_long20.json",
     "step 6 ({k(S('default')[6]['clicks'])} clicks) its curve flattens"),
    ("docs/results.md", "camvid_al_long20.json",
     "random whole images at equal clicks stays at {span(D('eq', 'random')[2:], lambda x: f'{100 * x:+.0f}', ' to ')} "
     "from step 3 on"),
    # ---- the long protocol of 10 epochs and 30 images a step (camvid_al_long120.json)
    ("docs/results.md", "camvid_al_long120.json",
     "| default: clicks | {join(col('default', 'clicks'), k, ' | ')} |"),
    ("docs/results.md", "camvid_al_long120.json",
     "| default: mIoU (%) | {join(S('default'), pm, ' | ')} |"),
    ("docs/results.md", "camvid_al_long120.json",
     "| default: pre-labels right | — | {join(col('default', 'prelabel_accuracy')[1:], lambda x: pc(x) + '%', ' | ')} |"),
    ("docs/results.md", "camvid_al_long120.json",
     "| control: mIoU (%) | {join(col('control', 'miou'), mi, ' | ')} |"),
    ("docs/results.md", "camvid_al_long120.json",
     "| random: clicks / mIoU (%) | {join(S('random'), lambda r: k(r['clicks']) + ' / ' + mi(r['miou']), ' | ')} |"),
    ("docs/results.md", "camvid_al_long120.json",
     "leads random whole images by **{sg(M('eq', 'random'))}** mIoU (per step {join(D('eq', 'random')[:3], sg)},\n"
     "{join(D('eq', 'random')[3:], sg)}) and, with each curve started from the control's point, by\n"
     "**{sg(M('eqt', 'random'))}** (steps 1-5"),
    ("docs/results.md", "camvid_al_long120.json",
     "clicks ({k(0.1 * full['clicks'])}) the default is at {mi(at(S('default'), 0.1 * full['clicks']))} mIoU (per seed "
     "{join([at(runs('default', s), 0.1 * full['clicks']) for s in range(3)], mi)}), "
     "**{pc(at(S('default'), 0.1 * full['clicks']) / full['miou'])}% of full\nsupervision**; after 8 steps "
     "({k(S('default')[8]['clicks'])} clicks, {pc(S('default')[8]['clicks'] / full['clicks'], 1)}%) at "
     "{mi(S('default')[8]['miou'])} ({pc(S('default')[8]['miou'] / full['miou'])}%; seed 1 alone passes 90%, at\n"
     "about {k(reach(runs('default', 1), 0.9 * full['miou']))} clicks, "
     "{pc(reach(runs('default', 1), 0.9 * full['miou']) / full['clicks'], 1)}%)"),
    ("docs/results.md", "camvid_al_long120.json",
     "which were {S('default')[8]['corrections']:,.0f} of the default's {S('default')[8]['clicks']:,.0f} clicks"),
    ("docs/results.md", "camvid_al_long120.json",
     "the long protocol of 10 epochs a step was at {pc(at(S('default'), 0.1 * full['clicks']) / full['miou'])}% at 10%"),
    ("docs/results.md", "camvid_al_long/default.json",
     "had passed 90% at {pc(reach(S('default'), 0.9 * load('camvid_al.json')['full_supervision']['miou']) / load('camvid_al.json')['full_supervision']['clicks'], 1)}%"),
    # ---- pre-labels, self-labels, fresh training
    ("docs/results.md", "prelabels.json",
     "fixed (3 seeds, {sum(s['judged'] for s in d['seeds'].values()):,} regions) and changes only the pre-label: "
     "the MC mean the uncertainty\n  comes from was right for {pc(d['pooled_accuracy']['mc_mean'])}%; soft voting, "
     "more smoothing and a weaker or stronger class prior\n  moved it by "
     "{span([d['pooled_accuracy'][v] - d['pooled_accuracy']['mc_mean'] for v in ('majority', 'soft', 'soft_smoothed', 'no_prior', 'half_prior', 'strong_prior', 'smoothed_4')], sg, ' to ')} "
     "points; one pass without dropout, {pc(d['pooled_accuracy']['deterministic'])}%; the MC mean averaged with that\n"
     "  of the mirrored image, {pc(d['pooled_accuracy']['flip'])}%; **one pass without dropout over the image and its "
     "mirror, averaged,\n  {pc(d['pooled_accuracy']['product'])}%** (seeds: "
     "{join([s['accuracy']['product'] for s in d['seeds'].values()], lambda x: pc(x) + '%')})"),
    ("docs/results.md", "prelabels.json",
     "| step-1 pre-labels ≥ 50% right | {pc(d['pooled_accuracy']['product'])}% (seeds: "
     "{join([s['accuracy']['product'] for s in d['seeds'].values()], lambda x: pc(x) + '%')}), with "
     "`Scorer.prelabels`; {pc(d['pooled_accuracy']['mc_mean'])}% with the MC mean before."),
    ("docs/results.md", "prelabels.json",
     "With the seed model at {span([s['seed_miou'] for s in d['seeds'].values()], pc)}% mIoU"),
    ("docs/results.md", "prelabels.json",
     "rare classes its queried superpixels\n  hold ({pc(d['seeds']['1']['accuracy']['product'])}%)"),
    ("docs/results.md", "self_labels.json",
     "cover {pc(d['pooled']['0.9']['filled'])}% of the unlabeled pixels and "
     "{pc(d['pooled']['0.9']['accuracy'])}% of them are right, but "
     "{span([sum(s['thresholds']['0.9']['class_share'][c] for c in (0, 1, 3)) for s in d['seeds'].values()], pc)}%\n"
     "of them (per seed) are sky, building or road (their recall of pavement is "
     "{span([s['thresholds']['0.9']['class_recall'][4] for s in d['seeds'].values()], pc)}%, of pole, sign,\nfence, "
     "pedestrian and bicyclist {max(s['thresholds']['0.9']['class_recall'][c] for s in d['seeds'].values() for c in (2, 6, 7, 9, 10)):.0f})"),
    ("docs/results.md", "self_labels.json",
     "they add {span([s['thresholds']['0.9']['filled'] * s['unlabeled_pixels'] / s['human_pixels'] for s in d['seeds'].values()], pc)}%\n"
     "to the labels ({span([s['thresholds']['0.9']['filled'] * s['unlabeled_pixels'] for s in d['seeds'].values()], lambda x: f'{x / 1000:.0f}k')} "
     "pixels against {span([s['human_pixels'] for s in d['seeds'].values()], lambda x: f'{x / 1000:.0f}k')}"),
    ("docs/results.md", "self_labels.json",
     "takes in their {pc(1 - d['pooled']['0.9']['accuracy'])}% of errors besides. Lower thresholds fill more "
     "and are less right\n(0.5: {pc(d['pooled']['0.5']['filled'])}% filled, {pc(d['pooled']['0.5']['accuracy'])}% right); "
     "higher ones less and more right (0.98: {pc(d['pooled']['0.98']['filled'])}%, {pc(d['pooled']['0.98']['accuracy'])}%)"),
    ("docs/results.md", "fresh_training.json",
     "for 60 epochs ({sg(d['summary']['4']['fresh_minus_warm']['mean'])} ± {mi(d['summary']['4']['fresh_minus_warm']['std'])} "
     "mIoU against the product's fine-tuned model) and the fine-tuned model 60\nmore epochs "
     "({sg(d['summary']['4']['warm_more_minus_warm']['mean'])} ± {mi(d['summary']['4']['warm_more_minus_warm']['std'])})"),
    # ---- what an annotator waits for (ui.json, ui_render_regions_quiet.json)
    *[("docs/results.md", "ui.json", row) for row in UI_ROWS],
    ("docs/results.md", "ui.json",
     "met for the queried tasks of both configs (the slowest queried 360x480 task took "
     "{f1(max(t['seconds'] for p in d['projects'] if p['size'] == '360x480' for t in p['stream'] if t['queried']))} s)"),
    ("docs/results.md", "ui.json",
     "(load average {span(d['load_average_at_start'] + d['load_average_at_end'], f1)} over the bench"),
    ("docs/results.md", "ui.json",
     "retrains on the same two cores: {span(o := U(0, lambda t: not t['queried']), f1)} s (median "
     "{f1(np.median(o))} s) at 360x480 with polygons,\n  {span(o := U(2, lambda t: not t['queried']), f1)} s "
     "(median {f1(np.median(o))} s) with brush layers"),
    ("docs/results.md", "ui.json",
     "right for {pc(d['projects'][0]['prelabel_accuracy'])}% of the polygon regions at 360x480 and "
     "{pc(d['projects'][1]['prelabel_accuracy'])}%\n  at 1024x2048 (the simulator, at the same max side 240, "
     "measures {pc(load('camvid_al_long20_start.json')['strategies']['default'][1]['prelabel_accuracy'])}% at step 1"),
    ("docs/results.md", "ui.json",
     "is right more often: {pc(d['projects'][2]['prelabel_accuracy'])}% and {pc(d['projects'][3]['prelabel_accuracy'])}%"),
    ("docs/results.md", "ui.json",
     "came {d['projects'][0]['first_step_seconds']:.0f} s (360x480) and {d['projects'][1]['first_step_seconds']:.0f} s "
     "(1024x2048) after the last seed answer"),
    ("docs/results.md", "ui_render_regions_quiet.json",
     "start-up of {span([r['seconds_median'] for r in d['results'] if r['variant'] == 'main' and r['regions'] == 0], f1)} s included"),
    ("docs/results.md", "ui_render_regions_quiet.json",
     "brush regions cost\nabout {span([per_region(w) for w in (480, 2048)], lambda x: f'{x:.2f}')} s each at either size"),
    ("docs/results.md", "ui_render_regions_quiet.json",
     "(40 brush regions: medians "
     "{f1([r['seconds_median'] for r in d['results'] if r['variant'] == 'main' and r['regions'] == 40 and r['width'] == 480][0])} s at 360x480 and "
     "{f1([r['seconds_median'] for r in d['results'] if r['variant'] == 'main' and r['regions'] == 40 and r['width'] == 2048][0])} s at 1024x2048); 40\n"
     "simplified polygons cost about 1 s in all (medians "
     "{join([r['seconds_median'] for r in d['results'] if r['variant'] == 'polygons_simplified'], f1, ' s and ')} s)"),
    *[("docs/results.md", f, t) for f, t in PIXELPICK_SECTION],
    # ---- the README's results (the default on both data sets: *_default.json)
    *[("README.md", f, (label + " " if f.startswith("camvid") else "") + cells)
      for label, cells in README_START_ROWS for f in README_DEFAULT],
    *[("README.md", f, text) for f, text in README_START_INTRO + README_START_AFTER],
    ("README.md", "peanut_al_default.json",
     "its default reached 90% of full supervision's mIoU with {pc(full['share_of_full_clicks'], 1)}% of the"),
    # ---- how it works (train_time.json, prelabels.json)
    ("docs/how-it-works.md", "train_time_start.json",
     "trains in {(r := run_of(240, 120))['train_seconds'] / 60:.1f} minutes and its step (MC dropout over the "
     "{r['scored']} other images, superpixels and regions of {r['queried']}) takes {r['step_seconds']:.0f} s: "
     "the first regions come {r['minutes']:.1f} minutes after the last seed answer"),
    ("docs/how-it-works.md", "train_time.json",
     "At max side 512 (the images' own 360x480) the same run would take about "
     "{run_of(512, 120)['minutes']:.0f} minutes; 30 epochs there take as long as 120 at 240 and give a "
     "worse first model ({mi(run_of(512, 30)['miou'])} against {mi(run_of(240, 120)['miou'])} mIoU on CamVid val)"),
    ("docs/how-it-works.md", "train_time.json", "from 10 images, {run_of(240, 120)['minutes']:.1f} minutes"),
    ("docs/results.md", "train_time_start.json",
     "at max side 240 and 120 epochs, training takes {(r := run_of(240, 120))['train_seconds'] / 60:.1f} min and "
     "the step {r['step_seconds']:.0f} s: **the first regions come {r['minutes']:.1f} minutes after the last seed "
     "answer**, and the first model is `seed5`'s seed model ({mi(r['miou'])} mIoU, to the digit)"),
    ("docs/results.md", "camvid_al_long20_start.json", "`seed5`'s seed model ({mi(runs('default', 0)[0]['miou'])} mIoU"),
    *[("docs/results.md", "train_time.json",
       f"| {{(r := d['runs'][{i}])['size'][0]}}x{{r['size'][1]}} (max side {{r['max_side']}}), "
       f"{{r['first_epochs']}} epochs | {{r['train_seconds'] / 60:.1f}} min"
       f"{{' (extrapolated)' if r['extrapolated'] else ''}} | {{r['step_seconds']:.0f}} s | "
       f"**{{r['minutes']:.1f}} min** | {{'—' if r['miou'] is None else mi(r['miou'])}} |") for i in range(4)],
    ("docs/how-it-works.md", "prelabels.json",
     "(on CamVid {pc(d['pooled_accuracy']['product'])}% of step 1's regions\n   right, against "
     "{pc(d['pooled_accuracy']['mc_mean'])}% for the MC mean"),
    # ---- safety (hardening.json)
    ("docs/safety.md", "hardening.json",
     "| {(b := d['bad_requests'])['requests']} malformed or unauthenticated requests"),
    ("docs/safety.md", "hardening.json",
     "**{(b := d['bad_requests'])['server_errors']} answers 5xx**, {b['not_json']} not JSON, "
     "**every request answered** ({', '.join(f'{s}: {n}' for s, n in b['by_status'].items())}) |"),
    ("docs/safety.md", "hardening.json",
     "regions for the probes {(s := d['ssrf'])['regions_returned'][:-1]}; the swapped task got its regions "
     "from the image Label Studio holds for it ({s['regions_returned'][-1]}); hits on the loopback trap: "
     "{s['loopback_trap_hits']} |"),
    ("docs/safety.md", "hardening.json",
     "| HTTP {(r := d['large_image_default_limit'])['status']}, refused before decoding, {r['seconds']:.2f} s, "
     "+{r['extra_memory_mb']} MB |"),
    ("docs/safety.md", "hardening.json",
     "| HTTP {(r := d['large_image_limit_100M'])['status']}, **{r['regions']} regions in {f1(r['seconds'])} s, "
     "+{r['extra_memory_mb']} MB** (goal: at most 30 s and 1.5 GB) |"),
    ("docs/safety.md", "hardening.json",
     "| {(c := d['slow_clients'])['connections']} clients trickling a request at 1 byte/s | **all "
     "{c['answers']['HTTP/1.1 408 Request Timeout']} answered 408 after at most {f1(c['held_seconds_max'])} s**; "
     "`/health` meanwhile median {c['health_seconds_median']:.3f} s, max {c['health_seconds_max']:.3f} s |"),
    ("docs/safety.md", "hardening.json",
     "| {(w := d['burst'])['webhooks']} annotation webhooks from 8 threads | {w['runs']} training runs; "
     "slowest answer {w['answer_seconds_max']:.2f} s |"),
    # ---- Peanut, the 4-step protocol (peanut_al.json, peanut_labels.json)
    ("docs/results.md", 'peanut_al.json', "**In short** (seeds {join(d['settings']['seeds'], str, ', ')} for every strategy): on the Peanut crop/weed fields the default is ahead at equal clicks of random whole images by **{sg(M('eq', 'random'))}** mIoU, of the matched static budget by **{sg(M('eq', 'static'))}** and of the paper's dynamic budget by **{sg(M('eq', 'dbsal'))}** ({sg(M('eqt', 'random'))}, {sg(M('eqt', 'static'))} and {sg(M('eqt', 'dbsal'))} when the others' curves get the same training), and after 4 steps it is at {pc(S('default')[4]['miou'] / full['miou'])}% of full supervision's mIoU with {pc(S('default')[4]['clicks'] / full['clicks'], 1)}% of the pool's clicks."),
    ("docs/results.md", 'peanut_al.json', "on this machine (2 cores, shared) seed 0's default, random and control took {[c['seconds'] for c in d['settings']['combined_from'] if ['default', 'random', 'control'] == c['strategies']][0] / 60:.0f} minutes, `dbsal` and `static` {[c['seconds'] for c in d['settings']['combined_from'] if ['dbsal', 'static'] == c['strategies']][0] / 60:.0f}, full supervision {[c['seconds'] for c in d['settings']['combined_from'] if ['full'] == c['strategies']][0] / 60:.0f}."),
    ("docs/results.md", 'peanut_al.json', "| **default** (as on CamVid) | {join(col('default', 'clicks'), k, ' / ')} | {join(S('default'), pm, ' / ')} | {join(col('default', 'regions_per_image_median', slice(1, None)), lambda x: f'{x:g}', ' / ')} | {pc(S('default')[1]['prelabel_accuracy'])}% |"),
    ("docs/results.md", 'peanut_al.json', "| `random` whole images | {join(col('random', 'clicks'), k, ' / ')} | {join(S('random'), pm, ' / ')} | — | — |"),
    ("docs/results.md", 'peanut_al.json', "| `dbsal`, the paper | {join(col('dbsal', 'clicks'), k, ' / ')} | {join(S('dbsal'), pm, ' / ')} | {join(col('dbsal', 'regions_per_image_median', slice(1, None)), lambda x: f'{x:g}', ' / ')} | {pc(S('dbsal')[1]['prelabel_accuracy'])}% |"),
    ("docs/results.md", 'peanut_al.json', "| `static`, matched to dbsal | {join(col('static', 'clicks'), k, ' / ')} | {join(S('static'), pm, ' / ')} | {join(col('static', 'regions_per_image_median', slice(1, None)), lambda x: f'{x:g}', ' / ')} | {pc(S('static')[1]['prelabel_accuracy'])}% |"),
    ("docs/results.md", 'peanut_al.json', "| `control`: no new labels | {k(S('control')[1]['clicks'])} (every step) | {join(S('control'), pm, ' / ')} | — | — |"),
    ("docs/results.md", 'peanut_al.json', "| `full` supervision, the whole pool | {k(full['clicks'])} | {mi(full['miou'])} (one run) | — | — |"),
    ("docs/results.md", 'peanut_al.json', "| `random` whole images | **{sg(M('eq', 'random'))}** ({'per step ' if 'random' == 'random' else ''}{join(D('eq', 'random'), sg)}) | **{sg(M('eqt', 'random'))}** ({join(D('eqt', 'random'), sg)}) |"),
    ("docs/results.md", 'peanut_al.json', "| `static` | **{sg(M('eq', 'static'))}** ({'per step ' if 'static' == 'random' else ''}{join(D('eq', 'static'), sg)}) | **{sg(M('eqt', 'static'))}** ({join(D('eqt', 'static'), sg)}) |"),
    ("docs/results.md", 'peanut_al.json', "| `dbsal` | **{sg(M('eq', 'dbsal'))}** ({'per step ' if 'dbsal' == 'random' else ''}{join(D('eq', 'dbsal'), sg)}) | **{sg(M('eqt', 'dbsal'))}** ({join(D('eqt', 'dbsal'), sg)}) |"),
    ("docs/results.md", 'peanut_al.json', "Per seed, `default` minus `random` at equal clicks is {join(seed_diffs('random'), sg)} on seeds {join(d['settings']['seeds'], str, ', ')}: **{sg(np.mean(seed_diffs('random')))} ± {mi(np.std(seed_diffs('random')))}** over the seeds. "),
    ("docs/results.md", 'peanut_al.json', "The default beats the control by {join([r['miou_difference'] for r in d['against_control']], sg)} at steps 1-4: its {span(cost('default'), lambda x: f'{round(x, -1):.0f}')} clicks a step are worth labels, not just more training (the control gains {sg(S('control')[4]['miou'] - S('control')[0]['miou'])} over 4 steps). Ten random whole Peanut images cost {span(cost('random'), k)} clicks a step, `dbsal` and `static` {span(cost('dbsal') + cost('static'), k)}."),
    ("docs/results.md", 'peanut_al.json', "Full supervision reaches {mi(full['miou'])} mIoU with {k(full['clicks'])} clicks (the whole pool). The seed set alone is at {mi(S('default')[0]['miou'])} ({pc(S('default')[0]['miou'] / full['miou'])}% of full, {pc(S('default')[0]['clicks'] / full['clicks'], 1)}% of the pool's clicks); the default ends at {mi(S('default')[4]['miou'])} ({pc(S('default')[4]['miou'] / full['miou'])}%) with {k(S('default')[4]['clicks'])} clicks ({pc(S('default')[4]['clicks'] / full['clicks'], 1)}% of the pool's), random whole images at {mi(S('random')[4]['miou'])} ({pc(S('random')[4]['miou'] / full['miou'])}%) with {k(S('random')[4]['clicks'])} ({pc(S('random')[4]['clicks'] / full['clicks'], 1)}%)."),
    ("docs/results.md", 'peanut_al.json', "{'The default passes 90% of full at ' + k(full['clicks_for_90_percent']) + ' clicks (' + pc(full['share_of_full_clicks'], 1) + '% of the pool' + chr(39) + 's), within its step 1.' if full.get('clicks_for_90_percent') else 'The default does not reach 90% of full in 4 steps.'}"),
    ("docs/results.md", 'camvid_al.json', "On CamVid the same protocol's seed set is at {pc(S('default')[0]['miou'] / full['miou'])}% of full"),
    ("docs/results.md", 'peanut_al.json', "Its pre-labels are right less often than the paper's at step 1 ({pc(S('default')[1]['prelabel_accuracy'])}% against `dbsal`'s {pc(S('dbsal')[1]['prelabel_accuracy'])}% and `static`'s {pc(S('static')[1]['prelabel_accuracy'])}%): it asks the 40 least confident superpixels of an image's high-uncertainty group, where `dbsal` and `static` ask {join(col('dbsal', 'regions_per_image_median', slice(1, 2)), lambda x: f'{x:g}')} and {join(col('static', 'regions_per_image_median', slice(1, 2)), lambda x: f'{x:g}')} (medians at step 1), most of them easy ones. After step 1 its curve flattens ({join(col('default', 'miou', slice(1, None)), mi, ', ')} at steps 1-4)."),
    ("docs/results.md", 'peanut_labels.json', "Weed is the class that decides the mIoU: {pc(d['pool']['pool_class_shares'][2], 1)}% of the pool's pixels (crop {pc(d['pool']['pool_class_shares'][1])}%, soil {pc(d['pool']['pool_class_shares'][0])}%), and its validation IoU on seed 0 is {pc(d['iou']['seed_s0']['iou'][2])}% after the seed set, {pc(d['iou']['default_s0']['iou'][2])}% after the default's step 4, {pc(d['iou']['random_s0']['iou'][2])}% after random's, {pc(d['iou']['dbsal_s0']['iou'][2])}% and {pc(d['iou']['static_s0']['iou'][2])}% after `dbsal`'s and `static`'s, {pc(d['iou']['control_s0']['iou'][2])}% for the control (soil {span([d['iou'][n]['iou'][0] for n in d['iou']], pc)}%, crop {span([d['iou'][n]['iou'][1] for n in d['iou']], pc)}% everywhere; on seed 1 weed is at {pc(d['iou']['default_s1']['iou'][2])}% after the default's step 4, {pc(d['iou']['random_s1']['iou'][2])}% after random's, {pc(d['iou']['control_s1']['iou'][2])}% for the control). Weeds are small against a superpixel: the median connected weed part is {d['pool']['weed_part_median_pixels']:.0f} pixels, one default superpixel {d['pool']['superpixel_pixels']:.0f}; {pc(d['pool']['weed_parts_smaller_than_superpixel'])}% of the weed parts (holding {pc(d['pool']['weed_pixels_in_parts_smaller_than_superpixel'])}% of the weed pixels) are smaller than one, and {pc(d['pool']['weed_parts_smaller_than_min_part'])}% ({pc(d['pool']['weed_pixels_in_parts_smaller_than_min_part'])}% of the weed pixels) are smaller than the smallest part the simulated annotator repaints ({d['pool']['min_part_pixels']:.0f} pixels, 0.1% of the image), so inside a reviewed region they keep its label. Measured on the labels each strategy collected (`bench/peanut_labels.py`, `bench/results/peanut_labels.json`), seed 0: the default's regions are weed-rich (weed is {pc(d['labels']['default_s0']['true_class_shares'][2])}% of the pixels it had labeled, `dbsal`'s {pc(d['labels']['dbsal_s0']['true_class_shares'][2])}%), but {pc(d['labels']['default_s0']['mislabeled_share'][2])}% of those weed pixels were given another class (seed 1: {pc(d['labels']['default_s1']['mislabeled_share'][2])}%; `dbsal` {pc(d['labels']['dbsal_s0']['mislabeled_share'][2])}%, `static` {pc(d['labels']['static_s0']['mislabeled_share'][2])}%), where random whole images label every pixel exactly. That label noise on the rare class, and pre-labels that need more corrections, are what the default pays for its cheap steps on this domain; it still buys more mIoU per click than random whole images, `dbsal` or `static`."),
    # ---- scale (scale.json)
    *[("docs/scale.md", "scale.json",
       f"| {{(s := d['sizes'][{i}])['tasks']:,}} | {{s['ours_ms_per_image']:.0f}} | "
       f"{{'—' if s['ours_1_thread_ms_per_image'] is None else f\"{{s['ours_1_thread_ms_per_image']:.0f}}\"}} | "
       f"{{s['baseline_ms_per_image']:.0f}} | {{s['baseline_ms_per_image'] / s['ours_ms_per_image']:.1f}}x | "
       f"{{s['peak_rss_mb']}} MB | {{'yes' if s['same_scores'] else 'no'}}")
      for i in range(3)],
    ("docs/scale.md", "scale.json",
     "(max diff {f'{d[\"sizes\"][0][\"max_score_difference\"]:.0e}'.replace('e-0', 'e-')})"),
    ("docs/scale.md", "scale.json",
     "The per-image cost is flat ({span([s['ours_ms_per_image'] for s in d['sizes']], lambda x: f'{x:.0f}')} ms"),
    ("docs/scale.md", "scale.json",
     "peak memory ({span([s['peak_rss_mb'] / 1000 for s in d['sizes']], lambda x: f'{x:.2f}')} GB"),
    ("docs/scale.md", "scale.json",
     "measured {span([s['baseline_ms_per_image'] for s in d['sizes']], lambda x: f'{x:.0f}')} ms in the same run"),
    ("docs/scale.md", "scale.json",
     "(scores equal to {d['ray']['max_score_difference']}), in {d['ray']['seconds']:.0f} s"),
    ("docs/scale.md", "scale.json",
     "met at every size ({join([s['baseline_ms_per_image'] / s['ours_ms_per_image'] for s in d['sizes']], lambda x: f'{x:.1f}x')}) "
     "with the run's two threads. With\none thread, ours is "
     "{join([s['baseline_ms_per_image'] / s['ours_1_thread_ms_per_image'] for s in d['sizes'][:2]], lambda x: f'{x:.1f}x', ' and ')} "
     "the baseline at 100 and 1,000 tasks"),
    ("docs/scale.md", "scale.json", "(`bench/results/scale.json`, {d['settings']['seconds'] / 60:.0f}\nminutes)"),
]


@pytest.mark.parametrize("doc,source,template", FIGURES,
                         ids=[f"{doc}:{source}:{i}" for i, (doc, source, _) in enumerate(FIGURES)])
def test_a_quoted_figure_matches_its_results_file(doc, source, template):
    ns = namespace(load(source))

    def fill(match):                  # {expression} or {expression:format spec}
        field = match.group(1)
        try:
            return str(eval(field, ns))
        except SyntaxError:
            expression, _, spec = field.rpartition(":")
            return format(eval(expression, ns), spec)

    expected = " ".join(re.sub(r"\{((?:[^{}]|\{[^{}]*\})+)\}", fill, template).split())
    text = " ".join((ROOT / doc).read_text().split())   # line breaks do not matter
    assert expected in text, (
        f"{doc} should quote, from bench/results/{source}:\n  {expected!r}\n"
        "(the figure in the document, or the JSON, changed: update the document, or this entry)")
