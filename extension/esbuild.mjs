// Bundle the extension and vscode-languageclient into one CommonJS file, so the .vsix needs no
// node_modules and nothing is fetched at run time. `vscode` is provided by the editor.
// The licences of the bundled packages go to dist/THIRD_PARTY_NOTICES.txt, shipped beside it.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import * as esbuild from "esbuild";

const production = !process.argv.includes("--dev");

const result = await esbuild.build({
  entryPoints: ["src/extension.ts"],
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node18",
  outfile: "dist/extension.js",
  external: ["vscode"],
  minify: production,
  sourcemap: !production,
  metafile: true,
  logLevel: "info",
});

/** The package folders (node_modules/<name> or node_modules/@scope/<name>) the bundle drew on. */
function bundledPackages(metafile) {
  const dirs = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) dirs.add(match[1]);
  }
  return [...dirs].sort();
}

const notices = [];
for (const dir of bundledPackages(result.metafile)) {
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const licenseFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  const text = licenseFile && existsSync(join(dir, licenseFile))
    ? readFileSync(join(dir, licenseFile), "utf8").trim()
    : `License: ${manifest.license ?? "see package"}`;
  notices.push(`${manifest.name} ${manifest.version}\n${"=".repeat(60)}\n${text}\n`);
}
writeFileSync(
  "dist/THIRD_PARTY_NOTICES.txt",
  `RepoTune's VS Code extension bundles the following packages.\n\n${notices.join("\n")}`,
);
console.log(`  dist/THIRD_PARTY_NOTICES.txt  ${notices.length} packages`);
