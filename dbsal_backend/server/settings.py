"""Every setting of the backend, declared once and validated once (pydantic-settings).

Settings come from the environment (an unset or empty variable takes its default); a bad value
stops the server at start with a message naming the variable. The names of the server settings
are label-studio-ml-backend's (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``, ``MODEL_DIR``,
``BASIC_AUTH_USER``, ``BASIC_AUTH_PASS``, ``LOG_LEVEL``, ``HOST``, ``PORT``); the method's carry
the ``DBSAL_`` prefix. Secrets are :class:`~pydantic.SecretStr`: never shown in ``repr`` or logs.
The README's settings table lists every variable; each field's description here is its text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (AliasChoices, BeforeValidator, Field, HttpUrl, SecretStr, TypeAdapter,
                      ValidationError, field_validator)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..engine import defaults
from ..engine.active import SCOPES, QueryPolicy
from ..engine.labeling_budget import BUDGET_UNITS, Budget
from ..engine.regions import ANSWERS, GROUPINGS
from ..engine.selection import SPLIT_METHODS
from ..engine.networks import ARCHITECTURES
from ..engine.superpixels import ALGORITHMS, SlicParams
from ..engine.training import FINE_TUNE, Recipe
from ..engine.uncertainty import HEURISTICS

logger = logging.getLogger(__name__)

# The engine's choices (as Literal arguments).
ARCHS = ARCHITECTURES
SLIC_ALGORITHMS = tuple(ALGORITHMS)
UNCERTAINTIES = tuple(HEURISTICS)
STARTS = ("images", "regions")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _unlimited(value: object) -> object:
    return None if isinstance(value, str) and value.lower() in ("none", "unlimited") else value


def _fine_tune(value: object) -> object:
    """``DBSAL_FINE_TUNE`` as it was before it named the model, a boolean in any of pydantic's
    spellings: true (the last run's), false (off)."""
    try:
        return "last" if _BOOL.validate_python(value) else "off"
    except ValidationError:
        return _lower(value)


_BOOL = TypeAdapter(bool)


def _auto(value: object) -> object:
    return None if isinstance(value, str) and value.lower() == "auto" else value


def _origins(value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _server(name: str) -> AliasChoices:
    """An unprefixed variable (label-studio-ml-backend's names)."""
    return AliasChoices(name)


Lower = BeforeValidator(_lower)
Upper = BeforeValidator(_upper)


class Settings(BaseSettings):
    """Backend configuration. Build it with :meth:`from_env`; ``Settings(**values)`` and
    ``Settings.model_validate(values)`` read no environment (the values given, else defaults)."""

    model_config = SettingsConfigDict(env_prefix="DBSAL_", env_ignore_empty=True,
                                      extra="ignore", frozen=True, populate_by_name=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):  # type: ignore[override]
        # from_env reads the environment (or the mapping it is given) itself, so that an
        # explicit mapping is the only source and its unknown variables can be reported.
        return (init_settings,)

    # -- Label Studio and the server ----------------------------------------------------------
    label_studio_url: str = Field(
        "http://localhost:8080", validation_alias=_server("LABEL_STUDIO_URL"),
        description="Base URL of the Label Studio server.")
    label_studio_api_key: SecretStr | None = Field(
        None, validation_alias=_server("LABEL_STUDIO_API_KEY"),
        description="A legacy API token or a personal access token; reads tasks and images, "
                    "writes predictions. Never logged.")
    model_dir: Path = Field(
        Path("./models"), validation_alias=_server("MODEL_DIR"),
        description="Checkpoints, the state database and the caches.")
    basic_auth_user: str | None = Field(
        None, validation_alias=_server("BASIC_AUTH_USER"),
        description="With BASIC_AUTH_PASS: HTTP basic auth on every route but /health.")
    basic_auth_pass: SecretStr | None = Field(
        None, validation_alias=_server("BASIC_AUTH_PASS"),
        description="The basic-auth password (never logged).")
    log_level: Annotated[Literal[LOG_LEVELS], Upper] = Field(  # type: ignore[valid-type]
        "INFO", validation_alias=_server("LOG_LEVEL"), description="Logging level.")
    host: str = Field("127.0.0.1", validation_alias=_server("HOST"),
                      description="Listen address (the Docker image sets 0.0.0.0).")
    port: int = Field(9090, ge=1, le=65535, validation_alias=_server("PORT"),
                      description="Listen port.")
    ray_address: str | None = Field(
        None, validation_alias=_server("RAY_ADDRESS"),
        description="A Ray cluster: scoring runs on Ray Data and training as a Ray task there.")

    # -- what the backend may touch ---------------------------------------------------------------
    public_url: str | None = Field(
        None, description="The URL Label Studio uses for this backend, if the backend cannot "
                          "reach itself there (behind a proxy): confirms connected projects.")
    allowed_image_origins: Annotated[list[str], BeforeValidator(_origins)] = Field(
        default_factory=list,
        description="Comma-separated origins (scheme://host[:port]) besides Label Studio's "
                    "that images may be downloaded from.")
    max_image_pixels: int = Field(50_000_000, ge=1, description="Largest image, in pixels.")
    max_image_bytes: int = Field(64 * 2**20, ge=1, description="Largest image download.")
    image_timeout: float = Field(30.0, gt=0, allow_inf_nan=False,
                                 description="Seconds for one image download.")
    max_request_bytes: int = Field(32 * 2**20, ge=1024, description="Largest request body.")
    max_tasks_per_request: int = Field(1000, ge=1, description="Most tasks in one /predict.")
    request_timeout: float = Field(
        30.0, gt=0, le=3600, allow_inf_nan=False,
        description="Seconds a request may take to arrive in full, from its first byte; it is "
                    "read before a thread is given to it, so slow clients hold no thread.")
    set_sampling: bool = Field(
        True, description="On connect, set the project's sampling to Uncertainty sampling, so "
                          "that 'Label All Tasks' serves the least confident task first.")
    set_instructions: bool = Field(
        True, description="On connect, give a project without labeling instructions the "
                          "annotators' instructions (README 'For annotators'), shown before "
                          "labeling.")

    # -- the method -------------------------------------------------------------------------------
    arch: Annotated[Literal[ARCHS], Lower] = Field(  # type: ignore[valid-type]
        defaults.ARCH, description="Segmentation network.")
    pretrained: bool = Field(defaults.PRETRAINED, description="Start the encoder from ImageNet weights.")
    device: Annotated[str, Lower] = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                                          description="auto, cpu, cuda or cuda:N.")
    start: Annotated[Literal[STARTS], Lower] = Field(  # type: ignore[valid-type]
        defaults.START, description="How a project starts before any model: images (the seed "
        "tasks are whole images, labeled pixel by pixel) or regions (in each seed task, "
        "DBSAL_START_REGIONS regions with no class, the superpixels most different in colour, "
        "each given its class; needs PolygonLabels, else images).")
    start_regions: int = Field(defaults.START_REGIONS, ge=1, description="Regions of each seed "
                               "task of a start of regions.")
    initial_batch: Annotated[int | None, BeforeValidator(_auto)] = Field(
        None, ge=1, description=f"Seed tasks, asked first (less the tasks already annotated; "
        f"none when at least this many are); auto: {defaults.INITIAL_IMAGES} whole images, or "
        f"{defaults.START_TASKS} tasks of regions.")
    step_size: int = Field(defaults.STEP_IMAGES, ge=1, description="Images queried per step.")
    budget: Annotated[int | None, BeforeValidator(_unlimited)] = Field(
        None, ge=1, description="Labeling budget in DBSAL_BUDGET_UNIT; none: unlimited.")
    budget_unit: Annotated[Literal[BUDGET_UNITS], Lower] = Field(  # type: ignore[valid-type]
        "regions", description="images, regions or pixels.")
    n_segments: int = Field(defaults.N_SEGMENTS, ge=2, description=(
        "Target superpixels per image; 600 gave purer regions, level on Peanut's small weeds, "
        "behind on CamVid at equal clicks."))
    slic_algorithm: Annotated[Literal[SLIC_ALGORITHMS], Upper] = Field(  # type: ignore
        defaults.SLIC_ALGORITHM, description=(
            "OpenCV SLIC variant: SLICO, SLIC or MSLIC; neither of the others was purer at its "
            "size on CamVid or Peanut."))
    compactness: float = Field(defaults.COMPACTNESS, gt=0, allow_inf_nan=False,
                               description="SLIC compactness (OpenCV ruler).")
    mc_samples: int = Field(defaults.MC_SAMPLES, ge=1, description="MC-dropout passes per image.")
    uncertainty: Annotated[Literal[UNCERTAINTIES], Lower] = Field(  # type: ignore
        defaults.HEURISTIC, description="Pixel heuristic.")
    split: Annotated[Literal[SPLIT_METHODS], Lower] = Field(  # type: ignore[valid-type]
        defaults.SPLIT, description="How superpixel scores split into queried and not.")
    split_scope: Annotated[Literal[SCOPES], Lower] = Field(  # type: ignore[valid-type]
        defaults.SCOPE, description="image: split each image; step: split the step's images together.")
    static_fraction: float = Field(defaults.STATIC_FRACTION, gt=0, le=1, allow_inf_nan=False,
                                   description="Share of superpixels the static split queries.")
    regions: Annotated[Literal[("auto",) + GROUPINGS], Lower] = Field(  # type: ignore
        defaults.REGIONS, description="What a region is: superpixel (one each), connected (a connected "
                            "group of one predicted class), class (all of one class: the fewest "
                            "brush layers), or auto: superpixel when the config has "
                            "PolygonLabels (polygons draw fast), else class.")
    answers: Annotated[Literal[("auto",) + ANSWERS], Lower] = Field(  # type: ignore
        defaults.ANSWERS, description="What annotators are asked to do with a region (the "
                            "project's instructions): dominant (keep its label or give the whole "
                            "region the class covering most of it), repaint (also repaint the "
                            "parts of other classes), or auto: dominant when a region is one "
                            "superpixel, else repaint.")
    class_balanced: bool = Field(defaults.CLASS_BALANCED, description="Weight superpixel scores by class rarity.")
    max_regions: Annotated[int | None, BeforeValidator(_unlimited)] = Field(
        defaults.MAX_REGIONS, ge=1, description="Most regions per queried image (the least confident); none: "
                              "no cap.")
    smoothing: int = Field(defaults.SMOOTHING, ge=0, description="Rounds of majority smoothing of the pre-labels "
                                                "over the superpixel graph.")
    diversity: int = Field(defaults.DIVERSITY, ge=1, description="1: query the most uncertain images; N > 1: "
                                                 "cluster the N x step-size most uncertain by "
                                                 "predicted layout and query the most uncertain "
                                                 "of each cluster (no near-duplicate frames).")
    first_epochs: Annotated[int | None, BeforeValidator(_auto)] = Field(
        None, ge=1, description=f"Epochs of the first training run (from ImageNet weights); "
        f"auto: {defaults.FIRST_EPOCHS} after whole images, {defaults.START_FIRST_EPOCHS} after "
        f"regions (as many image passes).")
    epochs: int = Field(defaults.EPOCHS, ge=1, description="Epochs of each later run (fine-tuning).")
    batch_size: int = Field(defaults.BATCH_SIZE, ge=1, description="Training batch size.")
    lr: float = Field(defaults.LR, gt=0, allow_inf_nan=False, description="Adam learning rate.")
    class_weighted: bool = Field(defaults.CLASS_WEIGHTED, description="Inverse-frequency class weights in the loss.")
    fine_tune: Annotated[Literal[FINE_TUNE], BeforeValidator(_fine_tune)] = Field(  # type: ignore
        defaults.FINE_TUNE, description="The model each run after the first fine-tunes: last "
        "(the previous run's), first (the first run's: no chain of fine-tunings; better on "
        "Peanut's many runs, worse on CamVid: docs/results.md), doubling (the last run's whose "
        "labeled images were at least twice those of the model it started from: at most "
        "log2(n) fine-tunings in a chain) or off (every run from ImageNet weights for "
        "DBSAL_FIRST_EPOCHS); true and false mean last and off.")
    self_label: Annotated[float | None, BeforeValidator(_unlimited)] = Field(
        None, gt=0, le=1, description="Fine-tuning trains also on the model's own pre-labels "
                                      "where nobody labeled and their probability is at least "
                                      "this; none: off.")
    trim: Annotated[float | None, BeforeValidator(_unlimited)] = Field(
        defaults.TRIM, gt=0, le=0.5, description="Fine-tuning leaves out, per image and class, "
        "this share of the labels the model finds least likely in the tasks answered by regions "
        "with one class each (the other-class pixels a region's one answer labels; whole images "
        "and repainted regions are kept whole); none: off.")
    max_side: int = Field(defaults.MAX_SIDE, ge=16, description="Longer image side for training "
                          "and scoring (the size the results were measured at; time grows with "
                          "the pixels).")
    train_after: int = Field(5, ge=0, description="Annotation events that start a run (the "
                                                  "first run: the whole seed batch); 0: only "
                                                  "Start Training.")
    model_title: str = Field("dbsal", min_length=1, description="The backend's title in Label "
                                                                "Studio and its predictions' "
                                                                "model version.")
    seed: int = Field(0, ge=0, description="Seed of every random choice.")
    score_batch_size: int = Field(defaults.SCORE_BATCH_SIZE, ge=1, description="Images per MC-dropout batch.")
    prefetch: int = Field(4, ge=0, description="Image downloads running ahead of scoring.")
    score_workers: int = Field(0, ge=0, description="Batches a run scores at the same time, "
                               "each by its own thread with its own copy of the model and a "
                               "share of the run's threads; 0: one per thread on a CPU, one "
                               "on a GPU.")
    max_concurrent_runs: int = Field(1, ge=1, description="Training runs at the same time.")
    run_threads: int = Field(0, ge=0, description="Torch threads of a training run's process; "
                                                  "0: one per core (the server keeps "
                                                  "OMP_NUM_THREADS).")
    run_niceness: int = Field(10, ge=0, le=19, description="Added to a training run's "
                              "process niceness, so that /predict (people waiting in Label "
                              "Studio) and Label Studio itself go first on a shared machine.")

    @field_validator("label_studio_url")
    @classmethod
    def _url(cls, value: str) -> str:
        HttpUrl(value)  # raises for anything but an http(s) URL
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None:
            HttpUrl(value)
        return value.rstrip("/") if value else value

    @field_validator("allowed_image_origins")
    @classmethod
    def _origin_list(cls, value: list[str]) -> list[str]:
        out = []
        for origin in value:
            url = HttpUrl(origin)
            if url.path not in (None, "", "/") or url.query or url.fragment or url.username:
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
            out.append(f"{url.scheme}://{url.host}:{url.port}")
        return out

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable from ``environ`` (default ``os.environ``).

        Raises
        ------
        ValueError
            Naming each variable with a value it does not accept.
        """
        environ = dict(os.environ if environ is None else environ)
        known = {f"DBSAL_{name.upper()}" for name, f in cls.model_fields.items()
                 if f.validation_alias is None}
        unknown = sorted(k for k in environ if k.startswith("DBSAL_") and k not in known)
        if unknown:
            logger.warning("ignoring unknown DBSAL_ variables: %s", ", ".join(unknown))
        values = {}
        for name, f in cls.model_fields.items():
            variable = f.validation_alias.choices[0] if f.validation_alias else f"DBSAL_{name.upper()}"
            raw = environ.get(variable, "").strip()
            if raw:
                values[name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError("invalid settings: " + "; ".join(
                f"{_variable(cls, str(e['loc'][0]))}={values.get(str(e['loc'][0]), '')!r}: "
                f"{e['msg']}" for e in exc.errors())) from None

    # -- what the engine takes ------------------------------------------------------------------
    @property
    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials, when both are set."""
        if self.basic_auth_user and self.basic_auth_pass:
            return self.basic_auth_user, self.basic_auth_pass.get_secret_value()
        return None

    @property
    def api_key(self) -> str:
        """The Label Studio API key ("" when unset)."""
        return self.label_studio_api_key.get_secret_value() if self.label_studio_api_key else ""

    def query_policy(self, polygons: bool = True) -> QueryPolicy:
        """The step's policy; ``polygons``: the project's config has PolygonLabels (decides
        ``DBSAL_REGIONS=auto``)."""
        grouping = self.regions
        if grouping == "auto":
            grouping = "superpixel" if polygons else "class"
        return QueryPolicy(images=self.step_size, split=self.split, scope=self.split_scope,
                           static_fraction=self.static_fraction, grouping=grouping,
                           class_balanced=self.class_balanced, max_regions=self.max_regions,
                           smoothing=self.smoothing, diversity=self.diversity)

    def answers_for(self, polygons: bool = True) -> str:
        """What annotators do with a region (``DBSAL_ANSWERS``, ``auto`` resolved for the
        project's config: ``polygons`` as in :meth:`query_policy`)."""
        if self.answers != "auto":
            return self.answers
        return "dominant" if self.query_policy(polygons).grouping == "superpixel" else "repaint"

    def start_for(self, polygons: bool = True) -> str:
        """How the project starts (``DBSAL_START``): regions only with PolygonLabels
        (``polygons`` as in :meth:`query_policy`; forty brush layers a task draw slowly)."""
        return self.start if polygons else "images"

    def seed_tasks(self, polygons: bool = True) -> int:
        """How many seed tasks are asked first (``DBSAL_INITIAL_BATCH``, auto resolved)."""
        if self.initial_batch is not None:
            return self.initial_batch
        return defaults.START_TASKS if self.start_for(polygons) == "regions" \
            else defaults.INITIAL_IMAGES

    def slic_params(self) -> SlicParams:
        return SlicParams(algorithm=self.slic_algorithm, n_segments=self.n_segments,
                          ruler=self.compactness)

    def recipe(self, first: bool = False, polygons: bool = True) -> Recipe:
        """The training recipe of a run; ``first``: the run that starts from ImageNet weights
        (it has no model to take self-labels from, nor to judge the labels by); ``polygons``
        as in :meth:`query_policy` (``DBSAL_TRIM`` trims dominant-class answers alone: repainted
        regions are labeled pixel by pixel)."""
        trims = not first and self.answers_for(polygons) == "dominant"
        first_epochs = self.first_epochs or (defaults.START_FIRST_EPOCHS
                                             if self.start_for(polygons) == "regions"
                                             else defaults.FIRST_EPOCHS)
        return Recipe(epochs=first_epochs if first else self.epochs,
                      batch_size=self.batch_size, lr=self.lr,
                      class_weighted=self.class_weighted, seed=self.seed,
                      self_label=None if first else self.self_label,
                      trim=self.trim if trims else None)

    def labeling_budget(self) -> Budget:
        return Budget(limit=self.budget, unit=self.budget_unit)


def _variable(cls: type[Settings], field: str) -> str:
    f = cls.model_fields.get(field)
    if f is not None and f.validation_alias is not None:
        return f.validation_alias.choices[0]
    return f"DBSAL_{field.upper()}"
