import numpy as np
import pytest

from core.gradcheck import check_network_gradients
from core.layers import DropoutLayer
from core.losses import make_loss
from core.network import Network
from core.spec import LossSpec, ModelSpec
from tests.core.helpers import random_network

MIXED_LAYERS = [
    {"type": "dense", "units": 6, "activation": "tanh"},
    {"type": "dense", "units": 5, "activation": "gelu", "bias": False},
    {"type": "dense", "units": 5, "activation": {"type": "elu", "alpha": 0.5}},
    {"type": "dense", "units": 4, "activation": "softplus"},
    {"type": "dense", "units": 4, "activation": "leaky_relu"},
    {"type": "dense", "units": 4, "activation": "sigmoid"},
    {"type": "dense", "units": 3, "activation": "relu"},
    {"type": "dense", "units": 3},
]


def tea_network() -> Network:
    """The one-weight model y_hat = w * x with w = 0.5, float64."""
    layer = {"type": "dense", "units": 1, "bias": False, "init": {"type": "constant", "value": 0.5}}
    network = Network(ModelSpec.model_validate({"layers": [layer]}), 1, "float64")
    network.initialize(np.random.default_rng(0))
    return network


def test_tea_forward_backward():
    """For w = 0.5, x = 2, y = 10: y_hat = 1, the loss is 81 and dL/dw is -36."""
    network = tea_network()
    loss = make_loss(LossSpec(type="squared_error", reduction="sum"))

    outputs = network.forward(np.array([[2.0]]), training=True, rng=np.random.default_rng(0))
    value, grad_outputs = loss.value_and_grad(outputs, np.array([[10.0]]))
    network.backward(grad_outputs)

    assert outputs.tolist() == [[1.0]]
    assert value == 81.0
    assert grad_outputs.tolist() == [[-18.0]]
    assert network.grads.tolist() == [-36.0]


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradient_check(bias):
    """A dense layer, with and without bias, passes a float64 finite-difference check."""
    rng = np.random.default_rng(0)
    layer = {"type": "dense", "units": 3, "activation": "tanh", "bias": bias}
    network = random_network([layer], n_features=4, seed=1)
    x = rng.normal(size=(5, 4))
    targets = rng.normal(size=(5, 3))

    report = check_network_gradients(network, make_loss(LossSpec(type="squared_error")), x, targets)

    expected_names = ["dense_0.weight", "dense_0.bias"] if bias else ["dense_0.weight"]
    assert list(report.relative_errors) == expected_names
    assert report.max_relative_error < 1e-6, report


def test_multilayer_network_gradient_check():
    """An eight-layer network mixing every activation passes a float64 check."""
    rng = np.random.default_rng(2)
    network = random_network(MIXED_LAYERS, n_features=4, seed=3, std=0.7)
    x = rng.normal(size=(10, 4))
    labels = rng.integers(0, 3, 10)

    report = check_network_gradients(network, make_loss(LossSpec(type="cross_entropy")), x, labels)

    assert report.n_checked == network.n_parameters
    assert len(report.relative_errors) == 15
    assert report.max_relative_error < 1e-6, report


def test_dropout_gradient_check_fixed_mask():
    """With dropout active and the same mask in every pass, the gradients pass the check."""
    rng = np.random.default_rng(4)
    layers = [
        {"type": "dense", "units": 8, "activation": "tanh"},
        {"type": "dropout", "rate": 0.5},
        {"type": "dense", "units": 2},
    ]
    network = random_network(layers, n_features=3, seed=5)
    x = rng.normal(size=(6, 3))
    targets = rng.normal(size=(6, 2))

    report = check_network_gradients(network, make_loss(LossSpec(type="huber")), x, targets)

    assert report.max_relative_error < 1e-6, report


