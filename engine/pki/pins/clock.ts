/**
 * Time for renewals, injectable so a lab (and the tests) can "advance the
 * clock to near expiry" (spec §9.1) without waiting months.
 */
export interface Clock {
  now(): number;
  /** Calls `fn` once `ms` have passed on this clock; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

// setTimeout fires at once for delays above 2^31-1 ms (~24.8 days); longer waits are chained.
const MAX_TIMER = 2_147_483_647;

/** Wall-clock time; timers are unref'd so a pending renewal never keeps a process alive on its own. */
export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const due = Date.now() + Math.max(0, ms);
    let timer: NodeJS.Timeout;
    const arm = () => {
      const left = due - Date.now();
      timer = setTimeout(left > MAX_TIMER ? arm : fn, Math.min(Math.max(0, left), MAX_TIMER));
      timer.unref();
    };
    arm();
    return () => clearTimeout(timer);
  },
};

/** A clock that moves only when told: `advance` fires the timers that come due, in order. */
export class ManualClock implements Clock {
  private t: number;
  private timers: { due: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  constructor(start: number | Date = Date.now()) {
    this.t = typeof start === "number" ? start : start.getTime();
  }

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { due: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }

  /** Moves the clock forward by `ms`, firing due timers (each sees the clock at its due time). */
  advance(ms: number): void {
    this.set(this.t + ms);
  }

  /** Moves the clock to `to` (never backwards), firing due timers. */
  set(to: number | Date): void {
    const target = typeof to === "number" ? to : to.getTime();
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.due > target) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.due);
      next.fn();
    }
    this.t = Math.max(this.t, target);
  }

  /** Pending timers' due times (for tests and status). */
  pending(): number[] {
    return this.timers.map((x) => x.due).sort((a, b) => a - b);
  }
}
