"""Real datasets, parsed from the copies of scikit-learn's data files in `data/`.

Each file is parsed once per process and cached. The cached arrays are read-only, so a
caller cannot change what the next caller loads. data/README.md names the original
source and the license of every file.
"""

import csv
import gzip
import io
from functools import cache
from importlib import resources

import numpy as np

from core.datasets.dataset import Dataset, make_read_only

FROM_SCIKIT_LEARN = "This is the copy distributed with scikit-learn (BSD-3-Clause license)."

IRIS_FEATURES = (
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
)
WINE_FEATURES = (
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
)
_CELL_NUCLEUS_MEASURES = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)
# Ten measures, each as its mean, its standard error and its worst (largest) value.
BREAST_CANCER_FEATURES = (
    tuple(f"mean {measure}" for measure in _CELL_NUCLEUS_MEASURES)
    + tuple(f"{measure} error" for measure in _CELL_NUCLEUS_MEASURES)
    + tuple(f"worst {measure}" for measure in _CELL_NUCLEUS_MEASURES)
)
DIGITS_FEATURES = tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8))
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))
# s1..s6 are blood serum measurements: total cholesterol, LDL, HDL, total cholesterol / HDL,
# triglycerides and blood sugar. scikit-learn describes s5 as "possibly log of serum
# triglycerides level".
DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def load_iris() -> Dataset:
    """Load Fisher's iris data: x of shape (150, 4) in cm, y of shape (150,) with 3 classes."""
    x, y, classes = _read_csv_with_header("iris.csv")
    return Dataset(
        name="iris",
        x=x,
        y=y,
        task="classification",
        feature_names=IRIS_FEATURES,
        classes=classes,
        description=(
            "Sepal and petal sizes of 50 flowers from each of three iris species, from "
            "R.A. Fisher (1936), 'The use of multiple measurements in taxonomic problems'. "
            f"{FROM_SCIKIT_LEARN}"
        ),
    )


def load_wine() -> Dataset:
    """Load the wine recognition data: x of shape (178, 13), y of shape (178,) with 3 classes."""
    x, y, classes = _read_csv_with_header("wine_data.csv")
    return Dataset(
        name="wine",
        x=x,
        y=y,
        task="classification",
        feature_names=WINE_FEATURES,
        classes=classes,
        description=(
            "Chemical analysis of wines grown in one region of Italy by three cultivators "
            "(Forina et al., PARVUS), from the UCI Machine Learning Repository. "
            f"{FROM_SCIKIT_LEARN}"
        ),
    )


def load_breast_cancer() -> Dataset:
    """Load Breast Cancer Wisconsin (Diagnostic): x of shape (569, 30), y of shape (569,).

    Class 0 is malignant and class 1 benign.
    """
    x, y, classes = _read_csv_with_header("breast_cancer.csv")
    return Dataset(
        name="breast_cancer",
        x=x,
        y=y,
        task="classification",
        feature_names=BREAST_CANCER_FEATURES,
        classes=classes,
        description=(
            "Cell nucleus measurements from images of fine needle aspirates of breast masses, "
            "labelled malignant or benign (Wolberg, Street and Mangasarian, 1995), from the "
            f"UCI Machine Learning Repository. {FROM_SCIKIT_LEARN}"
        ),
    )


def load_digits() -> Dataset:
    """Load 8x8 images of handwritten digits: x of shape (1797, 64), y of shape (1797,).

    Each row of x is one image in row-major order, with pixel values 0..16.
    """
    x, y = _read_digits()
    return Dataset(
        name="digits",
        x=x,
        y=y,
        task="classification",
        feature_names=DIGITS_FEATURES,
        classes=DIGITS_CLASSES,
        description=(
            "8x8 images of handwritten digits with pixel values 0..16 (Alpaydin and Kaynak, "
            "1998), the test set of Optical Recognition of Handwritten Digits from the UCI "
            f"Machine Learning Repository. {FROM_SCIKIT_LEARN}"
        ),
    )


def load_diabetes() -> Dataset:
    """Load the diabetes data, unscaled: x of shape (442, 10), y of shape (442,), float64.

    y is a quantitative measure of disease progression one year after the baseline
    measurements in x.
    """
    x, y = _read_diabetes()
    return Dataset(
        name="diabetes",
        x=x,
        y=y,
        task="regression",
        feature_names=DIABETES_FEATURES,
        classes=None,
        description=(
            "Age, sex, body mass index, blood pressure and six blood serum measurements of "
            "442 diabetes patients, with disease progression one year later as the target "
            "(Efron, Hastie, Johnstone and Tibshirani, 2004, 'Least Angle Regression'). "
            f"{FROM_SCIKIT_LEARN} The features are unscaled."
        ),
    )


@cache
def _read_csv_with_header(filename: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse a CSV file whose first line is `n_samples,n_features,class_0_name,...`.

    Every following line contains n_features values and then the class index. Returns x of
    shape (n_samples, n_features), float64, y of shape (n_samples,), int64, and the class
    names.
    """
    reader = csv.reader(io.StringIO(_read_data_text(filename)))
    header = next(reader)
    table = np.array(list(reader), dtype=np.float64)

    n_samples, n_features = int(header[0]), int(header[1])
    if table.shape != (n_samples, n_features + 1):
        raise ValueError(
            f"Invalid data file {filename}: the header gives {n_samples} rows of "
            f"{n_features} features and a class, but the table has shape {table.shape}. "
            "Reinstall steep to restore the file."
        )
    x, y = _split_features_and_classes(table, filename)
    return x, y, tuple(header[2:])


@cache
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Parse digits.csv.gz, 1797 rows of 64 pixel values and then the digit."""
    text = _read_data_text("digits.csv.gz")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64)
    return _split_features_and_classes(table, "digits.csv.gz")


@cache
def _read_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """Parse the space-separated diabetes files: x of shape (442, 10) and y of shape (442,)."""
    x = np.loadtxt(io.StringIO(_read_data_text("diabetes_data_raw.csv.gz")), dtype=np.float64)
    y = np.loadtxt(io.StringIO(_read_data_text("diabetes_target.csv.gz")), dtype=np.float64)
    return make_read_only(x), make_read_only(y)


def _split_features_and_classes(table: np.ndarray, filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a table whose last column is the class index into read-only x and y."""
    # A copy, not a view, so that no writable base array of x is reachable through x.base.
    x = np.ascontiguousarray(table[:, :-1])  # (n_samples, n_features)
    last_column = table[:, -1]
    y = last_column.astype(np.int64)
    if not np.array_equal(y, last_column):
        raise ValueError(
            f"Invalid data file {filename}: the last column must contain whole class indices. "
            "Reinstall steep to restore the file."
        )
    return make_read_only(x), make_read_only(y)


def _read_data_text(filename: str) -> str:
    """Read a file of the package's data folder as UTF-8 text, decompressing .gz files."""
    data = (resources.files("core.datasets") / "data" / filename).read_bytes()
    if filename.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")
