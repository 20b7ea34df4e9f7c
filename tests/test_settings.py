"""Tests for dbsal_backend.server.settings: defaults, parsing, errors naming the variable, secrets."""

import inspect
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from dbsal_backend.server import settings as settings_module
from dbsal_backend.engine.active import QueryPolicy
from dbsal_backend.engine.labeling_budget import Budget
from dbsal_backend.labelstudio.images import origin
from dbsal_backend.server.settings import Settings
from dbsal_backend.engine.superpixels import SlicParams
from dbsal_backend.engine.training import Recipe

# What the backend does when nothing is set (the README's settings table).
DEFAULTS = {
    "label_studio_url": "http://localhost:8080", "label_studio_api_key": None,
    "model_dir": Path("./models"), "basic_auth_user": None, "basic_auth_pass": None,
    "log_level": "INFO", "host": "127.0.0.1", "port": 9090, "ray_address": None,
    "public_url": None, "allowed_image_origins": [], "max_image_pixels": 50_000_000,
    "max_image_bytes": 64 * 2**20, "image_timeout": 30.0, "max_request_bytes": 32 * 2**20,
    "max_tasks_per_request": 1000, "request_timeout": 30.0, "set_sampling": True,
    "set_instructions": True,
    "arch": "efficientnet_lite0", "pretrained": True, "device": "auto", "start": "images",
    "start_regions": 40, "initial_batch": None,
    "step_size": 10, "budget": None, "budget_unit": "regions", "n_segments": 300,
    "slic_algorithm": "SLICO", "compactness": 10.0, "mc_samples": 20, "uncertainty": "entropy",
    "split": "natural_breaks", "split_scope": "image", "static_fraction": 0.275,
    "regions": "auto", "answers": "auto", "class_balanced": False, "max_regions": 40, "smoothing": 2,
    "diversity": 1,
    "first_epochs": None, "epochs": 20, "batch_size": 8, "lr": 1e-3, "class_weighted": True,
    "fine_tune": "last", "self_label": None, "trim": 0.2, "max_side": 240, "train_after": 5, "model_title": "dbsal", "seed": 0,
    "score_batch_size": 4, "prefetch": 4, "score_workers": 0, "max_concurrent_runs": 1, "run_threads": 0, "run_niceness": 10,
}

