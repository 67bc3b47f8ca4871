/**
 * Starts the real RepoTune server the way the extension does: the extension's ServerOptions and
 * stdio handling (serverOptions, stdioOptions, serverLaunch, serverEnv) go to
 * vscode-languageclient's own LanguageClient, which builds the command line and spawns the
 * process (see vscode-stub.ts for how the library loads outside VS Code). The test then speaks
 * LSP over the transports the library made, and waits for an inline completion inside a function
 * of a small temporary repository.
 */
import { type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CancellationTokenSource,
  createMessageConnection,
  type MessageConnection,
  type MessageReader,
  type MessageWriter,
} from "vscode-jsonrpc/node";
import { LanguageClient } from "vscode-languageclient/node";

import { renderAnswer, resolveLinkTarget } from "../../src/answer";
import { judgeProbe } from "../../src/interpreter";
import { probeLaunch, runProbe, serverEnv, serverLaunch } from "../../src/launch";
import type { LogLevel, LogSink } from "../../src/serverLog";
import { serverOptions, stdioOptions } from "../../src/serverOptions";
import {
  ANSWER_PROGRESS_NOTIFICATION,
  COMMANDS,
  SERVER_COMMANDS,
  STATUS_NOTIFICATION,
  parseAnswerProgress,
  parseAskResult,
  parseStatus,
  type AnswerProgress,
  type StatusPayload,
} from "../../src/protocol";
import { toServerSettings } from "../../src/settings";

const python = process.env.REPOTUNE_PYTHON;
const FIRST_COMPLETION_DEADLINE_MS = 120_000;
const REQUEST_TIMEOUT_MS = 20_000;

const GEOMETRY = `"""Shapes and their areas."""
import math


def area_of_circle(radius: float) -> float:
    """Area of a circle with the given radius."""
    return math.pi * radius * radius


def area_of_square(side: float) -> float:
    """Area of a square with the given side."""
    return side * side
`;

// The cursor goes on the empty, indented line inside the loop of total_area.
const MAIN_BEFORE = `"""Totals over many shapes."""
from geometry import area_of_circle, area_of_square


def total_area(radii: list[float]) -> float:
    """Sum of the areas of circles with these radii."""
    total = 0.0
    for radius in radii:
        `;
const MAIN_AFTER = `
    return total
`;

interface InlineItem {
  insertText: string | { value: string };
}

function itemsOf(result: unknown): InlineItem[] {
  if (Array.isArray(result)) return result as InlineItem[];
  if (result && typeof result === "object" && Array.isArray((result as { items?: unknown }).items)) {
    return (result as { items: InlineItem[] }).items;
  }
  return [];
}

