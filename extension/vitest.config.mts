import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    reporters: ["default", "./test/summary-reporter.mts"],
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      { test: { name: "package", include: ["test/package/**/*.test.ts"] } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          setupFiles: ["test/integration/vscode-stub.ts"],
          testTimeout: 300_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