# One value other than the default for every variable, and what it parses to.
EVERY_VARIABLE = {
    "LABEL_STUDIO_URL": ("https://ls.example.org/", "label_studio_url", "https://ls.example.org"),
    "MODEL_DIR": ("/data/models", "model_dir", Path("/data/models")),
    "BASIC_AUTH_USER": ("alice", "basic_auth_user", "alice"),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "HOST": ("0.0.0.0", "host", "0.0.0.0"),
    "PORT": ("9191", "port", 9191),
    "RAY_ADDRESS": ("ray://head:10001", "ray_address", "ray://head:10001"),
    "DBSAL_PUBLIC_URL": ("http://backend:9090/", "public_url", "http://backend:9090"),
    "DBSAL_ALLOWED_IMAGE_ORIGINS": ("https://img.example.org", "allowed_image_origins",
                                    ["https://img.example.org:443"]),
    "DBSAL_MAX_IMAGE_PIXELS": ("1000", "max_image_pixels", 1000),
    "DBSAL_MAX_IMAGE_BYTES": ("2048", "max_image_bytes", 2048),
    "DBSAL_IMAGE_TIMEOUT": ("2.5", "image_timeout", 2.5),
    "DBSAL_MAX_REQUEST_BYTES": ("4096", "max_request_bytes", 4096),
    "DBSAL_MAX_TASKS_PER_REQUEST": ("7", "max_tasks_per_request", 7),
    "DBSAL_REQUEST_TIMEOUT": ("2.5", "request_timeout", 2.5),
    "DBSAL_SET_SAMPLING": ("false", "set_sampling", False),
    "DBSAL_SET_INSTRUCTIONS": ("0", "set_instructions", False),
    "DBSAL_ARCH": ("UNet", "arch", "unet"),
    "DBSAL_PRETRAINED": ("no", "pretrained", False),
    "DBSAL_DEVICE": ("CUDA:1", "device", "cuda:1"),
    "DBSAL_START": ("Regions", "start", "regions"),
    "DBSAL_START_REGIONS": ("12", "start_regions", 12),
    "DBSAL_INITIAL_BATCH": ("3", "initial_batch", 3),
    "DBSAL_STEP_SIZE": ("7", "step_size", 7),
    "DBSAL_BUDGET": ("5000", "budget", 5000),
    "DBSAL_BUDGET_UNIT": ("Pixels", "budget_unit", "pixels"),
    "DBSAL_N_SEGMENTS": ("77", "n_segments", 77),
    "DBSAL_SLIC_ALGORITHM": ("mslic", "slic_algorithm", "MSLIC"),
    "DBSAL_COMPACTNESS": ("20.5", "compactness", 20.5),
    "DBSAL_MC_SAMPLES": ("5", "mc_samples", 5),
    "DBSAL_UNCERTAINTY": ("BALD", "uncertainty", "bald"),
    "DBSAL_SPLIT": ("static", "split", "static"),
    "DBSAL_SPLIT_SCOPE": ("STEP", "split_scope", "step"),
    "DBSAL_STATIC_FRACTION": ("0.5", "static_fraction", 0.5),
    "DBSAL_REGIONS": ("Class", "regions", "class"),
    "DBSAL_ANSWERS": ("Repaint", "answers", "repaint"),
    "DBSAL_CLASS_BALANCED": ("yes", "class_balanced", True),
    "DBSAL_MAX_REGIONS": ("12", "max_regions", 12),
    "DBSAL_SMOOTHING": ("0", "smoothing", 0),
    "DBSAL_DIVERSITY": ("3", "diversity", 3),
    "DBSAL_FIRST_EPOCHS": ("9", "first_epochs", 9),
    "DBSAL_EPOCHS": ("2", "epochs", 2),
    "DBSAL_BATCH_SIZE": ("3", "batch_size", 3),
    "DBSAL_LR": ("3e-4", "lr", 3e-4),
    "DBSAL_CLASS_WEIGHTED": ("off", "class_weighted", False),
    "DBSAL_FINE_TUNE": ("First", "fine_tune", "first"),
    "DBSAL_SELF_LABEL": ("0.9", "self_label", 0.9),
    "DBSAL_TRIM": ("0.2", "trim", 0.2),
    "DBSAL_MAX_SIDE": ("256", "max_side", 256),
    "DBSAL_TRAIN_AFTER": ("0", "train_after", 0),
    "DBSAL_MODEL_TITLE": ("weeds-v1", "model_title", "weeds-v1"),
    "DBSAL_SEED": ("42", "seed", 42),
    "DBSAL_SCORE_BATCH_SIZE": ("2", "score_batch_size", 2),
    "DBSAL_PREFETCH": ("0", "prefetch", 0),
    "DBSAL_SCORE_WORKERS": ("3", "score_workers", 3),
    "DBSAL_MAX_CONCURRENT_RUNS": ("3", "max_concurrent_runs", 3),
    "DBSAL_RUN_THREADS": ("2", "run_threads", 2),
    "DBSAL_RUN_NICENESS": ("0", "run_niceness", 0),
}
SECRETS = {"LABEL_STUDIO_API_KEY": "s3cr3t-token-value", "BASIC_AUTH_PASS": "hunter2-pass"}


def test_defaults_when_nothing_is_set(monkeypatch):
    monkeypatch.setenv("DBSAL_EPOCHS", "3")  # from_env(dict) reads the dict only
    monkeypatch.setenv("PORT", "1234")
    s = Settings.from_env({})
    assert {name: getattr(s, name) for name in Settings.model_fields} == DEFAULTS
    assert s.auth is None and s.api_key == ""


def test_the_process_environment_is_the_default_source(monkeypatch):
    monkeypatch.setenv("DBSAL_EPOCHS", "3")
    monkeypatch.setenv("PORT", "1234")
    s = Settings.from_env()
    assert (s.epochs, s.port) == (3, 1234)


def test_every_variable_is_parsed():
    assert {field for _, field, _ in EVERY_VARIABLE.values()} | {
        "label_studio_api_key", "basic_auth_pass"} == set(Settings.model_fields)
    s = Settings.from_env({name: raw for name, (raw, _, _) in EVERY_VARIABLE.items()} | SECRETS)
    for name, (_, field, expected) in EVERY_VARIABLE.items():
        assert getattr(s, field) == expected, name
    assert s.api_key == "s3cr3t-token-value"
    assert s.auth == ("alice", "hunter2-pass")


