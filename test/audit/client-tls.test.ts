import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, auditTlsServer, clientTlsOptions, parseAuditLine } from "../../engine/audit/index.js";
import { makePki, read, waitFor, type TestPki } from "./helpers.js";

describe("clientTlsOptions (VIW_TLS_* environment)", () => {
  it("is empty without variables and normalizes version spellings", () => {
    expect(clientTlsOptions({})).toEqual({});
    expect(clientTlsOptions({ VIW_TLS_MIN_VERSION: "1.2", VIW_TLS_MAX_VERSION: "tls1_3" })).toEqual({ minVersion: "TLSv1.2", maxVersion: "TLSv1.3" });
    expect(clientTlsOptions({ VIW_TLS_MAX_VERSION: "TLSv1.2" })).toEqual({ maxVersion: "TLSv1.2" });
  });

  it("narrows one cipher family while keeping node's defaults for the other", () => {
    const a = clientTlsOptions({ VIW_TLS_CIPHERSUITES: "TLS_CHACHA20_POLY1305_SHA256" }).ciphers!.split(":");
    expect(a[0]).toBe("TLS_CHACHA20_POLY1305_SHA256");
    expect(a.filter((c) => c.startsWith("TLS_"))).toEqual(["TLS_CHACHA20_POLY1305_SHA256"]);
    expect(a).toContain("ECDHE-ECDSA-AES128-GCM-SHA256");
    const b = clientTlsOptions({ VIW_TLS_CIPHERS: "ECDHE-ECDSA-AES256-GCM-SHA384" }).ciphers!.split(":");
    expect(b.filter((c) => !c.startsWith("TLS_"))).toEqual(["ECDHE-ECDSA-AES256-GCM-SHA384"]);
    expect(b).toContain("TLS_AES_128_GCM_SHA256");
  });

  it("refuses bad values with an error naming the variable", () => {
    expect(() => clientTlsOptions({ VIW_TLS_MIN_VERSION: "SSLv3" })).toThrow(/^VIW_TLS_MIN_VERSION: "SSLv3" is not a TLS version; use one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3$/);
    expect(() => clientTlsOptions({ VIW_TLS_MAX_VERSION: "TLSv1.4" })).toThrow(/^VIW_TLS_MAX_VERSION: /);
    expect(() => clientTlsOptions({ VIW_TLS_MIN_VERSION: "TLSv1.3", VIW_TLS_MAX_VERSION: "TLSv1.2" })).toThrow("VIW_TLS_MIN_VERSION: TLSv1.3 is above VIW_TLS_MAX_VERSION TLSv1.2");
    expect(() => clientTlsOptions({ VIW_TLS_CIPHERS: "NOT-A-CIPHER" })).toThrow(/^VIW_TLS_CIPHERS: no cipher in "NOT-A-CIPHER" is known to OpenSSL/);
    expect(() => clientTlsOptions({ VIW_TLS_CIPHERS: "TLS_AES_128_GCM_SHA256" })).toThrow(/^VIW_TLS_CIPHERS: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite; put it in VIW_TLS_CIPHERSUITES$/);
    expect(() => clientTlsOptions({ VIW_TLS_CIPHERSUITES: "TLS_AES_128_GCM_SHA256:AES128-SHA" })).toThrow(/^VIW_TLS_CIPHERSUITES: "AES128-SHA" is not a TLS 1.3 suite/);
  });
});

describe("an operator reproduces refused handshakes against an audited TLS 1.3-only port", () => {
  let dir: string;
  let pki: TestPki;
  let audit: AuditLog;
  let server: https.Server;
  let port: number;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "viw-audit-client-"));
    pki = makePki(dir);
    audit = new AuditLog(join(dir, "audit"));
    server = https.createServer(
      { key: read(pki.serverKey), cert: read(pki.serverCert), ca: read(pki.ca), requestCert: true, minVersion: "TLSv1.3", ciphers: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256" },
      (_req, res) => res.end("ok"),
    );
    auditTlsServer(server, { listener: "issuance", audit, component: "pki" });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.close();
    await audit.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (env: NodeJS.ProcessEnv): Promise<string> =>
    new Promise((resolve) => {
      const req = https.get(
        { host: "127.0.0.1", port, path: "/", ca: read(pki.ca), cert: read(pki.clients.good.cert), key: read(pki.clients.good.key), servername: "localhost", ...clientTlsOptions(env) },
        (res) => {
          res.resume();
          res.on("end", () => resolve(`HTTP ${res.statusCode}`));
        },
      );
      req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
  // Session lines reach the file in batches (AuditLog flushMs): wait for one more failure line than before.
  let failures = 0;
  const lastFailure = () =>
    waitFor(() => {
      const all = readFileSync(audit.file, "utf8").split("\n").filter(Boolean).map(parseAuditLine).filter((l) => l.fields[0]![1] === "ACCESS_SESSION_ESTABLISH_FAILURE");
      if (all.length <= failures) return undefined;
      failures = all.length;
      return Object.fromEntries(all.at(-1)!.fields);
    }, "a failure line");

  it("VIW_TLS_MAX_VERSION=TLSv1.2 → refused, audited as protocol version", async () => {
    expect(await get({})).toBe("HTTP 200");
    expect(await get({ VIW_TLS_MAX_VERSION: "TLSv1.2" })).toMatch(/^(EPROTO|ERR_SSL_)/);
    expect((await lastFailure()).Info).toBe("protocol version not allowed: client offered TLSv1.2; listener accepts TLSv1.3 only");
  });

  it("VIW_TLS_CIPHERSUITES=TLS_CHACHA20_POLY1305_SHA256 → refused, audited as no shared cipher", async () => {
    expect(await get({ VIW_TLS_CIPHERSUITES: "TLS_CHACHA20_POLY1305_SHA256" })).toMatch(/^(EPROTO|ERR_SSL_)/);
    expect((await lastFailure()).Info).toBe("no shared cipher");
  });
});
