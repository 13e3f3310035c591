"""The five papers' published result tables, transcribed from ``papers/*.md``, each row mapped to the config
that re-runs it, with the protocol facts (data, split, input, schedule, weights, hardware) deviations are
measured against. ``agegender reproduce`` (``workflows/reproduce.py``) runs them.

Numbers are the papers' own, in the papers' units. Rows whose config is ``None`` are results the paper
quotes from earlier work; they are shown for context and not re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agegender.errors import AgeGenderError

Derive = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], float | None]


@dataclass(frozen=True)
class Cell:
    """A published value: ``value`` (± ``std`` over folds); ``text`` replaces the number where the paper
    gives only a bound or a reading from a figure ("> 50", "≈ 85")."""

    value: float | None
    std: float | None = None
    text: str | None = None

    def show(self, digits: int = 2) -> str:
        if self.text:
            return self.text
        if self.value is None:
            return ""
        s = f"{self.value:.{digits}f}"
        return f"{s} ± {self.std:.{digits}f}" if self.std is not None else s


@dataclass(frozen=True)
class Column:
    """A table column: ``metric`` names a key of the test report (``results.json["test"]``) shown × ``scale``
    to match the paper's unit, or ``derive(test, result, config)`` computes it."""

    header: str
    metric: str
    scale: float = 1.0
    digits: int = 2
    derive: Derive | None = None


@dataclass(frozen=True)
class Protocol:
    """What the paper says it did; ``None`` where it is silent (nothing is then flagged)."""

    dataset: str  # reader name
    dataset_label: str
    n_images: int | None = None
    split_kind: str | None = None  # a data.splits kind
    split_text: str = ""
    split_sizes: tuple[int, int, int] | None = None  # train, val, test
    folds: int = 0  # k-fold cross-validation: mean ± std over this many folds
    input_size: tuple[int, int] | None = None  # (height, width) fed to the network
    epochs: int | None = None
    early_stopping: bool | None = None
    batch_size: int | None = None
    optimizer: str | None = None  # config optim.name
    lr: float | None = None
    pretrained: bool | None = None  # ImageNet initialisation
    hardware: str | None = None
    ten_crop: bool | None = None  # aminian_noubir's over-sampling at test time
    age_filter: tuple[int, int] | None = None
    age_scheme: str | None = None


@dataclass(frozen=True)
class Row:
    label: str
    published: Mapping[str, Cell]  # column header → value
    config: str | None  # repository-relative config path; None = quoted from earlier work
    eval: Mapping[str, Any] = field(default_factory=dict)  # evaluation overrides, e.g. {"ten_crop": True}
    requires: tuple[tuple[str, str], ...] = ()  # (config path, composition_args key) trained first, fold by fold
    runner: str | None = None  # a row run by another driver (shown with its command, not run here)
    note: str = ""
    metrics: Mapping[str, str] = field(default_factory=dict)  # column header → metric, where rows differ


@dataclass(frozen=True)
class Table:
    paper: str
    table: str  # id used on the command line: "2", "fig9", ...
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    protocol: Protocol
    source: str = ""  # where in the paper

    @property
    def configs(self) -> list[str]:
        return [r.config for r in self.rows if r.config]


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    file: str  # papers/<file>
    tables: tuple[Table, ...]
    aliases: tuple[str, ...] = ()


def _cells(headers: tuple[str, ...], values: tuple[float | str | Cell | None, ...]) -> dict[str, Cell]:
    """Published cells by column; a string keeps the paper's own digits ("85.1")."""
    def cell(v: float | str | Cell) -> Cell:
        if isinstance(v, Cell):
            return v
        return Cell(float(v), text=v) if isinstance(v, str) else Cell(v)

    return {h: cell(v) for h, v in zip(headers, values) if v is not None}


def _ms(mean: float, std: float) -> Cell:
    return Cell(mean, std)


# -- derived columns ------------------------------------------------------------------------------------

def _params_m(test: Mapping[str, Any], result: Mapping[str, Any], cfg: Mapping[str, Any]) -> float | None:
    p = result.get("parameters")
    return None if p is None else p / 1e6


