"""Offline simulator: the backend's active-learning loop on a labeled data set.

A :class:`~dbsal_backend.simulator.annotator.SimulatedAnnotator` plays the people, so label efficiency can
be measured in the currency people pay, clicks:
``python -m dbsal_backend.simulator --data DIR --n-classes 11 --ignore-value 11``.

Every step runs the product's code: :func:`~dbsal_backend.engine.active.active_step` with a
:class:`~dbsal_backend.engine.scoring.Scorer` (images at the working resolution ``max_side``,
superpixels and regions at full size), the annotator answers each query at full size, and
:func:`~dbsal_backend.engine.training.fit` fine-tunes the model with the training :class:`Recipe`.
The validation split is scored after every step at full size.

Data layout: ``DIR/{train,val}/images/*`` and ``DIR/{train,val}/labels/<stem>.png``
(class-index PNGs). ``train`` is the unlabeled pool.

The package's modules: :mod:`.strategies` (the ways to spend labeling effort), :mod:`.annotator`
(the simulated person and the click cost model), :mod:`.records` (a run's settings and per-step
results), :mod:`.loop` (:class:`Simulation`), :mod:`.progress` (a run's last step on disk, to
resume), :mod:`.report` (mean curves, comparisons, the results document, plots) and :mod:`.cli`
(``python -m dbsal_backend.simulator``).
"""

from .annotator import Answer, ClickModel, SimulatedAnnotator, polygon_clicks
from .cli import build_parser, main
from .loop import Simulation
from .records import SimConfig, SimulatedStep
from .report import (aggregate, clicks_to_reach, combine, compare_at_clicks, compare_at_steps,
                     mean_difference, plot, results, summary)
from .strategies import STRATEGIES, Strategy, product_default

__all__ = ["STRATEGIES", "Answer", "ClickModel", "SimConfig", "SimulatedAnnotator",
           "SimulatedStep", "Simulation", "Strategy", "aggregate", "build_parser",
           "clicks_to_reach", "combine", "compare_at_clicks", "compare_at_steps", "main",
           "mean_difference", "plot", "polygon_clicks", "product_default", "results", "summary"]
