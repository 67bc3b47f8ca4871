import { describe, expect, it } from "vitest";

import { parseStatus, type StatusPayload } from "../../src/protocol";
import { indexPercent, shortModelName, statusView } from "../../src/status";

function payload(overrides: Partial<StatusPayload>): StatusPayload {
  return {
    state: "idle",
    message: "",
    model: "/cache/models/gemma-3-270m-it-Q4_K_M.gguf",
    adapter: null,
    index: { files: 10, chunks: 200, dense_pending: 0 },
    errors: [],
    notes: [],
    ...overrides,
  };
}

describe("statusView", () => {
  it("shows the model (and adapter) when idle", () => {
    const view = statusView({ client: "running", server: payload({}), completionsEnabled: true });
    expect(view.text).toBe("$(sparkle) RepoTune · gemma-3-270m-it-Q4_K_M");
    expect(view.kind).toBe("normal");
    const adapted = statusView({
      client: "running",
      server: payload({ adapter: "hf:me/repo-lora:adapter.gguf" }),
      completionsEnabled: true,
    });
    expect(adapted.text).toBe("$(sparkle) RepoTune · gemma-3-270m-it-Q4_K_M + repo-lora");
    expect(adapted.tooltip).toContain("Adapter: hf:me/repo-lora:adapter.gguf");
  });

  it("shows indexing progress as the share of chunks with embeddings", () => {
    const view = statusView({
      client: "running",
      server: payload({ state: "indexing", index: { files: 5, chunks: 200, dense_pending: 150 } }),
      completionsEnabled: true,
    });
    expect(view.text).toBe("$(sync~spin) RepoTune: indexing 25%");
    expect(view.tooltip).toContain("Index: 5 files, 200 chunks, 150 waiting for embeddings");
  });

  it("shows indexing without a percentage before any chunk exists", () => {
    const view = statusView({
      client: "running",
      server: payload({ state: "indexing", index: { files: 0, chunks: 0, dense_pending: 0 } }),
      completionsEnabled: true,
    });
    expect(view.text).toBe("$(sync~spin) RepoTune: indexing");
  });

  it("distinguishes busy, loading and error, and lists errors in the tooltip", () => {
    expect(statusView({ client: "running", server: payload({ state: "busy" }), completionsEnabled: true }).text).toBe(
      "$(loading~spin) RepoTune · gemma-3-270m-it-Q4_K_M",
    );
    expect(
      statusView({ client: "running", server: payload({ state: "loading", model: null }), completionsEnabled: true })
        .text,
    ).toBe("$(loading~spin) RepoTune: loading model");
    const error = statusView({
      client: "running",
      server: payload({ state: "error", errors: ["model file missing"] }),
      completionsEnabled: true,
    });
    expect(error.kind).toBe("error");
    expect(error.text.startsWith("$(error)")).toBe(true);
    expect(error.tooltip).toContain("Error: model file missing");
  });

  it("says when completions are off", () => {
    const view = statusView({ client: "running", server: payload({}), completionsEnabled: false });
    expect(view.text).toBe("$(circle-slash) RepoTune · gemma-3-270m-it-Q4_K_M (off)");
    expect(view.tooltip).toContain("Completions: off");
  });

  it("reports client-side states before the server speaks", () => {
    expect(statusView({ client: "starting", server: undefined, completionsEnabled: true }).text).toBe(
      "$(loading~spin) RepoTune: starting",
    );
    const missing = statusView({
      client: "not-installed",
      server: undefined,
      completionsEnabled: true,
      detail: "RepoTune is not installed in python3",
    });
    expect(missing.kind).toBe("warning");
    expect(missing.text).toBe("$(warning) RepoTune: not installed");
    expect(missing.tooltip).toContain("RepoTune is not installed in python3");
    expect(statusView({ client: "failed", server: undefined, completionsEnabled: true }).kind).toBe("error");
  });
});

describe("helpers", () => {
  it("shortens model references", () => {
    expect(shortModelName("C:\\models\\qwen2.5-coder.GGUF")).toBe("qwen2.5-coder");
    expect(shortModelName("hf:Qwen/Qwen2.5-Coder-1.5B-GGUF:q4.gguf")).toBe("Qwen2.5-Coder-1.5B-GGUF");
    expect(shortModelName("default")).toBe("default");
    expect(shortModelName(null)).toBeNull();
  });

  it("clamps the index percentage", () => {
    expect(indexPercent(payload({ index: { files: 1, chunks: 3, dense_pending: 1 } }))).toBe(66);
    expect(indexPercent(payload({ index: { files: 1, chunks: 3, dense_pending: 9 } }))).toBe(0);
  });
});

describe("parseStatus", () => {
  it("reads a full payload", () => {
    const raw = payload({ state: "busy", message: "completing" });
    expect(parseStatus(JSON.parse(JSON.stringify(raw)))).toEqual(raw);
  });

  it("survives partial or foreign payloads", () => {
    expect(parseStatus({ state: "idle" })).toEqual({
      state: "idle",
      message: "",
      model: null,
      adapter: null,
      index: { files: 0, chunks: 0, dense_pending: 0 },
      errors: [],
      notes: [],
    });
    const odd = parseStatus({ state: "sleeping", errors: ["a", 3], index: { files: -2 } });
    expect(odd.state).toBe("error");
    expect(odd.message).toContain("sleeping");
    expect(odd.errors).toEqual(["a"]);
    expect(odd.index.files).toBe(0);
    expect(parseStatus(null).state).toBe("error");
  });

  it("lists a folder's model settings that are not in effect, in the tooltip too", () => {
    const note = "/ws/b: its model settings (adapter = 'none') are not used: one model serves every folder";
    const parsed = parseStatus({ state: "idle", folders: [{ root: "/ws/a" }, { root: "/ws/b", model_settings_unused: note }, 7] });
    expect(parsed.notes).toEqual([note]);
    const view = statusView({ client: "running", server: parsed, completionsEnabled: true });
    expect(view.tooltip).toContain(`Note: ${note}`);
  });
});
