"""Assemble packaged models of the same tasks and preprocessing into one ensemble package
(``agegender.models.ensemble``): one file, one ONNX graph, each head the mean of the members' temperature-scaled
logits. Calibrate the result like any package afterwards, which fits the ensemble heads' temperatures on the
validation split and writes the model card:

    python tools/ensemble_package.py A.safetensors B.safetensors -o E.safetensors
    agegender package E.safetensors -o default-body.safetensors --name default-body

``--average`` makes one network of members of one architecture fine-tuned from the same start instead: its weights
the members' mean (a uniform "model soup"), at one network's cost. Calibrate it the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import agegender  # noqa: F401  (torchvision compat first)
from agegender.errors import AgeGenderError
from agegender.models.ensemble import assemble_packages, average_packages
from agegender.models.package import save_package


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", help="two or more packages (.safetensors) or checkpoints")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--average", action="store_true", help="one network with the members' mean weights")
    args = ap.parse_args()
    if len(args.members) < 2:
        raise SystemExit("error: name two or more member packages")
    try:
        make = average_packages if args.average else assemble_packages
        out = save_package(make(args.members), args.output, half=True)
    except AgeGenderError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB, {len(args.members)} members"
          f"{', averaged' if args.average else ''})")


if __name__ == "__main__":
    main()
