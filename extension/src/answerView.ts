/** Show a rendered answer in a webview whose links open the cited file at its line. */
import * as crypto from "node:crypto";

import * as vscode from "vscode";

import { answerPage, resolveLinkTarget } from "./answer";

/**
 * One answer's panel. The first `show` opens it; later ones replace its body (the answer grows
 * while the server generates it). Once the user closes it, nothing reopens it.
 */
export class AnswerView {
  private panel: vscode.WebviewPanel | undefined;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly title: string,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  /** Show `markdown`; `final`: the last one (a missing renderer then falls back to plain text). */
  show(markdown: string, final = false): Promise<void> {
    this.queue = this.queue.then(() => this.render(markdown, final)); // renderings keep their order
    return this.queue;
  }

  /** A cancelled or failed question: its partial answer goes away. */
  close(): void {
    this.closed = true;
    this.panel?.dispose();
  }

  private async render(markdown: string, final: boolean): Promise<void> {
    if (this.closed) return;
    let html: string;
    try {
      // The built-in Markdown extension's renderer: the same Markdown the preview shows.
      html = await vscode.commands.executeCommand<string>("markdown.api.render", markdown);
    } catch (error) {
      if (!final) return;
      this.log.warn(`markdown rendering unavailable (${String(error)}); showing the answer as text`);
      this.panel?.dispose();
      const document = await vscode.workspace.openTextDocument({ language: "markdown", content: markdown });
      await vscode.window.showTextDocument(document);
      return;
    }
    if (this.panel) {
      await this.panel.webview.postMessage({ type: "body", html });
      return;
    }
    this.panel = this.open(html);
  }

  private open(html: string): vscode.WebviewPanel {
    const panel = vscode.window.createWebviewPanel(
      "repotuneAnswer", // a view type, not a "repotune.*" setting key
      `RepoTune: ${this.title.length > 40 ? `${this.title.slice(0, 39)}…` : this.title}`,
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: false },
      { enableScripts: true, localResourceRoots: [] },
    );
    const nonce = crypto.randomBytes(16).toString("base64");
    panel.webview.html = answerPage(html, nonce, panel.webview.cspSource);
    panel.onDidDispose(() => {
      this.closed = true;
    });
    panel.webview.onDidReceiveMessage((message: unknown) => this.openLink(message));
    return panel;
  }

  private async openLink(message: unknown): Promise<void> {
    const href = (message as { href?: unknown } | undefined)?.href;
    if (typeof href !== "string") return;
    const roots = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
    const target = resolveLinkTarget(href, roots);
    if (!target) {
      this.log.info(`answer link not opened (not a file in the workspace): ${href}`);
      return;
    }
    const position = new vscode.Position(target.line - 1, 0);
    try {
      await vscode.window.showTextDocument(vscode.Uri.file(target.path), {
        viewColumn: vscode.ViewColumn.One,
        selection: new vscode.Range(position, position),
      });
    } catch (error) {
      void vscode.window.showErrorMessage(`RepoTune could not open ${target.path}: ${String(error)}`);
    }
  }
}
