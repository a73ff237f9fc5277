// What a backend installs: the packed package holds the generated code of every service and
// needs nothing at run time but its declared dependencies (no buf/validate, no .proto files).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { builtinModules } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";

const PACKAGE = path.resolve(__dirname, "..", "..");
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE, "package.json"), "utf8")) as {
  name: string;
  dependencies: Record<string, string>;
};
const PROTOS = path.resolve(PACKAGE, "..", "..", "protos");

function services(): string[] {
  // Every marque/<domain>/v1/*_service.proto there is, so a new service is checked too.
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith("_service.proto")) found.push(path.relative(PROTOS, full).replace(/\.proto$/, ""));
    }
  };
  walk(path.join(PROTOS, "marque"));
  return found.sort();
}

let dir: string;
let tarball: string;
let files: string[];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "marque-node-pkg-"));
  const out = execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], {
    cwd: PACKAGE,
    encoding: "utf8",
  });
  const packed = (JSON.parse(out) as { filename: string; files: { path: string }[] }[])[0];
  tarball = path.join(dir, packed.filename);
  files = packed.files.map((f) => f.path);
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test("the package holds every service's client and nothing of buf/validate", () => {
  const expected = services();
  assert.ok(expected.includes("marque/lead/v1/lead_service") && expected.includes("marque/member/v1/member_service"));
  for (const svc of expected) {
    assert.ok(files.includes(`dist/gen/${svc}.js`), `${svc}.js is packed`);
    assert.ok(files.includes(`dist/gen/${svc}.d.ts`), `${svc}.d.ts is packed`);
  }
  assert.deepEqual(files.filter((f) => /validate|\.proto$|^src\//.test(f)), []);
});

test("the compiled code requires only node, its own files and its dependencies", () => {
  const allowed = new Set([...Object.keys(manifest.dependencies), ...builtinModules]);
  const bad: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".js")) {
        for (const [, spec] of fs.readFileSync(full, "utf8").matchAll(/require\("([^"]+)"\)/g)) {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
          if (!spec.startsWith(".") && !allowed.has(name) && !allowed.has(spec.replace(/^node:/, ""))) {
            bad.push(`${path.relative(PACKAGE, full)}: ${spec}`);
          }
        }
      }
    }
  };
  walk(path.join(PACKAGE, "dist"));
  assert.deepEqual(bad, []);
});

test("installed from its tarball into an empty project, it loads and encodes", { timeout: 180_000 }, () => {
  const project = path.join(dir, "bff");
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "bff", private: true }));
  execFileSync(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", tarball],
    { cwd: project, stdio: ["ignore", "ignore", "inherit"] },
  );
  const script = `
    const { connect, MarqueError } = require("${manifest.name}");
    const { SubmitLeadRequest, LeadServiceDefinition } = require("${manifest.name}/marque/lead/v1/lead_service");
    const { MemberServiceClient } = require("${manifest.name}/marque/member/v1/member_service");
    const bytes = SubmitLeadRequest.encode(SubmitLeadRequest.fromPartial({ requestId: "r1" })).finish();
    if (SubmitLeadRequest.decode(bytes).requestId !== "r1") throw new Error("round trip");
    const c = connect("127.0.0.1:1");
    if (typeof c.service(LeadServiceDefinition).submitLead !== "function") throw new Error("no submitLead");
    if (typeof c.client(MemberServiceClient).registerMember !== "function") throw new Error("no registerMember");
    c.close();
    console.log(typeof MarqueError);
  `;
  const out = execFileSync(process.execPath, ["-e", script], { cwd: project, encoding: "utf8" });
  assert.equal(out.trim(), "function");
});
