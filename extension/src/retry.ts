/**
 * Bounded automatic restarts after crashes: a server that dies on start must not be restarted
 * forever (each start loads a model), but one crash an hour should not need the user.
 */
export class RestartPolicy {
  private crashes: number[] = [];

  constructor(
    readonly maxRestarts: number = 3,
    readonly windowMs: number = 3 * 60_000,
  ) {}

  /** Record a crash at `now` and say whether to restart automatically. */
  shouldRestart(now: number): boolean {
    this.crashes = this.crashes.filter((t) => now - t < this.windowMs);
    this.crashes.push(now);
    return this.crashes.length <= this.maxRestarts;
  }

  /** Crashes counted in the current window. */
  recentCrashes(now: number): number {
    return this.crashes.filter((t) => now - t < this.windowMs).length;
  }

  /** A manual restart or a fresh start forgets the history. */
  reset(): void {
    this.crashes = [];
  }
}

/** The message shown when automatic restarts are used up. */
export function gaveUpMessage(policy: RestartPolicy): string {
  const minutes = Math.round(policy.windowMs / 60_000);
  return (
    `The RepoTune server stopped ${policy.maxRestarts + 1} times within ${minutes} minutes and ` +
    `will not be restarted automatically. See the log for the cause, then restart it.`
  );
}
