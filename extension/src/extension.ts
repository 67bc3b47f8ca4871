/**
 * The thin layer that wires RepoTune's plain modules to the VS Code API. All decisions
 * (interpreter, settings mapping, status text, answer rendering, restart policy) live in
 * modules without a `vscode` import, where they are unit-tested.
 */
import * as os from "node:os";

import * as vscode from "vscode";
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  type LanguageClientOptions,
} from "vscode-languageclient/node";

import { renderAnswer, renderPartialAnswer } from "./answer";
import { AnswerView } from "./answerView";
import { debounce, debounceFor } from "./debounce";
import {
  choosePython,
  configuredPython,
  interpreterFromPythonExtension,
  judgeProbe,
  type InterpreterChoice,
} from "./interpreter";
import { probeLaunch, runProbe, serverEnv, serverLaunch, serverLogLevel } from "./launch";
import { menuItems } from "./menu";
import { PREFETCH_NOTIFICATION, PREFETCH_REST_MS, prefetchParams, worthPrefetching } from "./prefetch";
import {
  ANSWER_PROGRESS_NOTIFICATION,
  COMMANDS,
  SERVER_COMMANDS,
  STATUS_NOTIFICATION,
  askArgument,
  parseAnswerProgress,
  parseAskResult,
  parseStatus,
  type StatusPayload,
} from "./protocol";
import { RestartPolicy, gaveUpMessage } from "./retry";
import { serverOptions, stdioOptions } from "./serverOptions";
import {
  CLIENT_SETTINGS,
  DEFAULTS,
  chooseValue,
  clientValue,
  didChangeConfigurationParams,
  isBoolean,
  isNonNegativeInteger,
  isStringArray,
  languageEnabled,
  toServerSettings,
  withWorkspaceTrust,
  type MappedSettings,
  type ScopedValues,
} from "./settings";
import { statusView, type ClientState } from "./status";

const PYTHON_EXTENSION_ID = "ms-python.python";
const ENABLE_KEY = "repotune.enable";
const LANGUAGES_KEY = "repotune.languages";
const DEBOUNCE_KEY = "repotune.debounceMs";

/** A full key's values by scope, as `SettingReader` and `chooseValue` take them. */
function scopedValues(key: string, scope?: vscode.Uri): ScopedValues | undefined {
  return vscode.workspace.getConfiguration(undefined, scope).inspect(key);
}

/** The value the user set for a full key (folder > workspace > user), else undefined. */
function userValue(key: string, scope?: vscode.Uri): unknown {
  return chooseValue(key, scopedValues(key, scope)).value;
}

function workspaceFolder(): vscode.WorkspaceFolder | undefined {
  return vscode.workspace.workspaceFolders?.[0];
}

