/**
 * Telling the server where the cursor came to rest, so it can evaluate that place's prompt
 * before the user types there (the first suggestion at a new place costs a whole prompt).
 * Edits need no notification: the server starts on their didChange.
 */

export const PREFETCH_NOTIFICATION = "repotune/prefetch";

/** How long the cursor must stay put before the server is told (a moving cursor costs nothing). */
export const PREFETCH_REST_MS = 250;

/** VS Code's TextEditorSelectionChangeKind: 1 keyboard, 2 mouse, 3 command; undefined for edits. */
export type SelectionChangeKind = number | undefined;

export interface CursorRest {
  kind: SelectionChangeKind;
  selections: number;
  empty: boolean;
  scheme: string;
  enabled: boolean;
}

/** Whether a selection change is the user moving to a new place worth preparing. */
export function worthPrefetching(change: CursorRest): boolean {
  if (!change.enabled || change.scheme !== "file") return false;
  if (change.kind !== 1 && change.kind !== 2) return false; // edits announce themselves
  return change.selections === 1 && change.empty; // one plain cursor: a place to type
}

export interface PrefetchParams {
  textDocument: { uri: string };
  position: { line: number; character: number };
}

export function prefetchParams(uri: string, line: number, character: number): PrefetchParams {
  return { textDocument: { uri }, position: { line, character } };
}
