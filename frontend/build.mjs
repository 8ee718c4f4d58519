// Bundles src/index.ts into one minified ES module, ../deepscope/tb_plugin/static/index.js.
// The output is deterministic (same sources and lock file -> same bytes): no timestamps,
// no absolute paths, sorted notices. CI rebuilds it and fails if the committed file differs.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "..", "deepscope", "tb_plugin", "static", "index.js");

const options = {
  absWorkingDir: here,
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  metafile: true,
  write: false,
  logLevel: "warning",
};

// First pass: learn which packages end up in the bundle, to credit them in a banner.
const probe = await esbuild.build(options);
const packages = new Map();
const [probeOutput] = Object.values(probe.metafile.outputs);
for (const [input, { bytesInOutput }] of Object.entries(probeOutput.inputs)) {
  if (bytesInOutput === 0) continue;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (!m || packages.has(m[1])) continue;
  const dir = join(here, "node_modules", m[1]);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  let license = "";
  for (const name of ["LICENSE", "LICENSE.md", "LICENSE.txt", "license"]) {
    try {
      license = readFileSync(join(dir, name), "utf8").trim();
      break;
    } catch {}
  }
  packages.set(m[1], { version: pkg.version, spdx: pkg.license, license });
}

// Group packages by their permission text (all of d3 shares one ISC notice).
const groups = new Map();
for (const name of [...packages.keys()].sort()) {
  const { version, license } = packages.get(name);
  const lines = license.split("\n");
  const copyright = lines.filter((l) => /^copyright/i.test(l.trim())).map((l) => l.trim());
  const terms = lines.filter((l) => !/^copyright/i.test(l.trim())).join("\n").trim();
  if (!groups.has(terms)) groups.set(terms, { names: [], copyright: new Set() });
  const group = groups.get(terms);
  group.names.push(`${name}@${version}`);
  copyright.forEach((c) => group.copyright.add(c));
}
let banner = "/*! deepscope TensorBoard tab. Built from frontend/ by `npm run build`; do not edit.\n";
for (const [terms, group] of groups) {
  banner += `\nBundles ${group.names.join(", ")}:\n${[...group.copyright].join("\n")}\n\n${terms}\n`;
}
banner = banner.replace(/\*\//g, "* /") + "*/";

const result = await esbuild.build({ ...options, banner: { js: banner }, write: true, outfile });
const bytes = result.metafile.outputs[Object.keys(result.metafile.outputs)[0]].bytes;
console.log(`wrote ${outfile} (${bytes} bytes, ${packages.size} bundled packages)`);
