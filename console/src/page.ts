// What every page shares with the router.

export interface Context {
  /** The login page calls this once the session exists. */
  signedIn(): void;
  /** A message for the next page shown (why the user is back at login). */
  notice: string | null;
  /** An error for the next page shown (the session could not be restored). */
  problem: unknown;
}

/** Mounts a page into <main>; answers what undoes it (timers, charts). */
export type Mount = (main: HTMLElement, ctx: Context) => () => void;

export const REFRESH_MS = 15_000;

/**
 * Runs `load` now and every `everyMs` while the page is visible, and at once
 * when it becomes visible again; never two at a time. A hidden tab makes no
 * requests. Answers the function that stops it.
 */
export function poll(load: () => Promise<void>, everyMs: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let stopped = false;
  const run = async (): Promise<void> => {
    clearTimeout(timer);
    if (stopped || running) return;
    if (document.visibilityState === "visible") {
      running = true;
      try {
        await load();
      } finally {
        running = false;
      }
    }
    if (!stopped) timer = setTimeout(() => void run(), everyMs);
  };
  const onVisibility = () => {
    if (document.visibilityState === "visible") void run();
  };
  document.addEventListener("visibilitychange", onVisibility);
  void run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
