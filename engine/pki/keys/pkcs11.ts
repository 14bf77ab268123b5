import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import pkcs11js from "pkcs11js";
import type { KeyAlgorithm } from "../../config/index.js";
import { ecdsaRawToDer, sequence, tlv } from "../der.js";
import type { KeyProvider, Signer } from "../signer.js";
import { algorithmOf, hashOf, KeyError, keyIdOf } from "./common.js";
import { parsePkcs11Uri, pinFor, redactPkcs11Uri, type Pkcs11Uri } from "./uri.js";

type Handle = Buffer;

const CURVES: Partial<Record<KeyAlgorithm, string>> = {
  // DER OBJECT IDENTIFIERs of the named curves (CKA_EC_PARAMS).
  "ecdsa-p256": "06082a8648ce3d030107",
  "ecdsa-p384": "06052b81040022",
};
const EC_PUBLIC_KEY_OID = Buffer.from("06072a8648ce3d0201", "hex");

// PKCS#11 3.0 Edwards-curve values; pkcs11js 2.x predates them and has no constants.
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;
/**
 * CKA_EC_PARAMS of Ed25519: PKCS#11 3.0 names the curve with the
 * PrintableString "edwards25519" (what SoftHSM2 2.6 and pkcs11-tool write);
 * the RFC 8410 OID 1.3.101.112 is the fallback for tokens that want it.
 */
const ED25519_PARAMS = [Buffer.from("130c656477617264733235353139", "hex"), Buffer.from("06032b6570", "hex")];

/** The 32-byte Ed25519 point of a CKA_EC_POINT (a DER OCTET STRING around it, or bare on some tokens). */
function edwardsPoint(q: Buffer): Buffer {
  if (q.length === 34 && q[0] === 0x04 && q[1] === 32) return q.subarray(2);
  if (q.length === 32) return q;
  throw new KeyError(`Ed25519 public key of ${q.length} bytes on the token`);
}

/**
 * One loaded PKCS#11 module per path per process: C_Initialize may run only
 * once, and several providers (CLI, daemon, tests) can share a module.
 */
const modules = new Map<string, { lib: pkcs11js.PKCS11; users: number }>();

