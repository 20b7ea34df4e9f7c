"""Settings: defaults, parsing, validation messages, masking of the API key."""

import dataclasses
import logging
from pathlib import Path

import pytest

from dbsal_backend import settings as settings_module
from dbsal_backend.settings import Settings


def test_defaults_when_nothing_is_set():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.label_studio_url == "http://localhost:8080"
    assert s.label_studio_api_key is None
    assert s.model_dir == Path("./models")
    assert (s.log_level, s.host, s.port) == ("INFO", "127.0.0.1", 9090)
    assert (s.arch, s.pretrained, s.device) == ("efficientnet_lite0", True, "auto")
    assert (s.initial_batch, s.step_size, s.budget, s.budget_unit) == (10, 10, None, "superpixels")
    assert (s.n_segments, s.slic_algorithm, s.compactness, s.mc_samples) == (300, "SLICO", 10.0, 20)
    assert (s.uncertainty, s.split, s.static_fraction) == ("entropy", "natural_breaks", 0.275)
    assert (s.epochs, s.batch_size, s.lr, s.class_weighted, s.fine_tune) == (20, 4, 1e-4, True, True)
    assert (s.max_side, s.train_after, s.model_title, s.seed) == (512, 5, "dbsal", 0)


def test_every_variable_is_parsed():
    env = {
        "LABEL_STUDIO_URL": "https://ls.example.org/",
        "LABEL_STUDIO_API_KEY": "abc123",
        "MODEL_DIR": "/data/models",
        "LOG_LEVEL": "debug",
        "HOST": "0.0.0.0",
        "PORT": "9191",
        "DBSAL_ARCH": "unet",
        "DBSAL_PRETRAINED": "false",
        "DBSAL_DEVICE": "cuda:1",
        "DBSAL_INITIAL_BATCH": "3",
        "DBSAL_STEP_SIZE": "7",
        "DBSAL_BUDGET": "5000",
        "DBSAL_BUDGET_UNIT": "pixels",
        "DBSAL_N_SEGMENTS": "150",
        "DBSAL_SLIC_ALGORITHM": "mslic",
        "DBSAL_COMPACTNESS": "20.5",
        "DBSAL_MC_SAMPLES": "5",
        "DBSAL_UNCERTAINTY": "BALD",
        "DBSAL_SPLIT": "static",
        "DBSAL_STATIC_FRACTION": "0.5",
        "DBSAL_EPOCHS": "2",
        "DBSAL_BATCH_SIZE": "8",
        "DBSAL_LR": "3e-4",
        "DBSAL_CLASS_WEIGHTED": "no",
        "DBSAL_FINE_TUNE": "0",
        "DBSAL_MAX_SIDE": "256",
        "DBSAL_TRAIN_AFTER": "0",
        "DBSAL_MODEL_TITLE": "weeds-v1",
        "DBSAL_SEED": "42",
    }
    s = Settings.from_env(env)
    assert s.label_studio_url == "https://ls.example.org"  # trailing slash dropped
    assert s.label_studio_api_key == "abc123"
    assert s.model_dir == Path("/data/models")
    assert (s.log_level, s.host, s.port) == ("DEBUG", "0.0.0.0", 9191)
    assert (s.arch, s.pretrained, s.device) == ("unet", False, "cuda:1")
    assert (s.initial_batch, s.step_size, s.budget, s.budget_unit) == (3, 7, 5000, "pixels")
    assert (s.n_segments, s.slic_algorithm, s.compactness, s.mc_samples) == (150, "MSLIC", 20.5, 5)
    assert (s.uncertainty, s.split, s.static_fraction) == ("bald", "static", 0.5)
    assert (s.epochs, s.batch_size, s.lr, s.class_weighted, s.fine_tune) == (2, 8, 3e-4, False, False)
    assert (s.max_side, s.train_after, s.model_title, s.seed) == (256, 0, "weeds-v1", 42)


@pytest.mark.parametrize("raw,expected", [("true", True), ("YES", True), ("On", True), ("1", True),
                                          ("false", False), ("no", False), ("OFF", False), ("0", False)])
