/**
 * The wire contract with the RepoTune language server (server/lsp/server.py).
 *
 * Kept in one module with no `vscode` import so the extension, the unit tests and the node
 * integration test all speak exactly the same protocol.
 */

/** Commands the *server* answers through `workspace/executeCommand`. vscode-languageclient
 * registers these ids as VS Code commands itself, so the extension's own ids must differ. */
export const SERVER_COMMANDS = {
  ask: "repotune.ask",
  reindex: "repotune.reindex",
  status: "repotune.status",
} as const;

/** Commands the extension contributes (package.json `contributes.commands`). */
export const COMMANDS = {
  askQuestion: "repotune.askQuestion",
  reindexWorkspace: "repotune.reindexWorkspace",
  toggleCompletions: "repotune.toggleCompletions",
  showLog: "repotune.showLog",
  restartServer: "repotune.restartServer",
  showMenu: "repotune.showMenu",
  selectInterpreter: "repotune.selectInterpreter",
} as const;

/** Server -> client notification carrying a {@link StatusPayload} whenever it changes. */
export const STATUS_NOTIFICATION = "repotune/status";

/** Server -> client notification with the answer so far while `repotune.ask` generates it; sent
 * only for a request whose argument carries a `progressToken`. The response's answer is final. */
export const ANSWER_PROGRESS_NOTIFICATION = "repotune/answerProgress";

export interface AnswerProgress {
  token: string | number;
  text: string;
}

export function parseAnswerProgress(value: unknown): AnswerProgress | undefined {
  if (!isRecord(value) || typeof value.text !== "string") return undefined;
  const token = value.token;
  return typeof token === "string" || typeof token === "number" ? { token, text: value.text } : undefined;
}

/** Where a question is asked from: the open document and the editor's selection (an empty
 * range is the cursor), 0-based as LSP counts. The server takes the selected lines, or the
 * definition around the cursor when the question says "this ...", as the code it is about. */
export interface AskLocation {
  textDocument: { uri: string };
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
}

/** The `repotune.ask` argument: the question, the token its progress comes under, and where
 * it is asked from (left out for an editor whose document is not a file). */
export function askArgument(
  question: string,
  progressToken: string,
  location?: AskLocation,
): { question: string; progressToken: string } & Partial<AskLocation> {
  const argument = { question: question.trim(), progressToken };
  return location && location.textDocument.uri.startsWith("file:") ? { ...argument, ...location } : argument;
}

export type ServerState = "starting" | "loading" | "indexing" | "idle" | "busy" | "error";

export interface IndexCounts {
  files: number;
  chunks: number;
  dense_pending: number;
}

export interface StatusPayload {
  state: ServerState;
  message: string;
  model: string | null;
  adapter: string | null;
  index: IndexCounts;
  errors: string[];
  /** Per folder, what it sets that is not in effect (its model settings, in a multi-root window). */
  notes: string[];
}

export interface Citation {
  path: string;
  uri: string;
  start_line: number;
  end_line: number;
}

export interface AskResult {
  answer: string;
  citations: Citation[];
}

const STATES: readonly ServerState[] = ["starting", "loading", "indexing", "idle", "busy", "error"];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function toCount(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}

function toOptionalString(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

/** Read a status payload defensively: a server from another version must not break the UI. */
export function parseStatus(value: unknown): StatusPayload {
  const raw = isRecord(value) ? value : {};
  const state = STATES.find((s) => s === raw.state) ?? "error";
  const index = isRecord(raw.index) ? raw.index : {};
  const errors = Array.isArray(raw.errors)
    ? raw.errors.filter((e): e is string => typeof e === "string")
    : [];
  const notes = (Array.isArray(raw.folders) ? raw.folders : [])
    .map((folder) => (isRecord(folder) ? folder.model_settings_unused : undefined))
    .filter((note): note is string => typeof note === "string" && note.length > 0);
  const message =
    typeof raw.message === "string"
      ? raw.message
      : isRecord(value)
        ? ""
        : "the server sent an unreadable status";
  return {
    state,
    message: STATES.includes(raw.state as ServerState)
      ? message
      : message || `unknown server state ${JSON.stringify(raw.state)}`,
    model: toOptionalString(raw.model),
    adapter: toOptionalString(raw.adapter),
    index: {
      files: toCount(index.files),
      chunks: toCount(index.chunks),
      dense_pending: toCount(index.dense_pending),
    },
    errors,
    notes,
  };
}

/** Read an ask result; a malformed one becomes a clear error rather than an empty document. */
export function parseAskResult(value: unknown): AskResult {
  if (!isRecord(value) || typeof value.answer !== "string") {
    throw new Error(`the server's answer has no text (got ${JSON.stringify(value)})`);
  }
  const citations: Citation[] = [];
  if (Array.isArray(value.citations)) {
    for (const item of value.citations) {
      if (!isRecord(item) || typeof item.path !== "string") continue;
      const start = toCount(item.start_line) || 1;
      const end = Math.max(start, toCount(item.end_line));
      citations.push({
        path: item.path,
        uri: typeof item.uri === "string" ? item.uri : "",
        start_line: start,
        end_line: end,
      });
    }
  }
  return { answer: value.answer, citations };
}
