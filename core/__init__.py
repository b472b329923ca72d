"""steep's engine: NumPy backpropagation, the job spec, and the training loop.

Train in a script without the service::

    import core
    data = core.load_builtin("iris")
    result = core.fit(spec, data.x, data.y, classes=data.classes)
    result.model.predict(data.x[:5])
"""

from core.checkpoint import TrainingState
from core.datasets import BUILTIN_NAMES, Dataset, load_builtin
from core.fit import fit, infer_task, make_trainer
from core.model import Model
from core.paramfile import (
    PARAMETERS_FORMAT,
    load_model,
    save_json,
    save_npz,
    to_json_dict,
    to_npz_bytes,
)
from core.spec import JobSpec, parse_spec
from core.training import BatchProgress, Callback, FitResult, Trainer

__all__ = [
    "BUILTIN_NAMES",
    "PARAMETERS_FORMAT",
    "BatchProgress",
    "Callback",
    "Dataset",
    "FitResult",
    "JobSpec",
    "Model",
    "Trainer",
    "TrainingState",
    "fit",
    "infer_task",
    "load_builtin",
    "load_model",
    "make_trainer",
    "parse_spec",
    "save_json",
    "save_npz",
    "to_json_dict",
    "to_npz_bytes",
]
