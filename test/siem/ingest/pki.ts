// Test PKI made with openssl in a temp dir: a CA named like the policies'
// issuer (int-tls), a server certificate for localhost/127.0.0.1, client
// certificates the ingest policy allows or not, and one from an unknown CA.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caCert: string;
  serverKey: string;
  serverCert: string;
  /** paths */
  files: Record<string, string>;
  client(name: string): { key: string; cert: string; keyFile: string; certFile: string };
}

function ossl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "viw-ingest-pki-"));
  const ca = (name: string, cn: string) => {
    ossl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${cn}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  };
  const leaf = (name: string, caName: string, cn: string, ext: string) => {
    ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`], dir);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl(["x509", "-req", "-in", `${name}.csr`, "-CA", `${caName}.crt`, "-CAkey", `${caName}.key`, "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`], dir);
  };
  ca("int-tls", "Test Int TLS CA");
  ca("rogue", "Rogue CA");
  leaf("server", "int-tls", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  leaf("gw1", "int-tls", "gw1.gw.viworks.example", "subjectAltName=DNS:gw1.gw.viworks.example\nextendedKeyUsage=clientAuth\n");
  leaf("backend", "int-tls", "api.viworks.example", "subjectAltName=DNS:api.viworks.example\nextendedKeyUsage=clientAuth\n");
  leaf("stranger", "int-tls", "host.other.example", "subjectAltName=DNS:host.other.example\nextendedKeyUsage=clientAuth\n");
  leaf("rogue-gw", "rogue", "gw2.gw.viworks.example", "subjectAltName=DNS:gw2.gw.viworks.example\nextendedKeyUsage=clientAuth\n");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  const files: Record<string, string> = {};
  for (const n of ["int-tls", "rogue", "server", "gw1", "backend", "stranger", "rogue-gw"]) {
    files[`${n}.crt`] = join(dir, `${n}.crt`);
    files[`${n}.key`] = join(dir, `${n}.key`);
  }
  return {
    dir,
    caCert: read("int-tls.crt"),
    serverKey: read("server.key"),
    serverCert: read("server.crt"),
    files,
    client: (name) => ({ key: read(`${name}.key`), cert: read(`${name}.crt`), keyFile: join(dir, `${name}.key`), certFile: join(dir, `${name}.crt`) }),
  };
}
