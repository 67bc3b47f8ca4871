import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import {
  SERVER_SETTINGS,
  USER_ONLY_KEYS,
  chooseValue,
  didChangeConfigurationParams,
  languageEnabled,
  toServerSettings,
  withWorkspaceTrust,
  type ScopedValues,
} from "../../src/settings";

const root = join(__dirname, "..", "..");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  contributes: { configuration: { properties: Record<string, { default?: unknown }> } };
};
const declared = manifest.contributes.configuration.properties;

/** A reader for values set in the user's own settings. */
function reader(values: Record<string, unknown>) {
  return (key: string): ScopedValues => ({ globalValue: values[key] });
}

describe("toServerSettings", () => {
  it("sends nothing when the user set nothing", () => {
    expect(toServerSettings(reader({}))).toEqual({ settings: {}, problems: [] });
  });

  it("maps every user-set value onto the nested snake_case shape", () => {
    const { settings, problems } = toServerSettings(
      reader({
        "repotune.enable": false,
        "repotune.model": " /models/qwen.gguf ",
        "repotune.adapter": "hf:me/adapter",
        "repotune.languages": ["python", "rust"],
        "repotune.contextTokens": 1024,
        "repotune.debounceMs": 80,
        "repotune.maxLineTokens": 32,
        "repotune.exclude": ["vendor/**"],
        "repotune.pythonPath": "/usr/bin/python3",
      }),
    );
    expect(problems).toEqual([]);
    expect(settings).toEqual({
      completion: {
        enabled: false,
        languages: ["python", "rust"],
        context_tokens: 1024,
        debounce_ms: 80,
        max_tokens_line: 32,
      },
      model: { generator: "/models/qwen.gguf", adapter: "hf:me/adapter" },
      index: { exclude: ["vendor/**"] },
    });
  });

  it("turns an empty adapter into null (no adapter) and keeps explicit null", () => {
    expect(toServerSettings(reader({ "repotune.adapter": "" })).settings).toEqual({
      model: { adapter: null },
    });
    expect(toServerSettings(reader({ "repotune.adapter": null })).settings).toEqual({
      model: { adapter: null },
    });
  });

  it("drops values of the wrong type and names them", () => {
    const { settings, problems } = toServerSettings(
      reader({
        "repotune.contextTokens": 12.5,
        "repotune.languages": "python",
        "repotune.enable": "yes",
        "repotune.model": "",
        "repotune.debounceMs": 40,
      }),
    );
    expect(settings).toEqual({ completion: { debounce_ms: 40 } });
    expect(problems).toHaveLength(4);
    expect(problems.join("\n")).toMatch(/repotune\.contextTokens: expected a whole number, got 12\.5/);
    expect(problems.join("\n")).toMatch(/repotune\.languages: expected a list of strings/);
  });

  it("sends quick start's choice as the server takes it, old true/false values too", () => {
    const sent = (value: unknown) =>
      toServerSettings(reader({ "repotune.quickStart": value })).settings.completion?.quick_start;
    expect(sent("auto")).toBe("auto");
    expect(sent("on")).toBe(true);
    expect(sent("off")).toBe(false);
    expect(sent(true)).toBe(true);
    expect(sent(false)).toBe(false);
    const { problems } = toServerSettings(reader({ "repotune.quickStart": "sometimes" }));
    expect(problems.join("\n")).toMatch(/repotune\.quickStart: expected "auto", "on" or "off"/);
  });

  it("does not alias the user's arrays", () => {
    const languages = ["go"];
    const { settings } = toServerSettings(reader({ "repotune.languages": languages }));
    languages.push("c");
    expect(settings.completion?.languages).toEqual(["go"]);
  });

  it("wraps the object for workspace/didChangeConfiguration", () => {
    expect(didChangeConfigurationParams({ model: { generator: "x" } })).toEqual({
      settings: { repotune: { model: { generator: "x" } } },
    });
  });

  it("maps each declared setting exactly once, onto a distinct server field", () => {
    const keys = SERVER_SETTINGS.map((s) => s.key);
    expect(new Set(keys).size).toBe(keys.length);
    const targets = SERVER_SETTINGS.map((s) => s.server.join("."));
    expect(new Set(targets).size).toBe(targets.length);
    for (const key of keys) expect(declared, key).toHaveProperty([key]);
  });
});

/** Fields and simple literal defaults of one pydantic section class in server/config.py. */
function serverFields(source: string, className: string): Map<string, string | undefined> {
  const start = source.indexOf(`class ${className}(`);
  if (start < 0) throw new Error(`${className} not found in server/config.py`);
  const rest = source.slice(start).split("\n").slice(1);
  const fields = new Map<string, string | undefined>();
  for (const [index, line] of rest.entries()) {
    if (/^\S/.test(line)) break; // next top-level statement
    const match = /^ {4}(\w+): [^=]*?(?: = (.*))?$/.exec(line);
    if (!match || match[1] === "model_config") continue;
    let rhs = match[2]?.trim();
    // `Field(` alone: ruff put the arguments one per line, the default first.
    if (rhs === "Field(") rhs = `Field(${rest[index + 1]?.trim() ?? ""}`;
    const literal = rhs?.startsWith("Field(") ? /^Field\(([^,)]*)/.exec(rhs)?.[1] : rhs;
    fields.set(match[1], literal?.trim() || undefined);
  }
  return fields;
}

