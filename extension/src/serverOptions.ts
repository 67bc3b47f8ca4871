/**
 * What vscode-languageclient is given to start the server. The extension and the node
 * integration test both pass these to the library's LanguageClient, so the test runs the
 * command line the library builds from them (which appends `--stdio` for TransportKind.stdio).
 */
import { TransportKind, type Executable, type StdioOptions } from "vscode-languageclient/node";

import type { Launch } from "./launch";
import { forwardServerStderr, forwardServerStdout } from "./serverLog";

/** The server as an executable speaking LSP over stdio. */
export function serverOptions(launch: Launch, env: NodeJS.ProcessEnv): Executable {
  return {
    command: launch.command,
    args: launch.args,
    transport: TransportKind.stdio,
    options: { cwd: launch.cwd, env },
  };
}

/** The server's stderr by level (llama.cpp's loader at debug), not all of it as errors. */
export const stdioOptions: Required<StdioOptions> = {
  stdout: forwardServerStdout,
  stderr: forwardServerStderr,
};
