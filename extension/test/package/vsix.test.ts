/**
 * Checks on the packaged .vsix (run after `npm run package`): it holds the bundled extension and
 * nothing it would need to download, and its manifest declares every command and setting the
 * code uses (and nothing the code does not).
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { join } from "node:path";
import { compileFunction } from "node:vm";

import { beforeAll, describe, expect, it } from "vitest";
import yauzl from "yauzl";

import { PROBE_MODULE } from "../../src/interpreter";
import { COMMANDS, SERVER_COMMANDS } from "../../src/protocol";
import { CLIENT_SETTINGS, SERVER_SETTINGS } from "../../src/settings";

const root = join(__dirname, "..", "..");
const vsixPath = join(root, "repotune.vsix");

function readZip(path: string): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true }, (error, zip) => {
      if (error) {
        reject(error);
        return;
      }
      const files = new Map<string, Buffer>();
      zip.on("entry", (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith("/")) {
          zip.readEntry();
          return;
        }
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError) {
            reject(streamError);
            return;
          }
          const chunks: Buffer[] = [];
          stream.on("data", (chunk: Buffer) => chunks.push(chunk));
          stream.on("end", () => {
            files.set(entry.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
          stream.on("error", reject);
        });
      });
      zip.on("end", () => {
        resolve(files);
      });
      zip.on("error", reject);
      zip.readEntry();
    });
  });
}

interface Manifest {
  main: string;
  activationEvents?: string[];
  contributes: {
    commands: { command: string; title: string }[];
    menus?: Record<string, { command: string; when?: string }[]>;
    configuration: { properties: Record<string, unknown> };
  };
}

/** Every "repotune.<name>" string literal in the extension's sources. */
function referencedIds(): Set<string> {
  const ids = new Set<string>();
  const dir = join(root, "src");
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const source = readFileSync(join(dir, file), "utf8");
    for (const match of source.matchAll(/["'`](repotune\.[A-Za-z][\w.]*)["'`]/g)) ids.add(match[1]);
  }
  return ids;
}

describe("the packaged .vsix", () => {
  let files = new Map<string, Buffer>();
  let manifest: Manifest;

  beforeAll(async () => {
    if (!existsSync(vsixPath)) {
      throw new Error(`${vsixPath} is missing: run \`npm run package\` first (npm test does)`);
    }
    files = await readZip(vsixPath);
    const packaged = files.get("extension/package.json");
    if (!packaged) throw new Error("extension/package.json is not in the .vsix");
    manifest = JSON.parse(packaged.toString("utf8")) as Manifest;
  });

  it("contains the bundled extension at the manifest's main, and no sources or node_modules", () => {
    const main = `extension/${manifest.main.replace(/^\.\//, "")}`;
    expect(main).toBe("extension/dist/extension.js");
    expect(files.has(main)).toBe(true);
    expect(files.get(main)?.length).toBeGreaterThan(50_000); // the language client is bundled in
    const names = [...files.keys()];
    expect(names.filter((n) => /node_modules|\/src\/|\/test\/|\.ts$|\.map$/.test(n))).toEqual([]);
    expect(names).toEqual(
      expect.arrayContaining([
        "extension/readme.md",
        "extension/LICENSE.txt",
        "extension/dist/THIRD_PARTY_NOTICES.txt",
      ]),
    );
    const notices = files.get("extension/dist/THIRD_PARTY_NOTICES.txt")?.toString("utf8") ?? "";
    expect(notices).toMatch(/^vscode-languageclient \d+\.\d+\.\d+$/m);
  });

  it("bundles every dependency: the code requires only vscode and Node built-ins", () => {
    const code = files.get("extension/dist/extension.js")?.toString("utf8") ?? "";
    const required = new Set([...code.matchAll(/require\(["']([^"']+)["']\)/g)].map((m) => m[1]));
    expect(required.has("vscode")).toBe(true);
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    expect([...required].filter((m) => m !== "vscode" && !builtins.has(m))).toEqual([]);
    expect(code).not.toMatch(/https?:\/\/[^"'\s]*\.(?:gguf|whl|tgz|zip)/); // nothing fetched at run time
  });

  it("loads in Node with a stand-in vscode module and exports activate/deactivate", () => {
    const code = files.get("extension/dist/extension.js")?.toString("utf8") ?? "";
    // Any property of the stand-in is itself the stand-in (callable, constructible), enough for
    // module-level code. The bundler's ES-module interop copies the module's own property names,
    // so the stand-in lists every property name the bundle uses.
    const names = new Set([...code.matchAll(/\.([A-Za-z_$][\w$]*)/g)].map((m) => m[1]));
    names.delete("__esModule");
    const target = function stub() {
      /* stand-in */
    };
    const stub: object = new Proxy(target, {
      get: (_t, key) => (key === "__esModule" ? false : key === "prototype" ? (target.prototype as unknown) : stub),
      apply: () => stub,
      construct: () => ({}),
      ownKeys: () => [...new Set([...Reflect.ownKeys(target), ...names])],
      getOwnPropertyDescriptor: (_t, key) =>
        Reflect.getOwnPropertyDescriptor(target, key) ?? {
          configurable: true,
          enumerable: true,
          value: stub,
        },
    });
    const localRequire = createRequire(join(root, "dist", "extension.js"));
    const module = { exports: {} as Record<string, unknown> };
    // Node's own CommonJS wrapper, with `require("vscode")` answered by the stand-in.
    const load = compileFunction(code, ["module", "exports", "require", "__filename", "__dirname"]) as (
      ...args: unknown[]
    ) => void;
    const requireIn = (id: string): unknown => (id === "vscode" ? stub : (localRequire(id) as unknown));
    load(module, module.exports, requireIn, join(root, "dist", "extension.js"), join(root, "dist"));
    expect(typeof module.exports.activate).toBe("function");
    expect(typeof module.exports.deactivate).toBe("function");
  });

  it("declares exactly the commands the code registers, none of them a server command", () => {
    const declared = manifest.contributes.commands.map((c) => c.command).sort();
    expect(declared).toEqual(Object.values(COMMANDS).sort());
    const extension = readFileSync(join(root, "src", "extension.ts"), "utf8");
    const registered = [
      ...[...extension.matchAll(/registerCommand\(\s*COMMANDS\.(\w+)/g)].map(
        (m) => COMMANDS[m[1] as keyof typeof COMMANDS],
      ),
      ...[...extension.matchAll(/registerCommand\(\s*["'`]([^"'`]+)["'`]/g)].map((m) => m[1]),
    ].sort();
    expect(registered).toEqual(declared);
    for (const id of Object.values(SERVER_COMMANDS)) expect(declared).not.toContain(id);
    for (const command of manifest.contributes.commands) expect(command.title.length).toBeGreaterThan(3);
  });

  it("offers asking about selected code in the editor's context menu, with a declared command", () => {
    const entries = manifest.contributes.menus?.["editor/context"] ?? [];
    expect(entries).toContainEqual(expect.objectContaining({ command: COMMANDS.askQuestion, when: "editorHasSelection" }));
    const declared = new Set(manifest.contributes.commands.map((c) => c.command));
    for (const entry of Object.values(manifest.contributes.menus ?? {}).flat()) expect(declared).toContain(entry.command);
  });

  it("declares every setting the code reads, and the code maps every declared setting", () => {
    const properties = Object.keys(manifest.contributes.configuration.properties);
    const commands = new Set(Object.values(COMMANDS) as string[]);
    const serverCommands = new Set(Object.values(SERVER_COMMANDS) as string[]);
    const referenced = [...referencedIds()].filter(
      (id) => !commands.has(id) && !serverCommands.has(id) && id !== PROBE_MODULE,
    );
    expect(referenced.length).toBeGreaterThanOrEqual(SERVER_SETTINGS.length);
    for (const key of referenced) expect(properties, `${key} is used but not declared`).toContain(key);
    const handled = new Set<string>([
      ...SERVER_SETTINGS.map((s) => s.key),
      ...Object.values(CLIENT_SETTINGS),
      // read by vscode-languageclient itself for the client id "repotune"
      "repotune.trace.server",
    ]);
    for (const key of properties) expect(handled, `${key} is declared but unused`).toContain(key);
    const extension = readFileSync(join(root, "src", "extension.ts"), "utf8");
    expect(extension).toMatch(/new LanguageClient\(\s*"repotune"/);
  });

  it("starts on its own after startup and targets the VS Code the client library needs", () => {
    expect(manifest.activationEvents).toContain("onStartupFinished");
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      engines: { vscode: string };
      devDependencies: Record<string, string>;
    };
    const client = JSON.parse(
      readFileSync(join(root, "node_modules", "vscode-languageclient", "package.json"), "utf8"),
    ) as { engines: { vscode: string } };
    expect(pkg.engines.vscode).toBe(client.engines.vscode);
    expect(pkg.devDependencies["@types/vscode"].replace(/^[~^]/, "")).toBe(
      client.engines.vscode.replace(/^[~^]/, ""),
    );
  });
});
