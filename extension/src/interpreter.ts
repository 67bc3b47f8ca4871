/**
 * Which Python runs the server, how to probe it, and what to tell the user when it cannot.
 * No `vscode` import: the Python extension's API is passed in as an unknown value.
 */

import * as path from "node:path";

export type InterpreterSource = "setting" | "python-extension" | "default";

export interface InterpreterChoice {
  python: string;
  source: InterpreterSource;
  /** Why a candidate was passed over (for the log), if one was. */
  note?: string;
}

export interface ChoiceInput {
  /** `repotune.pythonPath` as the user set it (may hold ~ or ${workspaceFolder}). */
  configured: string | undefined;
  /** The Python extension's selected interpreter, if that extension is installed. */
  fromPythonExtension: string | undefined;
  workspaceFolder: string | undefined;
  home: string;
  platform: NodeJS.Platform;
  /** Whether the user trusts the workspace (`vscode.workspace.isTrusted`). */
  trusted: boolean;
}

/** The layers of a setting as `WorkspaceConfiguration.inspect()` reports them. */
export interface SettingLayers {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * `repotune.pythonPath` as set: folder, then workspace, then user settings (in a remote window
 * VS Code merges the remote machine's user settings over the local ones into the user layer).
 * An untrusted workspace's own values are ignored, so a repository cannot choose the program
 * that runs. Empty strings count as unset.
 */
export function configuredPython(layers: SettingLayers | undefined, trusted: boolean): string | undefined {
  if (!layers) return undefined;
  const candidates = trusted
    ? [layers.workspaceFolderValue, layers.workspaceValue, layers.globalValue]
    : [layers.globalValue];
  for (const value of candidates) {
    if (typeof value === "string" && value.trim() !== "") return value;
  }
  return undefined;
}

/** Expand `~` and `${workspaceFolder}` / `${userHome}` the way VS Code users expect. */
export function expandPath(value: string, workspaceFolder: string | undefined, home: string): string {
  let out = value.trim();
  if (out === "~") out = home;
  else if (out.startsWith("~/") || out.startsWith("~\\")) out = home + out.slice(1);
  out = out.replace(/\$\{userHome\}/g, home);
  if (workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  return out;
}

/** The setting wins, then the Python extension's interpreter, then python3 (python on Windows). */
export function choosePython(input: ChoiceInput): InterpreterChoice {
  const configured = input.configured?.trim();
  if (configured) {
    return {
      python: expandPath(configured, input.workspaceFolder, input.home),
      source: "setting",
    };
  }
  const fallback: InterpreterChoice = {
    python: input.platform === "win32" ? "python" : "python3",
    source: "default",
  };
  const fromExtension = input.fromPythonExtension?.trim();
  if (!fromExtension) return fallback;
  if (!input.trusted && isInside(fromExtension, input.workspaceFolder)) {
    // A repository can ship its own ".venv/bin/python" (any program): not in Restricted Mode.
    return {
      ...fallback,
      note:
        `the Python extension's interpreter ${fromExtension} is inside this untrusted ` +
        "workspace, so it is not run; trust the workspace or set repotune.pythonPath",
    };
  }
  return { python: fromExtension, source: "python-extension" };
}

/** Whether `file` lies inside `folder` (both absolute paths). */
export function isInside(file: string, folder: string | undefined): boolean {
  if (folder === undefined) return false;
  const relative = path.relative(folder, file);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
}

function get(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

function callMethod(owner: unknown, name: string, ...args: unknown[]): unknown {
  const fn = get(owner, name);
  return typeof fn === "function" ? (fn as (...a: unknown[]) => unknown).apply(owner, args) : undefined;
}

/**
 * The interpreter selected in the Python extension (ms-python.python), from its public API:
 * `environments.getActiveEnvironmentPath` + `resolveEnvironment` (current), else the older
 * `settings.getExecutionDetails().execCommand`. Any failure means "no answer", never an error.
 */
export async function interpreterFromPythonExtension(
  api: unknown,
  resource: unknown,
): Promise<string | undefined> {
  try {
    const environments = get(api, "environments");
    if (environments !== undefined) {
      const active = callMethod(environments, "getActiveEnvironmentPath", resource);
      if (active !== undefined) {
        const resolved = await Promise.resolve(callMethod(environments, "resolveEnvironment", active));
        const fsPath = get(get(get(resolved, "executable"), "uri"), "fsPath");
        if (typeof fsPath === "string" && fsPath) return fsPath;
        const path = get(active, "path");
        if (typeof path === "string" && path) return path;
      }
    }
    const details = callMethod(get(api, "settings"), "getExecutionDetails", resource);
    const execCommand = get(details, "execCommand");
    if (Array.isArray(execCommand) && typeof execCommand[0] === "string" && execCommand[0]) {
      return execCommand[0];
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** The module whose import proves the server is installed in an interpreter. */
export const PROBE_MODULE = "repotune.server";

export interface ProbeResult {
  /** Exit code, or null when the process could not start or was killed. */
  code: number | null;
  /** Node's error code when spawning failed (ENOENT: no such interpreter). */
  errorCode?: string;
  stderr: string;
}

export interface ProbeVerdict {
  ok: boolean;
  /** One actionable message for the user (empty when ok). */
  message: string;
  /** The command that fixes it, offered as "Copy install command". */
  installCommand?: string;
}

function quoteForShell(path: string): string {
  return /^[\w@%+=:,./\\-]+$/.test(path) ? path : `"${path.replace(/(["\\$`])/g, "\\$1")}"`;
}

/** The pip command that installs RepoTune into this interpreter. */
export function installCommand(python: string): string {
  return `${quoteForShell(python)} -m pip install repotune`;
}

/** The last meaningful line of a traceback, which names the real problem. */
export function lastErrorLine(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  return lines.length > 0 ? lines[lines.length - 1] : "";
}

/** Turn the probe's outcome into one message a user can act on, with no stack trace. */
export function judgeProbe(choice: InterpreterChoice, result: ProbeResult): ProbeVerdict {
  if (result.code === 0) return { ok: true, message: "" };
  const where =
    choice.source === "setting"
      ? " (from the repotune.pythonPath setting)"
      : choice.source === "python-extension"
        ? " (the Python extension's selected interpreter)"
        : "";
  if (result.errorCode === "ENOENT" || result.errorCode === "EACCES") {
    return {
      ok: false,
      message:
        `RepoTune: cannot run Python interpreter "${choice.python}"${where}. ` +
        `Set repotune.pythonPath to a Python 3.11+ interpreter, or select one in the Python extension.`,
    };
  }
  const command = installCommand(choice.python);
  const detail = lastErrorLine(result.stderr);
  if (/No module named ['"]?repotune/.test(result.stderr)) {
    return {
      ok: false,
      message:
        `RepoTune is not installed in ${choice.python}${where}. Install it with ` +
        `\`${command}\` (from a source checkout: \`make install\` in the repository), ` +
        `or pick another interpreter.`,
      installCommand: command,
    };
  }
  return {
    ok: false,
    message:
      `RepoTune cannot be imported in ${choice.python}${where}` +
      (detail ? `: ${detail}` : result.code === null ? ": the check timed out" : "") +
      `. Reinstall it with \`${command}\` or pick another interpreter.`,
    installCommand: command,
  };
}
