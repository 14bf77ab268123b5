import type { AddressInfo, Socket } from "node:net";
import type { Server } from "node:http";
import type { KeyObject } from "node:crypto";
import type { DesiredState } from "../config/index.js";
import { ServiceError, type Prepared, type Service } from "../gitops/service.js";
import { createIssuanceServer, type IssuanceTls } from "./api.js";
import { Authority, BuildError, type AuthorityOptions, type IssuedCertificate, type Logger } from "./authority.js";
import { createPkiServer } from "./pkiport.js";
import type { KeyProvider } from "./signer.js";

export interface PkiServiceOptions extends AuthorityOptions {
  /** Opens the issuers' keys (a KeyRing routes file: and pkcs11: references). */
  provider: KeyProvider;
  /** How often CRLs and rotation overlaps are checked (default 60 s). */
  tickInterval?: number;
  bodyLimit?: number;
  log?: Logger;
}

export interface ListenOptions {
  issuance?: { host: string; port: number; tls: IssuanceTls };
  pki?: { host: string; port: number };
  /** Called with each TLS server before it listens (the daemon attaches the TLS session audit). */
  beforeListen?: (name: "issuance", server: Server) => void;
}

/** The CA/OCSP service the daemon hosts; see engine/pki/index.ts. */
export interface PkiService extends Service {
  readonly authority: Authority;
  listen(options: ListenOptions): Promise<{ issuance?: string; pki?: string }>;
  /** Replaces the issuance listener's certificate and client CA bundle (renewal) without a restart. */
  setIssuanceTls(tls: IssuanceTls): void;
  issueForEngine(profileId: string, publicKey: KeyObject, names: { cn?: string; dns?: string[]; ip?: string[]; uri?: string[]; validity?: string }): Promise<IssuedCertificate & { der: Buffer }>;
  close(): Promise<void>;
}

function listenOn(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function url(scheme: string, a: AddressInfo): string {
  return `${scheme}://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
}

export function createPkiService(options: PkiServiceOptions): PkiService {
  const authority = new Authority(options);
  const servers: Server[] = [];
  /**
   * Every TCP connection of the listeners, from accept on. closeAllConnections
   * only knows the HTTP ones: a TLS socket still in its handshake would hold
   * server.close() until the handshake timeout (120 s).
   */
  const sockets = new Set<Socket>();
  const track = (server: Server) =>
    server.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
  let issuance: ReturnType<typeof createIssuanceServer> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let ticking = false;

  return {
    name: "pki",
    authority,

    async prepare(next: DesiredState): Promise<Prepared> {
      let rt;
      try {
        rt = await authority.build(next, options.provider, authority.runtime);
      } catch (err) {
        if (err instanceof BuildError) {
          const at = next.locate("issuer", err.issuer);
          throw new ServiceError("pki", err.message, at ? [{ ...at, message: err.message, kind: "issuer", id: err.issuer }] : []);
        }
        throw new ServiceError("pki", (err as Error).message);
      }
      return {
        commit: () => {
          authority.swap(rt);
          if (!timer) {
            timer = setInterval(() => {
              if (ticking) return;
              ticking = true;
              authority.tick().finally(() => (ticking = false));
            }, options.tickInterval ?? 60_000);
            timer.unref();
          }
        },
      };
    },

    status() {
      const rt = authority.runtime;
      return {
        revision: rt?.revision ?? null,
        issuers: rt ? Object.fromEntries([...rt.issuers.values()].map((i) => [i.id, { online: !!i.signer, not_after: i.cert.notAfter.toISOString() }])) : {},
      };
    },

    async listen(opts) {
      const out: { issuance?: string; pki?: string } = {};
      if (opts.issuance) {
        issuance = createIssuanceServer(authority, opts.issuance.tls, { bodyLimit: options.bodyLimit, log: options.log });
        servers.push(track(issuance));
        opts.beforeListen?.("issuance", issuance);
        out.issuance = url("https", await listenOn(issuance, opts.issuance.host, opts.issuance.port));
      }
      if (opts.pki) {
        const s = createPkiServer(authority, { log: options.log });
        servers.push(track(s));
        out.pki = url("http", await listenOn(s, opts.pki.host, opts.pki.port));
      }
      return out;
    },

    setIssuanceTls(tls) {
      issuance?.setSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: "TLSv1.3", maxVersion: "TLSv1.3" } as Parameters<NonNullable<typeof issuance>["setSecureContext"]>[0]);
    },

    issueForEngine: (profileId, publicKey, names) => authority.issueForEngine(profileId, publicKey, names),

    async close() {
      if (timer) clearInterval(timer);
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections?.();
              for (const socket of sockets) socket.destroy();
            }),
        ),
      );
      await authority.close();
    },
  };
}
