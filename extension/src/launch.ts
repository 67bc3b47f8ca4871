/**
 * How the server process is started. The extension and the node integration test both call
 * these functions, so the test starts the server exactly the way users get it.
 */
import { execFile } from "node:child_process";

import { PROBE_MODULE } from "./interpreter";

export interface Launch {
  command: string;
  args: string[];
  cwd: string | undefined;
}

/**
 * `<python> -P -m repotune serve`, LSP over stdio, run from the workspace root. `-P` (Python
 * 3.11+, as RepoTune requires): `-m` would otherwise put the working folder first on the import
 * path, so a repository holding a `repotune/` (or `typer/`, `pygls/`...) package would run its
 * own code as the server.
 */
export function serverLaunch(python: string, workspaceFolder: string | undefined): Launch {
  return { command: python, args: ["-P", "-m", "repotune", "serve"], cwd: workspaceFolder };
}

/**
 * `<python> -c "import repotune.server"`: cheap proof that the server can start. It runs on any
 * interpreter (one older than 3.11 must get "not installed", not "unknown option -P"), so it runs
 * from `safeFolder` (the extension's own folder, never a repository's) with PYTHONSAFEPATH set.
 */
export function probeLaunch(python: string, safeFolder: string): Launch {
  return { command: python, args: ["-c", `import ${PROBE_MODULE}`], cwd: safeFolder };
}

/**
 * Environment for the server: the editor's own, with Python's output unbuffered for the log and
 * no working folder on the import path (PYTHONSAFEPATH, Python 3.11+); with a log level, the
 * server logs that much (REPOTUNE_LOG).
 */
export function serverEnv(base: NodeJS.ProcessEnv, logLevel?: ServerLogLevel): NodeJS.ProcessEnv {
  const env = { ...base, PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8", PYTHONSAFEPATH: "1" };
  return logLevel ? { ...env, REPOTUNE_LOG: logLevel } : env;
}

export type ServerLogLevel = "error" | "warning" | "info" | "debug";

/**
 * The server's level for the output channel's (vscode.LogLevel: Off 0, Trace 1, Debug 2, Info 3,
 * Warning 4, Error 5), so "Developer: Set Log Level..." on the RepoTune channel reaches the
 * server's own logging and llama.cpp's model loading (debug) too.
 */
export function serverLogLevel(channelLevel: number): ServerLogLevel {
  if (channelLevel === 1 || channelLevel === 2) return "debug";
  if (channelLevel === 3) return "info";
  if (channelLevel === 4) return "warning";
  return "error";
}

/** The probe runs with a time limit; a first import of heavy packages can take seconds. */
export const PROBE_TIMEOUT_MS = 60_000;

export interface ProbeOutcome {
  code: number | null;
  errorCode?: string;
  stderr: string;
}

/** Run the probe and report how it ended; never throws. */
export function runProbe(
  launch: Launch,
  env: NodeJS.ProcessEnv,
  timeoutMs: number = PROBE_TIMEOUT_MS,
): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    execFile(
      launch.command,
      launch.args,
      { cwd: launch.cwd, env, timeout: timeoutMs, windowsHide: true, maxBuffer: 1024 * 1024 },
      (error, _stdout, stderr) => {
        if (!error) {
          resolve({ code: 0, stderr });
          return;
        }
        const errno = (error as NodeJS.ErrnoException).code;
        resolve({
          code: typeof errno === "number" ? errno : null,
          errorCode: typeof errno === "string" ? errno : undefined,
          stderr,
        });
      },
    );
  });
}
