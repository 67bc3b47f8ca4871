/** Render an answer from `repotune.ask` as Markdown with clickable file:line links. */
import type { AskResult, Citation } from "./protocol";

/**
 * A link target for a citation: the path relative to the workspace root with a `#L<line>`
 * fragment (or the absolute path for a file outside it). No `file:` URI: VS Code's Markdown
 * renderer refuses that scheme, so such links would show as plain text.
 */
export function citationTarget(citation: Citation, root?: string): string {
  const absolute = citation.uri ? fileUriToPath(citation.uri) : resolvePath(citation.path, root);
  const shown = (root && relativeTo(absolute, root)) ?? absolute;
  const safe = shown
    .replace(/\\/g, "/")
    .split("/")
    .map((segment, i) => (i === 0 && /^[A-Za-z]:$/.test(segment) ? segment : encodeSegment(segment)))
    .join("/");
  return `${safe}#L${citation.start_line}`;
}

/** A path segment safe inside a Markdown link destination (parentheses end one). */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/\(/g, "%28").replace(/\)/g, "%29");
}

/** A workspace-relative path made absolute against the workspace root, when there is one. */
export function resolvePath(path: string, root: string | undefined): string {
  const absolute = path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
  if (absolute || !root) return path;
  return `${root.replace(/[\\/]+$/, "")}/${path.replace(/^\.[\\/]/, "")}`;
}

/** `path` relative to `root` when it lies inside it (no `..`), else undefined. */
export function relativeTo(path: string, root: string): string | undefined {
  const norm = (p: string): string => p.replace(/\\/g, "/").replace(/\/+$/, "");
  const base = norm(root);
  const full = norm(path);
  if (!base || !full.startsWith(`${base}/`)) return undefined;
  return full.slice(base.length + 1);
}

/** The file system path of a `file:` URI (other strings are returned unchanged). */
export function fileUriToPath(uri: string): string {
  if (!uri.startsWith("file://")) return uri;
  const path = decodeURIComponent(uri.slice("file://".length).split("#")[0]);
  return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path; // file:///C:/x -> C:/x
}

/** Where a link in a rendered answer points: a file and a 1-based line, or undefined. */
export interface LinkTarget {
  path: string;
  line: number;
}

/**
 * Resolve a link clicked in the answer view against the workspace folders; links that leave
 * every folder (`..`, another absolute path) or use another scheme open nothing.
 */
export function resolveLinkTarget(href: string, roots: readonly string[]): LinkTarget | undefined {
  const [rawPath, fragment = ""] = href.split("#", 2);
  const drive = /^[A-Za-z]:[\\/]/.test(rawPath);
  if (!rawPath || (/^[a-z][a-z0-9+.-]*:/i.test(rawPath) && !drive)) return undefined; // http:, command:, ...
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return undefined;
  }
  if (decoded.split(/[\\/]/).includes("..")) return undefined;
  const line = Math.max(1, Number(/^L(\d+)/.exec(fragment)?.[1] ?? 1));
  const absolute = decoded.startsWith("/") || /^[A-Za-z]:[\\/]/.test(decoded);
  for (const root of roots) {
    if (absolute) {
      if (relativeTo(decoded, root) !== undefined) return { path: decoded, line };
    } else {
      return { path: resolvePath(decoded, root), line };
    }
  }
  return undefined;
}

export function citationLabel(citation: Citation): string {
  return citation.end_line > citation.start_line
    ? `${citation.path}:${citation.start_line}-${citation.end_line}`
    : `${citation.path}:${citation.start_line}`;
}