class RepoTune implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private clientState: ClientState = "stopped";
  private server: StatusPayload | undefined;
  private detail: string | undefined;
  private choice: InterpreterChoice | undefined;
  private stopping = false;
  private operation: Promise<void> = Promise.resolve();
  private readonly policy = new RestartPolicy();
  private readonly shownProblems = new Set<string>();
  private readonly disposables: vscode.Disposable[] = [];
  // Questions being answered: their progress token -> what shows the answer so far.
  private readonly answering = new Map<string, (text: string) => void>();
  private asked = 0;

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly item: vscode.StatusBarItem,
    /** The extension's own folder: a working folder no repository controls (for the probe). */
    private readonly extensionPath: string,
  ) {
    item.name = "RepoTune";
    item.command = COMMANDS.showMenu;
    this.disposables.push(
      log.onDidChangeLogLevel((level) => {
        log.info(
          `the server logs at "${serverLogLevel(level)}" from its next start (RepoTune: Restart Server)`,
        );
      }),
    );
    this.render();
    item.show();
  }

  // --- settings -------------------------------------------------------------------------------

  private mapped(): MappedSettings {
    const scope = workspaceFolder()?.uri;
    const fromEditor = toServerSettings((key) => scopedValues(key, scope));
    const mapped = {
      ...fromEditor,
      settings: withWorkspaceTrust(fromEditor.settings, vscode.workspace.isTrusted),
    };
    for (const problem of mapped.problems) {
      this.log.warn(`settings: ${problem}`);
      if (!this.shownProblems.has(problem)) {
        this.shownProblems.add(problem);
        void vscode.window.showWarningMessage(`RepoTune: ${problem}`);
      }
    }
    return mapped;
  }

  completionsEnabled(): boolean {
    return clientValue(userValue(ENABLE_KEY), DEFAULTS.enable, isBoolean);
  }

  private enabledFor(document: vscode.TextDocument): boolean {
    if (!this.completionsEnabled()) return false;
    const languages = clientValue(userValue(LANGUAGES_KEY, document.uri), [...DEFAULTS.languages], isStringArray);
    return languageEnabled(document.languageId, languages);
  }

  private debounceMs(): number {
    return clientValue(userValue(DEBOUNCE_KEY), DEFAULTS.debounceMs, isNonNegativeInteger);
  }

  async onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!event.affectsConfiguration("repotune")) return;
    if (event.affectsConfiguration(CLIENT_SETTINGS.pythonPath)) {
      this.log.info("repotune.pythonPath changed: restarting the server");
      await this.restart();
      return;
    }
    this.render();
    const client = this.client;
    if (client?.state === State.Running) {
      const { settings } = this.mapped();
      this.log.info(`sending settings ${JSON.stringify(settings)}`);
      await client.sendNotification(
        DidChangeConfigurationNotification.type,
        didChangeConfigurationParams(settings),
      );
    }
  }

  // --- interpreter ----------------------------------------------------------------------------

  private async pythonExtensionApi(): Promise<unknown> {
    const extension = vscode.extensions.getExtension(PYTHON_EXTENSION_ID);
    if (!extension) return undefined;
    try {
      return extension.isActive ? extension.exports : await extension.activate();
    } catch (error) {
      this.log.warn(`the Python extension did not activate: ${String(error)}`);
      return undefined;
    }
  }

  private async chooseInterpreter(): Promise<InterpreterChoice> {
    const folder = workspaceFolder();
    const configured = configuredPython(
      vscode.workspace.getConfiguration(undefined, folder?.uri).inspect(CLIENT_SETTINGS.pythonPath),
      vscode.workspace.isTrusted,
    );
    let fromExtension: string | undefined;
    if (configured === undefined) {
      fromExtension = await interpreterFromPythonExtension(await this.pythonExtensionApi(), folder?.uri);
    }
    return choosePython({
      configured,
      fromPythonExtension: fromExtension,
      workspaceFolder: folder?.uri.fsPath,
      home: os.homedir(),
      platform: process.platform,
      trusted: vscode.workspace.isTrusted,
    });
  }

  /** Restart when the Python extension's interpreter changes and we are using it. */
  async watchPythonExtension(): Promise<void> {
    const api = await this.pythonExtensionApi();
    const environments = (api as { environments?: { onDidChangeActiveEnvironmentPath?: unknown } })
      ?.environments;
    const onChange = environments?.onDidChangeActiveEnvironmentPath;
    if (typeof onChange !== "function") return;
    const subscription = (onChange as (listener: () => void) => vscode.Disposable).call(
      environments,
      () => {
        if (this.choice?.source === "python-extension") {
          this.log.info("the Python extension's interpreter changed: restarting the server");
          void this.restart();
        }
      },
    );
    this.disposables.push(subscription);
  }

  // --- lifecycle ------------------------------------------------------------------------------

  /** Serialise start/stop so commands and configuration events cannot interleave them. */
  private queue(work: () => Promise<void>): Promise<void> {
    this.operation = this.operation.then(work, work);
    return this.operation;
  }

  start(): Promise<void> {
    return this.queue(() => this.doStart());
  }

  restart(): Promise<void> {
    return this.queue(async () => {
      this.policy.reset();
      await this.doStop();
      await this.doStart();
    });
  }

  stop(): Promise<void> {
    return this.queue(() => this.doStop());
  }

  private setState(state: ClientState, detail?: string): void {
    this.clientState = state;
    this.detail = detail;
    if (state !== "running" && state !== "starting") this.server = undefined;
    this.render();
  }

  private async doStart(): Promise<void> {
    if (this.client) return;
    this.setState("starting");
    const choice = await this.chooseInterpreter();
    this.choice = choice;
    const folder = workspaceFolder()?.uri.fsPath;
    const env = serverEnv(process.env, serverLogLevel(this.log.logLevel));
    if (choice.note) this.log.warn(choice.note);
    this.log.info(`Python interpreter: ${choice.python} (${choice.source})`);

    const probe = await runProbe(probeLaunch(choice.python, this.extensionPath), env);
    const verdict = judgeProbe(choice, probe);
    if (!verdict.ok) {
      if (probe.stderr.trim()) this.log.error(`probe failed:\n${probe.stderr.trim()}`);
      this.log.error(verdict.message);
      this.setState("not-installed", verdict.message);
      void this.offerFix(verdict.message, verdict.installCommand);
      return;
    }

    const launch = serverLaunch(choice.python, folder);
    const initial = this.mapped().settings;
    this.log.info(`starting: ${launch.command} ${launch.args.join(" ")} (LSP over stdio)`);
    this.log.info(`initializationOptions: ${JSON.stringify(initial)}`);

    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      initializationOptions: initial,
      outputChannel: this.log,
      stdioOptions,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => this.onClosed(),
      },
      initializationFailedHandler: (error) => {
        this.log.error(`the server failed to initialize: ${String(error)}`);
        return false;
      },
      middleware: {
        // The server also offers its completion as a textDocument/completion item for editors
        // without inline completion; VS Code shows ghost text, so that second request is skipped.
        provideCompletionItem: () => undefined,
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!this.enabledFor(document)) return null;
          const wait = debounceFor(context.triggerKind, this.debounceMs());
          if (!(await debounce(wait, token))) return null;
          const result = await next(document, position, context, token);
          // The server leaves `range` out (insert at the cursor; Neovim overlays text when a
          // range is given), but VS Code would then replace the word at the cursor: pin it.
          const items = Array.isArray(result) ? result : (result?.items ?? []);
          for (const item of items) item.range ??= new vscode.Range(position, position);
          return result;
        },
        workspace: {
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (!Array.isArray(answers)) return answers;
            return params.items.map((item, i): unknown =>
              item.section === "repotune" ? this.mapped().settings : answers[i],
            );
          },
        },
      },
    };

    const client = new LanguageClient(
      "repotune",
      "RepoTune",
      serverOptions(launch, env),
      clientOptions,
    );
    this.client = client;
    client.onDidChangeState((event) => {
      if (event.newState === State.Running) this.setState("running");
      else if (event.newState === State.Starting) this.setState("starting");
    });
    client.onNotification(STATUS_NOTIFICATION, (payload: unknown) => {
      this.server = parseStatus(payload);
      this.render();
    });
    client.onNotification(ANSWER_PROGRESS_NOTIFICATION, (payload: unknown) => {
      const progress = parseAnswerProgress(payload);
      if (progress) this.answering.get(String(progress.token))?.(progress.text);
    });
    try {
      await client.start();
    } catch (error) {
      this.log.error(`the server did not start: ${String(error)}`);
      this.client = undefined;
      this.setState("failed", "The server did not start; see the log.");
      await client.dispose(2000).catch(() => undefined);
      void this.offerLog("RepoTune: the server did not start.");
      return;
    }
    this.setState("running");
    void this.refreshStatus();
  }

  private onClosed(): { action: CloseAction; handled?: boolean } {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    if (this.policy.shouldRestart(Date.now())) {
      this.log.warn("the server stopped unexpectedly; restarting it");
      return { action: CloseAction.Restart, handled: true };
    }
    const message = gaveUpMessage(this.policy);
    this.log.error(message);
    this.setState("failed", message);
    void this.offerLog(`RepoTune: ${message}`);
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      this.stopping = true;
      try {
        if (client.isRunning()) await client.stop(3000);
      } catch (error) {
        this.log.warn(`stopping the server: ${String(error)}`);
      } finally {
        await client.dispose(1000).catch(() => undefined);
        this.stopping = false;
      }
    }
    this.setState("stopped");
  }

  private async refreshStatus(): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      const result: unknown = await client.sendRequest(ExecuteCommandRequest.type, {
        command: SERVER_COMMANDS.status,
      });
      this.server = parseStatus(result);
      this.render();
    } catch (error) {
      this.log.warn(`status request failed: ${String(error)}`);
    }
  }

  // --- user interface -------------------------------------------------------------------------

  render(): void {
    const view = statusView({
      client: this.clientState,
      server: this.server,
      completionsEnabled: this.completionsEnabled(),
      detail: this.detail,
    });
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.kind === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.kind === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }

  private async offerFix(message: string, command: string | undefined): Promise<void> {
    const copy = "Copy Install Command";
    const select = "Select Interpreter";
    const settings = "Open Settings";
    const retry = "Retry";
    const buttons = command ? [copy, select, settings, retry] : [select, settings, retry];
    const picked = await vscode.window.showErrorMessage(message, ...buttons);
    if (picked === copy && command) {
      await vscode.env.clipboard.writeText(command);
      void vscode.window.showInformationMessage(
        `Copied "${command}". Run it in a terminal, then choose Retry or "RepoTune: Restart Server".`,
      );
    } else if (picked === select) {
      await this.selectInterpreter();
    } else if (picked === settings) {
      await vscode.commands.executeCommand("workbench.action.openSettings", CLIENT_SETTINGS.pythonPath);
    } else if (picked === retry) {
      await this.restart();
    }
  }

  private async offerLog(message: string): Promise<void> {
    const picked = await vscode.window.showErrorMessage(message, "Show Log", "Restart");
    if (picked === "Show Log") this.log.show(true);
    else if (picked === "Restart") await this.restart();
  }

  async selectInterpreter(): Promise<void> {
    if (vscode.extensions.getExtension(PYTHON_EXTENSION_ID)) {
      await vscode.commands.executeCommand("python.setInterpreter");
      if (this.choice?.source !== "setting") await this.restart();
    } else {
      await vscode.commands.executeCommand("workbench.action.openSettings", CLIENT_SETTINGS.pythonPath);
    }
  }

  private runningClient(): LanguageClient | undefined {
    if (this.client?.state === State.Running) return this.client;
    void vscode.window.showWarningMessage(
      this.detail ?? "RepoTune: the server is not running yet; try again in a moment.",
    );
    return undefined;
  }

  async ask(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const selected = editor !== undefined && !editor.selection.isEmpty;
    const question = await vscode.window.showInputBox({
      title: selected ? "RepoTune: Ask about the selected code" : "RepoTune: Ask about this codebase",
      prompt: selected
        ? "The selected lines go with the question; the answer cites the files it comes from"
        : "The answer cites the files it comes from; \"this function\" is the one at the cursor",
      // the second example is answered from the index at once, with no model
      placeHolder: selected
        ? "e.g. What does this do?  Is this function used anywhere?"
        : "e.g. Where are settings validated?  What calls this function?",
      ignoreFocusOut: true,
    });
    if (!question?.trim()) return;
    const client = this.runningClient();
    if (!client) return;
    // The answer shows as it grows (repotune/answerProgress for this token), then in full.
    const progressToken = `ask-${++this.asked}`;
    const location = editor && {
      textDocument: { uri: editor.document.uri.toString() },
      range: client.code2ProtocolConverter.asRange(editor.selection),
    };
    const view = new AnswerView(question.trim(), this.log);
    this.answering.set(progressToken, (text) => void view.show(renderPartialAnswer(question, text)));
    try {
      const raw = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: "RepoTune is answering…", cancellable: true },
        (_progress, token): Promise<unknown> =>
          client.sendRequest(
            ExecuteCommandRequest.type,
            { command: SERVER_COMMANDS.ask, arguments: [askArgument(question, progressToken, location)] },
            token,
          ),
      );
      this.answering.delete(progressToken);
      if (raw === undefined || raw === null) {
        view.close(); // cancelled
        return;
      }
      const content = renderAnswer(question, parseAskResult(raw), workspaceFolder()?.uri.fsPath);
      await view.show(content, true);
    } catch (error) {
      this.answering.delete(progressToken);
      view.close();
      if (error instanceof vscode.CancellationError) return;
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(`ask failed: ${message}`);
      void vscode.window.showErrorMessage(`RepoTune could not answer: ${message}`);
    }
  }

  async reindex(): Promise<void> {
    const client = this.runningClient();
    if (!client) return;
    try {
      await client.sendRequest(ExecuteCommandRequest.type, {
        command: SERVER_COMMANDS.reindex,
      });
      void vscode.window.showInformationMessage("RepoTune: reindexing the workspace.");
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      void vscode.window.showErrorMessage(`RepoTune could not reindex: ${message}`);
    }
  }

  async toggleCompletions(): Promise<void> {
    const info = vscode.workspace.getConfiguration().inspect(ENABLE_KEY);
    const target =
      info?.workspaceFolderValue !== undefined
        ? vscode.ConfigurationTarget.WorkspaceFolder
        : info?.workspaceValue !== undefined
          ? vscode.ConfigurationTarget.Workspace
          : vscode.ConfigurationTarget.Global;
    await vscode.workspace.getConfiguration().update(ENABLE_KEY, !this.completionsEnabled(), target);
  }

  async showMenu(): Promise<void> {
    const items = menuItems(this.clientState, this.completionsEnabled());
    const picked = await vscode.window.showQuickPick(items, { title: "RepoTune" });
    if (picked) await vscode.commands.executeCommand(picked.command);
  }

  showLog(): void {
    this.log.show(true);
  }

  private prefetchTimer: ReturnType<typeof setTimeout> | undefined;

  /** The cursor moved: once it rests, tell the server so the place's prompt is ready first. */
  onSelectionChanged(event: vscode.TextEditorSelectionChangeEvent): void {
    clearTimeout(this.prefetchTimer);
    const document = event.textEditor.document;
    const selection = event.selections[0];
    const change = {
      kind: event.kind,
      selections: event.selections.length,
      empty: selection?.isEmpty ?? false,
      scheme: document.uri.scheme,
      enabled: this.enabledFor(document),
    };
    if (!selection || !worthPrefetching(change)) return;
    const params = prefetchParams(document.uri.toString(), selection.active.line, selection.active.character);
    this.prefetchTimer = setTimeout(() => {
      const client = this.client;
      if (client?.state !== State.Running) return;
      client.sendNotification(PREFETCH_NOTIFICATION, params).catch((error: unknown) => {
        this.log.warn(`prefetch: ${String(error)}`);
      });
    }, PREFETCH_REST_MS);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}

