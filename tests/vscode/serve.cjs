// Runs code-server in this process, without its parent/child wrapper: the wrapper gives the child
// 10 seconds to answer a handshake, which a busy CI machine misses ("error timed out"). The
// wrapper only serves code-server's self-update relaunch, which the test does not use.
// Usage: node serve.cjs <code-server package folder> [code-server options] [folder]
"use strict";
const path = require("node:path");

const root = process.argv[2];
const { parse, readConfigFile, setDefaults } = require(path.join(root, "out", "node", "cli"));
const { runCodeServer } = require(path.join(root, "out", "node", "main"));

(async () => {
  const cliArgs = parse(process.argv.slice(3));
  const args = await setDefaults(cliArgs, await readConfigFile(cliArgs.config));
  // VS Code's server-main.js, loaded in this process, reads process.argv too and would start a
  // second, standalone server from it; code-server's own child process has no arguments either.
  process.argv.splice(2);
  process.env.NODE_EXEC_PATH = process.execPath;
  await runCodeServer(args);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
