// Bundle the extension and vscode-languageclient into one CommonJS file, so the .vsix needs no
// node_modules and nothing is fetched at run time. `vscode` is provided by the editor.
import * as esbuild from "esbuild";

const production = !process.argv.includes("--dev");

await esbuild.build({
  entryPoints: ["src/extension.ts"],
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node18",
  outfile: "dist/extension.js",
  external: ["vscode"],
  minify: production,
  sourcemap: !production,
  legalComments: "linked",
  logLevel: "info",
});
