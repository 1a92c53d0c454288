"""Writes tests/fixtures/hf/ with the real Hugging Face libraries (run through tools/hf_reference.sh).

safetensors/reference.safetensors is written by safetensors.torch.save_file; reference.json holds,
for each of its tensors, the dtype, shape and values that library put in, for the C++ tests to
read the file against. The tensors are seeded: the output is the same on every run.
"""
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "hf")


def safetensors_fixture():
    out = os.path.join(OUT, "safetensors")
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(2, 3, generator=g),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "f16": torch.randn(3, generator=g).to(torch.float16),
        "f64": torch.randn(2, generator=g, dtype=torch.float64),
        "i64": torch.arange(5, dtype=torch.int64) - 2,
        "i32": torch.tensor([7, -8], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"format": "pt", "by": "safetensors"})
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    reference = {
        name: {"dtype": names[t.dtype], "shape": list(t.shape), "values": [float(v) for v in t.flatten().tolist()]}
        for name, t in tensors.items()
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    safetensors_fixture()
    print("[hf] wrote", OUT)
