/**
 * The server's stderr, line by line, into the RepoTune output channel at the right level.
 * vscode-languageclient logs every stderr line as an error by default, but most of it is
 * llama.cpp describing the model it loads: that goes to debug, and only the server's own error
 * lines (logging records, `repotune: ...` messages, Python tracebacks) show as errors.
 * No `vscode` import: the channel is any object with the five level methods.
 */
import * as readline from "node:readline";
import type { Readable } from "node:stream";

export type LogLevel = "error" | "warn" | "info" | "debug" | "trace";

export interface LogSink {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  trace(message: string): void;
}

const LOGGING_LEVELS: Record<string, LogLevel> = {
  CRITICAL: "error",
  ERROR: "error",
  WARNING: "warn",
  INFO: "info",
  DEBUG: "debug",
};

// Python logging records: "2025-01-31 12:00:00,123 repotune.lsp ERROR ..." or "ERROR:name:...".
const TIMESTAMPED_RECORD =
  /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s+(?:\S+\s+)?(CRITICAL|ERROR|WARNING|INFO|DEBUG)\b/;
const BARE_RECORD = /^(CRITICAL|ERROR|WARNING|INFO|DEBUG):/;
// What `repotune` prints itself when it fails (repotune.server.cli.console.print_error), and the
// command line parser's "Error: No such option: ..." when it refuses its arguments.
const REPOTUNE_ERROR = /^(repotune: |Error: )/;
const TRACEBACK_START = /^Traceback \(most recent call last\):/;
const TRACEBACK_LINK = /^(During handling of the above exception|The above exception was the direct cause)/;
const PYTHON_WARNING = /^\S.*:\d+: \w*Warning: /;

/** Classifies stderr lines; keeps state so every line of a traceback counts as an error. */
export class StderrClassifier {
  private inTraceback = false;

  level(line: string): LogLevel {
    if (this.inTraceback) {
      if (line.trim() === "" || /^\s/.test(line) || TRACEBACK_LINK.test(line) || TRACEBACK_START.test(line)) {
        return "error";
      }
      this.inTraceback = false; // the exception's own line ends the traceback
      return "error";
    }
    if (TRACEBACK_START.test(line)) {
      this.inTraceback = true;
      return "error";
    }
    const record = TIMESTAMPED_RECORD.exec(line) ?? BARE_RECORD.exec(line);
    if (record) return LOGGING_LEVELS[record[1]];
    if (REPOTUNE_ERROR.test(line)) return "error";
    if (PYTHON_WARNING.test(line)) return "warn";
    // Anything else is a library talking (llama.cpp's loader, ggml): detail for debugging.
    return line.trim() === "" ? "trace" : "debug";
  }
}

/** Forward a stream's lines to the sink, each at the level the classifier gives it. */
export function forwardServerStderr(input: Readable, sink: LogSink): void {
  const classifier = new StderrClassifier();
  readline
    .createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 })
    .on("line", (line: string) => {
      sink[classifier.level(line)](line);
    });
}

/** stdout carries the protocol; anything else there (not expected) is shown as information. */
export function forwardServerStdout(input: Readable, sink: LogSink): void {
  readline
    .createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 })
    .on("line", (line: string) => {
      sink.info(line);
    });
}