def _train_minutes(test: Mapping[str, Any], result: Mapping[str, Any], cfg: Mapping[str, Any]) -> float | None:
    s = result.get("train_seconds")
    return None if s is None else s / 60


def _older_15_20(test: Mapping[str, Any], result: Mapping[str, Any], cfg: Mapping[str, Any]) -> float | None:
    """Share (%) of true 15-20 (adience8 group 3) predicted into an older group (jamoliddin §V)."""
    cm = test.get("age_group_confusion")
    if not cm or test.get("age_scheme") != "adience8":
        return None
    row = cm[3]
    return 100.0 * sum(row[4:]) / sum(row) if sum(row) else None


def age_norm_max(cfg: Mapping[str, Any]) -> float:
    """dey_aggarwal divides age by "the maximum age value in the dataset": the age head's ``max_age`` when
    the config sets it, else the config's age filter maximum, else UTKFace's 116."""
    head = (cfg.get("model", {}).get("heads") or {}).get("age") or {}
    if head.get("max_age"):
        return float(head["max_age"])
    flt = cfg.get("data", {}).get("filter") or {}
    return float(flt.get("max_age") or 116)


def _mae_norm(test: Mapping[str, Any], result: Mapping[str, Any], cfg: Mapping[str, Any]) -> float | None:
    mae = test.get("age_mae")
    return None if mae is None else mae / age_norm_max(cfg)


# -- jamoliddin_yoo2022 -----------------------------------------------------------------------------------

_J = "configs/jamoliddin2022/"
_J_COLS = (
    Column("Age %", "age_group_accuracy", 100),
    Column("Gender %", "gender_accuracy", 100),
    Column("Params (M)", "parameters_m", derive=_params_m, digits=1),
    Column("Training time", "train_minutes", derive=_train_minutes, digits=1),
    Column("15-20 → older %", "older_15_20", derive=_older_15_20, digits=0),
)
_JH = tuple(c.header for c in _J_COLS)
JAMOLIDDIN = Paper(
    "jamoliddin2022",
    "Jamoliddin & Yoo 2022, Age and Gender Classification with Small Scale CNN (UTKFace)",
    "jamoliddin_yoo2022_small_scale_cnn_utkface.md",
    aliases=("jamoliddin", "jamoliddin_yoo2022"),
    tables=(
        Table(
            "jamoliddin2022", "2", "Comparison against existing methods (8 age groups, 2 genders)", _J_COLS,
            (
                Row("AlexNet", _cells(_JH, ("55.96", "85.1", "61", "398")), _J + "table2_alexnet.yaml"),
                Row("VGG11", _cells(_JH, ("57.06", "83.63", "133", "90")), _J + "table2_vgg11.yaml"),
                Row("ResNet18", _cells(_JH, ("58.6", "87.4", "11", "120")), _J + "table2_resnet18.yaml"),
                Row("DenseNet161", _cells(_JH, ("59.22", "87.28", "26.6", "150")), _J + "table2_densenet161.yaml"),
                Row("Our model (small CNN)", _cells(_JH, ("61.34", "88.67", "11.5", "75", Cell(52, text="> 52"))),
                    _J + "table2_small_cnn.yaml"),
                Row("Our model, class-weighted loss (§V eq. 1)", _cells(_JH, ("52.85",)),
                    _J + "table2_small_cnn_weighted.yaml", note="§V text: 52.85 % with w_i = E(m)/m_i"),
            ),
            Protocol("utkface", "UTKFace (24,104 images)", n_images=24104, split_kind="stratified",
                     split_text="20 % test, 15 % of the rest validation, stratified by the 8 age groups",
                     split_sizes=(16391, 2892, 4821), input_size=(256, 256), epochs=30, early_stopping=False,
                     batch_size=32, optimizer="adam", lr=1e-4, age_scheme="adience8"),
            source="Table 2 and §V (training time: unit and hardware not stated)",
        ),
    ),
)

# -- aminian_noubir ---------------------------------------------------------------------------------------

