// `npm test`: the tab's pure functions under `node --test`. Each test/*.test.ts is bundled
// by esbuild (with the src/ modules it imports) into a temporary folder, then run there.
// The folder is removed afterwards; nothing is written inside the repository.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const tests = readdirSync(here)
  .filter((name) => name.endsWith(".test.ts"))
  .sort()
  .map((name) => join(here, name));
if (tests.length === 0) {
  console.error(`no *.test.ts in ${here}`);
  process.exit(1);
}
const out = mkdtempSync(join(tmpdir(), "deepscope-frontend-test-"));
let status = 1;
try {
  await esbuild.build({
    absWorkingDir: join(here, ".."),
    entryPoints: tests,
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: ["node18"],
    sourcemap: "inline",
    logLevel: "warning",
  });
  const files = tests.map((t) => join(out, basename(t).replace(/\.ts$/, ".mjs")));
  const run = spawnSync(process.execPath, ["--enable-source-maps", "--test", ...files], {
    stdio: "inherit",
  });
  status = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exit(status);
