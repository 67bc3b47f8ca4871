/**
 * Lets vscode-languageclient load outside VS Code, so the integration test can hand the
 * extension's ServerOptions to the library's own LanguageClient and have it spawn the server
 * with the command line it builds. `vscode` resolves to a permissive stand-in: any property is
 * another stand-in, callable and constructible; only what the library reads to start a server
 * has real values (the version it checks, no workspace folders). Loaded as a vitest setup file,
 * before anything imports the library.
 */
import Module from "node:module";

const STUB_ID = "repotune-test:vscode";
const VALUES: Record<string, unknown> = {
  "vscode.version": "1.91.0",
  "vscode.workspace.workspaceFolders": undefined,
};

function standIn(path: string): unknown {
  const target = function standInFunction(): void {
    // stand-in for any vscode function or class
  };
  return new Proxy(target, {
    get(_target, property) {
      if (property === "then" || typeof property === "symbol") return undefined;
      const child = `${path}.${property}`;
      return child in VALUES ? VALUES[child] : standIn(child);
    },
    apply: () => standIn(`${path}()`),
    construct: () => standIn(`new ${path}()`) as object,
  });
}

interface ModuleInternals {
  _resolveFilename(request: string, ...rest: unknown[]): string;
  _cache: Record<string, unknown>;
}

const internals = Module as unknown as ModuleInternals;
const resolve = internals._resolveFilename.bind(Module);
internals._resolveFilename = (request: string, ...rest: unknown[]): string =>
  request === "vscode" ? STUB_ID : resolve(request, ...rest);
internals._cache[STUB_ID] = { id: STUB_ID, filename: STUB_ID, loaded: true, exports: standIn("vscode") };
