import math

import numpy as np
import pytest
from pydantic import TypeAdapter

import core
from core.optimizers import clip_grad_norm, make_optimizer
from core.spec import OptimizerSpec
from tests.core.helpers import TEA_SPEC, linear_regression_data

N_STEPS = 6
N_PARAMETERS = 7
RAISE_FLOATING_POINT_ERRORS = {"divide": "raise", "over": "raise", "invalid": "raise"}

CASES = {
    "sgd": {"type": "sgd", "lr": 0.1},
    "sgd_momentum": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "sgd_nesterov": {"type": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True},
    "sgd_weight_decay": {"type": "sgd", "lr": 0.1, "weight_decay": 0.1},
    "sgd_momentum_weight_decay": {"type": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 0.2},
    "adam": {"type": "adam", "lr": 0.01},
    "adam_weight_decay": {"type": "adam", "lr": 0.01, "betas": [0.8, 0.99], "weight_decay": 0.1},
    "adamw": {"type": "adamw", "lr": 0.01, "weight_decay": 0.1, "eps": 1e-6},
    "rmsprop": {"type": "rmsprop", "lr": 0.01},
    "rmsprop_momentum": {"type": "rmsprop", "lr": 0.01, "momentum": 0.9, "alpha": 0.9},
    "rmsprop_weight_decay": {"type": "rmsprop", "lr": 0.01, "weight_decay": 0.1},
    "adagrad": {"type": "adagrad", "lr": 0.1},
    "adagrad_accumulator_weight_decay": {
        "type": "adagrad",
        "lr": 0.1,
        "initial_accumulator_value": 0.5,
        "weight_decay": 0.1,
    },
}


def parse_optimizer(options):
    return TypeAdapter(OptimizerSpec).validate_python(options)


def gradient_sequence(seed=0):
    """Initial parameters (N_PARAMETERS,), N_STEPS gradients and a varying lr per step."""
    rng = np.random.default_rng(seed)
    params = rng.normal(size=N_PARAMETERS)
    grads = [rng.normal(size=N_PARAMETERS) for _ in range(N_STEPS)]
    lr_factors = [1.0, 0.5, 1.5, 1.0, 0.25, 2.0]
    return params, grads, lr_factors


def reference_steps(options, params, grads, lrs):
    """Apply the update rules as PyTorch documents them, one plain step at a time.

    Returns the parameters after each step, a list of (N_PARAMETERS,) arrays.
    """
    kind = options["type"]
    wd = options.get("weight_decay", 0.01 if kind == "adamw" else 0.0)
    p = params.copy()
    buffer = square = first = None
    history = []
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        g = g.copy()
        if kind == "sgd":
            g = g + wd * p
            momentum = options.get("momentum", 0.0)
            if momentum:
                buffer = g.copy() if buffer is None else momentum * buffer + g
                g = g + momentum * buffer if options.get("nesterov") else buffer
            p = p - lr * g
        elif kind in ("adam", "adamw"):
            beta1, beta2 = options.get("betas", (0.9, 0.999))
            eps = options.get("eps", 1e-8)
            if kind == "adamw":
                p = p - lr * wd * p
            else:
                g = g + wd * p
            first = (1 - beta1) * g if first is None else beta1 * first + (1 - beta1) * g
            square = (1 - beta2) * g**2 if square is None else beta2 * square + (1 - beta2) * g**2
            first_hat = first / (1 - beta1**t)
            square_hat = square / (1 - beta2**t)
            p = p - lr * first_hat / (np.sqrt(square_hat) + eps)
        elif kind == "rmsprop":
            alpha, eps = options.get("alpha", 0.99), options.get("eps", 1e-8)
            momentum = options.get("momentum", 0.0)
            g = g + wd * p
            square = (1 - alpha) * g**2 if square is None else alpha * square + (1 - alpha) * g**2
            step = g / (np.sqrt(square) + eps)
            if momentum:
                buffer = step if buffer is None else momentum * buffer + step
                step = buffer
            p = p - lr * step
        elif kind == "adagrad":
            eps = options.get("eps", 1e-10)
            g = g + wd * p
            if square is None:
                square = np.full_like(p, options.get("initial_accumulator_value", 0.0))
            square = square + g**2
            p = p - lr * g / (np.sqrt(square) + eps)
        history.append(p.copy())
    return history


def engine_steps(options, params, grads, lrs, dtype=np.float64):
    optimizer = make_optimizer(parse_optimizer(options), N_PARAMETERS, np.dtype(dtype))
    p = params.astype(dtype)
    history = []
    for g, lr in zip(grads, lrs, strict=True):
        optimizer.step(p, g.astype(dtype), lr)
        history.append(p.copy())
    return history, optimizer


@pytest.mark.parametrize("case", CASES)
def test_optimizer_matches_formula(case):
    """Over six steps with a changing lr, the optimizer follows its written update rule."""
    options = CASES[case]
    params, grads, factors = gradient_sequence()
    lrs = [options["lr"] * factor for factor in factors]

    actual, optimizer = engine_steps(options, params, grads, lrs)

    expected = reference_steps(options, params, grads, lrs)
    for step, (got, want) in enumerate(zip(actual, expected, strict=True), start=1):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"step {step}")
    assert optimizer.t == N_STEPS


def torch_optimizer(torch, options, parameter):
    kind = options["type"]
    extra = {key: value for key, value in options.items() if key not in ("type",)}
    if "betas" in extra:
        extra["betas"] = tuple(extra["betas"])
    if kind == "adamw" and "weight_decay" not in extra:
        extra["weight_decay"] = 0.01
    if kind == "rmsprop":
        extra.setdefault("eps", 1e-8)
    classes = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }
    return classes[kind]([parameter], **extra)


