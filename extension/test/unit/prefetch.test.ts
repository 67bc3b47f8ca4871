import { describe, expect, it } from "vitest";

import { PREFETCH_NOTIFICATION, prefetchParams, worthPrefetching } from "../../src/prefetch";

const rest = { kind: 2, selections: 1, empty: true, scheme: "file", enabled: true };

describe("worthPrefetching", () => {
  it("prepares a place the cursor was moved to by mouse or keyboard", () => {
    expect(worthPrefetching(rest)).toBe(true);
    expect(worthPrefetching({ ...rest, kind: 1 })).toBe(true);
  });

  it("leaves edits, commands, selections, other schemes and disabled completions alone", () => {
    expect(worthPrefetching({ ...rest, kind: undefined })).toBe(false);
    expect(worthPrefetching({ ...rest, kind: 3 })).toBe(false);
    expect(worthPrefetching({ ...rest, empty: false })).toBe(false);
    expect(worthPrefetching({ ...rest, selections: 2 })).toBe(false);
    expect(worthPrefetching({ ...rest, scheme: "untitled" })).toBe(false);
    expect(worthPrefetching({ ...rest, enabled: false })).toBe(false);
  });
});

describe("prefetchParams", () => {
  it("is what the server's repotune/prefetch handler reads", () => {
    expect(PREFETCH_NOTIFICATION).toBe("repotune/prefetch");
    expect(prefetchParams("file:///a.py", 3, 7)).toEqual({
      textDocument: { uri: "file:///a.py" },
      position: { line: 3, character: 7 },
    });
  });
});
