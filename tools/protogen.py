"""Generate Python code and a buf image from `protos/`.

protovalidate 2.x ships `buf/validate/validate.proto` only as a compiled descriptor inside
the installed package, so the descriptor set protoc needs is written here at build time
from that package instead of copying third-party sources into the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python"
BUILD = ROOT / "build"
VALIDATE_PROTO = "buf/validate/validate.proto"


def write_validate_descriptor_set(path: Path) -> None:
    """Write validate.proto and the well-known files it imports as a FileDescriptorSet."""
    from protovalidate._gen.buf.validate import validate_pb

    fds = descriptor_pb2.FileDescriptorSet()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        module.DESCRIPTOR.CopyToProto(fds.file.add())
    validate = fds.file.add()
    validate.ParseFromString(validate_pb._DESC.proto.to_binary())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fds.SerializeToString())


def run_protoc(args: list[str]) -> None:
    code = protoc.main(["protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--image",
        type=Path,
        default=BUILD / "image.binpb",
        help="where to write the buf image (descriptor set with imports)",
    )
    parser.add_argument("--protos", type=Path, default=PROTOS, help="proto root to compile")
    parser.add_argument("--image-only", action="store_true", help="write only the image")
    ns = parser.parse_args()

    validate_set = BUILD / "protovalidate.binpb"
    write_validate_descriptor_set(validate_set)
    sources = sorted(str(p.relative_to(ns.protos)) for p in ns.protos.rglob("*.proto"))
    if not sources:
        sys.exit(f"no .proto files under {ns.protos}")
    common = [f"--descriptor_set_in={validate_set}", f"-I{ns.protos}"]
    ns.image.parent.mkdir(parents=True, exist_ok=True)
    run_protoc(
        [
            *common,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={ns.image}",
            *sources,
        ]
    )
    if ns.image_only:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    run_protoc(
        [*common, f"--python_out={OUT}", f"--pyi_out={OUT}", f"--grpc_python_out={OUT}", *sources]
    )
    run_protoc([*common, f"--python_out={OUT}", f"--pyi_out={OUT}", VALIDATE_PROTO])
    for pkg_dir in {p.parent for p in OUT.rglob("*_pb2.py")}:
        d = pkg_dir
        while d != OUT:
            (d / "__init__.py").touch()
            d = d.parent
    print(f"generated {len(sources)} protos into {OUT.relative_to(ROOT)}; image {ns.image}")


if __name__ == "__main__":
    main()