const configPy = join(root, "..", "server", "config.py");
const sectionClass: Record<string, string> = {
  model: "ModelSettings",
  completion: "CompletionSettings",
  index: "IndexSettings",
};

describe.skipIf(!existsSync(configPy))("agreement with server/config.py", () => {
  const source = existsSync(configPy) ? readFileSync(configPy, "utf8") : "";

  it("targets only fields the server accepts (it forbids unknown keys)", () => {
    for (const spec of SERVER_SETTINGS) {
      const [section, field] = spec.server;
      const fields = serverFields(source, sectionClass[section]);
      expect(fields.has(field), `${spec.key} -> ${section}.${field}`).toBe(true);
    }
  });

  it("declares the server's own defaults in package.json", () => {
    let compared = 0;
    for (const spec of SERVER_SETTINGS) {
      const [section, field] = spec.server;
      const pyDefault = serverFields(source, sectionClass[section]).get(field);
      const jsDefault = declared[spec.key].default;
      if (pyDefault === undefined || pyDefault.startsWith("default_factory")) continue;
      const normalised = pyDefault
        .replace(/^True$/, "true")
        .replace(/^False$/, "false")
        .replace(/^None$/, "null")
        .replace(/^[\d_.]+$/, (number) => number.replace(/_/g, "")) // 60_000
        .replace(/^"(.*)"$/, "$1");
      expect(String(jsDefault), spec.key).toBe(normalised.replace(/^(\d+)\.0$/, "$1"));
      compared += 1;
    }
    expect(compared).toBeGreaterThanOrEqual(8);
  });
});

describe("languageEnabled", () => {
  it("treats * as every language", () => {
    expect(languageEnabled("python", ["*"])).toBe(true);
  });
  it("limits to the listed languages", () => {
    expect(languageEnabled("python", ["rust", "python"])).toBe(true);
    expect(languageEnabled("markdown", ["rust", "python"])).toBe(false);
    expect(languageEnabled("python", [])).toBe(false);
  });
});

describe("settings that choose where code goes", () => {
  it("are read from the user's own settings only and machine-scoped in package.json", () => {
    const network = ["chroma_url", "chroma_token_env", "endpoint", "endpoint_model", "endpoint_key_env"];
    for (const spec of SERVER_SETTINGS) {
      if (network.includes(spec.server[1])) expect(USER_ONLY_KEYS.has(spec.key)).toBe(true);
    }
    const scopes = declared as Record<string, { scope?: string }>;
    for (const key of USER_ONLY_KEYS) expect(scopes[key]?.scope).toBe("machine");
    expect(USER_ONLY_KEYS.has("repotune.adapter")).toBe(false);
  });
});

describe("values set by a workspace (its .vscode/settings.json is untrusted input)", () => {
  it("choose no program and no model file in an untrusted workspace (restricted in package.json)", () => {
    const restricted = (manifest as unknown as {
      capabilities: { untrustedWorkspaces: { restrictedConfigurations: string[] } };
    }).capabilities.untrustedWorkspaces.restrictedConfigurations;
    expect(restricted).toEqual(expect.arrayContaining(["repotune.pythonPath", "repotune.model", "repotune.adapter"]));
  });

  it("win over the user's, a folder's over the workspace's", () => {
    expect(chooseValue("repotune.contextTokens", { globalValue: 256, workspaceValue: 512 })).toEqual({
      value: 512,
    });
    expect(
      chooseValue("repotune.contextTokens", { globalValue: 1, workspaceValue: 2, workspaceFolderValue: 3 }),
    ).toEqual({ value: 3 });
    expect(chooseValue("repotune.contextTokens", undefined)).toEqual({ value: undefined });
  });

  it("never choose where code goes", () => {
    const endpoint = { globalValue: "http://mine:8080/v1", workspaceValue: "http://attacker:1/v1" };
    expect(chooseValue("repotune.endpoint", endpoint)).toEqual({ value: "http://mine:8080/v1" });
  });

  it("may name a model file but not a Hugging Face model, which the server would download", () => {
    expect(chooseValue("repotune.adapter", { workspaceValue: ".repotune/adapter.gguf" })).toEqual({
      value: ".repotune/adapter.gguf",
    });
    for (const key of ["repotune.model", "repotune.adapter"]) {
      const chosen = chooseValue(key, { globalValue: "default", workspaceFolderValue: " hf:attacker/beacon" });
      expect(chosen.value).toBe("default");
      expect(chosen.problem).toMatch(new RegExp(`^${key}: .*Hugging Face.*ignored$`));
    }
    // the user may name one
    expect(chooseValue("repotune.adapter", { globalValue: "hf:our-org/lora" })).toEqual({
      value: "hf:our-org/lora",
    });
    const { settings, problems } = toServerSettings((key) =>
      key === "repotune.adapter" ? { workspaceValue: "hf:attacker/beacon" } : undefined,
    );
    expect(settings).toEqual({});
    expect(problems).toHaveLength(1);
  });
});

describe("withWorkspaceTrust", () => {
  it("tells the server to leave out the repository's own model files in an untrusted workspace", () => {
    const settings = { model: { adapter: "hf:me/lora" }, completion: { enabled: true } };
    expect(withWorkspaceTrust(settings, true)).toBe(settings);
    expect(withWorkspaceTrust(settings, false)).toEqual({
      model: { adapter: "hf:me/lora", repository_models: false },
      completion: { enabled: true },
    });
    expect(withWorkspaceTrust({}, false)).toEqual({ model: { repository_models: false } });
  });
});
