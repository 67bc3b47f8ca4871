/** What the status bar item says: the server's state plus the client's own (not installed...). */
import type { StatusPayload } from "./protocol";

/** States only the client knows about, before or instead of a server status. */
export type ClientState = "starting" | "running" | "not-installed" | "stopped" | "failed";

export type StatusKind = "normal" | "warning" | "error";

export interface StatusView {
  text: string;
  tooltip: string;
  kind: StatusKind;
}

export interface StatusInput {
  client: ClientState;
  server: StatusPayload | undefined;
  completionsEnabled: boolean;
  /** Why the client is not running (not-installed/failed), shown in the tooltip. */
  detail?: string;
}

/** A short display name for a model reference: a path's file name without .gguf, an hf: id. */
export function shortModelName(ref: string | null): string | null {
  if (!ref) return null;
  let name = ref;
  if (name.startsWith("hf:")) name = name.slice(3).split(":")[0];
  const parts = name.split(/[\\/]/);
  name = parts[parts.length - 1] || name;
  return name.replace(/\.gguf$/i, "");
}

/** Share of chunks with dense vectors, or undefined when nothing is chunked yet. */
export function indexPercent(server: StatusPayload): number | undefined {
  const { chunks, dense_pending } = server.index;
  if (chunks <= 0) return undefined;
  const done = Math.max(0, chunks - Math.min(dense_pending, chunks));
  return Math.floor((100 * done) / chunks);
}

function modelLabel(server: StatusPayload): string {
  const model = shortModelName(server.model);
  const adapter = shortModelName(server.adapter);
  if (!model) return "";
  return adapter ? `${model} + ${adapter}` : model;
}

function tooltipLines(input: StatusInput): string[] {
  const lines: string[] = [];
  const server = input.server;
  if (server) {
    lines.push(`State: ${server.state}${server.message ? ` (${server.message})` : ""}`);
    lines.push(`Model: ${server.model ?? "not loaded"}`);
    lines.push(`Adapter: ${server.adapter ?? "none"}`);
    const { files, chunks, dense_pending } = server.index;
    lines.push(`Index: ${files} files, ${chunks} chunks, ${dense_pending} waiting for embeddings`);
    for (const error of server.errors) lines.push(`Error: ${error}`);
    for (const note of server.notes) lines.push(`Note: ${note}`);
  }
  if (input.detail) lines.push(input.detail);
  lines.push(`Completions: ${input.completionsEnabled ? "on" : "off"}`);
  lines.push("Click for RepoTune commands");
  return lines;
}

/** The status bar text (with codicons), tooltip and colour for the current state. */
export function statusView(input: StatusInput): StatusView {
  const tooltip = tooltipLines(input).join("\n");
  const off = input.completionsEnabled ? "" : " (off)";
  switch (input.client) {
    case "not-installed":
      return { text: "$(warning) RepoTune: not installed", tooltip, kind: "warning" };
    case "failed":
      return { text: "$(error) RepoTune", tooltip, kind: "error" };
    case "stopped":
      return { text: "$(debug-stop) RepoTune: stopped", tooltip, kind: "warning" };
    case "starting":
      if (!input.server) return { text: "$(loading~spin) RepoTune: starting", tooltip, kind: "normal" };
      break;
    case "running":
      break;
  }
  const server = input.server;
  if (!server) return { text: `$(loading~spin) RepoTune${off}`, tooltip, kind: "normal" };
  const label = modelLabel(server);
  const withModel = label ? ` · ${label}` : "";
  switch (server.state) {
    case "starting":
      return { text: `$(loading~spin) RepoTune: starting${off}`, tooltip, kind: "normal" };
    case "loading":
      return { text: `$(loading~spin) RepoTune: loading model${off}`, tooltip, kind: "normal" };
    case "indexing": {
      const percent = indexPercent(server);
      const progress = percent === undefined ? "" : ` ${percent}%`;
      return { text: `$(sync~spin) RepoTune: indexing${progress}${off}`, tooltip, kind: "normal" };
    }
    case "busy":
      return { text: `$(loading~spin) RepoTune${withModel}${off}`, tooltip, kind: "normal" };
    case "idle": {
      const icon = input.completionsEnabled ? "$(sparkle)" : "$(circle-slash)";
      return { text: `${icon} RepoTune${withModel}${off}`, tooltip, kind: "normal" };
    }
    case "error":
      return { text: `$(error) RepoTune${withModel}`, tooltip, kind: "error" };
  }
}
