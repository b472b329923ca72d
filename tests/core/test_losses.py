import numpy as np
import pytest

from core.gradcheck import check_network_gradients
from core.losses import make_loss
from core.spec import LossSpec
from tests.core.helpers import random_network

REDUCTIONS = ["mean", "sum"]
REGRESSION_LOSSES = ["squared_error", "absolute_error", "huber"]
RAISE_FLOATING_POINT_ERRORS = {"divide": "raise", "over": "raise", "invalid": "raise"}


def loss_of(name, reduction="mean", **options):
    return make_loss(LossSpec(type=name, reduction=reduction, **options))


def case(name, n_samples=6, seed=0):
    """Outputs and targets for a loss: (outputs, targets, n_outputs)."""
    rng = np.random.default_rng(seed)
    if name == "cross_entropy":
        return rng.normal(size=(n_samples, 3)), rng.integers(0, 3, n_samples), 3
    if name == "binary_cross_entropy":
        targets = rng.integers(0, 2, (n_samples, 1)).astype(np.float64)
        return rng.normal(size=(n_samples, 1)), targets, 1
    return rng.normal(size=(n_samples, 2)), rng.normal(size=(n_samples, 2)), 2


def reference_loss(name, reduction, outputs, targets, delta=1.0):
    """Each loss from its textbook definition, without the engine's stable rewrites."""
    if name == "cross_entropy":
        probabilities = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
        per_sample = -np.log(probabilities[np.arange(len(targets)), targets])
        return per_sample.sum() if reduction == "sum" else per_sample.mean()
    if name == "binary_cross_entropy":
        p = 1 / (1 + np.exp(-outputs))
        per_element = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    elif name == "squared_error":
        per_element = (outputs - targets) ** 2
    elif name == "absolute_error":
        per_element = np.abs(outputs - targets)
    else:
        r = np.abs(outputs - targets)
        per_element = np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))
    return per_element.sum() if reduction == "sum" else per_element.mean()


def test_squared_error_tea_example():
    """For y_hat = 1 and y = 10 the summed squared error is 81 and dL/dy_hat is -18."""
    loss = loss_of("squared_error", "sum")

    value, grad = loss.value_and_grad(np.array([[1.0]]), np.array([[10.0]]))

    assert value == 81.0
    assert grad.tolist() == [[-18.0]]


