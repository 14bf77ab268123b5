import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { dnsMatches, type Identity } from "../../config/index.js";

/** What a client certificate says about its holder, as the policies name it. */
export interface PeerIdentity {
  /** Id of the issuer (profiles/issuers/ID) that signed the certificate, when it is one the listener knows by name. */
  issuer?: string;
  cn?: string;
  dns: string[];
  uri: string[];
}

/** Listener TLS material: the server's key pair, the client CAs, and those CAs' issuer ids. */
export interface ListenerTls {
  key: string | Buffer;
  cert: string | Buffer;
  /** Trust anchors and intermediates for client certificates (PEM). */
  ca: string | Buffer | (string | Buffer)[];
  /** Issuer id → its CA certificate (PEM): lets policies say `issuer: int-tls`. */
  issuers?: Record<string, string | Buffer>;
}

export class IssuerNames {
  private readonly certs: { id: string; cert: X509Certificate }[];
  constructor(issuers: Record<string, string | Buffer> = {}) {
    this.certs = Object.entries(issuers).map(([id, pem]) => ({ id, cert: new X509Certificate(pem) }));
  }

  /** The identity of a TLS peer whose chain node already verified against the listener's `ca`. */
  peer(socket: TLSSocket): PeerIdentity | undefined {
    const raw = socket.getPeerCertificate();
    if (!raw || !raw.raw) return undefined;
    const cert = new X509Certificate(raw.raw);
    const issuer = this.certs.find((c) => cert.checkIssued(c.cert) && cert.verify(c.cert.publicKey))?.id;
    const dns: string[] = [];
    const uri: string[] = [];
    for (const part of (cert.subjectAltName ?? "").split(/,\s*/)) {
      if (part.startsWith("DNS:")) dns.push(part.slice(4));
      else if (part.startsWith("URI:")) uri.push(part.slice(4));
    }
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
    return { issuer, cn, dns, uri };
  }
}

/** Whether a peer is the identity a policy names: same issuer, and every given name pattern matches. */
export function identityMatches(peer: PeerIdentity, id: Identity): boolean {
  if (peer.issuer !== id.issuer) return false;
  if (id.cn !== undefined && (peer.cn === undefined || !dnsMatchesOrEqual(id.cn, peer.cn))) return false;
  if (id.dns !== undefined && !peer.dns.some((d) => dnsMatchesOrEqual(id.dns!, d))) return false;
  if (id.uri !== undefined && !peer.uri.includes(id.uri)) return false;
  return true;
}

function dnsMatchesOrEqual(pattern: string, name: string): boolean {
  return pattern === name || dnsMatches(pattern, name);
}

export function describePeer(peer: PeerIdentity | undefined): string {
  if (!peer) return "no client certificate";
  return `CN=${peer.cn ?? "-"} issuer=${peer.issuer ?? "(not a named issuer)"}`;
}
