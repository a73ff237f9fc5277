"""Generate Python code, TypeScript code and a buf image from `protos/`.

protovalidate 2.x ships `buf/validate/validate.proto` only as a compiled descriptor inside
the installed package, so the descriptor set protoc needs is written here at build time
from that package instead of copying third-party sources into the repository.

    python tools/protogen.py                          # Python into clients/python (make protos)
    python tools/protogen.py --python-out DIR         # Python elsewhere (the wheel's build hook)
    python tools/protogen.py --targets ts             # TypeScript into clients/node/src/gen

The TypeScript target runs ts-proto (clients/node/node_modules, `npm ci`) on the image plus
google/rpc status and error details (from googleapis-common-protos), so the Node package can
decode rich errors. ts-proto emits no custom options, so the validation rules and access
policies compile away: the Node package needs nothing of buf/validate at run time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    duration_pb2,
    field_mask_pb2,
    timestamp_pb2,
)
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python"
TS_OUT = ROOT / "clients" / "node" / "src" / "gen"
TS_PLUGIN = ROOT / "clients" / "node" / "node_modules" / ".bin" / "protoc-gen-ts_proto"
BUILD = ROOT / "build"
VALIDATE_PROTO = "buf/validate/validate.proto"
RPC_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")
# ts-proto: grpc-js clients (what Node backends use), plus generic definitions that carry
# each method's message functions (the helper in clients/node/src builds promise clients
# from them); int64 as number, Timestamp as Date; no custom options are emitted.
TS_OPTIONS = ",".join(
    [
        "outputServices=grpc-js",
        "outputServices=generic-definitions",
        "env=node",
        "esModuleInterop=true",
        "forceLong=number",
        "useDate=true",
        "useExactTypes=false",
        "outputExtensions=false",
    ]
)


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


def write_ts_descriptor_set(path: Path, image: Path) -> None:
    """The image without its custom options, plus google/rpc status and error details.

    Custom options (buf.validate rules, access policies) are unknown fields to
    descriptor_pb2 here, so discarding unknown fields drops them all; the option-only imports
    (buf/validate, google/protobuf/descriptor) then go too, and the TypeScript generator never
    sees them: the Node package has nothing of them to load at run time.
    """
    from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(image.read_bytes())
    fds.DiscardUnknownFields()
    have = {f.name for f in fds.file}
    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        if module.DESCRIPTOR.name not in have:
            module.DESCRIPTOR.CopyToProto(fds.file.add())
            have.add(module.DESCRIPTOR.name)
    for f in fds.file:
        if f.name.startswith("marque/"):
            del f.extension[:]  # option definitions (marque.common.v1.access...)
    option_only = {VALIDATE_PROTO, "google/protobuf/descriptor.proto"}
    used: set[str] = set()
    for f in fds.file:
        if f.name in option_only:
            continue
        for _, message in _messages(f.package, f.message_type):
            used |= {field.type_name for field in message.field}
        for service in f.service:
            used |= {m.input_type for m in service.method} | {m.output_type for m in service.method}
    kept = [
        f
        for f in fds.file
        if f.name not in option_only or used & {n for n, _ in _messages(f.package, f.message_type)}
    ]
    kept_names = {f.name for f in kept}
    for f in kept:
        if f.public_dependency or f.weak_dependency:
            sys.exit(f"{f.name}: public/weak imports are not supported by the TypeScript target")
        deps = [d for d in f.dependency if d in kept_names]
        del f.dependency[:]
        f.dependency.extend(deps)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=kept).SerializeToString())


def _messages(
    scope: str, messages: Iterable[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    """(full name `.pkg.Outer.Inner`, message) of every message, nested ones included."""
    for m in messages:
        name = f"{scope}.{m.name}"
        yield f".{name.lstrip('.')}", m
        yield from _messages(name, m.nested_type)


def run_protoc(args: list[str]) -> None:
    code = protoc.main(["protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def generate_python(common: list[str], sources: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run_protoc(
        [*common, f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *sources]
    )
    run_protoc([*common, f"--python_out={out}", f"--pyi_out={out}", VALIDATE_PROTO])
    for pkg_dir in {p.parent for p in out.rglob("*_pb2.py")}:
        d = pkg_dir
        while d != out:
            (d / "__init__.py").touch()
            d = d.parent


def generate_ts(image: Path, sources: list[str], out: Path, plugin: Path) -> None:
    if not plugin.exists():
        sys.exit(f"{plugin} is missing: run `npm ci` in clients/node (or `make node`)")
    # Node must be the one on PATH that runs the plugin; check early for a clear message.
    if shutil.which("node") is None:
        sys.exit("node is not on PATH: the TypeScript target needs Node.js 20 or newer")
    rpc_set = image.parent / "ts-image.binpb"
    write_ts_descriptor_set(rpc_set, image)
    # Everything under `out` is generated: start from nothing, so a removed proto leaves
    # no module behind.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_protoc(
        [
            f"--descriptor_set_in={rpc_set}",
            f"--plugin=protoc-gen-ts_proto={plugin}",
            f"--ts_proto_out={out}",
            f"--ts_proto_opt={TS_OPTIONS}",
            *sources,
            *RPC_PROTOS,
        ]
    )
    leaked = [
        str(p.relative_to(out))
        for p in out.rglob("*.ts")
        if "buf/validate" in p.read_text() or p.is_relative_to(out / "buf")
    ]
    if leaked:
        sys.exit(f"validation options leaked into the TypeScript output: {leaked}")


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
    parser.add_argument(
        "--targets", default="python", help="comma-separated: python, ts (default python)"
    )
    parser.add_argument("--python-out", type=Path, default=OUT, help="Python output root")
    parser.add_argument("--ts-out", type=Path, default=TS_OUT, help="TypeScript output root")
    parser.add_argument("--ts-plugin", type=Path, default=TS_PLUGIN, help="protoc-gen-ts_proto")
    ns = parser.parse_args()
    targets = {t.strip() for t in ns.targets.split(",") if t.strip()}
    if unknown := targets - {"python", "ts"}:
        sys.exit(f"unknown targets: {sorted(unknown)}")

    validate_set = ns.image.parent / "protovalidate.binpb"
    write_validate_descriptor_set(validate_set)
    sources = sorted(p.relative_to(ns.protos).as_posix() for p in ns.protos.rglob("*.proto"))
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
    if "python" in targets:
        generate_python(common, sources, ns.python_out)
        print(f"generated {len(sources)} protos into {ns.python_out}; image {ns.image}")
    if "ts" in targets:
        generate_ts(ns.image, sources, ns.ts_out, ns.ts_plugin)
        print(f"generated {len(sources)} protos as TypeScript into {ns.ts_out}")


if __name__ == "__main__":
    main()
