import type { Journal, JournalRecord } from "./contract.js";

export interface ConsumeOptions {
  /** Records per handler call. Default 1000. */
  batch?: number;
  /** Delay before retrying a batch whose handler threw. Default 1000 ms (doubles up to 30 s). */
  retryMs?: number;
  /** Told about handler failures (the batch is retried, never skipped). */
  onError?: (err: unknown, records: readonly { seq: number }[]) => void;
}

export interface Consumer {
  readonly name: string;
  /** The last seq handled and committed. */
  position(): number;
  /** Resolves once the consumer has handled everything appended so far (tests, draining). */
  idle(): Promise<void>;
  /** Stops after the batch in hand is handled and committed. */
  stop(): Promise<void>;
}

/**
 * The one consumer loop that the indexers, detector and sealer share: read
 * after the durable cursor, hand the batch to `handler`, commit the cursor only
 * once the handler resolved (at-least-once: a crash replays from the cursor, so
 * handlers must be idempotent), then wait for the next append.
 */
export function consume<R extends { seq: number } = JournalRecord>(
  journal: Journal,
  name: string,
  handler: (records: R[]) => Promise<unknown> | void,
  opts: ConsumeOptions & {
    /** How a batch is read; default `journal.read` (e.g. LocalJournal.readRaw for a sink that stores the JSON as is). */
    read?: (after: number, limit: number) => R[];
  } = {},
): Consumer {
  const read = opts.read ?? ((after: number, limit: number) => journal.read(after, limit) as unknown as R[]);
  const batch = opts.batch ?? 1000;
  const retryBase = opts.retryMs ?? 1000;
  let pos = journal.cursor(name);
  let stopped = false;
  let wake: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  let signalled = false;
  const unsubscribe = journal.onAppend(() => {
    signalled = true;
    wake?.();
  });
  let stopWaiting: (() => void) | undefined;
  /** Sleeps `ms`; an append wakes it only when `onAppend` is set (a retry backoff ignores appends). */
  const sleep = (ms: number, onAppend: boolean) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        wake = undefined;
        stopWaiting = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      if (onAppend) wake = done;
      stopWaiting = done;
    });

  const loop = (async () => {
    let retry = retryBase;
    while (!stopped) {
      signalled = false;
      const records = read(pos, batch);
      if (records.length === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
        // onAppend may have fired between read and here; otherwise sleep until it does.
        if (!signalled && !stopped) await sleep(60_000, true);
        continue;
      }
      try {
        await handler(records);
      } catch (err) {
        opts.onError?.(err, records);
        if (!stopped) await sleep(retry, false);
        retry = Math.min(retry * 2, 30_000);
        continue;
      }
      const last = records[records.length - 1]!.seq;
      try {
        journal.commitCursor(name, last);
      } catch (err) {
        // the batch is handled but not recorded: it is replayed (handlers are idempotent)
        opts.onError?.(err, records);
        if (!stopped) await sleep(retry, false);
        retry = Math.min(retry * 2, 30_000);
        continue;
      }
      retry = retryBase;
      pos = last;
    }
  })();

  return {
    name,
    position: () => pos,
    idle() {
      if (pos >= journal.lastSeq()) return Promise.resolve();
      return new Promise((r) => idleWaiters.push(r));
    },
    async stop() {
      stopped = true;
      unsubscribe();
      stopWaiting?.();
      await loop;
      for (const w of idleWaiters) w();
      idleWaiters = [];
    },
  };
}