_A = "configs/aminian_noubir/"
_A_PROTO = Protocol(
    "adience", "Adience (19,487 labelled faces, 2,284 subjects)", n_images=19487, split_kind="kfold",
    split_text="standard 5-fold subject-exclusive cross-validation (Eidinger et al.)", folds=5,
    input_size=(227, 227), batch_size=50, optimizer="sgd", lr=1e-3, pretrained=False,
    hardware="GPU (GeForce GTX 1060 6 GB)", ten_crop=True, age_scheme="adience8",
)
_A_GENDER = Column("Accuracy", "gender_accuracy", 100, 1)
_A_AGE = (Column("Exact", "age_group_accuracy", 100, 1), Column("1-off", "age_group_one_off", 100, 1))
_A_REQ = ((_A + "table2_gender_net.yaml", "gender_checkpoint"),)
AMINIAN = Paper(
    "aminian_noubir",
    "Aminian & Noubir, Deep Cross-modal Age Estimation (Adience)",
    "aminian_noubir_cross_modal_age_adience.md",
    aliases=("aminian", "aminian_noubir"),
    tables=(
        Table(
            "aminian_noubir", "2", "Gender classification accuracy", (_A_GENDER,),
            (
                Row("Best from [71] (Eidinger et al.)", {"Accuracy": _ms(77.8, 1.3)}, None),
                Row("Best from [72] (Hassner et al.)", {"Accuracy": _ms(79.3, 0.0)}, None),
                Row("Best from [1] single-crop (Levi & Hassner)", {"Accuracy": _ms(85.9, 1.4)},
                    _A + "table2_gender_net.yaml", eval={"ten_crop": False}),
                Row("Best from [1] over-sample (Levi & Hassner)", {"Accuracy": _ms(86.8, 1.4)},
                    _A + "table2_gender_net.yaml", eval={"ten_crop": True}),
            ),
            _A_PROTO, source="Table 2 (re-trained gender net = [1]'s architecture)",
        ),
        Table(
            "aminian_noubir", "3", "Age classification (over-sampling): exact and 1-off accuracy", _A_AGE,
            (
                Row("Best from [71] (Eidinger et al.)", {"Exact": _ms(45.1, 2.6), "1-off": _ms(79.5, 1.4)}, None),
                Row("single-crop [1]", {"Exact": _ms(49.5, 4.4), "1-off": _ms(84.6, 1.7)},
                    _A + "table3_baseline_age.yaml", eval={"ten_crop": False}),
                Row("over-sample [1]", {"Exact": _ms(50.7, 5.1), "1-off": _ms(84.7, 2.2)},
                    _A + "table3_baseline_age.yaml", eval={"ten_crop": True}),
                Row("Manual 1 Architecture", {"Exact": _ms(53.3, 3.2), "1-off": _ms(85.9, 2.5)},
                    _A + "table3_manual1.yaml", eval={"ten_crop": True}, requires=_A_REQ),
                Row("Manual 2 Architecture", {"Exact": _ms(55.1, 2.6), "1-off": _ms(88.5, 2.9)},
                    _A + "table3_manual2.yaml", eval={"ten_crop": True}, requires=_A_REQ),
                Row("E2E System", {"Exact": _ms(60.2, 1.8), "1-off": _ms(92.5, 1.8)},
                    _A + "table3_e2e.yaml", eval={"ten_crop": True}, requires=_A_REQ),
            ),
            _A_PROTO, source="Table 3",
        ),
        Table(
            "aminian_noubir", "4", "Iterative model refinement", (Column("Accuracy", "accuracy", 100, 1),),
            (
                Row("Gender, step 1", {"Accuracy": _ms(86.8, 1.4)}, _A + "table2_gender_net.yaml",
                    eval={"ten_crop": True}, metrics={"Accuracy": "gender_accuracy"}),
                Row("Age, step 1 (Manual 2)", {"Accuracy": _ms(55.1, 2.6)}, _A + "table3_manual2.yaml",
                    eval={"ten_crop": True}, requires=_A_REQ, metrics={"Accuracy": "age_group_accuracy"}),
                Row("Gender, step 2 (on the age net's embedding)", {"Accuracy": _ms(84.8, 1.2)},
                    _A + "table4_iterative_refinement.yaml", runner="agegender refine {config} "
                    "--data DIR --output runs/refine", metrics={"Accuracy": "gender_accuracy"}),
            ),
            _A_PROTO, source="Table 4",
        ),
    ),
)

