import math

import pytest
from pydantic import TypeAdapter

import core
from core.schedules import learning_rate
from core.spec import ScheduleSpec
from tests.core.helpers import linear_regression_data

BASE_LR = 0.2
EPOCHS = 40

SCHEDULES = {
    "constant": {"type": "constant"},
    "step": {"type": "step", "step_size": 7, "gamma": 0.5},
    "exponential": {"type": "exponential", "gamma": 0.9},
    "cosine": {"type": "cosine", "eta_min": 0.01},
    "cosine_t_max": {"type": "cosine", "t_max": 15, "eta_min": 0.02},
}


def parse_schedule(options):
    return TypeAdapter(ScheduleSpec).validate_python(options)


def expected_lr(options, epoch, warmup):
    """The schedule's formula, written out for 0-based epoch ``epoch``."""
    if epoch < warmup:
        return BASE_LR * (epoch + 1) / warmup
    e = epoch - warmup
    kind = options["type"]
    if kind == "constant":
        return BASE_LR
    if kind == "step":
        return BASE_LR * options["gamma"] ** math.floor(e / options["step_size"])
    if kind == "exponential":
        return BASE_LR * options["gamma"] ** e
    t_max = options.get("t_max") or EPOCHS - warmup
    eta_min = options["eta_min"]
    return eta_min + (BASE_LR - eta_min) * (1 + math.cos(math.pi * min(e, t_max) / t_max)) / 2


@pytest.mark.parametrize("warmup", [0, 5])
@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_formula(name, warmup):
    """At every epoch of a 40-epoch run the rate equals the schedule's formula."""
    options = {**SCHEDULES[name], "warmup_epochs": warmup}
    spec = parse_schedule(options)

    rates = [learning_rate(spec, BASE_LR, epoch, EPOCHS) for epoch in range(EPOCHS)]

    expected = [expected_lr(options, epoch, warmup) for epoch in range(EPOCHS)]
    assert rates == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("name", SCHEDULES)
def test_warmup_rises_linearly(name):
    """Warmup goes lr/W, 2 lr/W, ..., lr, and the schedule then starts from lr."""
    spec = parse_schedule({**SCHEDULES[name], "warmup_epochs": 4})

    rates = [learning_rate(spec, BASE_LR, epoch, EPOCHS) for epoch in range(5)]

    assert rates == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2], rel=1e-14)


def test_cosine_t_max_holds_eta_min_after():
    """Past t_max the cosine schedule stays at eta_min."""
    spec = parse_schedule(SCHEDULES["cosine_t_max"])

    rates = [learning_rate(spec, BASE_LR, epoch, EPOCHS) for epoch in range(15, EPOCHS)]

    assert rates == pytest.approx([0.02] * len(rates), rel=1e-14)


def test_cosine_default_t_max_ends_at_eta_min():
    """Without t_max the half cosine spans the epochs after warmup."""
    spec = parse_schedule({"type": "cosine", "warmup_epochs": 5})

    halfway = learning_rate(spec, BASE_LR, 5 + 35 // 2, EPOCHS)
    end = learning_rate(spec, BASE_LR, EPOCHS, EPOCHS)

    assert halfway == pytest.approx(BASE_LR * (1 + math.cos(math.pi * 17 / 35)) / 2)
    assert end == pytest.approx(0.0, abs=1e-15)


def test_schedules_match_torch():
    """step, exponential and cosine without warmup agree with torch.optim.lr_scheduler."""
    torch = pytest.importorskip("torch")
    schedulers = torch.optim.lr_scheduler
    factories = {
        "step": lambda opt: schedulers.StepLR(opt, step_size=7, gamma=0.5),
        "exponential": lambda opt: schedulers.ExponentialLR(opt, gamma=0.9),
        "cosine": lambda opt: schedulers.CosineAnnealingLR(opt, T_max=EPOCHS, eta_min=0.01),
        "cosine_t_max": lambda opt: schedulers.CosineAnnealingLR(opt, T_max=15, eta_min=0.02),
    }
    last_epoch = {"cosine_t_max": 15}
    for name, factory in factories.items():
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([parameter], lr=BASE_LR)
        scheduler = factory(optimizer)
        spec = parse_schedule(SCHEDULES[name])
        for epoch in range(last_epoch.get(name, EPOCHS)):
            torch_lr = optimizer.param_groups[0]["lr"]

            lr = learning_rate(spec, BASE_LR, epoch, EPOCHS)

            assert lr == pytest.approx(torch_lr, rel=1e-12), (name, epoch)
            optimizer.step()
            scheduler.step()


def test_training_records_scheduled_lr():
    """Each epoch's history record carries the rate the schedule gives that epoch."""
    x, y = linear_regression_data()
    schedule = {"type": "step", "step_size": 2, "gamma": 0.5, "warmup_epochs": 2}
    spec = {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 0.1},
        "schedule": schedule,
        "training": {"epochs": 6},
    }

    result = core.fit(spec, x, y)

    assert [record["lr"] for record in result.history] == pytest.approx(
        [0.05, 0.1, 0.1, 0.1, 0.05, 0.05]
    )
