"""Tests for dbsal_backend.engine.metrics: the confusion matrix, IoU, mIoU and evaluate."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dbsal_backend.engine.constants import IGNORE_INDEX
from dbsal_backend.engine.metrics import confusion_matrix, evaluate, iou_per_class, miou


def test_confusion_matrix_and_miou_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 3]])
    cm = confusion_matrix(pred, target, 4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    # IoU: class 0 = 1/(2+2-1), 1 = 2/(3+3-2), 2 = 1/(2+1-1), 3 = 0/(0+1-0)
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 1 / 2, 1 / 2, 0.0])
    assert miou(cm) == pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 0) / 4)
    absent = confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3)
    assert np.isnan(iou_per_class(absent)[2]) and miou(absent) == 1.0
    assert math.isnan(miou(np.zeros((2, 2), int)))
    with pytest.raises(ValueError, match="pred values"):
        confusion_matrix(np.array([4]), np.array([0]), 4)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros(2, int), np.zeros(3, int), 2)


# ---------------------------------------------------------------- evaluate


class _Threshold(nn.Module):
    """Predicts class 1 where the red channel is above 0.5 (a fixed, known model)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        logit = self.scale * (x[:, :1] - 0.5)
        return torch.cat([-logit, logit], dim=1)


def test_evaluate_with_a_known_model():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, :, 0] = 255  # first row predicted as class 1
    label = np.array([[1, 1, 0], [0, 0, IGNORE_INDEX]], np.uint8)
    model = _Threshold().train()
    scores = evaluate(model, [image], [label], 3)
    # Truth 0 at (0,2), (1,0), (1,1): predicted 1, 0, 0. Truth 1 at (0,0), (0,1): predicted 1, 1.
    np.testing.assert_array_equal(scores["confusion"], [[2, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_allclose(scores["iou"][:2], [2 / 3, 2 / 3])
    assert np.isnan(scores["iou"][2])
    assert scores["miou"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)
    assert model.training  # mode restored


def test_evaluate_runs_at_the_working_size_and_scores_at_full_size():
    image = np.zeros((16, 24, 3), np.uint8)
    image[:, :12, 0] = 255
    label = np.zeros((16, 24), np.uint8)
    label[:, :12] = 1
    model = _Threshold()
    scores = evaluate(model, [image], [label], 2, max_side=8)
    assert model.sizes == [(5, 8)]  # fit_side: the longer side shrunk to 8
    assert scores["confusion"].sum() == 16 * 24  # every full-size label pixel is scored
    assert scores["pixel_accuracy"] > 0.9
    # Labels larger than the image (an image already at the working size): logits are resized.
    small = image[::2, ::2]
    scores = evaluate(_Threshold(), [small], [label], 2)
    assert scores["confusion"].sum() == 16 * 24 and scores["pixel_accuracy"] > 0.9