@pytest.mark.parametrize("raw, expected", [("true", True), ("YES", True), ("On", True),
                                           ("1", True), ("false", False), ("no", False),
                                           ("OFF", False), ("0", False)])
def test_booleans(raw, expected):
    assert Settings.from_env({"DBSAL_PRETRAINED": raw}).pretrained is expected


@pytest.mark.parametrize("raw, expected", [("first", "first"), ("LAST", "last"), ("off", "off"),
                                           ("true", "last"), ("Yes", "last"), ("1", "last"),
                                           ("false", "off"), ("NO", "off"), ("0", "off")])
def test_fine_tune_names_the_model_and_still_reads_a_boolean(raw, expected):
    """``DBSAL_FINE_TUNE`` was a boolean before it named the model a run fine-tunes."""
    assert Settings.from_env({"DBSAL_FINE_TUNE": raw}).fine_tune == expected
    assert Settings.model_validate({"fine_tune": expected == "last"}).fine_tune in ("last", "off")


@pytest.mark.parametrize("name", ["DBSAL_BUDGET", "DBSAL_MAX_REGIONS", "DBSAL_SELF_LABEL",
                                  "DBSAL_TRIM"])
@pytest.mark.parametrize("raw", ["none", "Unlimited", "NONE"])
def test_none_and_unlimited(name, raw):
    field = name.removeprefix("DBSAL_").lower()
    assert getattr(Settings.from_env({name: raw}), field) is None


def test_regions_auto_follows_the_config():
    s = Settings.from_env({})
    assert s.query_policy(polygons=True).grouping == "superpixel"
    assert s.query_policy(polygons=False).grouping == "class"
    fixed = Settings.from_env({"DBSAL_REGIONS": "connected"})
    assert fixed.query_policy(polygons=True).grouping == "connected"


def test_empty_and_blank_values_take_the_default():
    s = Settings.from_env({"PORT": "", "DBSAL_EPOCHS": "   ", "LABEL_STUDIO_API_KEY": "",
                           "DBSAL_ALLOWED_IMAGE_ORIGINS": " "})
    assert (s.port, s.epochs, s.label_studio_api_key, s.allowed_image_origins) == (
        9090, 20, None, [])


def test_allowed_image_origins_are_parsed_and_normalised():
    raw = " https://Img.Example.ORG , http://cdn.example.org:8080/,,http://[::1]:8000 "
    origins = Settings.from_env({"DBSAL_ALLOWED_IMAGE_ORIGINS": raw}).allowed_image_origins
    assert origins == ["https://img.example.org:443", "http://cdn.example.org:8080",
                       "http://[::1]:8000"]
    # The fetcher compares them with the origins of image URLs: they must match.
    for url, allowed in zip(["https://IMG.example.org/a.png", "http://cdn.example.org:8080/b",
                             "http://[::1]:8000/c.jpg"], origins):
        assert origin(url) == origin(allowed)


@pytest.mark.parametrize("raw", ["http://img.example.org/images", "http://img.example.org?x=1",
                                 "ftp://img.example.org", "img.example.org",
                                 "http://ok.org,http://bad.org/path"])
def test_an_allowed_image_origin_must_be_an_origin(raw):
    with pytest.raises(ValueError, match="DBSAL_ALLOWED_IMAGE_ORIGINS"):
        Settings.from_env({"DBSAL_ALLOWED_IMAGE_ORIGINS": raw})