# -- kang2019 ---------------------------------------------------------------------------------------------

_K = "configs/kang2019/"
_K_PROTO = Protocol(
    "imdb_wiki", "IMDB-WIKI (62,328 photos of 20,284 subjects)", split_kind=None,
    split_text="not stated (small-data runs: ~6,000 train / 800 validation / 1,000 test)", split_sizes=(6000, 800, 1000),
    input_size=(128, 128), optimizer="sgd", lr=0.01, pretrained=False, age_scheme="kang4",
)
_K_JOINT = Protocol(
    "imdb_wiki", "IMDB-WIKI (~30,000 of 62,328 photos used)", n_images=30000, split_kind=None,
    split_text="not stated", input_size=(128, 128), optimizer="sgd", lr=0.01, pretrained=False, age_scheme="kang4",
)
_K_AGE = Column("Age %", "age_group_accuracy", 100, 0)
_K_GENDER = Column("Gender %", "gender_accuracy", 100, 0)
KANG = Paper(
    "kang2019",
    "Kang, Jiang & Li 2019, Multi-task learning based on CNN for age and gender (IMDB-WIKI, 4 age intervals)",
    "kang2019_multitask_cnn_viola_jones.md",
    aliases=("kang",),
    tables=(
        Table("kang2019", "fig7", "Gender CNN (3 conv + 2 FC), small data: test accuracy", (_K_GENDER,),
              (Row("Gender net", {"Gender %": Cell(85, text="≈ 85")}, _K + "fig7_gender_net.yaml",
                   note="read from the text of §IV.B (Fig. 7 is a plot); the paper's run over-fits"),),
              _K_PROTO, source="§IV.B and Fig. 7 (no numeric table in the paper)"),
        Table("kang2019", "fig8", "Age LeNet, small data: test accuracy (4 intervals)", (_K_AGE,),
              (Row("LeNet age net", {"Age %": Cell(40, text="≈ 40")}, _K + "fig8_lenet_age.yaml",
                   note="read from the text of §IV.C (Fig. 8 is a plot)"),),
              _K_PROTO, source="§IV.C and Fig. 8"),
        Table("kang2019", "fig9", "Multi-task net (shared convolutions): test accuracy", (_K_AGE, _K_GENDER),
              (Row("Multi-task, trainable p, q (eq. 5)", {"Age %": Cell(50, text="> 50"),
                                                          "Gender %": Cell(85, text="> 85")},
                   _K + "fig9_multitask.yaml", note="read from the text of §IV.D (Fig. 9 is a plot)"),
               Row("Multi-task, uncertainty weighting (beyond the paper)", {}, _K + "fig9_multitask_uncertainty.yaml")),
              _K_JOINT, source="§IV.D and Fig. 9"),
    ),
)

# -- chatzitzisi2020 --------------------------------------------------------------------------------------

_C = "configs/chatzitzisi2020/"
_C_GENDER = (
    Column("Prec", "gender_precision", 100), Column("Rec", "gender_recall", 100), Column("F1", "gender_f1", 100),
    Column("mAcc", "gender_balanced_accuracy", 100), Column("Acc", "gender_accuracy", 100),
)
_C_AGE = (
    Column("mPrec", "age_group_macro_precision", 100), Column("mRec", "age_group_macro_recall", 100),
    Column("mF1", "age_group_macro_f1", 100), Column("Acc", "age_group_accuracy", 100),
)
_C_ML = (
    Column("Prec", "pedestrian_example_precision", 100), Column("Rec", "pedestrian_example_recall", 100),
    Column("F1", "pedestrian_example_f1", 100), Column("mAcc", "pedestrian_mA", 100),
    Column("Acc", "pedestrian_label_accuracy", 100),
)
_C_COMMON: dict[str, Any] = {"input_size": (256, 128), "early_stopping": True, "batch_size": 50, "optimizer": "sgd",
                              "pretrained": True, "hardware": "GPU (NVIDIA Titan Xp)", "age_scheme": "peta5"}
_C_PETA = Protocol("peta", "PETA (19,000 images)", n_images=19000, split_kind="peta_paper",
                   split_text="random 9,500 / 1,900 / 7,600 by image", split_sizes=(9500, 1900, 7600),
                   **_C_COMMON)
