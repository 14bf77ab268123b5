/**
 * A refused request: the HTTP status, a stable code, a message naming the rule
 * that refused, and the request field it concerns. The API sends it as
 * `{"error": {"code", "message", "field"?}}`.
 */
export class IssueError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 409 | 413 | 503,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "IssueError";
  }

  toJSON(): { error: { code: string; message: string; field?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } };
  }
}
