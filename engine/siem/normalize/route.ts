import type { DesiredState } from "../../config/index.js";

/**
 * The index an action goes to, from the routing policy (DESIGN §5). Patterns
 * are exact names or globs with `*`; the first matching route wins. Answers
 * are memoised per action: the vocabulary is small and this runs per event.
 */
export class Router {
  private readonly exact = new Map<string, string>();
  private readonly globs: { re: RegExp; index: string }[] = [];
  private readonly memo = new Map<string, string>();

  constructor(routing: DesiredState["routing"]) {
    this.defaultIndex = routing.default;
    for (const route of routing.routes) {
      for (const pattern of route.actions) {
        if (pattern.includes("*")) {
          const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
          this.globs.push({ re, index: route.index });
        } else if (!this.exact.has(pattern)) this.exact.set(pattern, route.index);
      }
    }
  }

  readonly defaultIndex: string;

  route(action: unknown): string {
    if (typeof action !== "string") return this.defaultIndex;
    const hit = this.memo.get(action);
    if (hit !== undefined) return hit;
    let index = this.exact.get(action);
    if (index === undefined) index = this.globs.find((g) => g.re.test(action))?.index ?? this.defaultIndex;
    if (this.memo.size < 10_000) this.memo.set(action, index);
    return index;
  }

  /** Every index this table can produce (for index templates and queries). */
  indices(): string[] {
    return [...new Set([...this.exact.values(), ...this.globs.map((g) => g.index), this.defaultIndex])];
  }
}
