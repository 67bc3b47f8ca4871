import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import {
  choosePython,
  configuredPython,
  expandPath,
  installCommand,
  interpreterFromPythonExtension,
  judgeProbe,
  lastErrorLine,
  type ChoiceInput,
} from "../../src/interpreter";
import { probeLaunch, runProbe, serverEnv, serverLaunch, serverLogLevel } from "../../src/launch";

const base: ChoiceInput = {
  configured: undefined,
  fromPythonExtension: undefined,
  workspaceFolder: "/ws",
  home: "/home/me",
  platform: "linux",
  trusted: true,
};

describe("choosePython", () => {
  it("prefers the repotune.pythonPath setting", () => {
    expect(
      choosePython({ ...base, configured: "/opt/py/bin/python", fromPythonExtension: "/venv/bin/python" }),
    ).toEqual({ python: "/opt/py/bin/python", source: "setting" });
  });

  it("expands ~ and ${workspaceFolder} in the setting", () => {
    expect(choosePython({ ...base, configured: "${workspaceFolder}/.venv/bin/python" }).python).toBe(
      "/ws/.venv/bin/python",
    );
    expect(choosePython({ ...base, configured: "~/.venvs/rt/bin/python" }).python).toBe(
      "/home/me/.venvs/rt/bin/python",
    );
  });

  it("falls back to the Python extension's interpreter when the setting is empty", () => {
    expect(choosePython({ ...base, configured: "  ", fromPythonExtension: "/venv/bin/python" })).toEqual({
      python: "/venv/bin/python",
      source: "python-extension",
    });
  });

  it("does not run an interpreter inside an untrusted workspace (the repository could ship it)", () => {
    const inside = { ...base, fromPythonExtension: "/ws/.venv/bin/python", trusted: false };
    const chosen = choosePython(inside);
    expect(chosen.python).toBe("python3");
    expect(chosen.source).toBe("default");
    expect(chosen.note).toMatch(/\/ws\/\.venv\/bin\/python is inside this untrusted workspace/);
    // trusted, or outside the workspace: used as before
    expect(choosePython({ ...inside, trusted: true }).python).toBe("/ws/.venv/bin/python");
    const outside = { ...inside, fromPythonExtension: "/home/me/.venvs/rt/bin/python" };
    expect(choosePython(outside)).toEqual({ python: "/home/me/.venvs/rt/bin/python", source: "python-extension" });
    expect(choosePython({ ...inside, fromPythonExtension: "/wsx/bin/python" }).source).toBe("python-extension");
  });

  it("falls back to python3 (python on Windows)", () => {
    expect(choosePython(base)).toEqual({ python: "python3", source: "default" });
    expect(choosePython({ ...base, platform: "win32" }).python).toBe("python");
  });
});

describe("configuredPython", () => {
  const layers = { globalValue: "/user/python", workspaceValue: "/ws/python", workspaceFolderValue: "/folder/python" };

  it("takes the nearest layer in a trusted workspace: folder, workspace, then user", () => {
    expect(configuredPython(layers, true)).toBe("/folder/python");
    expect(configuredPython({ ...layers, workspaceFolderValue: undefined }, true)).toBe("/ws/python");
    expect(configuredPython({ globalValue: "/user/python" }, true)).toBe("/user/python");
  });

  it("ignores the workspace's own values when the workspace is not trusted", () => {
    expect(configuredPython(layers, false)).toBe("/user/python");
    expect(configuredPython({ workspaceValue: "/evil" }, false)).toBeUndefined();
  });

  it("treats empty and non-string values as unset", () => {
    expect(configuredPython({ globalValue: "/user/python", workspaceValue: "  " }, true)).toBe("/user/python");
    expect(configuredPython({ globalValue: 3 }, true)).toBeUndefined();
    expect(configuredPython(undefined, true)).toBeUndefined();
  });
});

describe("expandPath", () => {
  it("leaves ${workspaceFolder} alone when there is no folder", () => {
    expect(expandPath("${workspaceFolder}/py", undefined, "/h")).toBe("${workspaceFolder}/py");
    expect(expandPath("${userHome}/py", undefined, "/h")).toBe("/h/py");
    expect(expandPath("~", undefined, "/h")).toBe("/h");
    expect(expandPath("/a~b", undefined, "/h")).toBe("/a~b");
  });
});

describe("interpreterFromPythonExtension", () => {
  it("uses the environments API (resolved executable first)", async () => {
    const api = {
      environments: {
        getActiveEnvironmentPath: (resource: unknown) => ({ id: "x", path: `/envs/${String(resource)}` }),
        resolveEnvironment: (env: { path: string }) =>
          Promise.resolve({ executable: { uri: { fsPath: `${env.path}/bin/python` } } }),
      },
    };
    expect(await interpreterFromPythonExtension(api, "ws")).toBe("/envs/ws/bin/python");
  });

  it("uses the active path when the environment cannot be resolved", async () => {
    const api = {
      environments: {
        getActiveEnvironmentPath: () => ({ id: "x", path: "/usr/bin/python3.11" }),
        resolveEnvironment: () => Promise.resolve(undefined),
      },
    };
    expect(await interpreterFromPythonExtension(api, undefined)).toBe("/usr/bin/python3.11");
  });

  it("falls back to the older settings.getExecutionDetails API", async () => {
    const api = { settings: { getExecutionDetails: () => ({ execCommand: ["/old/python", "-X"] }) } };
    expect(await interpreterFromPythonExtension(api, undefined)).toBe("/old/python");
  });

  it("answers undefined for no extension, an unknown shape or a throwing API", async () => {
    expect(await interpreterFromPythonExtension(undefined, undefined)).toBeUndefined();
    expect(await interpreterFromPythonExtension({ something: 1 }, undefined)).toBeUndefined();
    const throwing = {
      environments: {
        getActiveEnvironmentPath: () => {
          throw new Error("not ready");
        },
      },
    };
    expect(await interpreterFromPythonExtension(throwing, undefined)).toBeUndefined();
  });
});