let instance: RepoTune | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel("RepoTune", { log: true });
  const item = vscode.window.createStatusBarItem("repotune-status", vscode.StatusBarAlignment.Right, 100);
  const repotune = new RepoTune(log, item, context.extensionPath);
  instance = repotune;
  context.subscriptions.push(
    log,
    item,
    repotune,
    vscode.commands.registerCommand(COMMANDS.askQuestion, () => repotune.ask()),
    vscode.commands.registerCommand(COMMANDS.reindexWorkspace, () => repotune.reindex()),
    vscode.commands.registerCommand(COMMANDS.toggleCompletions, () => repotune.toggleCompletions()),
    vscode.commands.registerCommand(COMMANDS.showLog, () => {
      repotune.showLog();
    }),
    vscode.commands.registerCommand(COMMANDS.restartServer, () => repotune.restart()),
    vscode.commands.registerCommand(COMMANDS.showMenu, () => repotune.showMenu()),
    vscode.commands.registerCommand(COMMANDS.selectInterpreter, () => repotune.selectInterpreter()),
    vscode.workspace.onDidChangeConfiguration((event) => repotune.onConfigurationChanged(event)),
    vscode.window.onDidChangeTextEditorSelection((event) => {
      repotune.onSelectionChanged(event);
    }),
    // Trusting the workspace brings its repotune.pythonPath into play.
    vscode.workspace.onDidGrantWorkspaceTrust(() => repotune.restart()),
  );
  void repotune.watchPythonExtension();
  void repotune.start();
}

export async function deactivate(): Promise<void> {
  await instance?.stop();
  instance = undefined;
}