@pytest.mark.parametrize("name, raw", [
    ("LABEL_STUDIO_URL", "localhost:8080"), ("LABEL_STUDIO_URL", "ftp://ls"),
    ("LOG_LEVEL", "LOUD"), ("PORT", "0"), ("PORT", "65536"), ("PORT", "http"),
    ("DBSAL_PUBLIC_URL", "backend"), ("DBSAL_MAX_IMAGE_PIXELS", "0"),
    ("DBSAL_MAX_IMAGE_BYTES", "-1"), ("DBSAL_IMAGE_TIMEOUT", "0"), ("DBSAL_IMAGE_TIMEOUT", "inf"),
    ("DBSAL_MAX_REQUEST_BYTES", "100"), ("DBSAL_MAX_TASKS_PER_REQUEST", "0"),
    ("DBSAL_REQUEST_TIMEOUT", "0"), ("DBSAL_REQUEST_TIMEOUT", "nan"),
    ("DBSAL_SET_SAMPLING", "maybe"), ("DBSAL_ARCH", "vgg"), ("DBSAL_PRETRAINED", "maybe"),
    ("DBSAL_DEVICE", "gpu"), ("DBSAL_DEVICE", "cuda:x"), ("DBSAL_INITIAL_BATCH", "0"),
    ("DBSAL_STEP_SIZE", "2.5"), ("DBSAL_BUDGET", "-3"), ("DBSAL_BUDGET", "0"),
    ("DBSAL_BUDGET_UNIT", "clicks"), ("DBSAL_N_SEGMENTS", "1"),
    ("DBSAL_SLIC_ALGORITHM", "felzenszwalb"), ("DBSAL_COMPACTNESS", "0"),
    ("DBSAL_COMPACTNESS", "inf"), ("DBSAL_MC_SAMPLES", "-1"), ("DBSAL_UNCERTAINTY", "variance"),
    ("DBSAL_SPLIT", "jenks"), ("DBSAL_SPLIT_SCOPE", "batch"), ("DBSAL_STATIC_FRACTION", "1.5"),
    ("DBSAL_STATIC_FRACTION", "0"), ("DBSAL_STATIC_FRACTION", "nan"),
    ("DBSAL_REGIONS", "2"), ("DBSAL_ANSWERS", "paint"), ("DBSAL_CLASS_BALANCED", "sometimes"),
    ("DBSAL_MAX_REGIONS", "0"), ("DBSAL_SMOOTHING", "-1"), ("DBSAL_FIRST_EPOCHS", "0"),
    ("DBSAL_EPOCHS", "ten"), ("DBSAL_BATCH_SIZE", "0"), ("DBSAL_LR", "nan"), ("DBSAL_LR", "inf"),
    ("DBSAL_LR", "-1e-3"), ("DBSAL_CLASS_WEIGHTED", "2"), ("DBSAL_FINE_TUNE", "sometimes"),
    ("DBSAL_SELF_LABEL", "0"), ("DBSAL_SELF_LABEL", "1.5"), ("DBSAL_SELF_LABEL", "nan"),
    ("DBSAL_TRIM", "0"), ("DBSAL_TRIM", "0.6"), ("DBSAL_TRIM", "nan"),
    ("DBSAL_MAX_SIDE", "8"), ("DBSAL_TRAIN_AFTER", "-1"), ("DBSAL_MODEL_TITLE", " "),
    ("DBSAL_SEED", "-5"), ("DBSAL_SCORE_BATCH_SIZE", "0"), ("DBSAL_PREFETCH", "-1"),
    ("DBSAL_SCORE_WORKERS", "-1"), ("DBSAL_MAX_CONCURRENT_RUNS", "0"),
])
def test_bad_values_name_the_variable(name, raw):
    if name == "DBSAL_MODEL_TITLE":  # blank means unset: the default title
        assert Settings.from_env({name: raw}).model_title == "dbsal"
        return
    with pytest.raises(ValueError) as info:
        Settings.from_env({name: raw})
    message = str(info.value)
    assert message.startswith("invalid settings: ") and f"{name}={raw.strip()!r}" in message


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(ValueError) as info:
        Settings.from_env({"PORT": "0", "DBSAL_EPOCHS": "ten", "DBSAL_SEED": "1"})
    assert "PORT=" in str(info.value) and "DBSAL_EPOCHS=" in str(info.value)
    assert "DBSAL_SEED" not in str(info.value)


def test_secrets_are_never_shown():
    s = Settings.from_env(SECRETS | {"BASIC_AUTH_USER": "alice"})
    for text in (repr(s), str(s), repr(s.model_dump()), s.model_dump_json()):
        for secret in SECRETS.values():
            assert secret not in text
    assert s.api_key == SECRETS["LABEL_STUDIO_API_KEY"]
    assert s.auth == ("alice", SECRETS["BASIC_AUTH_PASS"])
    # Only the user, or only the password: no basic auth.
    assert Settings.from_env({"BASIC_AUTH_USER": "alice"}).auth is None
    assert Settings.from_env({"BASIC_AUTH_PASS": "x"}).auth is None


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(ValidationError):
        s.port = 1