function acquireModule(path: string): pkcs11js.PKCS11 {
  let m = modules.get(path);
  if (!m) {
    const lib = new pkcs11js.PKCS11();
    try {
      lib.load(path);
    } catch (err) {
      throw new KeyError(`cannot load PKCS#11 module ${path}: ${(err as Error).message}`, true);
    }
    try {
      // OS locking: the module serialises its own state when several of our
      // sessions run operations on libuv's worker threads at once.
      lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (err) {
      if (!/CRYPTOKI_ALREADY_INITIALIZED/.test((err as Error).message)) {
        throw new KeyError(`cannot initialise PKCS#11 module ${path}: ${(err as Error).message}`, true);
      }
    }
    m = { lib, users: 0 };
    modules.set(path, m);
  }
  m.users++;
  return m.lib;
}

function releaseModule(path: string): void {
  const m = modules.get(path);
  if (!m || --m.users > 0) return;
  modules.delete(path);
  try {
    m.lib.C_Finalize();
  } finally {
    m.lib.close();
  }
}

function ckr(err: unknown): string {
  return /(CKR_[A-Z_]+)/.exec((err as Error)?.message ?? "")?.[1] ?? "";
}

const UNAVAILABLE = new Set(["CKR_DEVICE_REMOVED", "CKR_TOKEN_NOT_PRESENT", "CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED", "CKR_DEVICE_ERROR", "CKR_USER_NOT_LOGGED_IN", "CKR_CRYPTOKI_NOT_INITIALIZED"]);

/**
 * The sessions of one token. PKCS#11 allows one active operation per session,
 * so a signature takes a session from the pool and gives it back; callers
 * beyond the pool size wait in line.
 */
class Token {
  private readonly idle: Handle[] = [];
  private readonly waiting: ((s: Handle) => void)[] = [];
  private opened = 0;
  private loggedIn = false;

  constructor(
    private readonly lib: pkcs11js.PKCS11,
    readonly slot: Handle,
    readonly label: string,
    private readonly size: number,
  ) {}

  private openSession(): Handle {
    return this.lib.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  }

  /** Logs in once; the login holds for every session of the application. */
  login(pin: string | undefined): void {
    if (this.loggedIn) return;
    if (pin === undefined) throw new KeyError(`PKCS#11 token \`${this.label}\`: no PIN (set VIW_PKCS11_PIN, or pin-source in the key URI)`, true);
    const s = this.openSession();
    this.opened++;
    try {
      this.lib.C_Login(s, pkcs11js.CKU_USER, pin);
    } catch (err) {
      const code = ckr(err);
      if (code !== "CKR_USER_ALREADY_LOGGED_IN") {
        this.lib.C_CloseSession(s);
        this.opened--;
        if (code === "CKR_PIN_INCORRECT" || code === "CKR_PIN_LEN_RANGE") throw new KeyError(`PKCS#11 token \`${this.label}\`: wrong PIN (${code})`, true);
        if (code === "CKR_PIN_LOCKED") throw new KeyError(`PKCS#11 token \`${this.label}\`: the user PIN is locked`, true);
        throw new KeyError(`PKCS#11 token \`${this.label}\`: login failed (${code || (err as Error).message})`, true);
      }
    }
    this.loggedIn = true;
    this.idle.push(s);
  }

  async withSession<T>(fn: (s: Handle) => Promise<T> | T): Promise<T> {
    const s = await this.take();
    let broken = false;
    try {
      return await fn(s);
    } catch (err) {
      broken = UNAVAILABLE.has(ckr(err));
      throw err;
    } finally {
      if (broken) {
        try {
          this.lib.C_CloseSession(s);
        } catch {
          /* already gone */
        }
        this.opened--;
        this.loggedIn = false;
      } else this.give(s);
    }
  }

  private take(): Promise<Handle> {
    const s = this.idle.pop();
    if (s) return Promise.resolve(s);
    if (this.opened < this.size) {
      this.opened++;
      try {
        return Promise.resolve(this.openSession());
      } catch (err) {
        this.opened--;
        return Promise.reject(err);
      }
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(s: Handle): void {
    const next = this.waiting.shift();
    if (next) next(s);
    else this.idle.push(s);
  }

  close(): void {
    for (const s of this.idle.splice(0)) {
      try {
        this.lib.C_CloseSession(s);
      } catch {
        /* token gone */
      }
    }
  }
}

class Pkcs11Signer implements Signer {
  readonly keyId: string;
  readonly algorithm: KeyAlgorithm;
  private readonly hash: "sha256" | "sha384" | null;

  constructor(
    private readonly lib: pkcs11js.PKCS11,
    private readonly token: Token,
    private readonly key: Handle,
    readonly publicKey: KeyObject,
    private readonly ref: string,
  ) {
    this.algorithm = algorithmOf(publicKey);
    this.keyId = keyIdOf(publicKey);
    this.hash = hashOf(this.algorithm);
  }

  async sign(data: Uint8Array): Promise<Buffer> {
    if (this.algorithm === "ed25519") return this.signEd25519(data);
    const ec = this.algorithm.startsWith("ecdsa");
    // ECDSA: hash here and let the token sign the digest (CKM_ECDSA), which
    // every token supports; RSA: the token hashes (CKM_SHA256_RSA_PKCS).
    const input = ec ? createHash(this.hash!).update(data).digest() : Buffer.from(data);
    const mechanism = ec ? pkcs11js.CKM_ECDSA : pkcs11js.CKM_SHA256_RSA_PKCS;
    try {
      return await this.token.withSession(async (s) => {
        this.lib.C_SignInit(s, { mechanism }, this.key);
        const out = await this.lib.C_SignAsync(s, input, Buffer.alloc(ec ? 132 : 512));
        return ec ? ecdsaRawToDer(out) : out;
      });
    } catch (err) {
      if (err instanceof KeyError) throw err;
      const code = ckr(err);
      throw new KeyError(`sign with ${redactPkcs11Uri(this.ref)} failed: ${code || (err as Error).message}`, UNAVAILABLE.has(code));
    }
  }

  /** Pure Ed25519 (CKM_EDDSA without parameters): the token signs the message itself; R||S is already what X.509 carries. */
  private async signEd25519(data: Uint8Array): Promise<Buffer> {
    try {
      return await this.token.withSession(async (s) => {
        this.lib.C_SignInit(s, { mechanism: CKM_EDDSA }, this.key);
        return await this.lib.C_SignAsync(s, Buffer.from(data), Buffer.alloc(64));
      });
    } catch (err) {
      if (err instanceof KeyError) throw err;
      const code = ckr(err);
      throw new KeyError(`sign with ${redactPkcs11Uri(this.ref)} failed: ${code || (err as Error).message}`, UNAVAILABLE.has(code));
    }
  }
}

export interface Pkcs11Options {
  /** Path of the module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** Sessions per token (default 4, libuv's thread-pool size). */
  sessions?: number;
  env?: NodeJS.ProcessEnv;
}

/** Keys on a PKCS#11 token, addressed by RFC 7512 URIs. */
export class Pkcs11KeyProvider implements KeyProvider {
  readonly name = "pkcs11" as const;
  private lib?: pkcs11js.PKCS11;
  private readonly tokens = new Map<string, Token>();

  constructor(private readonly options: Pkcs11Options) {}

  private module(): pkcs11js.PKCS11 {
    this.lib ??= acquireModule(this.options.module);
    return this.lib;
  }

  private token(uri: Pkcs11Uri, ref: string): Token {
    const lib = this.module();
    const slots = lib.C_GetSlotList(true);
    const labels: string[] = [];
    for (const slot of slots) {
      const info = lib.C_GetTokenInfo(slot);
      const label = info.label.trim();
      const serial = info.serialNumber.trim();
      labels.push(label);
      if (uri.token !== undefined && uri.token !== label) continue;
      if (uri.serial !== undefined && uri.serial !== serial) continue;
      if (uri.slotId !== undefined && slot.readUIntLE(0, Math.min(slot.length, 6)) !== uri.slotId) continue;
      const key = `${label}/${serial}`;
      let t = this.tokens.get(key);
      if (!t) {
        t = new Token(lib, slot, label, this.options.sessions ?? 4);
        this.tokens.set(key, t);
      }
      t.login(pinFor(uri, this.options.env));
      return t;
    }
    throw new KeyError(
      `PKCS#11 token ${uri.token !== undefined ? "`" + uri.token + "`" : "of " + redactPkcs11Uri(ref)} not found in ${this.options.module} (tokens present: ${labels.length ? labels.map((l) => "`" + l + "`").join(", ") : "none"})`,
      true,
    );
  }

  private find(lib: pkcs11js.PKCS11, s: Handle, cls: number, uri: Pkcs11Uri): Handle[] {
    const template: pkcs11js.Template = [{ type: pkcs11js.CKA_CLASS, value: cls }];
    if (uri.object !== undefined) template.push({ type: pkcs11js.CKA_LABEL, value: uri.object });
    if (uri.id !== undefined) template.push({ type: pkcs11js.CKA_ID, value: uri.id });
    lib.C_FindObjectsInit(s, template);
    try {
      return lib.C_FindObjects(s, 2);
    } finally {
      lib.C_FindObjectsFinal(s);
    }
  }

  private publicKeyOf(lib: pkcs11js.PKCS11, s: Handle, handle: Handle): KeyObject {
    const [type] = lib.C_GetAttributeValue(s, handle, [{ type: pkcs11js.CKA_KEY_TYPE }]);
    // CK_ULONG in host order (little-endian on every platform we run on).
    const keyType = Number((type!.value as Buffer).readUIntLE(0, Math.min(6, (type!.value as Buffer).length)));
    if (keyType === pkcs11js.CKK_EC) {
      const [params, point] = lib.C_GetAttributeValue(s, handle, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      let q = point!.value as Buffer;
      // CKA_EC_POINT is a DER OCTET STRING around the point (some tokens omit it).
      if (q[0] === 0x04 && q[1] === q.length - 2) q = q.subarray(2);
      else if (q[0] === 0x04 && q[1] === 0x81 && q[2] === q.length - 3) q = q.subarray(3);
      const spki = sequence(sequence(EC_PUBLIC_KEY_OID, params!.value as Buffer), tlv(0x03, Buffer.from([0]), q));
      return createPublicKey({ key: spki, format: "der", type: "spki" });
    }
    if (keyType === CKK_EC_EDWARDS) {
      const [params, point] = lib.C_GetAttributeValue(s, handle, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      if (!ED25519_PARAMS.some((p) => p.equals(params!.value as Buffer))) throw new KeyError(`unsupported Edwards curve ${(params!.value as Buffer).toString("hex")} on the token (only Ed25519)`);
      return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: edwardsPoint(point!.value as Buffer).toString("base64url") }, format: "jwk" });
    }
    if (keyType === pkcs11js.CKK_RSA) {
      const [n, e] = lib.C_GetAttributeValue(s, handle, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
      return createPublicKey({ key: { kty: "RSA", n: (n!.value as Buffer).toString("base64url"), e: (e!.value as Buffer).toString("base64url") }, format: "jwk" });
    }
    throw new KeyError(`unsupported PKCS#11 key type ${keyType}`);
  }

  async open(ref: string): Promise<Signer> {
    const uri = parsePkcs11Uri(ref);
    if (uri.object === undefined && uri.id === undefined) throw new KeyError(`${redactPkcs11Uri(ref)}: names no key (add object=LABEL)`);
    const lib = this.module();
    const token = this.token(uri, ref);
    return token.withSession((s) => {
      const priv = this.find(lib, s, pkcs11js.CKO_PRIVATE_KEY, uri);
      if (priv.length === 0) throw new KeyError(`no private key ${redactPkcs11Uri(ref)} on token \`${token.label}\``, true);
      if (priv.length > 1) throw new KeyError(`${redactPkcs11Uri(ref)} matches several private keys on token \`${token.label}\`; add id=`);
      const pub = this.find(lib, s, pkcs11js.CKO_PUBLIC_KEY, uri);
      if (pub.length !== 1) throw new KeyError(`no public key object for ${redactPkcs11Uri(ref)} on token \`${token.label}\``);
      return new Pkcs11Signer(lib, token, priv[0]!, this.publicKeyOf(lib, s, pub[0]!), ref);
    });
  }

  async generate(ref: string, algorithm: KeyAlgorithm): Promise<Signer> {
    const uri = parsePkcs11Uri(ref);
    if (uri.object === undefined) throw new KeyError(`${redactPkcs11Uri(ref)}: names no key (add object=LABEL)`);
    const lib = this.module();
    const token = this.token(uri, ref);
    await token.withSession(async (s) => {
      if (this.find(lib, s, pkcs11js.CKO_PRIVATE_KEY, uri).length > 0) throw new KeyError(`${redactPkcs11Uri(ref)} already exists on token \`${token.label}\``);
      const id = uri.id ?? createHash("sha1").update(uri.object!).digest();
      const common = [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: uri.object! },
        { type: pkcs11js.CKA_ID, value: id },
      ];
      // The private half never leaves the token: sensitive and not extractable.
      const priv = [...common, { type: pkcs11js.CKA_PRIVATE, value: true }, { type: pkcs11js.CKA_SENSITIVE, value: true }, { type: pkcs11js.CKA_EXTRACTABLE, value: false }, { type: pkcs11js.CKA_SIGN, value: true }];
      const curve = CURVES[algorithm];
      if (curve) {
        await lib.C_GenerateKeyPairAsync(s, { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN }, [...common, { type: pkcs11js.CKA_VERIFY, value: true }, { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(curve, "hex") }], priv);
      } else if (algorithm.startsWith("rsa-")) {
        const bits = Number(algorithm.slice(4));
        await lib.C_GenerateKeyPairAsync(
          s,
          { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
          [...common, { type: pkcs11js.CKA_VERIFY, value: true }, { type: pkcs11js.CKA_MODULUS_BITS, value: bits }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }],
          priv,
        );
      } else if (algorithm === "ed25519") {
        let lastErr: unknown;
        for (const params of ED25519_PARAMS) {
          try {
            await lib.C_GenerateKeyPairAsync(s, { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, [...common, { type: pkcs11js.CKA_VERIFY, value: true }, { type: pkcs11js.CKA_EC_PARAMS, value: params }], priv);
            return;
          } catch (err) {
            lastErr = err;
            // Only a refused curve encoding is worth the second form.
            if (!/CKR_(CURVE_NOT_SUPPORTED|ATTRIBUTE_VALUE_INVALID|DOMAIN_PARAMS_INVALID)/.test((err as Error).message)) break;
          }
        }
        const code = ckr(lastErr);
        if (code === "CKR_MECHANISM_INVALID") throw new KeyError(`PKCS#11 token \`${token.label}\` cannot generate Ed25519 keys (no CKM_EC_EDWARDS_KEY_PAIR_GEN: ${code})`);
        throw new KeyError(`Ed25519 key generation on token \`${token.label}\` failed: ${code || (lastErr as Error).message}`);
      } else {
        throw new KeyError(`PKCS#11 keys of type ${algorithm} are not supported (use ecdsa-p256, ecdsa-p384, rsa-* or ed25519)`);
      }
    });
    return this.open(ref);
  }

  async close(): Promise<void> {
    for (const t of this.tokens.values()) t.close();
    this.tokens.clear();
    if (this.lib) {
      this.lib = undefined;
      releaseModule(this.options.module);
    }
  }
}