_C_RAP = Protocol("rap", "RAP v2 (84,928 images)", n_images=84928, split_kind=None,
                  split_text="partition not stated", **_C_COMMON)


def _c_rows(table: str, losses: tuple[str, ...], labels: tuple[str, ...], values: tuple[tuple[float, ...], ...],
            headers: tuple[str, ...]) -> tuple[Row, ...]:
    rows = [Row(lab, _cells(headers, vals), f"{_C}table{table}_{loss}.yaml")
            for lab, loss, vals in zip(labels, losses, values)]
    rows.append(Row("ResNet+AE, predicted attributes (beyond the paper)", {},
                    f"{_C}table{table}_resnet_ae_predicted.yaml",
                    note="an attribute head feeds the autoencoder, so only an image is needed at test time"))
    return tuple(rows)


_CG = tuple(c.header for c in _C_GENDER)
_CA = tuple(c.header for c in _C_AGE)
_CM = tuple(c.header for c in _C_ML)
_BIN = ("bce", "wbce", "bfl", "wbfl", "resnet_ae")
_BIN_LAB = ("ResNet-BCE", "ResNet-WBCE", "ResNet-BFL", "ResNet-WBFL", "ResNet+AE")
_CAT = ("cce", "wcce", "cfl", "wcfl", "resnet_ae")
_CAT_LAB = ("ResNet-CCE", "ResNet-WCCE", "ResNet-CFL", "ResNet-WCFL", "ResNet+AE")
CHATZITZISI = Paper(
    "chatzitzisi2020",
    "Chatzitzisi, Vrigkas & Nikou 2020, Gender and Age Estimation without Facial Information (PETA, RAP v2)",
    "chatzitzisi2020_pedestrian_gender_age_losses_resnet_ae.md",
    aliases=("chatzitzisi",),
    tables=(
        Table("chatzitzisi2020", "1", "Gender, PETA (%)", _C_GENDER, _c_rows("1", _BIN, _BIN_LAB, (
            (88.80, 86.07, 87.42, 88.57, 88.81), (87.86, 87.89, 87.86, 88.93, 89.03),
            (85.51, 79.87, 82.58, 84.36, 84.79), (84.57, 84.18, 84.38, 85.77, 85.92),
            (91.67, 89.79, 90.71, 91.53, 91.70)), _CG), _C_PETA, source="Table 1"),
        Table("chatzitzisi2020", "2", "Gender, RAP v2 (%)", _C_GENDER, _c_rows("2", _BIN, _BIN_LAB, (
            (93.18, 91.81, 92.49, 94.38, 95.35), (91.00, 94.91, 92.91, 95.33, 95.49),
            (92.90, 91.82, 92.36, 94.32, 95.26), (89.46, 94.17, 91.76, 94.57, 94.73),
            (91.16, 92.30, 91.72, 94.12, 94.81)), _CG), _C_RAP, source="Table 2"),
        Table("chatzitzisi2020", "3", "Age (5 groups), PETA (%)", _C_AGE, _c_rows("3", _CAT, _CAT_LAB, (
            (85.55, 66.76, 73.19, 77.29), (67.37, 70.53, 68.72, 70.76), (84.01, 68.03, 73.85, 76.89),
            (54.23, 64.64, 57.80, 64.04), (80.06, 72.75, 75.84, 79.61)), _CA), _C_PETA, source="Table 3"),
        Table("chatzitzisi2020", "4", "Age (5 groups), RAP v2 (%)", _C_AGE, _c_rows("4", _CAT, _CAT_LAB, (
            (41.73, 29.97, 31.45, 65.71), (26.27, 49.92, 24.51, 39.36), (48.46, 36.82, 39.81, 64.82),
            (26.00, 49.09, 23.30, 37.31), (41.57, 34.30, 36.27, 64.94)), _CA), _C_RAP, source="Table 4"),
        Table("chatzitzisi2020", "5", "Multi-label gender + age, PETA (%)", _C_ML, _c_rows("5", _BIN, _BIN_LAB, (
            (79.20, 77.88, 78.53, 81.59, 91.40), (79.22, 79.58, 79.40, 82.82, 91.09),
            (76.90, 75.95, 76.42, 80.64, 90.47), (77.64, 78.52, 78.08, 81.78, 90.37),
            (80.02, 80.80, 80.41, 84.49, 91.54)), _CM), _C_PETA,
              source="Table 5 (Prec/Rec/F1 per sample; mAcc label-based; Acc taken as element-wise accuracy)"),
        Table("chatzitzisi2020", "6", "Multi-label gender + age, RAP v2 (%)", _C_ML, _c_rows("6", _BIN, _BIN_LAB, (
            (71.08, 70.63, 70.85, 63.56, 88.40), (70.71, 71.52, 71.11, 67.86, 88.25),
            (69.31, 69.53, 69.42, 66.37, 87.97), (68.82, 70.40, 69.60, 68.46, 87.73),
            (67.63, 68.30, 67.96, 67.76, 87.29)), _CM), _C_RAP, source="Table 6"),
    ),
)