def test_unknown_dbsal_variables_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="dbsal_backend.server.settings"):
        s = Settings.from_env({"DBSAL_EPOCH": "3", "DBSAL_LABEL_STUDIO_URL": "http://x",
                               "DBSAL_EPOCHS": "4", "OTHER_THING": "1"})
    assert "DBSAL_EPOCH," in caplog.text or caplog.text.rstrip().endswith("DBSAL_EPOCH")
    assert "DBSAL_LABEL_STUDIO_URL" in caplog.text  # the server's variables have no prefix
    assert "DBSAL_EPOCHS" not in caplog.text and "OTHER_THING" not in caplog.text
    assert s.epochs == 4 and s.label_studio_url == "http://localhost:8080"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbsal_backend.server.settings"):
        Settings.from_env({"DBSAL_EPOCHS": "4"})
    assert caplog.text == ""


def test_what_the_engine_takes():
    s = Settings.from_env({"DBSAL_STEP_SIZE": "3", "DBSAL_SPLIT": "static",
                           "DBSAL_SPLIT_SCOPE": "step", "DBSAL_STATIC_FRACTION": "0.5",
                           "DBSAL_REGIONS": "superpixel", "DBSAL_CLASS_BALANCED": "yes",
                           "DBSAL_MAX_REGIONS": "4", "DBSAL_SMOOTHING": "1",
                           "DBSAL_DIVERSITY": "2",
                           "DBSAL_SLIC_ALGORITHM": "slico", "DBSAL_N_SEGMENTS": "99",
                           "DBSAL_COMPACTNESS": "7.5", "DBSAL_FIRST_EPOCHS": "9",
                           "DBSAL_EPOCHS": "2", "DBSAL_BATCH_SIZE": "5", "DBSAL_LR": "0.01",
                           "DBSAL_CLASS_WEIGHTED": "no", "DBSAL_SEED": "7",
                           "DBSAL_SELF_LABEL": "0.8", "DBSAL_TRIM": "0.1", "DBSAL_BUDGET": "100",
                           "DBSAL_BUDGET_UNIT": "images"})
    assert s.query_policy() == QueryPolicy(images=3, split="static", scope="step",
                                           static_fraction=0.5, grouping="superpixel",
                                           class_balanced=True, max_regions=4, smoothing=1,
                                           diversity=2)
    assert s.slic_params() == SlicParams(algorithm="SLICO", n_segments=99, ruler=7.5)
    assert s.recipe() == Recipe(epochs=2, batch_size=5, lr=0.01, class_weighted=False, seed=7,
                                self_label=0.8, trim=0.1)
    # the first run has no model of its own to take self-labels from or to judge labels by
    assert s.recipe(first=True) == Recipe(epochs=9, batch_size=5, lr=0.01, class_weighted=False,
                                          seed=7)
    assert s.labeling_budget() == Budget(limit=100, unit="images")
    assert Settings.from_env({}).labeling_budget() == Budget(limit=None, unit="regions")


def test_every_accepted_value_builds_the_engine_objects():
    """Values the settings accept never fail later, when the engine objects are built."""
    for env in ({}, {"DBSAL_STATIC_FRACTION": "1", "DBSAL_N_SEGMENTS": "2",
                     "DBSAL_COMPACTNESS": "1e-9", "DBSAL_LR": "1e-12",
                     "DBSAL_SELF_LABEL": "1", "DBSAL_TRIM": "0.5"}):
        s = Settings.from_env(env)
        s.query_policy(), s.slic_params(), s.recipe(), s.recipe(first=True), s.labeling_budget()


