"""The method's defaults, declared once.

:class:`~dbsal_backend.server.settings.Settings` (the backend with nothing set), the engine's classes
(:class:`~dbsal_backend.engine.active.QueryPolicy`, :class:`~dbsal_backend.engine.superpixels.SlicParams`,
:class:`~dbsal_backend.engine.training.Recipe`, :class:`~dbsal_backend.engine.scoring.Scorer`) and the
simulator (:class:`~dbsal_backend.simulator.records.SimConfig` and its command line) take their
defaults from here, so that they cannot drift apart.

Two kinds of value differ on purpose and are not here: a bare
:class:`~dbsal_backend.engine.active.QueryPolicy` is the plain mechanism (``grouping="connected"``, no
region cap, no smoothing), which the backend's settings turn into the product's choice
(:data:`REGIONS`, :data:`MAX_REGIONS`, :data:`SMOOTHING`); and the simulator's named strategies
(:data:`~dbsal_backend.simulator.strategies.STRATEGIES`) spell out the values they were measured
with, since the results in ``bench/results/`` depend on them.
"""

from __future__ import annotations

# -- the model ------------------------------------------------------------------------------------
#: Segmentation network (one of :data:`~dbsal_backend.engine.networks.ARCHITECTURES`).
ARCH = "efficientnet_lite0"
#: Start the encoder from ImageNet weights.
PRETRAINED = True

# -- what a step asks ---------------------------------------------------------------------------
#: Whole images of the seed set. 5, not 10: a whole image costs as many clicks as 15 queried images
#: answered with their dominant class, and the cheaper start got to the same models for fewer
#: clicks on both data sets (simulator strategy ``seed5``; docs/results.md, "A cheaper start"),
#: until on Peanut its curve falls after the 7th fine-tuning in a row (measured there).
INITIAL_IMAGES = 5
#: How a project starts before any model: ``images`` (the seed batch: INITIAL_IMAGES whole images
#: labeled pixel by pixel) or ``regions`` (START_TASKS seed tasks, each asking its START_REGIONS
#: superpixels most different in colour with no class, answered with their class; simulator
#: strategy ``colour_start``; needs PolygonLabels, else whole images).
START = "images"
#: Seed tasks of a start of regions.
START_TASKS = 30
#: Regions asked in each seed task of a start of regions.
START_REGIONS = 40
#: Images queried per step.
STEP_IMAGES = 10
#: OpenCV SLIC variant (one of :data:`~dbsal_backend.engine.superpixels.ALGORITHMS`).
SLIC_ALGORITHM = "SLICO"
#: Target superpixels per image.
N_SEGMENTS = 300
#: SLIC compactness (OpenCV's ruler).
COMPACTNESS = 10.0
#: Pixel heuristic (one of :data:`~dbsal_backend.engine.uncertainty.HEURISTICS`).
HEURISTIC = "entropy"
#: MC-dropout passes per image.
MC_SAMPLES = 20
#: Images per MC-dropout batch.
SCORE_BATCH_SIZE = 4
#: How superpixel scores split into queried and not (one of
#: :data:`~dbsal_backend.engine.selection.SPLIT_METHODS`).
SPLIT = "natural_breaks"
#: Where the split is made (one of :data:`~dbsal_backend.engine.active.SCOPES`).
SCOPE = "image"
#: Share of superpixels the static split queries (the DBSAL authors' static baseline).
STATIC_FRACTION = 0.275
#: Weight superpixel scores by class rarity.
CLASS_BALANCED = False
#: The backend's regions: ``auto`` (one per superpixel with PolygonLabels, else one per class).
REGIONS = "auto"
#: What annotators are asked to do with a region (one of
#: :data:`~dbsal_backend.engine.regions.ANSWERS`, or ``auto``: ``dominant`` for regions of one
#: superpixel, ``repaint`` for larger ones).
ANSWERS = "auto"
#: The backend's cap on regions per queried image.
MAX_REGIONS = 40
#: The backend's rounds of pre-label smoothing over the superpixel graph.
SMOOTHING = 2
#: 1: the most uncertain images; N > 1: the most uncertain of N x images, clustered by layout.
DIVERSITY = 1

# -- training -----------------------------------------------------------------------------------
#: Epochs of the first run (from ImageNet weights), the simulator's seed model.
FIRST_EPOCHS = 120
#: Epochs of the first run after a start of regions: as many image passes as FIRST_EPOCHS over
#: INITIAL_IMAGES whole images.
START_FIRST_EPOCHS = 20
#: Epochs of each later run (fine-tuning).
EPOCHS = 20
#: Which model a later run fine-tunes (one of :data:`~dbsal_backend.engine.training.FINE_TUNE`):
#: ``last``, the previous run's. ``first`` (no chain of fine-tunings) removed the fall of Peanut's
#: curve after its 7th step but cost about 2 mIoU on CamVid's labels; ``doubling`` kept the fall and
#: was worth what ``last`` is on both sets (docs/results.md).
FINE_TUNE = "last"
#: Share of each region-answered image's labels of a class that a fine-tuning leaves out, those the
#: model finds least likely (the small-loss rule against the other-class pixels a region's one
#: answer labels; whole images are kept whole). Ahead of no trimming on both data sets over 3
#: seeds (docs/results.md); ``None``: off.
TRIM = 0.2
#: Training batch size.
BATCH_SIZE = 8
#: Adam learning rate.
LR = 1e-3
#: Inverse-frequency class weights in the loss.
CLASS_WEIGHTED = True
#: Longer image side for training and scoring.
MAX_SIDE = 240
