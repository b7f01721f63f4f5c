"""Write one member of an ensemble classifier file back out as a classifier file of its own.

An ensemble file (``dermoseg combine-classifiers``) holds its members' weights, configs, temperatures and
provenance, so a member can take part in another ensemble (issue 13: swap one member for a variant) without its
original training run. The member's temperature, input size and normalisation are the ones it had in the
ensemble; no out-of-distribution sidecar is written (``combine-classifiers`` fits the new ensemble's own).

    python experiments/ensemble_member.py src/dermoseg/weights/classifier.pt 1 --out runs/members/lite0_224.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dermoseg import modelfile
from dermoseg.classification import HAM_CLASSES
from dermoseg.errors import ModelFileError


def extract_member(ensemble: str | Path, index: int, out: str | Path) -> Path:
    """Write member ``index`` (0-based) of the ensemble classifier file ``ensemble`` to ``out`` (``.pt`` + ``.json``).

    Raises
    ------
    ModelFileError
        If ``ensemble`` is not an ensemble classifier file or has no member ``index``.
    ValueError, FileExistsError
        If ``out`` does not end in ``.pt``, or it or a file beside it exists (never overwritten):
        :func:`dermoseg.modelfile.refuse_existing_output`.
    """
    path, payload = modelfile.read(ensemble, "classifier")
    members = payload["config"]["model"].get("members")
    if payload["config"]["model"].get("architecture") != "ensemble" or not members:
        raise ModelFileError(f"{path}: not an ensemble classifier file")
    if not 0 <= index < len(members):
        raise ModelFileError(f"{path}: has members 0 to {len(members) - 1}, not {index}")
    out = modelfile.refuse_existing_output(out)
    member = members[index]
    prefix = f"members.{index}."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    config = {"model": member["model"], "image_size": member["image_size"], "classes": list(HAM_CLASSES),
              "normalisation": member["normalisation"], "tta": True}
    info = {"member_of": {"file": path.name, "sha256": modelfile.file_sha256(path), "index": index},
            **payload["info"]["ensemble_of"][index]}
    return modelfile.write(out, "classifier", config, state, info, temperature=float(member["temperature"]))


def main() -> None:
    """Command line: ENSEMBLE INDEX --out FILE."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ensemble", help='ensemble classifier file, or "classifier" for the shipped one')
    p.add_argument("index", type=int, help="0-based member number")
    p.add_argument("--out", type=Path, required=True, help="output .pt (never overwritten)")
    args = p.parse_args()
    print(f"wrote {extract_member(args.ensemble, args.index, args.out)}")


if __name__ == "__main__":
    main()
