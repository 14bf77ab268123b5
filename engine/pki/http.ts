import type { IncomingMessage, ServerResponse } from "node:http";
import { IssueError } from "./errors.js";

/** Reads a request body up to `limit` bytes; past that a 413 IssueError (the rest is not buffered). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limit) {
      reject(new IssueError(413, "too_large", `request body of ${declared} bytes exceeds the ${limit}-byte limit`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        reject(new IssueError(413, "too_large", `request body exceeds the ${limit}-byte limit`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
    req.on("error", (e) => {
      if (!done) reject(e);
    });
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(res, status, JSON.stringify(body), headers);
}

/** A JSON text made by the caller. */
export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: IssueError): void {
  // A 413 leaves the unread body on the socket: close rather than reuse it.
  sendJson(res, err.status, err.toJSON(), err.status === 413 ? { connection: "close" } : {});
}
