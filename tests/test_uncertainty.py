"""Tests for dbsal_backend.engine.uncertainty: MC dropout and the pixel heuristics."""

import gc
import math
import threading

import pytest
import torch
from torch import nn

from dbsal_backend.engine.networks import UNet
from dbsal_backend.server.settings import Settings
from dbsal_backend.engine.uncertainty import (
    HEURISTICS,
    NEEDS_EXPECTED_ENTROPY,
    MCDropout,
    McStats,
    authors_bald,
    bald,
    enable_mc_dropout,
    entropy,
    margin,
    mc_dropout,
    pixel_uncertainty,
    predictive_entropy,
    shared_masks,
)


class TinySegmenter(nn.Module):
    """The networks contract in miniature: a deterministic encoder and a dropout head."""

    def __init__(self, n_classes: int = 3, p: float = 0.5):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout2d(p), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Dropout(p),
                                  nn.Conv2d(8, n_classes, 1))
        self.encode_calls = 0

    def encode(self, x):
        self.encode_calls += 1
        return self.encoder(x)

    def decode(self, features):
        return self.head(features)

    def forward(self, x):
        return self.decode(self.encode(x))


def make_model(n_classes=3, p=0.5, seed=0):
    torch.manual_seed(seed)
    model = TinySegmenter(n_classes, p)
    # Non-trivial running statistics, so that eval-mode batch norm is distinguishable.
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 8, 8))
    return model


def images(batch=2, size=8, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def stats_from_passes(passes):
    """McStats from an explicit T x B x C x H x W stack of probabilities (test reference)."""
    return McStats(passes.mean(0), entropy(passes, dim=2).mean(0))


# ---------------------------------------------------------------- entropy and heuristics


def test_entropy_uniform_is_log2_c_and_one_hot_is_zero():
    for c in (2, 3, 11):
        uniform = torch.full((1, c, 2, 2), 1.0 / c)
        assert torch.allclose(entropy(uniform, dim=1), torch.full((1, 2, 2), math.log2(c)))
    one_hot = torch.zeros(1, 4, 2, 2)
    one_hot[:, 2] = 1.0
    h = entropy(one_hot, dim=1)
    assert torch.equal(h, torch.zeros(1, 2, 2))  # 0 * log 0 = 0, no NaN


def test_entropy_dim_and_bits():
    p = torch.tensor([[0.5, 0.25, 0.25], [0.9, 0.1, 0.0]])
    assert torch.allclose(entropy(p, dim=1), torch.tensor([1.5, 0.4689956]))
    assert torch.allclose(entropy(p.T, dim=0), entropy(p, dim=1))


def test_heuristics_when_all_passes_agree():
    p = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    stats = stats_from_passes(torch.stack([p] * 5))
    h = entropy(p, dim=1)
    assert torch.allclose(predictive_entropy(stats), h)
    assert torch.equal(bald(stats), torch.zeros(1, 2, 2))
    assert torch.allclose(authors_bald(stats), 2 * h)


def test_heuristics_when_passes_disagree():
    # Two confident passes on different classes: the mean is 50/50, each pass has entropy 0.
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    stats = stats_from_passes(torch.stack([a, b]))
    assert torch.allclose(predictive_entropy(stats), torch.ones(1, 1, 1))
    assert torch.allclose(bald(stats), torch.ones(1, 1, 1))
    assert torch.allclose(authors_bald(stats), torch.ones(1, 1, 1))
    assert torch.allclose(margin(stats), torch.ones(1, 1, 1))
    # Partly disagreeing passes: BALD strictly between 0 and the predictive entropy.
    c = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1)
    d = torch.tensor([0.4, 0.6]).view(1, 2, 1, 1)
    stats = stats_from_passes(torch.stack([c, d]))
    assert 0 < bald(stats).item() < predictive_entropy(stats).item()
    assert authors_bald(stats).item() > predictive_entropy(stats).item()


def test_bald_clamps_rounding_negatives():
    p = torch.full((1, 3, 1, 1), 1.0 / 3)
    stats = McStats(p, entropy(p, dim=1) + 1e-7)
    assert torch.equal(bald(stats), torch.zeros(1, 1, 1))


def test_margin_values_and_ordering():
    p = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.1, 0.3, 0.6]])
    probs = p.T.reshape(1, 3, 4, 1)
    stats = McStats(probs, torch.zeros(1, 4, 1))
    m = margin(stats)[0, :, 0]
    assert torch.allclose(m, torch.tensor([0.2, 0.8, 1.0, 0.7]))
    assert m[0] < m[3] < m[1] < m[2]


