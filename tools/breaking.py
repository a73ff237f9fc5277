"""`buf breaking` for the contracts against a git revision (FILE category, protos/buf.yaml).

Both sides are built as images with protoc (tools/protogen.py), since buf cannot fetch
buf/validate/validate.proto here; the images include imports, so only files under
`marque/` are compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_image(protos: Path, image: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "protogen.py"),
            "--protos",
            str(protos),
            "--image",
            str(image),
            "--image-only",
        ],
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(
            ["git", "archive", ns.against, "protos"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        if not any((old / "protos").rglob("*.proto")):
            print(f"breaking: {ns.against} has no contracts, nothing to compare")
            return 0
        old_image, new_image = Path(tmp) / "old.binpb", Path(tmp) / "new.binpb"
        build_image(old / "protos", old_image)
        build_image(ROOT / "protos", new_image)
        buf = Path(sys.executable).parent / "buf"
        result = subprocess.run(
            [
                str(buf),
                "breaking",
                str(new_image),
                "--against",
                str(old_image),
                "--config",
                str(ROOT / "protos" / "buf.yaml"),
                "--path",
                "marque",
            ],
            check=False,
        )
        if result.returncode == 0:
            print(f"breaking: no breaking change against {ns.against}")
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