function textOf(item: InlineItem): string {
  return typeof item.insertText === "string" ? item.insertText : item.insertText.value;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The output channel the library writes the server's stderr to, as the extension's would. */
class RecordingChannel implements LogSink {
  readonly lines: { level: LogLevel; line: string }[] = [];
  error(line: string): void {
    this.lines.push({ level: "error", line });
  }
  warn(line: string): void {
    this.lines.push({ level: "warn", line });
  }
  info(line: string): void {
    this.lines.push({ level: "info", line });
  }
  debug(line: string): void {
    this.lines.push({ level: "debug", line });
  }
  trace(line: string): void {
    this.lines.push({ level: "trace", line });
  }
  appendLine(line: string): void {
    this.info(line);
  }
  text(): string {
    return this.lines.map(({ level, line }) => `[${level}] ${line}`).join("\n");
  }
}

interface Transports {
  reader: MessageReader;
  writer: MessageWriter;
}

/** LanguageClient spawns the server in createMessageTransports (called by start() in VS Code). */
async function spawnWithLanguageClient(client: LanguageClient): Promise<Transports> {
  const internals = client as unknown as { createMessageTransports(encoding: string): Promise<Transports> };
  return internals.createMessageTransports("utf-8");
}

describe.skipIf(!python)("the RepoTune server, started as the extension starts it", () => {
  let base = "";
  let repo = "";
  let child: ChildProcess | undefined;
  let connection: MessageConnection | undefined;
  const channel = new RecordingChannel();
  const statuses: StatusPayload[] = [];
  const answerProgress: AnswerProgress[] = [];
  let initializeResult: { capabilities: Record<string, unknown> } | undefined;
  // What a user might have set in VS Code; mapped by the extension's own function.
  const userSettings: Record<string, unknown> = {
    "repotune.languages": ["python"],
    "repotune.contextTokens": 256,
    "repotune.maxLineTokens": 24,
    "repotune.pythonPath": python,
  };
  const initializationOptions = toServerSettings((key) => ({ globalValue: userSettings[key] })).settings;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), "repotune-ext-it-"));
    repo = join(base, "repo");
    mkdirSync(repo);
    writeFileSync(join(repo, "geometry.py"), GEOMETRY);
    writeFileSync(join(repo, "main.py"), MAIN_BEFORE + MAIN_AFTER);
    // A hostile workspace: a package named like the server's, which `python -m` (or `-c`) would
    // import from the working folder before the installed one.
    mkdirSync(join(repo, "repotune"));
    writeFileSync(
      join(repo, "repotune", "__init__.py"),
      `open(${JSON.stringify(join(base, "hostile-code-ran"))}, "w").write("ran")\n`,
    );
    // The workspace's own config keeps this test's index out of the user's cache.
    writeFileSync(
      join(repo, "repotune.toml"),
      `[index]\nindex_dir = ${JSON.stringify(join(base, "index"))}\n`,
    );

    const pythonPath = python ?? "";
    const verdict = judgeProbe(
      { python: pythonPath, source: "setting" },
      // From the hostile workspace, to show the environment alone keeps its package out.
      await runProbe(probeLaunch(pythonPath, repo), serverEnv(process.env)),
    );
    if (!verdict.ok) throw new Error(`REPOTUNE_PYTHON is not usable: ${verdict.message}`);

    const launch = serverLaunch(pythonPath, repo);
    const client = new LanguageClient(
      "repotune",
      "RepoTune",
      serverOptions(launch, serverEnv(process.env)),
      { outputChannel: channel as never, stdioOptions },
    );
    const transports = await spawnWithLanguageClient(client);
    child = client.serverProcess;
    if (!child) throw new Error("vscode-languageclient started no server process");
    const conn = createMessageConnection(transports.reader, transports.writer);
    connection = conn;
    conn.onRequest("window/workDoneProgress/create", () => null);
    conn.onRequest("client/registerCapability", () => null);
    conn.onRequest("workspace/configuration", (params: { items: { section?: string }[] }) =>
      params.items.map((item) => (item.section === "repotune" ? initializationOptions : null)),
    );
    conn.onNotification(STATUS_NOTIFICATION, (payload: unknown) => {
      statuses.push(parseStatus(payload));
    });
    conn.onNotification(ANSWER_PROGRESS_NOTIFICATION, (payload: unknown) => {
      const progress = parseAnswerProgress(payload);
      if (progress) answerProgress.push(progress);
    });
    conn.onNotification(() => undefined); // logs and progress: not needed here
    conn.listen();

    const rootUri = pathToFileURL(repo).href;
    const proc = child;
    // A server that exits (an option it does not know, say) fails here with its stderr.
    const exited = new Promise<never>((_resolve, reject) => {
      proc.once("exit", (code) => {
        reject(new Error(`the server exited with ${String(code)} before initialize:\n${channel.text()}`));
      });
    });
    const initialize = conn.sendRequest<{ capabilities: Record<string, unknown> }>("initialize", {
      processId: process.pid,
      clientInfo: { name: "repotune-extension-test" },
      rootUri,
      workspaceFolders: [{ uri: rootUri, name: "repo" }],
      initializationOptions,
      capabilities: {
        window: { workDoneProgress: true },
        workspace: { configuration: true, workspaceFolders: true },
        textDocument: { inlineCompletion: { dynamicRegistration: true } },
      },
    });
    initializeResult = await Promise.race([initialize, exited]);
    exited.catch(() => undefined); // a later exit is checked by the tests themselves
    await conn.sendNotification("initialized", {});
  }, 90_000);

  afterAll(async () => {
    try {
      if (connection && child?.exitCode === null) {
        await Promise.race([connection.sendRequest("shutdown"), sleep(5_000)]);
        await connection.sendNotification("exit");
      }
    } catch {
      // the server may already be gone; it is killed below either way
    }
    connection?.dispose();
    if (child && child.exitCode === null) {
      await Promise.race([new Promise((r) => child?.once("exit", r)), sleep(5_000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    if (base) rmSync(base, { recursive: true, force: true });
  }, 30_000);

  it("runs with the command line vscode-languageclient built for the extension's options", () => {
    // The library appends its transport flag (`--stdio`); an exit here is the bug users saw.
    const argv = child?.spawnargs ?? [];
    expect(argv.slice(1, 5)).toEqual(["-P", "-m", "repotune", "serve"]);
    expect(argv.length, `argv: ${JSON.stringify(argv)}`).toBeGreaterThan(5);
    expect(child?.exitCode, `the server exited; stderr:\n${channel.text()}`).toBeNull();
    expect(initializeResult).toBeDefined();
  });

  it("never runs the workspace's own package named like the server (probe and server)", () => {
    expect(existsSync(join(base, "hostile-code-ran"))).toBe(false);
    expect(child?.exitCode, `the server exited; stderr:\n${channel.text()}`).toBeNull();
  });

  it("initializes with the extension's options and offers what the extension uses", () => {
    const capabilities = initializeResult?.capabilities ?? {};
    // Without this capability vscode-languageclient registers no inline completion provider.
    expect(capabilities.inlineCompletionProvider, "initialize result lacks inlineCompletionProvider").toBeTruthy();
    const commands = (capabilities.executeCommandProvider as { commands?: string[] } | undefined)?.commands;
    expect(commands).toEqual(expect.arrayContaining(Object.values(SERVER_COMMANDS)));
    // vscode-languageclient registers these ids as VS Code commands: they must not collide.
    for (const own of Object.values(COMMANDS)) expect(commands).not.toContain(own);
  });

  it(
    "answers textDocument/inlineCompletion inside a function with a non-empty item",
    async () => {
      const conn = connection;
      if (!conn) throw new Error("no connection");
      const uri = pathToFileURL(join(repo, "main.py")).href;
      await conn.sendNotification("textDocument/didOpen", {
        textDocument: { uri, languageId: "python", version: 1, text: MAIN_BEFORE + MAIN_AFTER },
      });
      const lines = MAIN_BEFORE.split("\n");
      const position = { line: lines.length - 1, character: lines[lines.length - 1].length };
      const started = Date.now();
      let text = "";
      let attempts = 0;
      let lastError = "";
      let unanswered = 0;
      while (Date.now() - started < FIRST_COMPLETION_DEADLINE_MS) {
        attempts += 1;
        // Like VS Code, give up on a request after a while: cancelling sends $/cancelRequest,
        // and the loop moves on even if the server never answers the cancelled request.
        const source = new CancellationTokenSource();
        const remaining = FIRST_COMPLETION_DEADLINE_MS - (Date.now() - started);
        const request = conn.sendRequest(
          "textDocument/inlineCompletion",
          {
            textDocument: { uri },
            position,
            context: { triggerKind: 2 }, // LSP InlineCompletionTriggerKind.Automatic
          },
          source.token,
        );
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => {
            resolve("timeout");
          }, Math.max(1_000, Math.min(REQUEST_TIMEOUT_MS, remaining)));
        });
        try {
          const result: unknown = await Promise.race([request, timeout]);
          if (result === "timeout") {
            source.cancel();
            unanswered += 1;
            request.catch(() => undefined);
          } else {
            const item = itemsOf(result).find((i) => textOf(i).trim() !== "");
            if (item) {
              text = textOf(item);
              break;
            }
          }
        } catch (error) {
          lastError = String(error); // e.g. the model is still loading
        } finally {
          clearTimeout(timer);
          source.dispose();
        }
        if (child?.exitCode !== null) break;
        await sleep(1_000);
      }
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `first inline completion after ${seconds} s, ${attempts} request(s), ` +
          `${unanswered} unanswered after ${REQUEST_TIMEOUT_MS / 1000} s: ${JSON.stringify(text)}`,
      );
      expect(text.trim(), `no completion; last error: ${lastError}\nserver stderr:\n${channel.text()}`).not.toBe("");
    },
    FIRST_COMPLETION_DEADLINE_MS + 30_000,
  );

  it("reports its status through repotune.status in the shape the status bar reads", async () => {
    const conn = connection;
    if (!conn) throw new Error("no connection");
    const raw: unknown = await conn.sendRequest("workspace/executeCommand", {
      command: SERVER_COMMANDS.status,
    });
    const status = parseStatus(raw);
    expect(status.message).not.toMatch(/unknown server state/);
    expect(["idle", "busy", "indexing"]).toContain(status.state);
    expect(status.model).not.toBeNull();
    expect(status.index.files).toBeGreaterThanOrEqual(1);
    expect(statuses.length, "no repotune/status notification arrived").toBeGreaterThan(0);
  }, 30_000);

  it("answers repotune.ask with an answer that renders with file links", async () => {
    const conn = connection;
    if (!conn) throw new Error("no connection");
    const raw: unknown = await conn.sendRequest("workspace/executeCommand", {
      command: SERVER_COMMANDS.ask,
      arguments: [{ question: "Which function computes the area of a circle?", progressToken: "ask-1" }],
    });
    const result = parseAskResult(raw);
    // The answer arrived as it grew (what the answer view shows), each the whole answer so far.
    const texts = answerProgress.filter((p) => p.token === "ask-1").map((p) => p.text);
    expect(texts.length, "no repotune/answerProgress notification").toBeGreaterThan(0);
    expect(result.answer.startsWith(texts[texts.length - 1])).toBe(true);
    // The question describes area_of_circle: the answer opens with its definition, cited.
    expect(result.answer).toMatch(/^`area_of_circle` \(geometry\.py:\d+\)/);
    // `answer` is the model's own text; the sources come as citations (rendered once, below it).
    expect(result.answer.trim(), "the model said nothing").not.toBe("");
    expect(result.answer).not.toContain("**Sources**");
    expect(result.citations.map((citation) => citation.path)).toContain("geometry.py");
    const markdown = renderAnswer("Which function computes the area of a circle?", result, repo);
    expect(markdown.match(/## Sources/g)).toHaveLength(1);
    // workspace-relative links that resolve back to the cited file and line
    const targets = [...markdown.matchAll(/\]\(([^)]+#L\d+)\)/g)].map((m) => resolveLinkTarget(m[1], [repo]));
    expect(targets.length).toBeGreaterThan(0);
    for (const target of targets) expect(target?.path.startsWith(repo)).toBe(true);
  }, 180_000);

  it("logs the server's stderr by level: loader chatter below errors, no error in a healthy run", () => {
    const errors = channel.lines.filter(({ level }) => level === "error");
    expect(errors, `stderr as logged:\n${channel.text()}`).toEqual([]);
  });
});

describe.skipIf(Boolean(python))("the RepoTune server", () => {
  // Never a pass: under CI (CI=true) a failure, elsewhere a skip that says why.
  if (process.env.CI === "true") {
    it("needs REPOTUNE_PYTHON under CI", () => {
      throw new Error("CI=true but REPOTUNE_PYTHON is not set: the server integration test cannot run");
    });
  } else {
    it.skip("is skipped: REPOTUNE_PYTHON is not set (an interpreter with RepoTune installed)", () => {});
  }
});
