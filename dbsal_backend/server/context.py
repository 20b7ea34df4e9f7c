"""What the service's jobs share: settings, state, the Label Studio client, the serving models,
the superpixel cache, the labeling budget and where runs compute.

:class:`ServiceContext` holds them and makes the per-project tools the jobs ask for (an image
fetcher, the scorer of a served model, the query policy of a config). The jobs themselves live
in their own modules: :mod:`.connect` (confirming a connection), :mod:`.seed_batch`,
:mod:`.on_demand` (regions for tasks Label Studio opens) and :mod:`.training_run` (one run and
the step after it); :class:`~dbsal_backend.server.service.Service` wires them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..engine.active import QueryPolicy
from .compute import make_compute
from ..labelstudio.images import ImageFetcher
from ..labelstudio.label_config import LabelConfig, parse_label_config
from ..labelstudio.client import LabelStudioClient
from ..engine.devices import pick_device
from ..engine.scoring import Scorer
from ..engine.training import Recipe
from .serving import ServingModels
from .settings import Settings
from .state import ProjectRecord, StateStore
from ..engine.superpixels import SuperpixelCache

__all__ = ["NotConnected", "ServiceContext"]


class NotConnected(LookupError):
    """The project has not (or no longer) confirmed this backend."""

    def __init__(self, project: int) -> None:
        super().__init__(f"project {project} is not connected to this backend: connect it in "
                         f"the project's Settings > Model (Label Studio calls /setup), then "
                         f"wait a few seconds for the backend to confirm it")
        self.project = project


class ServiceContext:
    """The shared parts of the service, made once per process.

    Parameters
    ----------
    settings : Settings
    state : StateStore
    client_factory : callable, optional
        ``client_factory()`` opens a :class:`LabelStudioClient` (tests pass a fake).
    models : ServingModels, optional
        The models that answer; built from the settings when omitted.
    """

    def __init__(self, settings: Settings, state: StateStore,
                 client_factory: Callable[[], LabelStudioClient] | None = None,
                 models: ServingModels | None = None) -> None:
        self.settings = settings
        self.state = state
        self.client_factory = client_factory or (
            lambda: LabelStudioClient(settings.label_studio_url, settings.api_key))
        self.device = pick_device(settings.device)
        self.models = models or ServingModels(settings.model_dir, self.device)
        self.budget = settings.labeling_budget()
        self.slic = settings.slic_params()
        self.superpixels = SuperpixelCache(settings.model_dir / "superpixels", self.slic)
        self._compute = None

    @property
    def compute(self):
        """Where runs train and score (:func:`~dbsal_backend.server.compute.make_compute`; Ray when
        ``RAY_ADDRESS`` is set), made on first use (in the run's process)."""
        if self._compute is None:
            self._compute = make_compute(self.settings)
        return self._compute

    def require(self, project: int) -> ProjectRecord:
        """The record of a connected project; :class:`NotConnected` otherwise."""
        record = self.state.get(project)
        if record is None or not record.connected:
            raise NotConnected(project)
        return record

    def title(self, record: ProjectRecord) -> str:
        """The model version the project's predictions carry (the backend's title there)."""
        return record.title or self.settings.model_title

    def fetcher(self, client: LabelStudioClient) -> ImageFetcher:
        s = self.settings
        return ImageFetcher(s.label_studio_url, client.auth_header, s.allowed_image_origins,
                            cache_dir=s.model_dir / "images", max_bytes=s.max_image_bytes,
                            max_pixels=s.max_image_pixels, timeout=s.image_timeout)

    def scorer(self, served, n_classes: int) -> Scorer:
        """The scorer of a served model, made on first use (it takes an inference copy of the
        model) and kept with that model, so the requests it answers share it."""
        if served.scorer is None:
            s = self.settings
            served.scorer = Scorer(served.model, n_classes, heuristic=s.uncertainty,
                                   mc_samples=s.mc_samples, max_side=s.max_side, seed=s.seed,
                                   batch_size=s.score_batch_size, device=self.device,
                                   lock=served.lock,
                                   class_weights=served.meta.get("class_weights"))
        return served.scorer

    def policy(self, config: LabelConfig) -> QueryPolicy:
        """What a step asks in this project (``DBSAL_REGIONS=auto`` follows the config)."""
        return self.settings.query_policy(polygons=config.polygon_name is not None)

    def recipe(self, config: LabelConfig, first: bool) -> Recipe:
        """How a run in this project trains (``DBSAL_TRIM`` follows the config's answers)."""
        return self.settings.recipe(first=first, polygons=config.polygon_name is not None)

    @staticmethod
    def config(record: ProjectRecord) -> LabelConfig:
        return parse_label_config(record.label_config or "")

    def served(self, record: ProjectRecord, config: LabelConfig):
        return self.models.get(record.project_id, record.checkpoint, config.labels)
