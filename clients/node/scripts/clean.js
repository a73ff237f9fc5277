// `node scripts/clean.js DIR...`: removes build output (no shell, so it works everywhere).
"use strict";
const fs = require("node:fs");

for (const dir of process.argv.slice(2)) fs.rmSync(dir, { recursive: true, force: true });
