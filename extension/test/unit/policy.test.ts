import { describe, expect, it } from "vitest";

import { debounce, debounceFor } from "../../src/debounce";
import { menuItems } from "../../src/menu";
import { COMMANDS } from "../../src/protocol";
import { RestartPolicy, gaveUpMessage } from "../../src/retry";

describe("RestartPolicy", () => {
  it("restarts up to the limit within the window, then gives up", () => {
    const policy = new RestartPolicy(3, 60_000);
    expect([0, 1000, 2000].map((t) => policy.shouldRestart(t))).toEqual([true, true, true]);
    expect(policy.shouldRestart(3000)).toBe(false);
    expect(gaveUpMessage(policy)).toContain("4 times within 1 minutes");
  });

  it("forgets crashes older than the window, and on reset", () => {
    const policy = new RestartPolicy(1, 10_000);
    expect(policy.shouldRestart(0)).toBe(true);
    expect(policy.shouldRestart(5_000)).toBe(false);
    expect(policy.shouldRestart(16_000)).toBe(true);
    policy.reset();
    expect(policy.recentCrashes(16_000)).toBe(0);
    expect(policy.shouldRestart(16_001)).toBe(true);
  });
});

class FakeToken {
  isCancellationRequested = false;
  private listeners: (() => void)[] = [];
  onCancellationRequested(listener: () => void) {
    this.listeners.push(listener);
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((l) => l !== listener);
      },
    };
  }
  cancel() {
    this.isCancellationRequested = true;
    for (const l of [...this.listeners]) l();
  }
  get listening() {
    return this.listeners.length;
  }
}

describe("debounce", () => {
  it("waits the given time, then resolves true and unsubscribes", async () => {
    const token = new FakeToken();
    const start = performance.now();
    expect(await debounce(40, token)).toBe(true);
    expect(performance.now() - start).toBeGreaterThanOrEqual(35);
    expect(token.listening).toBe(0);
  });

  it("resolves false as soon as the request is cancelled", async () => {
    const token = new FakeToken();
    const start = performance.now();
    const waiting = debounce(5_000, token);
    setTimeout(() => {
      token.cancel();
    }, 10);
    expect(await waiting).toBe(false);
    expect(performance.now() - start).toBeLessThan(1_000);
    expect(token.listening).toBe(0);
  });

  it("does not wait for explicit invocations or already-cancelled tokens", async () => {
    expect(debounceFor(0, 150)).toBe(0);
    expect(debounceFor(1, 150)).toBe(150);
    const token = new FakeToken();
    token.cancel();
    expect(await debounce(100, token)).toBe(false);
  });
});

describe("menuItems", () => {
  it("offers every action while running, and the toggle reflects the state", () => {
    const items = menuItems("running", true);
    expect(items.map((i) => i.command)).toEqual([
      COMMANDS.askQuestion,
      COMMANDS.toggleCompletions,
      COMMANDS.reindexWorkspace,
      COMMANDS.showLog,
      COMMANDS.restartServer,
      COMMANDS.selectInterpreter,
    ]);
    expect(items[1].label).toContain("Disable completions");
    expect(menuItems("running", false)[1].label).toContain("Enable completions");
  });

  it("hides server actions when the server is not running", () => {
    const commands = menuItems("not-installed", true).map((i) => i.command);
    expect(commands).not.toContain(COMMANDS.askQuestion);
    expect(commands).not.toContain(COMMANDS.reindexWorkspace);
    expect(commands).toContain(COMMANDS.selectInterpreter);
  });
});