# -- dey_aggarwal -----------------------------------------------------------------------------------------

_D = "configs/dey_aggarwal/"
_D_COLS = (
    Column("Age MAE (norm.)", "age_mae_norm", derive=_mae_norm),
    Column("Ethnicity acc.", "ethnicity_accuracy"),
    Column("Gender acc.", "gender_accuracy"),
    Column("Age MAE (years)", "age_mae", digits=1),
)
_DH = tuple(c.header for c in _D_COLS)
DEY = Paper(
    "dey_aggarwal",
    "Dey & Aggarwal, Ethnicity, Age and Gender Recognition using Multi-Task Learning (UTKFace)",
    "dey_aggarwal_multitask_transfer_utkface.md",
    aliases=("dey",),
    tables=(
        Table(
            "dey_aggarwal", "3", "Test metrics per backbone (age MAE on age / max age)", _D_COLS,
            tuple(Row(lab, _cells(_DH, vals), f"{_D}table3_{name}.yaml") for lab, name, vals in (
                ("VGG19", "vgg19", (0.15, 0.40, 0.52)),
                ("ResNet50", "resnet50", (0.15, 0.41, 0.52)),
                ("Inception v3", "inception_v3", (0.14, 0.59, 0.76)),
                ("Xception", "xception", (0.11, 0.81, 0.94)),
                ("MobileNet", "mobilenet", (0.11, 0.79, 0.94)),
                ("Transformer (MobileNet + encoder)", "transformer", (0.46, 0.41, 0.53)),
            )),
            Protocol("utkface", "UTKFace (23,725 images; ages 10-65 kept)", n_images=18603, split_kind="random",
                     split_text="9,115 / 3,907 / 5,581 after keeping ages 10-65", split_sizes=(9115, 3907, 5581),
                     input_size=(224, 224), epochs=10, batch_size=16, optimizer="rmsprop", pretrained=True,
                     age_filter=(10, 65)),
            source="Table 3 (test); Tables 1-2 give the same metrics on the training and validation parts",
        ),
    ),
)

PAPERS: tuple[Paper, ...] = (JAMOLIDDIN, AMINIAN, KANG, CHATZITZISI, DEY)


def get_paper(name: str) -> Paper:
    """A paper by key, alias or its file's stem (``jamoliddin_yoo2022_small_scale_cnn_utkface``)."""
    key = name.strip().lower()
    for p in PAPERS:
        if key in (p.key, *p.aliases, p.file.removesuffix(".md")):
            return p
    known = ", ".join(p.key for p in PAPERS)
    raise AgeGenderError(f"unknown paper {name!r}; choose one of: {known} (see `agegender reproduce --list`)",
                         code="unknown_paper")


def get_tables(paper: str, table: str | None = None) -> list[Table]:
    """The paper's tables, or the one named ``table`` ("2", "Table 2", "table2" all match)."""
    p = get_paper(paper)
    if table is None:
        return list(p.tables)
    t = table.strip().lower().removeprefix("table").strip()
    found = [tb for tb in p.tables if tb.table.lower() == t]
    if not found:
        raise AgeGenderError(f"{p.key} has no table {table!r}; its tables: {', '.join(tb.table for tb in p.tables)}",
                             code="unknown_table")
    return found
