import { describe, expect, it } from "vitest";

import {
  answerPage,
  citationTarget,
  closeOpenFence,
  linkifyAnswer,
  renderAnswer,
  renderPartialAnswer,
  resolveLinkTarget,
} from "../../src/answer";
import { askArgument, parseAnswerProgress, parseAskResult, type Citation } from "../../src/protocol";

const cite: Citation = {
  path: "server/config.py",
  uri: "file:///repo/server/config.py",
  start_line: 120,
  end_line: 140,
};

describe("renderAnswer", () => {
  it("renders the question, the answer and a source list of file:line links", () => {
    const md = renderAnswer(
      "Where are\nsettings validated?",
      {
        answer: "In `load_settings`, see server/config.py:120.",
        citations: [cite, { ...cite }, { path: "server/cli.py", uri: "file:///repo/server/cli.py", start_line: 7, end_line: 7 }],
      },
      "/repo",
    );
    expect(md).toContain("# Where are settings validated?");
    expect(md).toContain("see [server/config.py:120](server/config.py#L120).");
    expect(md).toContain("## Sources");
    expect(md).toContain("- [server/config.py:120-140](server/config.py#L120)");
    expect(md).toContain("- [server/cli.py:7](server/cli.py#L7)");
    expect(md).not.toContain("file:"); // VS Code's Markdown renderer drops file: links
    expect(md.match(/config\.py:120-140/g)).toHaveLength(1); // duplicates listed once
  });

  it("says so when the answer is empty and omits sources when there are none", () => {
    const md = renderAnswer("q", { answer: "  ", citations: [] });
    expect(md).toContain("_The server gave no answer._");
    expect(md).not.toContain("Sources");
  });
});

describe("closeOpenFence", () => {
  it("closes a code block the answer leaves open, so the sources after it render as links", () => {
    expect(closeOpenFence("Use this:\n```python\nx = 1")).toBe("Use this:\n```python\nx = 1\n```");
    const markdown = renderAnswer(
      "q",
      parseAskResult({
        answer: "It is area_of_circle.\n\n```python\ndef area",
        citations: [{ path: "geometry.py", start_line: 5, end_line: 7 }],
      }),
      "/repo",
    );
    expect(markdown).toMatch(/```\n\n## Sources\n\n- \[geometry\.py:5-7\]\(geometry\.py#L5\)/);
  });

  it("leaves balanced fences, longer fences and tildes alone", () => {
    for (const text of ["a\n```\nb\n```", "````\n```\n````", "~~~\nx\n~~~", "no code"]) {
      expect(closeOpenFence(text)).toBe(text);
    }
    expect(closeOpenFence("~~~\nx")).toBe("~~~\nx\n~~~");
  });
});

describe("linkifyAnswer", () => {
  it("links only cited paths, keeps ranges, and leaves code and links alone", () => {
    const text =
      "See server/config.py:12-20 and other/file.py:3. `server/config.py:5` " +
      "```\nserver/config.py:9\n``` [server/config.py:1](x)";
    const out = linkifyAnswer(text, [cite], "/repo");
    expect(out).toContain("[server/config.py:12-20](server/config.py#L12)");
    expect(out).toContain("other/file.py:3.");
    expect(out).toContain("`server/config.py:5`");
    expect(out).toContain("```\nserver/config.py:9\n```");
    expect(out).toContain("[server/config.py:1](x)");
  });

  it("does not link a path that is only the suffix of another", () => {
    expect(linkifyAnswer("see myserver/config.py:3", [cite])).toBe("see myserver/config.py:3");
  });
});

