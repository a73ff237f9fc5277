// Starts a real lead and member service for the tests: `python -m tests.clients.serve` (see
// tests/clients/serve.py) on free ports with a temporary signing key; it prints where they
// listen and tokens they accept, and stops when its stdin closes.
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";

export const ROOT = path.resolve(__dirname, "..", "..", "..", "..");
const PYTHON = process.env.MARQUE_PYTHON || path.join(ROOT, ".venv", "bin", "python");
const READY_TIMEOUT_MS = 90_000;

export interface Platform {
  lead: string;
  member: string;
  tokens: { service: string; oem: string; channel: string };
  stop(): Promise<void>;
}

export async function startPlatform(): Promise<Platform> {
  const child: ChildProcess = spawn(PYTHON, ["-m", "tests.clients.serve"], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, MARQUE_LOG_LEVEL: "WARNING" },
  });
  const stderr: string[] = [];
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr.push(chunk);
    if (stderr.length > 200) stderr.shift();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no services after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once("line", (first) => {
      clearTimeout(timer);
      resolve(first);
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${PYTHON}: ${err.message} (run \`make\` at the repository root)`));
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`tests.clients.serve exited (${code}):\n${stderr.join("")}`));
    });
  }).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  const ready = JSON.parse(line) as Omit<Platform, "stop">;
  return {
    ...ready,
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
