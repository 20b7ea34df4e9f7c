"""The simulator's strategies (:data:`STRATEGIES`; for one seed all start from the same seed set
of whole images and the same model trained on it, but ``default`` and ``seed5``, which start from
its first 5, the backend's seed batch, and a model trained on those):

``dbsal``     the paper: per-image natural-breaks split, one region per superpixel (SLICO, 300).
``static``    the paper's static budget: the same top fraction of superpixels in every image,
              matched to dbsal's mean fraction of the same seed (one region per superpixel).
``merged``    dbsal with connected same-class superpixels merged into one region.
``smoothed``  ``merged`` with the pre-labels smoothed over the superpixel graph (2 rounds).
``coarse``    ``smoothed`` on 150 boundary-following SLIC superpixels (compactness 5).
``step``      ``coarse`` with one natural-breaks split over all superpixels of the step.
``balanced``  ``step`` with class-balanced superpixel scores (Cai et al. 2021).
``capped``    dbsal with smoothed pre-labels and at most 40 regions (superpixels) per image, the
              least confident: what Label Studio can draw quickly as polygons.
``class``     dbsal with smoothed pre-labels and one region per predicted class (the fewest brush
              layers: for a config without polygons).
``default``   the backend's default settings for a config with PolygonLabels (one of the
              above; the README says which); ``default_brush``: for BrushLabels alone.
``self_labeled`` the default, fine-tuning on its own confident pre-labels (probability >= 0.9)
              where nobody labeled (:attr:`~dbsal_backend.engine.training.Recipe.self_label`).
``class_self_labeled`` the default, fine-tuning on each class's most confident 20% of the
              unlabeled pixels it is the pre-label of
              (:attr:`~dbsal_backend.engine.training.Recipe.self_label_share`).
``diverse``   the default, querying the most uncertain image of each of ``images`` layout
              clusters of the ``3 x images`` most uncertain (``QueryPolicy.diversity``).
``spread``    the default asking half as much of twice as many images: 20 images a step, at
              most 20 regions each (whatever ``--images-per-step`` says).
``wide``      the default with 20 images a step (whatever ``--images-per-step`` says).
``default_balanced`` the default with class-balanced superpixel scores (Cai et al. 2021;
              ``DBSAL_CLASS_BALANCED``): the split and the 40 regions favour rare predicted
              classes.
``dominant``  ``repaint`` with dominant-class answers (Cai et al. 2021): a person keeps or
              relabels each region and never repaints; the region's other classes are trained
              on as its class (the label noise this costs is in the results).
``seed5``     ``dominant`` from a cheaper start: 5 whole images in the seed set (the first 5 of
              the run's seed set, ``--init-images``), its seed model trained on them alone; the
              default before ``trimmed_answers`` won (no trimming).
``fine``      ``seed5`` on finer superpixels (SLICO, 600: half the size; purer regions, each
              answer labels half as many pixels).
``anchored``  ``seed5`` fine-tuning the seed model at every step, not the last step's model
              (``fine_tune="first"``: no chain of fine-tunings; ``DBSAL_FINE_TUNE=first``).
``doubling``  ``seed5`` fine-tuning the model of the last step whose labeled images were at
              least twice its start's (``fine_tune="doubling"``: at most log2(n) fine-tunings in
              a chain; ``DBSAL_FINE_TUNE=doubling``).
``trimmed``   ``seed5`` leaving out, before each fine-tuning, the 20% of each image's labeled
              pixels of a class that the model finds least likely (``trim=0.2``: the small-loss
              rule against the other-class pixels that a region's one answer labels).
``trimmed_answers`` the same trimming of the region answers alone: the whole images' labels
              (the seed set's), given pixel by pixel, are kept whole (``trim_whole=False``, as
              the backend's ``DBSAL_TRIM`` does): the default since it won.
``seed3``     the default from a cheaper start still: the first 3 images of the seed set
              whole, not 5 (its seed model trained on them alone).
``region_start`` the default with no whole images: its start asks 40 random superpixels
              (``start_regions``) of each of 30 random pool images, answered with their class
              (no model, so no pre-label: each a relabel), the seed model trained 20 epochs on
              them (``first_epochs``: as many image passes as 120 over 5 whole images).
``colour_start`` ``region_start`` asking, in each image, the 40 superpixels most different in
              colour (``start_pick="colour"``), not 40 random ones.
``repaint``   the 10-image start with repainting answers, untrimmed: keep or relabel each
              region and repaint the parts of other classes in it (the variants above,
              ``self_labeled`` to ``default_balanced``, are variants of it: what they were
              measured with).
``random``    random whole images.
``control``   no new labels: the seed model fine-tuned again at every step, as the others are
              (what the extra training alone gives; compared step by step, not by clicks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..engine.active import QueryPolicy
from ..engine.averaging import check_decay
from ..engine.checks import check_int
from ..engine.regions import ANSWERS
from ..engine.start import START_PICKS
from ..engine.superpixels import SlicParams
from ..engine.training import FINE_TUNE
from ..engine.trimming import check_trim



@dataclass(frozen=True)
class Strategy:
    """One way to spend labeling effort.

    ``kind`` is ``"regions"`` (an active-learning step with ``policy`` on ``superpixels``),
    ``"random"`` (whole random images), ``"none"`` (no new labels, training only) or ``"full"``
    (the whole pool). A ``static`` policy with
    ``match`` set takes its fraction from the named strategy's mean share of queried
    superpixels in the same seed. ``self_label`` and ``self_label_share`` are the
    fine-tuning's :attr:`~dbsal_backend.engine.training.Recipe.self_label` and
    :attr:`~dbsal_backend.engine.training.Recipe.self_label_share` (they replace the recipe's; the
    seed model and ``full`` train without them). ``images_per_step`` overrides the run's
    (:attr:`SimConfig.images_per_step`) for a ``regions`` strategy. ``answers`` is how a
    person answers a region: ``"repaint"`` (keep or relabel it, repaint the parts of other
    classes) or ``"dominant"`` (keep or relabel it, nothing more). ``init_images`` makes the
    seed set smaller than the run's (:attr:`SimConfig.init_images`): its first ``init_images``
    (never more than the run's). ``fine_tune`` is the model each step's training starts from
    (one of :data:`~dbsal_backend.engine.training.FINE_TUNE`: the seed model, the model of
    the last step that doubled the labels, the last step's, or ImageNet weights trained
    ``first_epochs``). ``trim`` is the fine-tuning's
    :attr:`~dbsal_backend.engine.training.Recipe.trim`; ``trim_whole``: it trims the labels of
    whole images too (else only the images answered by regions, see the ``exact`` of
    :func:`~dbsal_backend.engine.training.fit`). ``ema`` is the fine-tuning's
    :attr:`~dbsal_backend.engine.training.Recipe.ema` (the seed model trains without).
    ``start_regions`` asks the seed set as regions instead of whole images: that many
    superpixels of each of its ``init_images`` images (a draw of its own, not the run's seed
    set), each answered with its class and priced as a relabel (before any model there is no
    guess to keep); ``start_pick`` says which: ``"random"`` ones, or the ``"colour"``
    farthest-first ones (:func:`~dbsal_backend.engine.start.colour_regions`).
    ``first_epochs`` trains the seed model for that many epochs instead of the run's
    (:attr:`SimConfig.first_epochs`).
    """

    name: str
    kind: str = "regions"
    policy: QueryPolicy | None = None
    superpixels: SlicParams = field(default_factory=SlicParams)
    match: str | None = None
    self_label: float | None = None
    self_label_share: float | None = None
    images_per_step: int | None = None
    answers: str = "repaint"  # a bare strategy: what the earlier results were measured with
    init_images: int | None = None
    fine_tune: str = "last"  # a bare strategy: what the earlier results were measured with
    trim: float | None = None
    trim_whole: bool = True  # what ``trimmed`` was measured with
    ema: float | None = None
    start_regions: int | None = None
    start_pick: str = "random"
    first_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.answers not in ANSWERS:
            raise ValueError(f"answers must be one of {ANSWERS}, got {self.answers!r}")
        if self.fine_tune not in FINE_TUNE:
            raise ValueError(f"fine_tune must be one of {FINE_TUNE}, got {self.fine_tune!r}")
        if self.trim is not None:
            check_trim("trim", self.trim)
            if self.fine_tune == "off":
                raise ValueError("trim needs a trained model to judge the labels: it cannot "
                                 "go with fine_tune='off'")
        if self.ema is not None:
            check_decay("ema", self.ema)
        for name in ("init_images", "start_regions", "first_epochs"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.start_pick not in START_PICKS:
            raise ValueError(f"start_pick must be one of {START_PICKS}, got {self.start_pick!r}")


def product_default(polygons: bool = True, settings=None) -> Strategy:
    """The backend's default policy, superpixels, answers and seed batch (its settings with
    nothing set, or ``settings``), for a config with PolygonLabels (``default``) or with
    BrushLabels alone (``default_brush``)."""
    from ..server.settings import Settings

    defaults = Settings.model_validate({}) if settings is None else settings
    recipe = defaults.recipe(polygons=polygons)  # a fine-tuning's (not the first run's)
    start: dict = {}
    if defaults.start_for(polygons) == "regions":  # the backend's seed tasks ask colour regions
        start = {"start_regions": defaults.start_regions, "start_pick": "colour",
                 "first_epochs": defaults.recipe(first=True, polygons=polygons).epochs}
    return Strategy("default" if polygons else "default_brush",
                    policy=defaults.query_policy(polygons), superpixels=defaults.slic_params(),
                    self_label=recipe.self_label, self_label_share=recipe.self_label_share,
                    answers=defaults.answers_for(polygons),
                    init_images=defaults.seed_tasks(polygons),
                    fine_tune=defaults.fine_tune, trim=recipe.trim,
                    trim_whole=False,  # the backend trims only tasks answered by regions
                    ema=recipe.ema, **start)


# The paper's policy, spelled out (a bare QueryPolicy's cap and smoothing, not the backend's).
_PAPER = QueryPolicy(split="natural_breaks", scope="image", grouping="superpixel",
                     max_regions=None, smoothing=0)
_SLICO = SlicParams(algorithm="SLICO", n_segments=300)
_COARSE = SlicParams(algorithm="SLIC", n_segments=150, ruler=5.0)
# The default with repainting answers: the strategies measured as variants of the default before
# dominant-class answers were measured keep the answers they were measured with, and the run's
# seed set (init_images None: all of it), as every strategy measured before ``seed5``; and none
# measured before ``trimmed_answers`` trims.
_REPAINT = replace(product_default(), name="repaint", answers="repaint", init_images=None,
                   trim=None)
_SEED5 = replace(product_default(), name="seed5", init_images=5, trim=None)

#: The strategies the simulator knows, by name (see the module docstring).
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("dbsal", policy=_PAPER, superpixels=_SLICO),
    Strategy("static", policy=replace(_PAPER, split="static"), superpixels=_SLICO,
             match="dbsal"),
    Strategy("merged", policy=replace(_PAPER, grouping="connected"), superpixels=_SLICO),
    Strategy("smoothed", policy=replace(_PAPER, grouping="connected", smoothing=2), superpixels=_SLICO),
    Strategy("coarse", policy=replace(_PAPER, grouping="connected", smoothing=2), superpixels=_COARSE),
    Strategy("step", policy=replace(_PAPER, grouping="connected", smoothing=2, scope="step"),
             superpixels=_COARSE),
    Strategy("balanced", policy=replace(_PAPER, grouping="connected", smoothing=2, scope="step",
                                        class_balanced=True), superpixels=_COARSE),
    product_default(),
    Strategy("capped", policy=replace(_PAPER, smoothing=2, max_regions=40), superpixels=_SLICO),
    Strategy("class", policy=replace(_PAPER, grouping="class", smoothing=2, max_regions=40),
             superpixels=_SLICO),
    product_default(polygons=False),
    replace(_REPAINT, name="self_labeled", self_label=0.9, self_label_share=None),
    replace(_REPAINT, name="class_self_labeled", self_label=None, self_label_share=0.2),
    replace(_REPAINT, name="diverse", policy=replace(_REPAINT.policy, diversity=3)),
    replace(_REPAINT, name="spread", images_per_step=20,
            policy=replace(_REPAINT.policy, max_regions=20)),
    replace(_REPAINT, name="wide", images_per_step=20),
    replace(_REPAINT, name="default_balanced",
            policy=replace(_REPAINT.policy, class_balanced=True)),
    replace(_SEED5, name="dominant", init_images=None),
    _SEED5,
    replace(_SEED5, name="fine", superpixels=replace(_SEED5.superpixels, n_segments=600)),
    replace(_SEED5, name="anchored", fine_tune="first"),
    replace(_SEED5, name="doubling", fine_tune="doubling"),
    replace(_SEED5, name="trimmed", trim=0.2, trim_whole=True),
    replace(_SEED5, name="trimmed_answers", trim=0.2),
    replace(product_default(), name="seed3", init_images=3),
    replace(product_default(), name="region_start", init_images=30, start_regions=40,
            first_epochs=20),
    replace(product_default(), name="colour_start", init_images=30, start_regions=40,
            start_pick="colour", first_epochs=20),
    _REPAINT,
    Strategy("random", kind="random"),
    Strategy("control", kind="none"),
    Strategy("full", kind="full"),
)}