def test_booleans(raw, expected):
    assert Settings.from_env({"DBSAL_PRETRAINED": raw}).pretrained is expected


@pytest.mark.parametrize("raw", ["none", "Unlimited", ""])
def test_unlimited_budget(raw):
    assert Settings.from_env({"DBSAL_BUDGET": raw}).budget is None


def test_empty_and_blank_values_take_the_default():
    s = Settings.from_env({"PORT": "", "DBSAL_EPOCHS": "   ", "LABEL_STUDIO_API_KEY": ""})
    assert (s.port, s.epochs, s.label_studio_api_key) == (9090, 20, None)


@pytest.mark.parametrize(
    "name,raw,accepts",
    [
        ("LABEL_STUDIO_URL", "localhost:8080", "http:// or https://"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
        ("PORT", "0", "integer >= 1 and <= 65535"),
        ("PORT", "http", "integer"),
        ("DBSAL_ARCH", "vgg", "efficientnet_lite0"),
        ("DBSAL_PRETRAINED", "maybe", "true/false"),
        ("DBSAL_DEVICE", "gpu", "cuda:N"),
        ("DBSAL_INITIAL_BATCH", "0", ">= 1"),
        ("DBSAL_STEP_SIZE", "2.5", "integer"),
        ("DBSAL_BUDGET", "-3", "positive integer"),
        ("DBSAL_BUDGET_UNIT", "clicks", "superpixels"),
        ("DBSAL_N_SEGMENTS", "1", ">= 2"),
        ("DBSAL_SLIC_ALGORITHM", "felzenszwalb", "SLICO"),
        ("DBSAL_COMPACTNESS", "0", "> 0"),
        ("DBSAL_MC_SAMPLES", "-1", ">= 1"),
        ("DBSAL_UNCERTAINTY", "variance", "entropy"),
        ("DBSAL_SPLIT", "jenks", "natural_breaks"),
        ("DBSAL_STATIC_FRACTION", "1.5", "<= 1.0"),
        ("DBSAL_STATIC_FRACTION", "0", "> 0"),
        ("DBSAL_EPOCHS", "ten", "integer"),
        ("DBSAL_BATCH_SIZE", "0", ">= 1"),
        ("DBSAL_LR", "nan", "number > 0"),
        ("DBSAL_LR", "inf", "number > 0"),
        ("DBSAL_CLASS_WEIGHTED", "2", "true/false"),
        ("DBSAL_FINE_TUNE", "sometimes", "true/false"),
        ("DBSAL_MAX_SIDE", "8", ">= 16"),
        ("DBSAL_TRAIN_AFTER", "-1", ">= 0"),
        ("DBSAL_SEED", "-5", ">= 0"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(name, raw, accepts):
    with pytest.raises(ValueError) as info:
        Settings.from_env({name: raw})
    assert name in str(info.value)
    assert accepts in str(info.value)


def test_repr_masks_the_api_key():
    s = Settings.from_env({"LABEL_STUDIO_API_KEY": "s3cr3t-token-value"})
    assert "s3cr3t-token-value" not in repr(s)
    assert "label_studio_api_key='***'" in repr(s)
    assert "s3cr3t" not in str(s)
    assert "label_studio_api_key=None" in repr(Settings())


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1


def test_unknown_dbsal_variables_are_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="dbsal_backend.settings"):
        Settings.from_env({"DBSAL_EPOCH": "3"})
    assert "DBSAL_EPOCH" in caplog.text


def test_every_variable_is_documented():
    doc = settings_module.__doc__
    for name in settings_module._VARIABLES:
        assert f"``{name}``" in doc, name


def test_choices_match_the_engine():
    from dbsal_backend.networks import ARCHITECTURES
    from dbsal_backend.superpixels import ALGORITHMS
    from dbsal_backend.uncertainty import HEURISTICS

    assert set(settings_module.ARCHS) == set(ARCHITECTURES)
    assert set(settings_module.SLIC_ALGORITHMS) == set(ALGORITHMS)
    assert set(settings_module.UNCERTAINTIES) == set(HEURISTICS)
