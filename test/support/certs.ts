/**
 * A throwaway certificate authority for tests, made with the openssl CLI in a temporary directory:
 * EC P-256 keys, one day of validity, SANs as asked (default DNS:localhost, IP:127.0.0.1).
 *
 *   const ca = createCertAuthority();
 *   const server = ca.issue("lavie-coordinator");              // serverAuth + clientAuth
 *   const other = ca.issue("intruder", { dns: [] });
 *   ... ca.caFile, server.certFile, server.keyFile ...
 *   ca.remove();
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const OPENSSL = process.env.OPENSSL_BIN ?? "openssl";

export interface IssuedCert {
  certFile: string;
  keyFile: string;
}

export interface IssueOptions {
  /** DNS SANs (default ["localhost"]). */
  dns?: string[];
  /** IP SANs (default ["127.0.0.1"]). */
  ips?: string[];
  /** Validity in days (default 1). */
  days?: number;
}

export interface CertAuthority {
  readonly dir: string;
  readonly caFile: string;
  issue(commonName: string, opts?: IssueOptions): IssuedCert;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

export function createCertAuthority(name = "lavie-test-ca"): CertAuthority {
  const dir = mkdtempSync(join(tmpdir(), "lavie-certs-"));
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      caKey,
      "-out",
      caFile,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  let serial = 1;
  return {
    dir,
    caFile,
    issue(commonName, opts = {}) {
      const base = join(dir, `${commonName.replace(/[^A-Za-z0-9.-]/g, "_")}-${serial}`);
      const keyFile = `${base}.key`;
      const csr = `${base}.csr`;
      const certFile = `${base}.pem`;
      const ext = `${base}.ext`;
      const sans = [
        ...(opts.dns ?? ["localhost"]).map((d) => `DNS:${d}`),
        ...(opts.ips ?? ["127.0.0.1"]).map((i) => `IP:${i}`),
      ];
      writeFileSync(
        ext,
        [
          "basicConstraints=CA:FALSE",
          "keyUsage=critical,digitalSignature,keyEncipherment",
          "extendedKeyUsage=serverAuth,clientAuth",
          ...(sans.length ? [`subjectAltName=${sans.join(",")}`] : []),
        ].join("\n"),
      );
      openssl(
        [
          "req",
          "-new",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          keyFile,
          "-out",
          csr,
          "-subj",
          `/CN=${commonName}`,
        ],
        dir,
      );
      const args = [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        caFile,
        "-CAkey",
        caKey,
        "-set_serial",
        String(serial++),
        "-out",
        certFile,
        "-extfile",
        ext,
        "-days",
        String(opts.days ?? 1),
      ];
      openssl(args, dir);
      return { certFile, keyFile };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
