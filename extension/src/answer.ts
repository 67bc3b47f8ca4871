/** Render an answer from `repotune.ask` as Markdown with clickable file:line links. */
import type { AskResult, Citation } from "./protocol";

/**
 * A link target that opens the file at the line: the server's file URI with VS Code's `#L<line>`
 * fragment, which both the Markdown preview and the editor's link provider understand.
 */
export function citationTarget(citation: Citation, root?: string): string {
  const base = citation.uri || pathToFileUri(resolvePath(citation.path, root));
  const safe = base.split("#")[0].replace(/\(/g, "%28").replace(/\)/g, "%29").replace(/ /g, "%20");
  return `${safe}#L${citation.start_line}`;
}

/** A workspace-relative path made absolute against the workspace root, when there is one. */
export function resolvePath(path: string, root: string | undefined): string {
  const absolute = path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
  if (absolute || !root) return path;
  return `${root.replace(/[\\/]+$/, "")}/${path.replace(/^\.[\\/]/, "")}`;
}

/** A file URI for an absolute path (used only when the server sent no URI). */
export function pathToFileUri(path: string): string {
  const segments = path
    .replace(/\\/g, "/")
    .split("/")
    .map((s, i) => (i === 0 && /^[A-Za-z]:$/.test(s) ? s : encodeURIComponent(s)));
  const joined = segments.join("/");
  return joined.startsWith("/") ? `file://${joined}` : `file:///${joined}`;
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
