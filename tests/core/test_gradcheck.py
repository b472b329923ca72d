import numpy as np
import pytest

from core.activations import Tanh
from core.gradcheck import GradCheckReport, check_gradients, check_network_gradients
from core.losses import make_loss
from core.network import Network
from core.spec import LossSpec, ModelSpec
from tests.core.helpers import TEA_SPEC, blobs, linear_regression_data, random_network

NORMAL = {"type": "normal", "std": 0.5}


def classifier_spec(n_classes=3, loss="cross_entropy", reduction="mean"):
    """A two-layer spec with non-trivial initial values, dropout and a validation split."""
    return {
        "dataset": "test",
        "model": {
            "layers": [
                {"type": "dense", "units": 6, "activation": "tanh", "init": NORMAL,
                 "bias_init": NORMAL},
                {"type": "dropout", "rate": 0.5},
                {"type": "dense", "units": n_classes, "init": NORMAL, "bias_init": NORMAL},
            ]
        },
        "loss": {"type": loss, "reduction": reduction},
        "training": {"validation_split": 0.25, "dtype": "float32"},
        "preprocessing": {"standardize": True},
    }  # fmt: skip


def test_check_gradients_spec_passes():
    """A float32 spec with dropout is checked in float64 on every parameter and passes."""
    x, y = blobs(n_samples=40)

    report = check_gradients(classifier_spec(), x, y)

    assert isinstance(report, GradCheckReport)
    assert report.n_checked == 4 * 6 + 6 + 6 * 3 + 3
    assert list(report.relative_errors) == [
        "dense_0.weight",
        "dense_0.bias",
        "dense_2.weight",
        "dense_2.bias",
    ]
    assert report.max_relative_error < 1e-6, report
    assert report.passes()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "loss", ["squared_error", "absolute_error", "huber", "binary_cross_entropy", "cross_entropy"]
)
def test_check_gradients_every_loss(loss, reduction):
    """Every loss with either reduction passes the spec-level check."""
    if loss in ("binary_cross_entropy", "cross_entropy"):
        n_outputs = 1 if loss == "binary_cross_entropy" else 2
        x, y = blobs(n_samples=30, n_classes=2)
    else:
        n_outputs = 1
        x, y = linear_regression_data(n_samples=30)
    spec = classifier_spec(n_outputs, loss, reduction)

    report = check_gradients(spec, x, y)

    assert report.max_relative_error < 1e-6, report


def test_check_gradients_tea_example():
    """The one-weight example has one entry, loss 81 and an exact gradient."""
    report = check_gradients(TEA_SPEC, np.array([[2.0]]), np.array([10.0]))

    assert report.n_checked == 1
    assert report.loss == 81.0
    assert report.max_relative_error < 1e-9


def test_check_gradients_max_params_subset():
    """max_params checks that many distinct entries, the same ones for the same seed."""
    x, y = blobs(n_samples=40)

    first = check_gradients(classifier_spec(), x, y, max_params=10, seed=3)
    again = check_gradients(classifier_spec(), x, y, max_params=10, seed=3)

    assert first.n_checked == 10
    assert first == again
    assert set(first.relative_errors) <= {
        "dense_0.weight",
        "dense_0.bias",
        "dense_2.weight",
        "dense_2.bias",
    }


def test_check_gradients_max_params_above_total():
    """max_params above the number of parameters checks all of them."""
    x, y = blobs(n_samples=40)

    report = check_gradients(classifier_spec(), x, y, max_params=10_000)

    assert report.n_checked == 51


def test_check_gradients_max_params_zero_rejected():
    """max_params below 1 raises ValueError naming the value."""
    x, y = blobs(n_samples=40)

    with pytest.raises(ValueError, match="max_params must be at least 1 or None, got 0"):
        check_gradients(classifier_spec(), x, y, max_params=0)


def test_check_detects_wrong_gradient(monkeypatch):
    """A backward pass with a wrong local gradient fails the check."""

    def wrong_backward(self, z, a, grad_a):
        return grad_a * (1 - a)  # the derivative of tanh is 1 - a**2

    monkeypatch.setattr(Tanh, "backward", wrong_backward)
    x, y = blobs(n_samples=40)

    report = check_gradients(classifier_spec(), x, y)

    assert report.max_relative_error > 1e-2
    assert not report.passes()
    assert report.relative_errors["dense_0.weight"] > 1e-2
    assert report.relative_errors["dense_2.weight"] < 1e-6


def test_check_network_restores_params():
    """The check leaves the parameters as it found them and the analytic gradient in grads."""
    rng = np.random.default_rng(0)
    network = random_network([{"type": "dense", "units": 3, "activation": "sigmoid"}], 4)
    x = rng.normal(size=(5, 4))
    targets = rng.normal(size=(5, 3))
    loss = make_loss(LossSpec(type="squared_error"))
    before = network.params.copy()

    check_network_gradients(network, loss, x, targets)

    assert np.array_equal(network.params, before)
    outputs = network.forward(x, training=True, rng=rng)
    expected = network.grads.copy()
    network.backward(loss.value_and_grad(outputs, targets)[1])
    assert np.array_equal(network.grads, expected)


def test_check_network_indices():
    """indices selects the entries checked."""
    rng = np.random.default_rng(0)
    network = random_network([{"type": "dense", "units": 3}], 4)
    x = rng.normal(size=(5, 4))
    targets = rng.normal(size=(5, 3))
    loss = make_loss(LossSpec(type="squared_error"))

    report = check_network_gradients(network, loss, x, targets, indices=np.array([12, 14]))

    assert report.n_checked == 2
    assert list(report.relative_errors) == ["dense_0.bias"]


def test_check_network_index_out_of_range():
    """An index outside the parameter vector raises ValueError with the valid range."""
    network = random_network([{"type": "dense", "units": 3}], 4)
    loss = make_loss(LossSpec(type="squared_error"))

    with pytest.raises(ValueError, match=r"indices must lie in \[0, 15\)"):
        check_network_gradients(
            network, loss, np.zeros((1, 4)), np.zeros((1, 3)), indices=np.array([15])
        )


def test_check_network_rejects_float32():
    """A float32 network raises ValueError, because its finite differences mean nothing."""
    network = Network(ModelSpec.model_validate({"layers": [{"type": "dense", "units": 1}]}), 1,
                      "float32")  # fmt: skip
    loss = make_loss(LossSpec(type="squared_error"))

    with pytest.raises(ValueError, match="float64"):
        check_network_gradients(network, loss, np.zeros((1, 1)), np.zeros((1, 1)))


def test_check_network_rejects_infinite_loss():
    """A loss that is not finite at the parameters raises ValueError."""
    network = random_network([{"type": "dense", "units": 1}], 1)
    loss = make_loss(LossSpec(type="squared_error"))

    with pytest.raises(ValueError, match="loss is finite"):
        check_network_gradients(network, loss, np.zeros((1, 1)), np.full((1, 1), 1e300))


def test_check_network_zero_gradients_pass():
    """Entries where both gradients are 0 count as error 0, not NaN."""
    network = random_network([{"type": "dense", "units": 2, "activation": "relu"}], 2)
    network.params[...] = 0.0
    network.params[4:] = -1.0  # every pre-activation is -1, so relu passes no gradient
    loss = make_loss(LossSpec(type="squared_error"))

    report = check_network_gradients(network, loss, np.ones((3, 2)), np.ones((3, 2)))

    assert report.max_relative_error == 0.0
    assert report.max_absolute_error == 0.0