def test_choices_match_the_engine():
    from dbsal_backend.engine.active import SCOPES
    from dbsal_backend.engine.labeling_budget import BUDGET_UNITS
    from dbsal_backend.engine.networks import ARCHITECTURES
    from dbsal_backend.engine.selection import SPLIT_METHODS
    from dbsal_backend.engine.superpixels import ALGORITHMS
    from dbsal_backend.engine.training import FINE_TUNE
    from dbsal_backend.engine.uncertainty import HEURISTICS

    assert set(settings_module.ARCHS) == set(ARCHITECTURES)
    assert set(settings_module.SLIC_ALGORITHMS) == set(ALGORITHMS)
    assert set(settings_module.UNCERTAINTIES) == set(HEURISTICS)
    for name, choices in (("split", SPLIT_METHODS), ("split_scope", SCOPES),
                          ("budget_unit", BUDGET_UNITS), ("fine_tune", FINE_TUNE)):
        for choice in choices:
            assert getattr(Settings.from_env({f"DBSAL_{name.upper()}": choice}), name) == choice


def test_the_engine_and_the_simulator_share_the_backend_defaults():
    from dbsal_backend.engine.scoring import Scorer
    from dbsal_backend.simulator import SimConfig

    s = Settings.model_validate({})
    assert s.slic_params() == SlicParams()
    # a bare recipe trims nothing; the backend trims dominant-class answers (a config with
    # polygons), not repainted ones (brushes alone: every labeled pixel painted)
    assert s.recipe() == Recipe(trim=0.2) and s.recipe(polygons=False) == Recipe()
    assert s.recipe(first=True).trim is None
    assert Settings.model_validate({"answers": "repaint"}).recipe().trim is None
    policy, bare = s.query_policy(), QueryPolicy()
    for name in ("images", "split", "scope", "static_fraction", "class_balanced", "diversity"):
        assert getattr(policy, name) == getattr(bare, name), name
    # a bare policy is the plain mechanism; the backend's regions are its own choice
    assert (bare.grouping, bare.max_regions, bare.smoothing) == ("connected", None, 0)
    assert (policy.grouping, policy.max_regions, policy.smoothing) == ("superpixel", 40, 2)
    cfg = SimConfig(n_classes=2)
    assert (cfg.arch, cfg.pretrained, cfg.heuristic, cfg.mc_samples, cfg.max_side,
            cfg.first_epochs, cfg.init_images, cfg.images_per_step, cfg.recipe) == (
        s.arch, s.pretrained, s.uncertainty, s.mc_samples, s.max_side,
        s.recipe(first=True).epochs, s.seed_tasks(), s.step_size,
        replace(s.recipe(), trim=None))  # trim: the strategy's
    scorer = inspect.signature(Scorer).parameters
    assert (scorer["heuristic"].default, scorer["mc_samples"].default,
            scorer["max_side"].default, scorer["batch_size"].default) == (
        s.uncertainty, s.mc_samples, s.max_side, s.score_batch_size)


def test_only_from_env_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DBSAL_EPOCHS", "3")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-the-environment")
    for s in (Settings(), Settings.model_validate({}), Settings.model_validate({"seed": 1})):
        assert s.epochs == 20 and s.label_studio_api_key is None
    assert Settings.model_validate({"epochs": "4"}).epochs == 4


def test_the_start_decides_the_seed_tasks_and_the_first_epochs_unless_they_are_set():
    images = Settings()
    assert (images.start_for(), images.seed_tasks(), images.recipe(first=True).epochs) == (
        "images", 5, 120)
    regions = Settings.from_env({"DBSAL_START": "regions"})
    assert (regions.start_for(), regions.seed_tasks(), regions.recipe(first=True).epochs) == (
        "regions", 30, 20)
    assert regions.recipe().epochs == 20 and regions.recipe().trim == 0.2  # later runs: the same
    # brush layers draw slowly: a brush-only project starts with whole images
    assert (regions.start_for(polygons=False), regions.seed_tasks(polygons=False),
            regions.recipe(first=True, polygons=False).epochs) == ("images", 5, 120)
    set_ = Settings.from_env({"DBSAL_START": "regions", "DBSAL_INITIAL_BATCH": "7",
                              "DBSAL_FIRST_EPOCHS": "auto"})
    assert (set_.seed_tasks(), set_.recipe(first=True).epochs) == (7, 20)
    assert Settings.from_env({"DBSAL_FIRST_EPOCHS": "9"}).recipe(first=True).epochs == 9
    with pytest.raises(ValueError, match="DBSAL_START="):
        Settings.from_env({"DBSAL_START": "pixels"})
