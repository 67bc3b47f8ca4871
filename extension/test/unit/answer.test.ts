import { describe, expect, it } from "vitest";

import { citationTarget, closeOpenFence, linkifyAnswer, pathToFileUri, renderAnswer } from "../../src/answer";
import { parseAskResult, type Citation } from "../../src/protocol";

const cite: Citation = {
  path: "server/config.py",
  uri: "file:///repo/server/config.py",
  start_line: 120,
  end_line: 140,
};

describe("renderAnswer", () => {
  it("renders the question, the answer and a source list of file:line links", () => {
    const md = renderAnswer("Where are\nsettings validated?", {
      answer: "In `load_settings`, see server/config.py:120.",
      citations: [cite, { ...cite }, { path: "server/cli.py", uri: "file:///repo/server/cli.py", start_line: 7, end_line: 7 }],
    });
    expect(md).toContain("# Where are settings validated?");
    expect(md).toContain("see [server/config.py:120](file:///repo/server/config.py#L120).");
    expect(md).toContain("## Sources");
    expect(md).toContain("- [server/config.py:120-140](file:///repo/server/config.py#L120)");
    expect(md).toContain("- [server/cli.py:7](file:///repo/server/cli.py#L7)");
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
    expect(markdown).toMatch(/```\n\n## Sources\n\n- \[geometry\.py:5-7\]\(file:\/\/\/repo\/geometry\.py#L5\)/);
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
    const out = linkifyAnswer(text, [cite]);
    expect(out).toContain("[server/config.py:12-20](file:///repo/server/config.py#L12)");
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
  it("builds file URIs from paths when the server sent none, relative to the workspace", () => {
    expect(citationTarget({ ...cite, uri: "", path: "src/a b.py" }, "/ws/")).toBe("file:///ws/src/a%20b.py#L120");
    expect(pathToFileUri("C:\\repo\\x (1).py")).toBe("file:///C:/repo/x%20(1).py");
    expect(citationTarget({ ...cite, uri: "", path: "C:\\repo\\x (1).py" })).toBe("file:///C:/repo/x%20%281%29.py#L120");
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
