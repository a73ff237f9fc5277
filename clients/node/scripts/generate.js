// `npm run generate`: the TypeScript code of every contract under ../../protos, written by
// tools/protogen.py (protoc from the repository's .venv, and ts-proto from node_modules) into
// src/gen. Nothing generated is committed. MARQUE_PYTHON names another Python that has the
// repository's requirements (the Makefile passes its own).
"use strict";
const { spawnSync } = require("node:child_process");
const path = require("node:path");

const root = path.resolve(__dirname, "..", "..", "..");
const python = process.env.MARQUE_PYTHON || path.join(root, ".venv", "bin", "python");
const here = path.resolve(__dirname, "..");
const result = spawnSync(
  python,
  [
    path.join(root, "tools", "protogen.py"),
    "--targets",
    "ts",
    "--ts-out",
    path.join(here, "src", "gen"),
    "--ts-plugin",
    path.join(here, "node_modules", ".bin", "protoc-gen-ts_proto"),
  ],
  { stdio: "inherit", cwd: root },
);
if (result.error) {
  console.error(`${python}: ${result.error.message} (run \`make\` at the repository root first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
