/**
 * VS Code settings -> the server's nested, snake_case settings object.
 *
 * Only values the user actually set are sent: the server layers editor values over the
 * workspace's repotune.toml, so sending package.json defaults would silently override that file.
 */

export type SettingKind =
  | "boolean"
  | "string"
  | "nullableString"
  | "integer"
  | "integerOrAuto"
  | "onOffAuto"
  | "number"
  | "stringArray";

export interface SettingSpec {
  /** Full VS Code key, as declared in package.json. */
  key: string;
  /** Path in the server's settings object, e.g. ["completion", "context_tokens"]. */
  server: readonly [string, string];
  kind: SettingKind;
  /**
   * Read from the user's own settings only, never a workspace's or folder's: these choose where
   * the repository's code goes (a repository's .vscode/settings.json is untrusted input).
   */
  userOnly?: true;
}

/** Settings used by the client only (never sent to the server). */
export const CLIENT_SETTINGS = {
  pythonPath: "repotune.pythonPath",
} as const;

/** Every contributed setting that maps onto the server's settings (one row each). */
export const SERVER_SETTINGS: readonly SettingSpec[] = [
  { key: "repotune.enable", server: ["completion", "enabled"], kind: "boolean" },
  { key: "repotune.languages", server: ["completion", "languages"], kind: "stringArray" },
  { key: "repotune.model", server: ["model", "generator"], kind: "string" },
  { key: "repotune.adapter", server: ["model", "adapter"], kind: "nullableString" },
  { key: "repotune.adapterScale", server: ["model", "adapter_scale"], kind: "number" },
  { key: "repotune.gpuLayers", server: ["model", "gpu_layers"], kind: "integerOrAuto" },
  { key: "repotune.threads", server: ["model", "threads"], kind: "integer" },
  { key: "repotune.contextTokens", server: ["completion", "context_tokens"], kind: "integer" },
  { key: "repotune.debounceMs", server: ["completion", "debounce_ms"], kind: "integer" },
  { key: "repotune.quickStart", server: ["completion", "quick_start"], kind: "onOffAuto" },
  { key: "repotune.stableContext", server: ["completion", "stable_context"], kind: "boolean" },
  { key: "repotune.maxLineTokens", server: ["completion", "max_tokens_line"], kind: "integer" },
  { key: "repotune.maxBlockTokens", server: ["completion", "max_tokens_block"], kind: "integer" },
  { key: "repotune.timeCapMs", server: ["completion", "time_cap_ms"], kind: "integer" },
  {
    key: "repotune.skipAfterDeletion",
    server: ["completion", "auto_skip_after_deletion"],
    kind: "boolean",
  },
  {
    key: "repotune.maxCharsRightOfCursor",
    server: ["completion", "auto_max_chars_right"],
    kind: "integer",
  },
  { key: "repotune.exclude", server: ["index", "exclude"], kind: "stringArray" },
  // For teams (README): a shared index server and a GPU endpoint.
  { key: "repotune.chromaUrl", server: ["index", "chroma_url"], kind: "nullableString", userOnly: true },
  { key: "repotune.chromaTokenEnv", server: ["index", "chroma_token_env"], kind: "string", userOnly: true },
  { key: "repotune.endpoint", server: ["model", "endpoint"], kind: "nullableString", userOnly: true },
  { key: "repotune.endpointModel", server: ["model", "endpoint_model"], kind: "nullableString", userOnly: true },
  { key: "repotune.endpointKeyEnv", server: ["model", "endpoint_key_env"], kind: "nullableString", userOnly: true },
  { key: "repotune.endpointFallback", server: ["model", "endpoint_fallback"], kind: "boolean", userOnly: true },
];

/** Keys read from the user's own settings only (see SettingSpec.userOnly). */
export const USER_ONLY_KEYS: ReadonlySet<string> = new Set(
  SERVER_SETTINGS.filter((spec) => spec.userOnly).map((spec) => spec.key),
);

/** Client-side defaults, equal to the server's (server/config.py) and package.json's. */
export const DEFAULTS = {
  enable: true,
  languages: ["*"] as readonly string[],
  debounceMs: 0,
} as const;