describe("link targets", () => {
  it("are workspace-relative paths with a line fragment, never file: URIs", () => {
    expect(citationTarget({ ...cite, uri: "", path: "src/a b.py" }, "/ws/")).toBe("src/a%20b.py#L120");
    expect(citationTarget(cite, "/repo")).toBe("server/config.py#L120");
    // a file outside the first folder (another root of a multi-root window) keeps its path
    expect(citationTarget({ ...cite, uri: "file:///other/x%20(1).py" }, "/repo")).toBe("/other/x%20%281%29.py#L120");
    expect(citationTarget({ ...cite, uri: "file:///C:/repo/x.py" }, "C:\\repo")).toBe("x.py#L120");
  });

  it("resolve a clicked link to a file and line inside a workspace folder only", () => {
    const roots = ["/repo", "/other"];
    expect(resolveLinkTarget("server/config.py#L120", roots)).toEqual({ path: "/repo/server/config.py", line: 120 });
    expect(resolveLinkTarget("src/a%20b.py", roots)).toEqual({ path: "/repo/src/a b.py", line: 1 });
    expect(resolveLinkTarget("/other/x%20%281%29.py#L3", roots)).toEqual({ path: "/other/x (1).py", line: 3 });
    for (const refused of ["/etc/passwd#L1", "../secrets.py#L1", "server/../../x.py", "https://example.com/x.py", "command:workbench.action.quit", ""]) {
      expect(resolveLinkTarget(refused, roots)).toBeUndefined();
    }
    expect(resolveLinkTarget("x.py", [])).toBeUndefined();
  });

  it("round-trip: every rendered link resolves back to its cited file and line", () => {
    const md = renderAnswer("q", { answer: "a", citations: [cite, { ...cite, uri: "file:///other/u.py", path: "u.py", start_line: 4 }] }, "/repo");
    const targets = [...md.matchAll(/\]\(([^)]+)\)/g)].map((m) => resolveLinkTarget(m[1], ["/repo", "/other"]));
    expect(targets).toEqual([
      { path: "/repo/server/config.py", line: 120 },
      { path: "/other/u.py", line: 4 },
    ]);
  });
});

describe("renderPartialAnswer", () => {
  it("shows the answer so far under the question, fences closed, and says more is coming", () => {
    const md = renderPartialAnswer("Where is\nx?", "`x` (a.py:3): the x.\n```python\nx = 1");
    expect(md.startsWith("# Where is x?\n\n`x` (a.py:3): the x.")).toBe(true);
    expect(md).toContain("x = 1\n```\n");
    expect(md.trimEnd().endsWith("_RepoTune is still answering…_")).toBe(true);
    expect(renderPartialAnswer("q", "  ")).toBe("# q\n\n_RepoTune is still answering…_\n");
  });
});

describe("parseAnswerProgress", () => {
  it("takes a token and the text so far, and nothing else", () => {
    expect(parseAnswerProgress({ token: "ask-1", text: "so far" })).toEqual({ token: "ask-1", text: "so far" });
    expect(parseAnswerProgress({ token: 7, text: "" })).toEqual({ token: 7, text: "" });
    expect(parseAnswerProgress({ token: null, text: "x" })).toBeUndefined();
    expect(parseAnswerProgress({ token: "t" })).toBeUndefined();
    expect(parseAnswerProgress("text")).toBeUndefined();
  });
});

describe("answerPage", () => {
  it("runs only its own script: the answer's scripts and handlers are blocked by the policy", () => {
    const page = answerPage('<p>hi</p><script>alert(1)</script>', "abc123", "vscode-webview:");
    expect(page).toContain("script-src 'nonce-abc123'");
    expect(page).toContain("default-src 'none'");
    expect(page).not.toContain("unsafe-eval");
    expect(page.match(/<script nonce="abc123">/g)).toHaveLength(1);
    expect(page).toContain('postMessage({ type: "open"');
    // a growing answer replaces the body, not the page (the script stays the only one)
    expect(page).toContain('<main id="answer">\n<p>hi</p>');
    expect(page).toContain('event.data.type === "body"');
  });
});

describe("parseAskResult", () => {
  it("keeps well-formed citations and repairs line numbers", () => {
    const result = parseAskResult({
      answer: "a",
      citations: [{ path: "x.py", uri: "file:///x.py", start_line: 0, end_line: -1 }, { nope: true }],
    });
    expect(result.citations).toEqual([{ path: "x.py", uri: "file:///x.py", start_line: 1, end_line: 1 }]);
  });

  it("rejects a result without an answer", () => {
    expect(() => parseAskResult({ citations: [] })).toThrow(/no text/);
  });
});

describe("askArgument", () => {
  const range = { start: { line: 4, character: 0 }, end: { line: 9, character: 0 } };

  it("sends the question with the file and selection it is asked from", () => {
    const argument = askArgument("  What does this do? ", "ask-3", {
      textDocument: { uri: "file:///repo/cart.py" },
      range,
    });
    expect(argument).toEqual({
      question: "What does this do?",
      progressToken: "ask-3",
      textDocument: { uri: "file:///repo/cart.py" },
      range,
    });
  });

  it("leaves out an editor that is not a file, and no editor at all", () => {
    const untitled = { textDocument: { uri: "untitled:Untitled-1" }, range };
    expect(askArgument("Why?", "ask-4", untitled)).toEqual({ question: "Why?", progressToken: "ask-4" });
    expect(askArgument("Why?", "ask-5")).toEqual({ question: "Why?", progressToken: "ask-5" });
  });
});
