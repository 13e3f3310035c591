"""Write the dlib descriptors of every face (``descriptors_{source}.npz`` from ``descriptors.py``) as an embedding
teacher file for ``data.teacher: {task: embedding, ...}`` (``path,e_0,...,e_127``; ``model.distill_embedding: {dim:
128}``), into the descriptors' folder.

    python tools/gender_teacher/embeddings_csv.py          # -> ../faces-extra/teacher/descriptors.csv
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from descriptors import OUT  # noqa: E402

SOURCES = ("utkface", "aaf", "celeba")


def main() -> None:
    out = os.path.join(OUT, "descriptors.csv")
    rows = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", *(f"e_{k}" for k in range(128))])
        for source in SOURCES:
            store = np.load(os.path.join(OUT, f"descriptors_{source}.npz"), allow_pickle=False)
            for path, desc in zip(store["paths"], store["desc"]):
                w.writerow([os.path.abspath(str(path)), *(f"{v:.5f}" for v in desc)])
                rows += 1
    print(f"wrote {out}: {rows} faces")


if __name__ == "__main__":
    main()
