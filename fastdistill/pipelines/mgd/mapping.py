"""Class-id mapping files: which generator class id each ImageFolder class folder is sampled as.

A mapping is JSON ``{"classes": {"<folder name>": <generator class id>, ...}}`` (other keys are documentation).
Shipped: ``imagenette``, ``imagewoof``, ``imageidc`` (folder names = ImageNet WNIDs, ids = ImageNet-1k indices, the
DiT-XL/2 label ids). ``--class-map`` takes one of those names or a path to your own file.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fastdistill.errors import FastDistillError

SHIPPED = ("imagenette", "imagewoof", "imageidc")


def load_mapping(spec: str) -> dict[str, int]:
    """Folder name -> generator class id, from a shipped name or a JSON file path."""
    if spec in SHIPPED:
        text = resources.files("fastdistill.pipelines.mgd").joinpath("mappings", f"{spec}.json").read_text()
        source = f"shipped mapping {spec}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise FastDistillError(f"--class-map {spec}: not a shipped mapping ({', '.join(SHIPPED)}) nor a file")
        text, source = path.read_text(), str(path)
    try:
        classes = json.loads(text)["classes"]
        return {str(k): int(v) for k, v in classes.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FastDistillError(f"{source} is not a class mapping: expected JSON "
                               '{"classes": {"<folder>": <class id>, ...}}') from exc


def shipped_union() -> dict[str, int]:
    merged: dict[str, int] = {}
    for name in SHIPPED:
        merged.update(load_mapping(name))
    return merged


def map_classes(folders: list[str] | tuple[str, ...], num_generator_classes: int, spec: str | None) -> list[int]:
    """Generator class id of every dataset class folder; ``spec`` None searches the shipped ImageNet mappings."""
    mapping = load_mapping(spec) if spec else shipped_union()
    where = f"--class-map {spec}" if spec else f"the shipped mappings ({', '.join(SHIPPED)})"
    missing = [f for f in folders if f not in mapping]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise FastDistillError(f"class folder(s) {shown} not covered by {where}; pass --class-map FILE with "
                               '{"classes": {"<folder>": <generator class id>}} (see pipelines/mgd/README.md)')
    ids = [mapping[f] for f in folders]
    bad = [f"{f}={i}" for f, i in zip(folders, ids, strict=True) if not 0 <= i < num_generator_classes]
    if bad:
        raise FastDistillError(f"class ids {', '.join(bad[:5])} from {where} are outside the generator's "
                               f"{num_generator_classes} classes; fix the mapping file")
    if len(set(ids)) != len(ids):
        raise FastDistillError(f"{where} maps two class folders to the same generator class; fix the mapping file")
    return ids
