/** The quick pick behind the status bar item. */
import { COMMANDS } from "./protocol";
import type { ClientState } from "./status";

export interface MenuItem {
  label: string;
  description?: string;
  command: string;
}

export function menuItems(client: ClientState, completionsEnabled: boolean): MenuItem[] {
  const running = client === "running" || client === "starting";
  const items: MenuItem[] = [];
  if (running) {
    items.push({ label: "$(comment-discussion) Ask about this codebase", command: COMMANDS.askQuestion });
  }
  items.push({
    label: completionsEnabled ? "$(circle-slash) Disable completions" : "$(sparkle) Enable completions",
    command: COMMANDS.toggleCompletions,
  });
  if (running) {
    items.push({ label: "$(sync) Reindex workspace", command: COMMANDS.reindexWorkspace });
  }
  items.push({ label: "$(output) Show log", command: COMMANDS.showLog });
  items.push({
    label: "$(debug-restart) Restart server",
    description: running ? undefined : "the server is not running",
    command: COMMANDS.restartServer,
  });
  items.push({ label: "$(gear) Select Python interpreter", command: COMMANDS.selectInterpreter });
  return items;
}