/** Where VS Code found a setting's values (the fields of `WorkspaceConfiguration.inspect`). */
export interface ScopedValues {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/**
 * Reads one setting's values by scope; undefined (or no values) when the user has not set it
 * anywhere. extension.ts implements it with `WorkspaceConfiguration.inspect`.
 */
export type SettingReader = (key: string) => ScopedValues | undefined;

/**
 * Keys naming a model: a workspace's or folder's value (its .vscode/settings.json, untrusted
 * input like the repository's repotune.toml) may name a path but not a Hugging Face model, which
 * the server would download.
 */
export const MODEL_KEYS: ReadonlySet<string> = new Set(["repotune.model", "repotune.adapter"]);

const isHubReference = (value: unknown): boolean =>
  typeof value === "string" && value.trim().startsWith("hf:");

/**
 * The value that applies (folder > workspace > user), or undefined when none is set; a problem
 * line when a workspace value was ignored (a hub model named by the workspace).
 */
export function chooseValue(
  key: string,
  values: ScopedValues | undefined,
): { value: unknown; problem?: string } {
  if (!values) return { value: undefined };
  if (USER_ONLY_KEYS.has(key)) return { value: values.globalValue }; // never from the workspace
  const fromWorkspace = values.workspaceFolderValue ?? values.workspaceValue;
  if (MODEL_KEYS.has(key) && isHubReference(fromWorkspace)) {
    return {
      value: values.globalValue,
      problem:
        `${key}: a workspace's settings may not name a Hugging Face model ` +
        `(${JSON.stringify(fromWorkspace)}: the server would download what the repository chose); ` +
        "set it in your user settings; ignored",
    };
  }
  return { value: fromWorkspace ?? values.globalValue };
}

export type ServerSettings = Record<string, Record<string, unknown>>;

export interface MappedSettings {
  settings: ServerSettings;
  /** One line per value that was ignored, naming the key, for the log and a warning. */
  problems: string[];
}

function convert(kind: SettingKind, value: unknown): { ok: true; value: unknown } | { ok: false } {
  switch (kind) {
    case "boolean":
      return typeof value === "boolean" ? { ok: true, value } : { ok: false };
    case "string":
      return typeof value === "string" && value.trim() !== ""
        ? { ok: true, value: value.trim() }
        : { ok: false };
    case "nullableString":
      if (value === null || (typeof value === "string" && value.trim() === "")) {
        return { ok: true, value: null };
      }
      return typeof value === "string" ? { ok: true, value: value.trim() } : { ok: false };
    case "integer":
      return typeof value === "number" && Number.isInteger(value)
        ? { ok: true, value }
        : { ok: false };
    case "integerOrAuto":
      return value === "auto" || (typeof value === "number" && Number.isInteger(value))
        ? { ok: true, value }
        : { ok: false };
    case "onOffAuto":
      // "on"/"off" as the settings UI offers them; true/false as earlier versions stored them.
      if (value === "on" || value === true) return { ok: true, value: true };
      if (value === "off" || value === false) return { ok: true, value: false };
      return value === "auto" ? { ok: true, value } : { ok: false };
    case "number":
      return typeof value === "number" && Number.isFinite(value)
        ? { ok: true, value }
        : { ok: false };
    case "stringArray":
      return Array.isArray(value) && value.every((v) => typeof v === "string")
        ? { ok: true, value: [...value] }
        : { ok: false };
  }
}

const KIND_NAMES: Record<SettingKind, string> = {
  boolean: "true or false",
  string: "a non-empty string",
  nullableString: "a string or null",
  integer: "a whole number",
  integerOrAuto: "a whole number or \"auto\"",
  onOffAuto: "\"auto\", \"on\" or \"off\"",
  number: "a number",
  stringArray: "a list of strings",
};

/** The server settings object for initializationOptions and didChangeConfiguration. */
export function toServerSettings(read: SettingReader): MappedSettings {
  const settings: ServerSettings = {};
  const problems: string[] = [];
  for (const spec of SERVER_SETTINGS) {
    const { value: raw, problem } = chooseValue(spec.key, read(spec.key));
    if (problem) problems.push(problem);
    if (raw === undefined) continue;
    const converted = convert(spec.kind, raw);
    if (!converted.ok) {
      problems.push(
        `${spec.key}: expected ${KIND_NAMES[spec.kind]}, got ${JSON.stringify(raw)}; ignored`,
      );
      continue;
    }
    const [section, field] = spec.server;
    settings[section] ??= {};
    settings[section][field] = converted.value;
  }
  return { settings, problems };
}

/**
 * The settings for a workspace the user does (not) trust: untrusted, the server leaves out the
 * model files the repository's own repotune.toml names (a crafted GGUF never reaches llama.cpp).
 */
export function withWorkspaceTrust(settings: ServerSettings, trusted: boolean): ServerSettings {
  if (trusted) return settings;
  return { ...settings, model: { ...settings.model, repository_models: false } };
}

/** The `workspace/didChangeConfiguration` params the server expects. */
export function didChangeConfigurationParams(settings: ServerSettings): {
  settings: { repotune: ServerSettings };
} {
  return { settings: { repotune: settings } };
}

/** Whether completions should be requested for a document of this language. */
export function languageEnabled(languageId: string, languages: readonly string[]): boolean {
  return languages.includes("*") || languages.includes(languageId);
}

/** Read a setting for client-side use, falling back to the default for a wrong type. */
export function clientValue<T>(raw: unknown, fallback: T, check: (v: unknown) => v is T): T {
  return raw !== undefined && check(raw) ? raw : fallback;
}

export const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
export const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === "string");
export const isNonNegativeInteger = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0;