@pytest.mark.parametrize("case", CASES)
def test_optimizer_matches_torch(case):
    """Over six steps with a changing lr, the optimizer matches torch.optim in float64."""
    torch = pytest.importorskip("torch")
    options = CASES[case]
    params, grads, factors = gradient_sequence(seed=1)
    lrs = [options["lr"] * factor for factor in factors]
    parameter = torch.nn.Parameter(torch.tensor(params, dtype=torch.float64))
    reference = torch_optimizer(torch, options, parameter)

    actual, _ = engine_steps(options, params, grads, lrs)

    for step, (g, lr) in enumerate(zip(grads, lrs, strict=True)):
        for group in reference.param_groups:
            group["lr"] = lr
        parameter.grad = torch.tensor(g, dtype=torch.float64)
        reference.step()
        np.testing.assert_allclose(
            actual[step], parameter.detach().numpy(), rtol=1e-12, atol=1e-15,
            err_msg=f"step {step + 1}",
        )  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_optimizer_float32_state(case):
    """In float32 the parameters and every state array stay float32."""
    params, grads, _ = gradient_sequence()
    lrs = [0.01] * N_STEPS

    actual, optimizer = engine_steps(CASES[case], params, grads, lrs, dtype=np.float32)

    assert all(step.dtype == np.float32 for step in actual)
    arrays, t = optimizer.state_dict()
    assert t == N_STEPS
    assert all(value.dtype == np.float32 for value in arrays.values())


@pytest.mark.parametrize("case", ["adam", "adamw", "rmsprop", "rmsprop_momentum", "adagrad"])
def test_optimizer_zero_gradients_no_nan(case):
    """All-zero gradients on zero parameters change nothing and never make NaN."""
    params = np.zeros(N_PARAMETERS)
    optimizer = make_optimizer(parse_optimizer(CASES[case]), N_PARAMETERS, np.dtype(np.float64))

    with np.errstate(**RAISE_FLOATING_POINT_ERRORS):
        for _ in range(N_STEPS):
            optimizer.step(params, np.zeros(N_PARAMETERS), 0.1)

    assert np.array_equal(params, np.zeros(N_PARAMETERS))
    arrays, _ = optimizer.state_dict()
    assert all(np.isfinite(value).all() for value in arrays.values())


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad"])
def test_training_all_zero_relu_init_finite(optimizer):
    """A relu network initialized to zeros gets zero gradients and stays finite."""
    x, y = linear_regression_data()
    zeros = {"type": "zeros"}
    spec = {
        "dataset": "test",
        "model": {
            "layers": [
                {"type": "dense", "units": 4, "activation": "relu", "init": zeros},
                {"type": "dense", "units": 1, "init": zeros},
            ]
        },
        "optimizer": optimizer,
        "training": {"epochs": 3, "batch_size": 16},
    }

    result = core.fit(spec, x, y)

    assert result.stop_reason == "completed"
    assert all(np.isfinite(value).all() for value in result.params.values())
    assert np.array_equal(result.params["dense_0.weight"], np.zeros((3, 4)))
    assert all(math.isfinite(record["train_loss"]) for record in result.history)


def test_clip_grad_norm_rescales_above_max():
    """A gradient whose norm exceeds max_norm is scaled to about max_norm."""
    grads = np.array([3.0, 4.0])

    clip_grad_norm(grads, total_norm=5.0, max_norm=1.0)

    np.testing.assert_allclose(grads, np.array([3.0, 4.0]) / (5.0 + 1e-6), rtol=1e-15)


def test_clip_grad_norm_keeps_below_max():
    """A gradient whose norm is below max_norm is left unchanged."""
    grads = np.array([3.0, 4.0])

    clip_grad_norm(grads, total_norm=5.0, max_norm=10.0)

    assert grads.tolist() == [3.0, 4.0]


def test_clipping_tea_step_uses_rescaled_gradient():
    """With clip_grad_norm 1, the tea step moves w by lr * 36 / (36 + 1e-6), not lr * 36."""
    spec = {**TEA_SPEC, "optimizer": {"type": "sgd", "lr": 0.01, "clip_grad_norm": 1.0}}

    result = core.fit(spec, np.array([[2.0]]), np.array([10.0]))

    expected = 0.5 - 0.01 * (-36.0 * 1.0 / (36.0 + 1e-6))
    assert result.params["dense_0.weight"][0, 0] == pytest.approx(expected, rel=1e-15)
    assert result.history[0]["train_loss"] == 81.0


def test_clipping_sgd_step_on_network():
    """One full-batch sgd step with clipping moves the flat parameters by the rescaled
    global-norm gradient."""
    x, y = linear_regression_data(n_samples=20)
    spec = {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 5, "activation": "tanh"},
                             {"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 0.1, "clip_grad_norm": 0.5},
        "training": {"epochs": 1, "batch_size": 20, "shuffle": False, "dtype": "float64"},
    }  # fmt: skip
    trainer = core.make_trainer(spec, x, y)
    network = trainer.network
    initial = network.params.copy()
    outputs = network.forward(trainer.data.x_train, training=True, rng=np.random.default_rng(0))
    network.backward(trainer.loss.value_and_grad(outputs, trainer.data.y_train.values)[1])
    gradient = network.grads.copy()
    norm = float(np.linalg.norm(gradient))
    assert norm > 0.5  # so that clipping is active

    trainer.run()

    expected = initial - 0.1 * gradient * (0.5 / (norm + 1e-6))
    np.testing.assert_allclose(network.params, expected, rtol=1e-12, atol=1e-15)