def test_network_slots_and_slices():
    """Parameters are laid out layer by layer, weight then bias, in one flat vector."""
    layers = [
        {"type": "dense", "units": 4},
        {"type": "dropout", "rate": 0.1},
        {"type": "dense", "units": 2, "bias": False},
    ]

    network = Network(ModelSpec.model_validate({"layers": layers}), 3, "float32")

    assert network.n_parameters == 3 * 4 + 4 + 4 * 2
    assert [(slot.name, slot.start, slot.shape) for slot in network.slots] == [
        ("dense_0.weight", 0, (3, 4)),
        ("dense_0.bias", 12, (4,)),
        ("dense_2.weight", 16, (4, 2)),
    ]
    assert network.layer_slices() == [("dense_0", slice(0, 16)), ("dense_2", slice(16, 24))]
    assert network.n_outputs == 2
    assert network.params.dtype == np.float32
    assert network.grads.dtype == np.float32


def test_network_parameters_are_views_of_flat_vector():
    """Writing the flat vector changes what the layers compute."""
    network = random_network([{"type": "dense", "units": 2}], n_features=2)
    x = np.array([[1.0, 2.0]])

    network.params[...] = 0.0

    assert network.forward(x).tolist() == [[0.0, 0.0]]


def test_load_parameters_round_trip():
    """parameters() and load_parameters() move the same values by name and shape."""
    source = random_network(MIXED_LAYERS, n_features=4, seed=1)
    target = random_network(MIXED_LAYERS, n_features=4, seed=2)

    target.load_parameters(source.parameters())

    assert np.array_equal(target.params, source.params)


def test_load_parameters_rejects_wrong_shape():
    """A parameter of the wrong shape raises ValueError naming it and both shapes."""
    network = random_network([{"type": "dense", "units": 2}], n_features=3)
    values = network.parameters()
    values["dense_0.weight"] = np.zeros((2, 3))

    with pytest.raises(ValueError, match=r"dense_0\.weight must have shape \(3, 2\), got \(2, 3\)"):
        network.load_parameters(values)


def test_load_parameters_rejects_wrong_names():
    """Missing or extra parameter names raise ValueError listing the expected names."""
    network = random_network([{"type": "dense", "units": 2}], n_features=3)
    values = network.parameters()
    del values["dense_0.bias"]

    with pytest.raises(ValueError, match=r"dense_0\.bias"):
        network.load_parameters(values)


def test_forward_training_needs_rng():
    """forward(training=True) without an rng raises ValueError."""
    network = random_network([{"type": "dense", "units": 2}], n_features=3)

    with pytest.raises(ValueError, match="rng"):
        network.forward(np.zeros((1, 3)), training=True)


def test_forward_in_chunks_equals_forward():
    """Chunked inference gives the same outputs as one forward pass."""
    network = random_network(MIXED_LAYERS, n_features=4)
    x = np.random.default_rng(0).normal(size=(50, 4))

    chunked = network.forward_in_chunks(x, chunk_size=7)

    assert np.array_equal(chunked, network.forward(x))


def test_dropout_identity_at_inference():
    """Dropout passes its input through unchanged when not training."""
    layer = DropoutLayer("dropout_0", 0.5)
    x = np.ones((4, 5))

    out = layer.forward(x, training=False, rng=np.random.default_rng(0))

    assert out is x


def test_dropout_training_scales_kept_values():
    """In training, kept values are scaled by 1/(1 - rate), the rest are 0, and backward
    applies the same mask."""
    layer = DropoutLayer("dropout_0", 0.25)
    x = np.ones((200, 50), dtype=np.float32)

    out = layer.forward(x, training=True, rng=np.random.default_rng(0))
    grad = layer.backward(np.ones_like(x), need_input_grad=True)

    assert out.dtype == np.float32
    np.testing.assert_allclose(np.unique(out), [0.0, 4 / 3], rtol=1e-6)
    assert np.mean(out == 0) == pytest.approx(0.25, abs=0.01)
    assert grad is not None
    assert np.array_equal(grad, out)


def test_backward_leaves_params_unchanged():
    """backward writes only the gradients."""
    rng = np.random.default_rng(0)
    network = random_network(MIXED_LAYERS, n_features=4)
    before = network.params.copy()
    outputs = network.forward(rng.normal(size=(3, 4)), training=True, rng=rng)

    network.backward(np.ones_like(outputs))

    assert np.array_equal(network.params, before)
    assert np.any(network.grads != 0)