function escapeLinkText(text: string): string {
  return text.replace(/([\\[\]])/g, "\\$1");
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Turn `path:line` (and `path:start-end`) mentions of cited files in the answer into links,
 * leaving code blocks and existing links untouched.
 */
export function linkifyAnswer(
  answer: string,
  citations: readonly Citation[],
  root?: string,
): string {
  const byPath = new Map<string, Citation>();
  for (const c of citations) if (!byPath.has(c.path)) byPath.set(c.path, c);
  if (byPath.size === 0) return answer;
  const paths = [...byPath.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
  const mention = new RegExp(`(?<![\\w/\\[])(${paths.join("|")}):(\\d+)(?:-(\\d+))?(?![\\w\\]])`, "g");
  const parts = answer.split(/(```[\s\S]*?```|`[^`\n]*`|\[[^\]\n]*\]\([^)\n]*\))/);
  return parts
    .map((part, i) => {
      if (i % 2 === 1) return part; // a code span, code block or existing link
      return part.replace(mention, (text: string, path: string, start: string) => {
        const cited = byPath.get(path);
        if (!cited) return text;
        const target = citationTarget({ ...cited, start_line: Number(start) }, root);
        return `[${escapeLinkText(text)}](${target})`;
      });
    })
    .join("");
}

/**
 * The answer with any code fence it leaves open closed at its end (a small model can stop
 * inside a code block), so the sections that follow still render as Markdown, not as code.
 */
export function closeOpenFence(answer: string): string {
  let open: string | undefined;
  for (const line of answer.split(/\r?\n/)) {
    const fence = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (!fence) continue;
    if (open === undefined) open = fence;
    else if (fence[0] === open[0] && fence.length >= open.length && line.trim() === fence) open = undefined;
  }
  return open === undefined ? answer : `${answer}\n${open}`;
}

/** The whole document: the question, the answer, then the sources as a list of links. */
export function renderAnswer(question: string, result: AskResult, root?: string): string {
  const lines: string[] = [];
  lines.push(`# ${question.replace(/\s+/g, " ").trim()}`, "");
  const answer = closeOpenFence(linkifyAnswer(result.answer.trim(), result.citations, root));
  lines.push(answer || "_The server gave no answer._", "");
  if (result.citations.length > 0) {
    lines.push("## Sources", "");
    const seen = new Set<string>();
    for (const citation of result.citations) {
      const label = citationLabel(citation);
      if (seen.has(label)) continue;
      seen.add(label);
      lines.push(`- [${escapeLinkText(label)}](${citationTarget(citation, root)})`);
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** The answer as it is being generated: the question, the text so far, and a note that more
 * is coming (sources follow with the final answer). */
export function renderPartialAnswer(question: string, text: string): string {
  const lines = [`# ${question.replace(/\s+/g, " ").trim()}`, ""];
  const answer = closeOpenFence(text.trim());
  if (answer) lines.push(answer, "");
  lines.push("_RepoTune is still answering…_", "");
  return lines.join("\n");
}

/**
 * The answer view's page: the rendered Markdown under a policy that runs only our own script
 * (the answer is model output, so any script or handler it contains stays inert), which hands
 * each clicked link to the extension instead of letting the webview navigate.
 */
export function answerPage(bodyHtml: string, nonce: string, cspSource: string): string {
  const policy = [
    "default-src 'none'",
    `style-src ${cspSource} 'unsafe-inline'`,
    `img-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${policy}">
<style>
body { font-family: var(--vscode-markdown-font-family, var(--vscode-font-family)); font-size: var(--vscode-markdown-font-size, 14px); line-height: 1.5; padding: 0 20px; }
code, pre { font-family: var(--vscode-editor-font-family); }
pre { background: var(--vscode-textCodeBlock-background); padding: 8px; overflow-x: auto; }
a { color: var(--vscode-textLink-foreground); cursor: pointer; }
</style>
</head>
<body>
<main id="answer">
${bodyHtml}
</main>
<script nonce="${nonce}">
const vscode = acquireVsCodeApi();
// The answer grows while it is generated: the extension sends each new rendering.
window.addEventListener("message", (event) => {
  if (event.data && event.data.type === "body") document.getElementById("answer").innerHTML = event.data.html;
});
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a") : null;
  if (!link) return;
  event.preventDefault();
  vscode.postMessage({ type: "open", href: link.getAttribute("href") || "" });
});
</script>
</body>
</html>`;
}