describe("judgeProbe", () => {
  const setting = { python: "/opt/my python/bin/python", source: "setting" as const };

  it("accepts exit code 0", () => {
    expect(judgeProbe(setting, { code: 0, stderr: "" }).ok).toBe(true);
  });

  it("names a missing interpreter and the setting it came from", () => {
    const verdict = judgeProbe(setting, { code: null, errorCode: "ENOENT", stderr: "" });
    expect(verdict.ok).toBe(false);
    expect(verdict.message).toContain('cannot run Python interpreter "/opt/my python/bin/python"');
    expect(verdict.message).toContain("repotune.pythonPath");
    expect(verdict.installCommand).toBeUndefined();
  });

  it("gives the install command when repotune is missing, with no traceback", () => {
    const stderr =
      'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n' +
      "ModuleNotFoundError: No module named 'repotune'\n";
    const verdict = judgeProbe({ python: "python3", source: "default" }, { code: 1, stderr });
    expect(verdict.message).toContain("RepoTune is not installed in python3");
    expect(verdict.message).toContain("`python3 -m pip install repotune`");
    expect(verdict.message).toContain("make install");
    expect(verdict.message).not.toContain("Traceback");
    expect(verdict.installCommand).toBe("python3 -m pip install repotune");
  });

  it("reports the last line of another import failure", () => {
    const stderr = "Traceback...\nImportError: libllama.so: cannot open shared object file\n";
    const verdict = judgeProbe({ python: "/v/bin/python", source: "python-extension" }, { code: 1, stderr });
    expect(verdict.message).toContain("ImportError: libllama.so: cannot open shared object file");
    expect(verdict.message).toContain("Python extension");
  });

  it("quotes interpreter paths with spaces in the install command", () => {
    expect(installCommand("/opt/my python/bin/python")).toBe('"/opt/my python/bin/python" -m pip install repotune');
    expect(lastErrorLine("a\n\n b \n")).toBe("b");
  });
});

describe("launch", () => {
  it("starts `<python> -P -m repotune serve` in the workspace and probes `import repotune.server`", () => {
    expect(serverLaunch("/v/bin/python", "/ws")).toEqual({
      command: "/v/bin/python",
      args: ["-P", "-m", "repotune", "serve"], // -P: the workspace is not on the import path
      cwd: "/ws",
    });
    expect(probeLaunch("py", "/ext")).toEqual({ command: "py", args: ["-c", "import repotune.server"], cwd: "/ext" });
    expect(serverEnv({ A: "1" })).toMatchObject({ A: "1", PYTHONUNBUFFERED: "1", PYTHONSAFEPATH: "1" });
  });

  it("passes the output channel's log level to the server as REPOTUNE_LOG", () => {
    // vscode.LogLevel: Off 0, Trace 1, Debug 2, Info 3, Warning 4, Error 5
    expect([0, 1, 2, 3, 4, 5].map(serverLogLevel)).toEqual(["error", "debug", "debug", "info", "warning", "error"]);
    expect(serverEnv({ REPOTUNE_LOG: "error" }, "debug").REPOTUNE_LOG).toBe("debug");
    expect(serverEnv({})).not.toHaveProperty("REPOTUNE_LOG");
  });
});

describe.skipIf(process.platform === "win32")("runProbe with real processes", () => {
  const dir = mkdtempSync(join(tmpdir(), "repotune-probe-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports ENOENT for an interpreter that does not exist", async () => {
    const choice = { python: join(dir, "no-such-python"), source: "setting" as const };
    const result = await runProbe(probeLaunch(choice.python, dir), serverEnv(process.env));
    expect(result.errorCode).toBe("ENOENT");
    expect(judgeProbe(choice, result).message).toContain("cannot run Python interpreter");
  });

  it("reports a Python without RepoTune as not installed", async () => {
    // A real interpreter with site-packages switched off cannot import repotune.
    const wrapper = join(dir, "python-without-site");
    const python = process.env.REPOTUNE_PYTHON ?? "python3";
    writeFileSync(wrapper, `#!/bin/sh\nexec "${python}" -I -S "$@"\n`);
    chmodSync(wrapper, 0o755);
    const choice = { python: wrapper, source: "setting" as const };
    const result = await runProbe(probeLaunch(wrapper, dir), serverEnv(process.env));
    expect(result.code).toBe(1);
    const verdict = judgeProbe(choice, result);
    expect(verdict.message).toContain("RepoTune is not installed in");
    expect(verdict.installCommand).toBe(`${wrapper} -m pip install repotune`);
  });

  it.skipIf(!process.env.REPOTUNE_PYTHON)("accepts the interpreter in REPOTUNE_PYTHON", async () => {
    const python = process.env.REPOTUNE_PYTHON ?? "";
    const result = await runProbe(probeLaunch(python, dir), serverEnv(process.env));
    expect(result.stderr).toBe("");
    expect(judgeProbe({ python, source: "setting" }, result).ok).toBe(true);
  }, 60_000);
});
