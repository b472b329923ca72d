import math

import numpy as np
import pytest

from core.activations import make_activation
from core.gradcheck import check_network_gradients
from core.losses import make_loss
from core.spec import ActivationSpec, LossSpec
from tests.core.helpers import random_network

ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus"]
# Non-default parameters, so that a gradient that ignores them fails the check.
PARAMETERS = {"leaky_relu": {"negative_slope": 0.1}, "elu": {"alpha": 0.7}}

# Underflow to 0 is the intended result of exp of a very negative number, and NumPy
# ignores it by default, so only the other floating-point errors are raised.
RAISE_FLOATING_POINT_ERRORS = {"divide": "raise", "over": "raise", "invalid": "raise"}


def activation(name):
    return make_activation(ActivationSpec(type=name, **PARAMETERS.get(name, {})))


def reference(name, z):
    """Each activation written independently from its textbook definition."""
    match name:
        case "linear":
            return z
        case "relu":
            return np.where(z > 0, z, 0.0)
        case "leaky_relu":
            return np.where(z > 0, z, 0.1 * z)
        case "elu":
            return np.where(z > 0, z, 0.7 * (np.exp(z) - 1))
        case "gelu":
            inner = math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)
            return 0.5 * z * (1 + np.tanh(inner))
        case "tanh":
            return np.tanh(z)
        case "sigmoid":
            return 1 / (1 + np.exp(-z))
        case "softplus":
            return np.log1p(np.exp(z))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward_matches_definition(name):
    """forward agrees with the textbook formula on moderate inputs."""
    z = np.linspace(-4, 4, 41)

    a = activation(name).forward(z.copy())

    np.testing.assert_allclose(a, reference(name, z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient_check(name):
    """A dense layer with this activation passes a float64 finite-difference check."""
    rng = np.random.default_rng(1)
    layer = {"type": "dense", "units": 4, "activation": {"type": name, **PARAMETERS.get(name, {})}}
    network = random_network([layer], n_features=3, seed=2)
    x = rng.normal(size=(6, 3))
    targets = rng.normal(size=(6, 4))
    loss = make_loss(LossSpec(type="squared_error"))

    report = check_network_gradients(network, loss, x, targets)

    assert report.n_checked == network.n_parameters
    assert report.max_relative_error < 1e-6, report


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradient_check_inside_network(name):
    """The activation between two dense layers passes the check, input gradient included."""
    rng = np.random.default_rng(3)
    layers = [
        {"type": "dense", "units": 5, "activation": {"type": name, **PARAMETERS.get(name, {})}},
        {"type": "dense", "units": 2},
    ]
    network = random_network(layers, n_features=3, seed=4)
    x = rng.normal(size=(7, 3))
    labels = rng.integers(0, 2, size=7)
    loss = make_loss(LossSpec(type="cross_entropy"))

    report = check_network_gradients(network, loss, x, labels)

    assert report.max_relative_error < 1e-6, report


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_saturated_inputs_finite(name, dtype):
    """Inputs of +-1e4 give finite values and gradients, in the input dtype, with no warning."""
    z = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    act = activation(name)

    with np.errstate(**RAISE_FLOATING_POINT_ERRORS):
        a = act.forward(z)
        grad = act.backward(z, a, np.ones_like(z))

    assert a.dtype == dtype
    assert grad.dtype == dtype
    assert np.isfinite(a).all()
    assert np.isfinite(grad).all()


@pytest.mark.parametrize(
    ("name", "expected_low", "expected_high"),
    [
        ("relu", 0.0, 1.0),
        ("elu", 0.0, 1.0),
        ("gelu", 0.0, 1.0),
        ("tanh", 0.0, 0.0),
        ("sigmoid", 0.0, 0.0),
        ("softplus", 0.0, 1.0),
    ],
)
def test_activation_saturated_gradient_limits(name, expected_low, expected_high):
    """At -1e4 and 1e4 the local gradient is its limit value, not NaN."""
    z = np.array([-1e4, 1e4])
    act = activation(name)

    grad = act.backward(z, act.forward(z), np.ones(2))

    assert grad[0] == pytest.approx(expected_low, abs=1e-12)
    assert grad[1] == pytest.approx(expected_high, abs=1e-12)


def test_make_activation_keeps_parameters():
    """leaky_relu's negative_slope and elu's alpha reach the activation."""
    leaky = make_activation(ActivationSpec(type="leaky_relu", negative_slope=0.2))
    elu = make_activation(ActivationSpec(type="elu", alpha=2.0))

    assert leaky.forward(np.array([-1.0]))[0] == pytest.approx(-0.2)
    assert elu.forward(np.array([-50.0]))[0] == pytest.approx(-2.0)