def test_pixel_uncertainty_dispatch_and_unknown_name():
    torch.manual_seed(0)
    passes = torch.softmax(torch.randn(4, 2, 3, 5, 5), dim=2)
    stats = stats_from_passes(passes)
    assert set(HEURISTICS) == {"entropy", "bald", "margin", "authors"}
    for name, fn in HEURISTICS.items():
        out = pixel_uncertainty(stats, name)
        assert out.shape == (2, 5, 5)
        assert torch.equal(out, fn(stats))
        assert (out >= 0).all()
    assert torch.equal(pixel_uncertainty(stats), predictive_entropy(stats))
    with pytest.raises(ValueError, match="unknown uncertainty method 'variance'"):
        pixel_uncertainty(stats, "variance")


def test_heuristics_reject_bad_stats():
    with pytest.raises(TypeError, match="McStats"):
        bald((torch.ones(1, 2, 3, 3), torch.ones(1, 3, 3)))
    with pytest.raises(ValueError, match="B x C x H x W"):
        bald(McStats(torch.ones(1, 2, 3, 3), torch.ones(1, 4, 3)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        margin(McStats(torch.ones(1, 1, 3, 3), torch.zeros(1, 3, 3)))


# ---------------------------------------------------------------- MC dropout


def test_enable_mc_dropout_sets_dropout_train_and_rest_eval():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout(), nn.Dropout1d(),
                          nn.Dropout2d(), nn.Dropout3d(), nn.AlphaDropout(),
                          nn.FeatureAlphaDropout())
    model.train()
    assert enable_mc_dropout(model) is model
    assert not model.training
    assert not model[0].training and not model[1].training
    assert all(m.training for m in model[2:])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        enable_mc_dropout(lambda x: x)


def test_head_and_full_identical_with_same_seed():
    model = make_model()
    x = images()
    torch.manual_seed(123)
    head = mc_dropout(model, x, n_samples=7, mode="head")
    torch.manual_seed(123)
    full = mc_dropout(model, x, n_samples=7, mode="full")
    assert torch.allclose(head.mean_probs, full.mean_probs, atol=1e-6, rtol=0)
    assert torch.allclose(head.expected_entropy, full.expected_entropy, atol=1e-6, rtol=0)
    assert head.mean_probs.dtype == head.expected_entropy.dtype == torch.float32
    assert head.mean_probs.shape == (2, 3, 8, 8) and head.expected_entropy.shape == (2, 8, 8)
    assert torch.allclose(head.mean_probs.sum(1), torch.ones(2, 8, 8))


def test_head_and_full_agree_in_distribution_with_different_seeds():
    model = make_model(p=0.3)
    x = images(batch=1, size=6)
    torch.manual_seed(1)
    head = mc_dropout(model, x, n_samples=400, mode="head")
    torch.manual_seed(2)
    full = mc_dropout(model, x, n_samples=400, mode="full")
    assert not torch.equal(head.mean_probs, full.mean_probs)
    assert (head.mean_probs - full.mean_probs).abs().max() < 0.05
    assert (head.expected_entropy - full.expected_entropy).abs().max() < 0.05


def test_head_mode_encodes_once_full_mode_every_pass():
    model = make_model()
    model.encode_calls = 0
    mc_dropout(model, images(), n_samples=5, mode="head")
    assert model.encode_calls == 1
    model.encode_calls = 0
    mc_dropout(model, images(), n_samples=5, mode="full")
    assert model.encode_calls == 5


def test_matches_explicit_stack_of_passes():
    model = make_model()
    x = images()
    torch.manual_seed(5)
    stats = mc_dropout(model, x, n_samples=6)
    torch.manual_seed(5)
    enable_mc_dropout(model)
    with torch.no_grad():
        passes = torch.stack([torch.softmax(model(x), dim=1) for _ in range(6)])
    reference = stats_from_passes(passes)
    assert torch.allclose(stats.mean_probs, reference.mean_probs, atol=1e-6)
    assert torch.allclose(stats.expected_entropy, reference.expected_entropy, atol=1e-5)


def test_dropout_active_and_batch_norm_frozen():
    model = make_model()
    bn = model.encoder[1]
    running = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    x = images()
    stats = mc_dropout(model, x, n_samples=10)
    # Passes differ, so the passes' mean entropy differs from the entropy of their mean.
    assert bald(stats).max() > 1e-3
    assert torch.equal(bn.running_mean, running[0])
    assert torch.equal(bn.running_var, running[1])
    assert torch.equal(bn.num_batches_tracked, running[2])
    # Batch norm used running statistics: the deterministic encoder equals the eval-mode one.
    model.eval()
    with torch.no_grad():
        expected = model.encode(x)
        model.train()
        assert not torch.allclose(model.encode(x), expected)


def test_no_dropout_means_no_disagreement():
    model = make_model(p=0.0)
    stats = mc_dropout(model, images(), n_samples=4)
    assert torch.allclose(bald(stats), torch.zeros(2, 8, 8), atol=1e-5)
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(images()), dim=1)
    assert torch.allclose(stats.mean_probs, probs, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_train_eval_state_restored(training):
    model = make_model()
    model.train(training)
    model.head[0].eval()  # a mixed state must come back exactly as it was
    before = [m.training for m in model.modules()]
    mc_dropout(model, images(), n_samples=2)
    assert [m.training for m in model.modules()] == before


def test_state_restored_on_error():
    class BadShape(TinySegmenter):
        def decode(self, features):
            return super().decode(features)[..., :-1]

    torch.manual_seed(0)
    model = BadShape()
    model.train()
    with pytest.raises(ValueError, match="model must return logits"):
        mc_dropout(model, images(), n_samples=2)
    assert all(m.training for m in model.modules())


def test_memory_does_not_grow_with_passes():
    """Count live tensors at least as large as one pass's logits during every decode call."""
    n_classes, size = 5, 24
    pass_numel = n_classes * size * size

    class Probe(TinySegmenter):
        counts: list

        def decode(self, features):
            self.counts.append(sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor)
                                   and o.numel() >= pass_numel))
            return super().decode(features)

    torch.manual_seed(0)
    model = Probe(n_classes)
    model.counts = []
    stats = mc_dropout(model, images(batch=1, size=size), n_samples=6)
    assert stats.mean_probs.shape == (1, n_classes, size, size)
    assert len(model.counts) == 6
    assert max(model.counts[2:]) == model.counts[2]


