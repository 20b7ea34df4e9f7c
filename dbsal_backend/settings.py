"""Every environment variable of the backend, read once into a frozen :class:`Settings`.

An unset or empty variable takes its default. A bad value raises ``ValueError`` naming the
variable and what it accepts, so a misconfigured container fails at start, not mid-run.

Variables
---------
Label Studio and the server:

``LABEL_STUDIO_URL``
    Base URL of the Label Studio server (default ``http://localhost:8080``).
``LABEL_STUDIO_API_KEY``
    A legacy API token or a personal access token; both work. Used to read tasks and images and
    to push predictions. Never logged (masked in ``repr`` and in the server's log output).
``MODEL_DIR``
    Folder for checkpoints, the state database and caches (default ``./models``).
``LOG_LEVEL``
    ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR`` or ``CRITICAL``.
``HOST``
    Address the server listens on (default ``127.0.0.1``; the Docker image sets ``0.0.0.0``).
``PORT``
    Port the server listens on (default ``9090``).

Active learning (``DBSAL_*``):

``DBSAL_ARCH``
    Segmentation network: ``efficientnet_lite0`` (default; its ImageNet weights ship with a
    package), ``unet`` (the authors' Bayesian U-Net, from scratch), ``mobilenet_v3_large`` or
    ``resnet50`` (their torchvision weights are downloaded on first use).
``DBSAL_PRETRAINED``
    Start the encoder from ImageNet weights (default ``true``).
``DBSAL_DEVICE``
    ``auto`` (default: CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
``DBSAL_INITIAL_BATCH``
    Size of the random seed set of whole images labeled first (default ``10``).
``DBSAL_STEP_SIZE``
    Images K selected per active-learning step (default ``10``).
``DBSAL_BUDGET``
    Total labeling budget in ``DBSAL_BUDGET_UNIT``; unset, ``none`` or ``unlimited`` for no limit.
``DBSAL_BUDGET_UNIT``
    What the budget counts: ``superpixels`` (default), ``pixels`` or ``images``.
``DBSAL_N_SEGMENTS``
    Target number of superpixels per image (default ``300``).
``DBSAL_SLIC_ALGORITHM``
    OpenCV SLIC variant: ``SLICO`` (default), ``SLIC`` or ``MSLIC``.
``DBSAL_COMPACTNESS``
    SLIC compactness (OpenCV's ``ruler``), a positive number (default ``10``).
``DBSAL_MC_SAMPLES``
    Monte Carlo dropout passes per image (default ``20``).
``DBSAL_UNCERTAINTY``
    Pixel heuristic: ``entropy`` (default), ``bald``, ``margin`` or ``authors`` (the paper
    code's BALD variant).
``DBSAL_SPLIT``
    Superpixel split per image: ``natural_breaks`` (default, the paper's dynamic budget),
    ``kmeans`` or ``static`` (the top ``DBSAL_STATIC_FRACTION`` of superpixels).
``DBSAL_STATIC_FRACTION``
    Fraction of superpixels queried per image by the static split, in (0, 1] (default ``0.275``).
``DBSAL_EPOCHS``
    Training epochs per run (default ``20``).
``DBSAL_BATCH_SIZE``
    Training batch size (default ``4``).
``DBSAL_LR``
    Adam learning rate (default ``1e-4``).
``DBSAL_CLASS_WEIGHTED``
    Weight the loss by inverse class frequency (default ``true``).
``DBSAL_FINE_TUNE``
    Start each run from the previous checkpoint instead of from scratch (default ``true``).
``DBSAL_MAX_SIDE``
    Longest image side used for training and scoring; larger images are downscaled
    (default ``512``).
``DBSAL_TRAIN_AFTER``
    Annotation events that trigger a training run (default ``5``); ``0`` trains only on
    "Start Training".
``DBSAL_MODEL_TITLE``
    The backend's title, and the ``model_version`` of every prediction it pushes (default
    ``dbsal``). Label Studio sorts tasks by prediction score only for the project's model
    version, which connecting sets to this title.
``DBSAL_SEED``
    Seed for every random choice (default ``0``).

Booleans accept ``true/false``, ``1/0``, ``yes/no`` and ``on/off`` in any case.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbsal_backend.selection import BUDGET_UNITS, SPLIT_METHODS

logger = logging.getLogger(__name__)

# Copies of engine names (``networks.ARCHITECTURES``, ``superpixels.ALGORITHMS``,
# ``uncertainty.HEURISTICS``), so that reading settings imports neither torch nor OpenCV;
# tests/test_settings.py checks they agree.
ARCHS = ("unet", "efficientnet_lite0", "mobilenet_v3_large", "resnet50")
SLIC_ALGORITHMS = ("SLICO", "SLIC", "MSLIC")
UNCERTAINTIES = ("entropy", "bald", "margin", "authors")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, repr=False)
class Settings:
    """Backend configuration; see the module docstring for each variable.

    Build it with :meth:`from_env`; the constructor does no validation of its own.
    """

    label_studio_url: str = "http://localhost:8080"  # LABEL_STUDIO_URL
    label_studio_api_key: str | None = None  # LABEL_STUDIO_API_KEY (masked in repr)
    model_dir: Path = Path("./models")  # MODEL_DIR
    log_level: str = "INFO"  # LOG_LEVEL
    host: str = "127.0.0.1"  # HOST
    port: int = 9090  # PORT
    arch: str = "efficientnet_lite0"  # DBSAL_ARCH
    pretrained: bool = True  # DBSAL_PRETRAINED
    device: str = "auto"  # DBSAL_DEVICE
    initial_batch: int = 10  # DBSAL_INITIAL_BATCH
    step_size: int = 10  # DBSAL_STEP_SIZE
    budget: int | None = None  # DBSAL_BUDGET (None: unlimited)
    budget_unit: str = "superpixels"  # DBSAL_BUDGET_UNIT
    n_segments: int = 300  # DBSAL_N_SEGMENTS
    slic_algorithm: str = "SLICO"  # DBSAL_SLIC_ALGORITHM
    compactness: float = 10.0  # DBSAL_COMPACTNESS
    mc_samples: int = 20  # DBSAL_MC_SAMPLES
    uncertainty: str = "entropy"  # DBSAL_UNCERTAINTY
    split: str = "natural_breaks"  # DBSAL_SPLIT
    static_fraction: float = 0.275  # DBSAL_STATIC_FRACTION
    epochs: int = 20  # DBSAL_EPOCHS
    batch_size: int = 4  # DBSAL_BATCH_SIZE
    lr: float = 1e-4  # DBSAL_LR
    class_weighted: bool = True  # DBSAL_CLASS_WEIGHTED
    fine_tune: bool = True  # DBSAL_FINE_TUNE
    max_side: int = 512  # DBSAL_MAX_SIDE
    train_after: int = 5  # DBSAL_TRAIN_AFTER (0: only "Start Training")
    model_title: str = "dbsal"  # DBSAL_MODEL_TITLE
    seed: int = 0  # DBSAL_SEED

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable.

        Parameters
        ----------
        environ : mapping, optional
            Where to read from; ``os.environ`` when omitted.

        Returns
        -------
        Settings

        Raises
        ------
        ValueError
            If a variable holds a value it does not accept.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (field, parse) in _VARIABLES.items():
            raw = environ.get(name, "").strip()
            if raw:
                try:
                    values[field] = parse(raw)
                except ValueError as exc:
                    raise ValueError(f"{name}={raw!r} is invalid: {exc}") from None
        unknown = sorted(k for k in environ if k.startswith("DBSAL_") and k not in _VARIABLES)
        if unknown:
            logger.warning("ignoring unknown DBSAL_ variables: %s", ", ".join(unknown))
        return cls(**values)

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "label_studio_api_key" and value is not None:
                value = "***"
            fields.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(fields)})"


def _choice(options: tuple[str, ...], *, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    expected = f"expected an integer >= {minimum}"
    if maximum is not None:
        expected += f" and <= {maximum}"

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(expected) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(expected)
        return value

    return parse


def _float(low: float, high: float | None = None) -> Callable[[str], float]:
    expected = f"expected a number > {low}" + (f" and <= {high}" if high is not None else "")

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(expected) from None
        if not math.isfinite(value) or value <= low or (high is not None and value > high):
            raise ValueError(expected)
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw.split("://", 1)[1]) == 0:
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _budget(raw: str) -> int | None:
    if raw.lower() in ("none", "unlimited"):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("expected a positive integer, 'none' or 'unlimited'") from None
    if value <= 0:
        raise ValueError("expected a positive integer, 'none' or 'unlimited'")
    return value


def _device(raw: str) -> str:
    value = raw.lower()
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ValueError("expected auto, cpu, cuda or cuda:N")


def _text(raw: str) -> str:
    return raw


#: variable name -> (Settings field, parser of a non-empty stripped value)
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "LABEL_STUDIO_URL": ("label_studio_url", _url),
    "LABEL_STUDIO_API_KEY": ("label_studio_api_key", _text),
    "MODEL_DIR": ("model_dir", Path),
    "LOG_LEVEL": ("log_level", _choice(LOG_LEVELS, upper=True)),
    "HOST": ("host", _text),
    "PORT": ("port", _int(1, 65535)),
    "DBSAL_ARCH": ("arch", _choice(ARCHS)),
    "DBSAL_PRETRAINED": ("pretrained", _bool),
    "DBSAL_DEVICE": ("device", _device),
    "DBSAL_INITIAL_BATCH": ("initial_batch", _int(1)),
    "DBSAL_STEP_SIZE": ("step_size", _int(1)),
    "DBSAL_BUDGET": ("budget", _budget),
    "DBSAL_BUDGET_UNIT": ("budget_unit", _choice(BUDGET_UNITS)),
    "DBSAL_N_SEGMENTS": ("n_segments", _int(2)),
    "DBSAL_SLIC_ALGORITHM": ("slic_algorithm", _choice(SLIC_ALGORITHMS, upper=True)),
    "DBSAL_COMPACTNESS": ("compactness", _float(0.0)),
    "DBSAL_MC_SAMPLES": ("mc_samples", _int(1)),
    "DBSAL_UNCERTAINTY": ("uncertainty", _choice(UNCERTAINTIES)),
    "DBSAL_SPLIT": ("split", _choice(SPLIT_METHODS)),
    "DBSAL_STATIC_FRACTION": ("static_fraction", _float(0.0, 1.0)),
    "DBSAL_EPOCHS": ("epochs", _int(1)),
    "DBSAL_BATCH_SIZE": ("batch_size", _int(1)),
    "DBSAL_LR": ("lr", _float(0.0)),
    "DBSAL_CLASS_WEIGHTED": ("class_weighted", _bool),
    "DBSAL_FINE_TUNE": ("fine_tune", _bool),
    "DBSAL_MAX_SIDE": ("max_side", _int(16)),
    "DBSAL_TRAIN_AFTER": ("train_after", _int(0)),
    "DBSAL_MODEL_TITLE": ("model_title", _text),
    "DBSAL_SEED": ("seed", _int(0)),
}
