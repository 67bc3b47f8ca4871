import { PassThrough } from "node:stream";

import { describe, expect, it } from "vitest";

import { StderrClassifier, forwardServerStderr, type LogLevel, type LogSink } from "../../src/serverLog";

function levels(lines: string[]): LogLevel[] {
  const classifier = new StderrClassifier();
  return lines.map((line) => classifier.level(line));
}

describe("StderrClassifier", () => {
  it("puts llama.cpp's loader output at debug", () => {
    expect(
      levels([
        "llama_model_loader: loaded meta data with 39 key-value pairs and 236 tensors from /x.gguf",
        "load_tensors: loading model tensors, this can take a while... (mmap = true)",
        "llama_context: n_ctx_per_seq (4096) < n_ctx_train (32768)",
        "ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected",
      ]),
    ).toEqual(["debug", "debug", "debug", "debug"]);
  });

  it("reads the level of Python logging records", () => {
    expect(
      levels([
        "2025-01-31 12:00:00,123 repotune.lsp ERROR indexing failed: disk full",
        "2025-01-31 12:00:00,124 pygls.protocol WARNING Cancel notification for unknown message id",
        "2025-01-31 12:00:00,125 repotune.lsp INFO model loaded",
        "ERROR:repotune.lsp:bad settings",
        "WARNING:root:slow disk",
      ]),
    ).toEqual(["error", "warn", "info", "error", "warn"]);
  });

  it("shows the server's own messages and whole tracebacks as errors, then resumes", () => {
    expect(
      levels([
        "repotune: model file not found: /nope.gguf",
        "Error: No such option: --stdio",
        "Traceback (most recent call last):",
        '  File "/x/lsp.py", line 10, in start',
        "    raise ValueError('boom')",
        "ValueError: boom",
        "llama_model_loader: - kv   0: general.architecture str = gemma3",
      ]),
    ).toEqual(["error", "error", "error", "error", "error", "error", "debug"]);
  });

  it("keeps chained tracebacks together", () => {
    expect(
      levels([
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in <module>',
        "KeyError: 'x'",
      ]).concat(
        levels([
          "Traceback (most recent call last):",
          '  File "a.py", line 1, in <module>',
          "",
          "During handling of the above exception, another exception occurred:",
          "",
          "Traceback (most recent call last):",
          "RuntimeError: y",
          "print_info: file type = Q8_0",
        ]),
      ),
    ).toEqual(["error", "error", "error", "error", "error", "error", "error", "error", "error", "error", "debug"]);
  });

  it("shows Python warnings as warnings", () => {
    expect(levels(["/x/site-packages/chromadb/api.py:12: DeprecationWarning: old API"])).toEqual(["warn"]);
  });
});

describe("forwardServerStderr", () => {
  it("writes each line of the stream to the sink at its level", async () => {
    const seen: string[] = [];
    const record = (level: LogLevel) => (line: string) => seen.push(`${level}: ${line}`);
    const sink: LogSink = {
      error: record("error"),
      warn: record("warn"),
      info: record("info"),
      debug: record("debug"),
      trace: record("trace"),
    };
    const input = new PassThrough();
    forwardServerStderr(input, sink);
    input.end("llama_model_loader: loaded\r\nrepotune: no model\n");
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual(["debug: llama_model_loader: loaded", "error: repotune: no model"]);
  });
});
