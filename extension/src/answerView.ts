/** Show a rendered answer in a webview whose links open the cited file at its line. */
import * as crypto from "node:crypto";

import * as vscode from "vscode";

import { answerPage, resolveLinkTarget } from "./answer";

export async function showAnswer(title: string, markdown: string, log: vscode.LogOutputChannel): Promise<void> {
  let html: string;
  try {
    // The built-in Markdown extension's renderer: the same Markdown the preview shows.
    html = await vscode.commands.executeCommand<string>("markdown.api.render", markdown);
  } catch (error) {
    log.warn(`markdown rendering unavailable (${String(error)}); showing the answer as text`);
    const document = await vscode.workspace.openTextDocument({ language: "markdown", content: markdown });
    await vscode.window.showTextDocument(document);
    return;
  }
  const panel = vscode.window.createWebviewPanel(
    "repotuneAnswer", // a view type, not a "repotune.*" setting key
    `RepoTune: ${title.length > 40 ? `${title.slice(0, 39)}…` : title}`,
    { viewColumn: vscode.ViewColumn.Beside, preserveFocus: false },
    { enableScripts: true, localResourceRoots: [] },
  );
  const nonce = crypto.randomBytes(16).toString("base64");
  panel.webview.html = answerPage(html, nonce, panel.webview.cspSource);
  panel.webview.onDidReceiveMessage(async (message: unknown) => {
    const href = (message as { href?: unknown } | undefined)?.href;
    if (typeof href !== "string") return;
    const roots = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
    const target = resolveLinkTarget(href, roots);
    if (!target) {
      log.info(`answer link not opened (not a file in the workspace): ${href}`);
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
  });
}