ALL_LOSSES = ["squared_error", "absolute_error", "huber", "binary_cross_entropy", "cross_entropy"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_loss_value_matches_definition(name, reduction):
    """The loss value equals the textbook formula with the same reduction."""
    outputs, targets, _ = case(name)
    options = {"delta": 0.5} if name == "huber" else {}

    value, _ = loss_of(name, reduction, **options).value_and_grad(outputs.copy(), targets)

    expected = reference_loss(name, reduction, outputs, targets, delta=0.5)
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_loss_gradient_check(name, reduction):
    """A one-layer network under this loss passes a float64 finite-difference check."""
    rng = np.random.default_rng(5)
    _, targets, n_outputs = case(name, n_samples=8, seed=6)
    network = random_network([{"type": "dense", "units": n_outputs}], n_features=3, seed=7)
    x = rng.normal(size=(8, 3))
    # delta 0.5 puts residuals on both sides of the switch from quadratic to linear.
    options = {"delta": 0.5} if name == "huber" else {}

    report = check_network_gradients(network, loss_of(name, reduction, **options), x, targets)

    assert report.max_relative_error < 1e-6, report


def test_loss_mean_divides_like_pytorch():
    """mean divides the regression losses by all elements and cross_entropy by samples."""
    outputs = np.zeros((4, 3))

    squared = loss_of("squared_error").value(outputs, np.ones((4, 3)))
    cross = loss_of("cross_entropy").value(outputs, np.zeros(4, dtype=np.int64))

    assert squared == pytest.approx(1.0)
    assert cross == pytest.approx(np.log(3))


def test_losses_match_torch():
    """Loss values and gradients agree with torch.nn.functional on the same inputs."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    references = {
        "squared_error": functional.mse_loss,
        "absolute_error": functional.l1_loss,
        "huber": lambda z, t, reduction: functional.huber_loss(
            z, t, reduction=reduction, delta=0.5
        ),
        "binary_cross_entropy": functional.binary_cross_entropy_with_logits,
        "cross_entropy": functional.cross_entropy,
    }
    for name, torch_loss in references.items():
        for reduction in REDUCTIONS:
            outputs, targets, _ = case(name, seed=11)
            options = {"delta": 0.5} if name == "huber" else {}
            logits = torch.tensor(outputs, requires_grad=True)
            expected = torch_loss(logits, torch.tensor(targets), reduction=reduction)
            expected.backward()

            value, grad = loss_of(name, reduction, **options).value_and_grad(
                outputs.copy(), targets
            )

            assert value == pytest.approx(expected.item(), rel=1e-12), (name, reduction)
            np.testing.assert_allclose(grad, logits.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_loss_gradient_keeps_dtype(name, dtype):
    """The gradient has the outputs' dtype, and integer labels do not widen it."""
    outputs, targets, _ = case(name)
    if name != "cross_entropy":
        targets = targets.astype(dtype)

    _, grad = loss_of(name).value_and_grad(outputs.astype(dtype), targets)

    assert grad.dtype == dtype
    assert grad.shape == outputs.shape


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(np.float64, 1e4), (np.float64, 1e30), (np.float32, 1e4), (np.float32, 1e30)],
)
def test_cross_entropy_extreme_logits_finite(dtype, magnitude):
    """Logits of +-1e4 and +-1e30 give a finite loss and gradient with no warning."""
    logits = np.array(
        [[magnitude, -magnitude, 0.0], [-magnitude, magnitude, 0.0], [0.0, 0.0, -magnitude]],
        dtype=dtype,
    )
    labels = np.array([1, 1, 2])

    with np.errstate(**RAISE_FLOATING_POINT_ERRORS):
        value, grad = loss_of("cross_entropy", "sum").value_and_grad(logits, labels)

    assert np.isfinite(value)
    assert np.isfinite(grad).all()
    # Row 0 puts all mass on the wrong class and row 1 on the right one. Row 2's label
    # has logit -magnitude against two zeros.
    assert value == pytest.approx(2 * magnitude + magnitude + np.log(2), rel=1e-6)
    np.testing.assert_allclose(grad[0], [1.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(grad[1], [0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(grad[2], [0.5, 0.5, -1.0], atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(np.float64, 1e4), (np.float64, 1e30), (np.float32, 1e4), (np.float32, 1e30)],
)
def test_binary_cross_entropy_extreme_logits_finite(dtype, magnitude):
    """Logits of +-1e4 and +-1e30 give a finite loss and gradient with no warning."""
    logits = np.array([[magnitude], [-magnitude], [magnitude], [-magnitude]], dtype=dtype)
    targets = np.array([[0.0], [1.0], [1.0], [0.0]], dtype=dtype)

    with np.errstate(**RAISE_FLOATING_POINT_ERRORS):
        value, grad = loss_of("binary_cross_entropy", "sum").value_and_grad(logits, targets)

    assert np.isfinite(value)
    assert np.isfinite(grad).all()
    assert value == pytest.approx(2 * magnitude, rel=1e-6)
    np.testing.assert_allclose(grad[:, 0], [1.0, -1.0, 0.0, 0.0], atol=1e-6)


def test_absolute_error_gradient_zero_at_equality():
    """Where the output equals the target, the absolute error's gradient is 0."""
    outputs = np.array([[1.0, 2.0]])

    _, grad = loss_of("absolute_error", "sum").value_and_grad(outputs, np.array([[1.0, 0.0]]))

    assert grad.tolist() == [[0.0, 1.0]]


def test_huber_switches_at_delta():
    """Huber is r**2/2 inside delta and delta*(|r| - delta/2) outside, gradient clipped."""
    outputs = np.array([[0.5, 3.0, -3.0]])

    value, grad = loss_of("huber", "sum", delta=1.0).value_and_grad(outputs, np.zeros((1, 3)))

    assert value == pytest.approx(0.125 + 2.5 + 2.5)
    assert grad.tolist() == [[0.5, 1.0, -1.0]]
