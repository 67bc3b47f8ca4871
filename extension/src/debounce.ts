/** Client-side debounce for inline completions, driven by VS Code's cancellation token. */

export interface CancellationLike {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

/**
 * Wait `ms`, resolving true; resolve false as soon as the token is cancelled (VS Code cancels
 * the previous request on every keystroke, so only the last pause in typing reaches the server).
 */
export function debounce(ms: number, token: CancellationLike): Promise<boolean> {
  if (token.isCancellationRequested) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      subscription.dispose();
      resolve(!token.isCancellationRequested);
    }, ms);
    const subscription = token.onCancellationRequested(() => {
      clearTimeout(timer);
      subscription.dispose();
      resolve(false);
    });
  });
}

/** VS Code's InlineCompletionTriggerKind.Invoke: the user asked explicitly, so do not wait. */
export const TRIGGER_INVOKE = 0;

export function debounceFor(triggerKind: number, debounceMs: number): number {
  return triggerKind === TRIGGER_INVOKE ? 0 : debounceMs;
}
