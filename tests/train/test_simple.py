import math

import pytest
import torch
import torch.nn.functional as F

from scalelab.data import load_digits
from scalelab.train import train_classifier


@pytest.fixture(scope="module")
def digits():
    return load_digits("sklearn-digits", seed=0)


def test_load_digits_split_is_stratified_standardised_and_seeded(digits):
    again = load_digits("sklearn-digits", seed=0)
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    other = load_digits("sklearn-digits", seed=1)
    assert not torch.equal(digits.y_train, other.y_train)
    n = len(digits.y_train) + len(digits.y_test)
    assert n == 1797 and digits.num_classes == 10 and digits.input_dim == 64
    for c in range(10):  # each class holds out ~20%
        tot = int((digits.y_train == c).sum() + (digits.y_test == c).sum())
        assert abs(int((digits.y_test == c).sum()) - 0.2 * tot) <= 1
    raw = load_digits("sklearn-digits", seed=0, standardize=False).x_train
    mu, sd = digits.x_train.mean(0), digits.x_train.std(0, correction=0)
    assert torch.allclose(mu, torch.zeros_like(mu), atol=1e-4)
    raw_sd = raw.std(0, correction=0)
    assert torch.allclose(sd, raw_sd / (raw_sd + 1e-3), atol=1e-4)  # 1e-3 guards constant pixels


def test_load_digits_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_digits("cifar")
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits("sklearn-digits", test_fraction=1.0)


def test_train_classifier_equals_a_hand_written_sgd_loop(digits):
    """Reduction to the baseline: same seed, same batches, same updates, bit for bit."""
    torch.manual_seed(3)
    model = torch.nn.Linear(64, 10)
    ref = torch.nn.Linear(64, 10)
    ref.load_state_dict(model.state_dict())
    curve = train_classifier(model, digits, steps=5, lr=0.1, batch_size=32, seed=7)
    g = torch.Generator().manual_seed(7)
    losses = []
    for _ in range(5):
        idx = torch.randint(0, len(digits.y_train), (32,), generator=g)
        loss = F.cross_entropy(ref(digits.x_train[idx]), digits.y_train[idx])
        ref.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= 0.1 * p.grad
        losses.append(loss.item())
    assert curve.train_loss == pytest.approx(losses, rel=1e-6)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_classifier_learns_and_flags_divergence(digits):
    torch.manual_seed(0)
    curve = train_classifier(torch.nn.Linear(64, 10), digits, steps=150, lr=0.1, seed=0)
    assert curve.test_accuracy > 0.85 and not curve.diverged
    torch.manual_seed(0)
    bad = train_classifier(torch.nn.Linear(64, 10), digits, steps=50, lr=1e38, seed=0)
    assert bad.diverged and math.isnan(bad.test_accuracy) and math.isnan(bad.train_loss[-1])


@pytest.mark.parametrize("kw,match", [({"steps": 0}, "steps"), ({"lr": -1}, "lr"),
                                      ({"optimizer": "lbfgs"}, "optimizer")])
def test_train_classifier_rejects_bad_arguments(digits, kw, match):
    args = {"steps": 1, "lr": 0.1} | kw
    with pytest.raises(ValueError, match=match):
        train_classifier(torch.nn.Linear(64, 10), digits, **args)
