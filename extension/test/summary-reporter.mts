/**
 * Prints one plain closing line, "extension: N passed, N failed, N skipped", so a CI log reader
 * that knows that form counts these tests (vitest's own summary has another layout).
 */
import type { Reporter, TestModule, Vitest } from "vitest/node";

export default class SummaryReporter implements Reporter {
  private vitest: Vitest | undefined;

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
  }

  onTestRunEnd(testModules: readonly TestModule[]): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      let tests = 0;
      for (const test of module.children.allTests()) {
        tests += 1;
        const state = test.result().state;
        if (state === "passed") passed += 1;
        else if (state === "failed") failed += 1;
        else skipped += 1;
      }
      if (tests === 0 && module.state() === "failed") failed += 1; // the file did not load
    }
    const line = `extension: ${passed} passed, ${failed} failed, ${skipped} skipped`;
    if (this.vitest) this.vitest.logger.log(line);
    else console.log(line);
  }
}