def test_extreme_logits_give_finite_statistics():
    class Extreme(TinySegmenter):
        def decode(self, features):
            logits = super().decode(features)
            logits[:, 0] = float("-inf")  # a class that can never occur
            logits[:, 1] += 1e4  # an overwhelmingly confident class
            return logits

    torch.manual_seed(0)
    stats = mc_dropout(Extreme(n_classes=3), images(), n_samples=3)
    assert torch.equal(stats.mean_probs[:, 0], torch.zeros(2, 8, 8))
    assert torch.allclose(stats.mean_probs[:, 1], torch.ones(2, 8, 8))
    assert torch.equal(stats.expected_entropy, torch.zeros(2, 8, 8))


def test_many_passes_on_a_larger_image():
    model = make_model(n_classes=4)
    stats = mc_dropout(model, images(batch=1, size=64), n_samples=50)
    assert stats.mean_probs.shape == (1, 4, 64, 64)
    assert torch.isfinite(stats.expected_entropy).all()


def test_bad_input_raises():
    model = make_model()
    x = images()
    for raw in ("0", "2.5"):  # the number of passes enters as DBSAL_MC_SAMPLES
        with pytest.raises(ValueError, match="DBSAL_MC_SAMPLES"):
            Settings.from_env({"DBSAL_MC_SAMPLES": raw})
    with pytest.raises(ValueError, match="mode must be one of"):
        mc_dropout(model, x, mode="encoder")
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        mc_dropout(model, x[0])
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        mc_dropout(model, torch.rand(1, 4, 8, 8))
    with pytest.raises(TypeError, match="float tensor"):
        mc_dropout(model, (x * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        mc_dropout(model, x.numpy())
    with pytest.raises(ValueError, match="must not be empty"):
        mc_dropout(model, torch.rand(0, 3, 8, 8))
    plain = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Dropout())
    with pytest.raises(TypeError, match="encode"):
        mc_dropout(plain, x, mode="head")
    assert mc_dropout(plain, x, n_samples=2, mode="full").mean_probs.shape == (2, 2, 8, 8)


# ---------------------------------------------------------------- shared masks


def test_outside_the_context_mc_dropout_is_plain_dropout():
    x = torch.rand(4, 3, 5, 5)
    layer, reference = MCDropout(0.4).train(), nn.Dropout(0.4).train()
    torch.manual_seed(7)
    ours = layer(x)
    torch.manual_seed(7)
    assert torch.equal(ours, reference(x))
    assert not torch.equal(ours[0], ours[1])  # each image its own mask
    assert torch.equal(layer.eval()(x), x)


def test_inside_the_context_every_image_of_a_batch_shares_one_mask():
    layer = MCDropout(0.5).train()
    with shared_masks(3):
        out = layer(torch.ones(5, 2, 4, 4))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    for b in range(1, 5):
        assert torch.equal(out[b], out[0])
    assert 0 < (out[0] == 0).sum() < out[0].numel()  # element-wise, not one bit for all


def test_a_batch_of_one_equals_the_batch():
    layer = MCDropout(0.5).train()
    x = torch.rand(4, 3, 6, 6)
    with shared_masks(11):
        batched = [layer(x) for _ in range(3)]  # three passes: three masks
    for b in range(4):
        with shared_masks(11):
            alone = [layer(x[b:b + 1]) for _ in range(3)]
        for t in range(3):
            assert torch.equal(alone[t][0], batched[t][b])
    assert not torch.equal(batched[0], batched[1])


def test_the_seed_decides_the_masks():
    layer = MCDropout(0.5).train()
    x = torch.ones(1, 64)

    def draw(seed):
        with shared_masks(seed):
            return layer(x)

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_the_context_does_not_touch_the_global_generator_and_restores_the_previous_one():
    layer = MCDropout(0.5).train()
    x = torch.ones(1, 64)
    state = torch.get_rng_state()
    with shared_masks(1):
        first = layer(x)
        with shared_masks(2):
            layer(x)
        second = layer(x)  # the outer generator goes on where it was
    assert torch.equal(torch.get_rng_state(), state)
    with shared_masks(1):
        expected = [layer(x), layer(x)]
    assert torch.equal(first, expected[0]) and torch.equal(second, expected[1])


def test_p_zero_and_eval_are_the_identity_inside_the_context():
    x = torch.rand(2, 8)
    with shared_masks(0):
        assert torch.equal(MCDropout(0.0).train()(x), x)
        assert torch.equal(MCDropout(0.5).eval()(x), x)


def test_the_context_is_per_thread():
    layer = MCDropout(0.5).train()
    x = torch.ones(8, 256)
    results = {}

    def other_thread():
        results["plain"] = layer(x)  # the main thread's context is not seen here
        with shared_masks(5):
            results["own"] = layer(x)

    with shared_masks(5):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        mine = layer(x)
    assert not torch.equal(results["plain"][0], results["plain"][1])
    assert torch.equal(results["own"], mine)  # same seed, same masks, either thread


def test_seeded_mc_dropout_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = UNet(3, base_channels=4, depth=2).eval()
    x = images(batch=3, size=12)
    batched = mc_dropout(model, x, n_samples=4, seed=9)
    for b in range(3):
        alone = mc_dropout(model, x[b:b + 1], n_samples=4, seed=9)
        assert torch.allclose(alone.mean_probs[0], batched.mean_probs[b], atol=1e-6)
        assert torch.allclose(alone.expected_entropy[0], batched.expected_entropy[b], atol=1e-5)
    again = mc_dropout(model, x, n_samples=4, seed=9)
    assert torch.equal(again.mean_probs, batched.mean_probs)
    other = mc_dropout(model, x, n_samples=4, seed=10)
    assert not torch.allclose(other.mean_probs, batched.mean_probs)


def test_without_expected_entropy_the_mean_softmax_is_the_same_and_bald_refuses():
    model = make_model()
    x = images()
    torch.manual_seed(4)
    full = mc_dropout(model, x, n_samples=5)
    torch.manual_seed(4)
    lean = mc_dropout(model, x, n_samples=5, expected_entropy=False)
    assert lean.expected_entropy is None
    assert torch.allclose(lean.mean_probs, full.mean_probs, atol=1e-6, rtol=0)
    for name in ("entropy", "margin"):
        assert torch.allclose(pixel_uncertainty(lean, name), pixel_uncertainty(full, name),
                              atol=1e-5)
    for name in NEEDS_EXPECTED_ENTROPY:
        with pytest.raises(ValueError, match="expected_entropy=True"):
            pixel_uncertainty(lean, name)
