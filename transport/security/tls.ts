/**
 * gRPC TLS credentials from PEM files, checked at start-up: a missing file, a file that is not PEM,
 * a key that does not match its certificate or an expired certificate is an invalid_argument
 * LavieError naming the variable and the file (never the file's content).
 *
 *   const creds = serverTls({ cert: pemFile("LAVIE_TLS_CERT_FILE", path), key: ..., clientCa: ... });
 *   server.bindAsync(address, creds, ...);
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { configError } from "./watched-file.ts";

/** A PEM file's content and where it came from (for errors). */
export interface PemFile {
  readonly variable: string;
  readonly path: string;
  readonly pem: Buffer;
}

const BEGIN = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  "private key": /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/,
};

/** Reads a PEM file; kind "certificate" also parses every certificate in it (a CA bundle or a chain). */
export function pemFile(variable: string, path: string, kind: "certificate" | "private key"): PemFile {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    throw configError(
      variable,
      `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? "read error"})`,
      err,
    );
  }
  const text = pem.toString("utf8");
  if (!BEGIN[kind].test(text)) {
    throw configError(
      variable,
      `${path} is not a PEM ${kind} (no "-----BEGIN ${kind === "certificate" ? "CERTIFICATE" : "PRIVATE KEY"}-----" line)`,
    );
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw configError(variable, `${path} is an encrypted private key; give an unencrypted one`);
  }
  if (kind === "certificate") {
    for (const block of text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []) {
      try {
        new X509Certificate(block);
      } catch (err) {
        throw configError(variable, `${path}: a certificate does not parse (${(err as Error).message})`);
      }
    }
  } else {
    try {
      createPrivateKey(pem);
    } catch (err) {
      throw configError(variable, `${path}: the private key does not parse (${(err as Error).message})`);
    }
  }
  return { variable, path, pem };
}

/** The first certificate of a PEM file (a leaf before its chain). */
function leaf(f: PemFile): X509Certificate {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(f.pem.toString("utf8"));
  return new X509Certificate(block![0]);
}

/** Checks that the key belongs to the certificate and the certificate is valid now. */
export function checkKeyPair(cert: PemFile, key: PemFile, now = Date.now()): void {
  const c = leaf(cert);
  if (!c.checkPrivateKey(createPrivateKey(key.pem))) {
    throw configError(
      key.variable,
      `${key.path}: the private key does not match the certificate in ${cert.variable} (${cert.path})`,
    );
  }
  if (Date.parse(c.validTo) < now) {
    throw configError(cert.variable, `${cert.path}: the certificate expired on ${c.validTo}`);
  }
  if (Date.parse(c.validFrom) > now + 5 * 60_000) {
    throw configError(cert.variable, `${cert.path}: the certificate is not valid before ${c.validFrom}`);
  }
}

export interface ServerTlsFiles {
  cert: PemFile;
  key: PemFile;
  /** CA bundle for client certificates: when given, clients must present a certificate it issued (mTLS). */
  clientCa?: PemFile;
}

export function serverTls(f: ServerTlsFiles): grpc.ServerCredentials {
  checkKeyPair(f.cert, f.key);
  return grpc.ServerCredentials.createSsl(
    f.clientCa?.pem ?? null,
    [{ cert_chain: f.cert.pem, private_key: f.key.pem }],
    f.clientCa !== undefined,
  );
}

export interface ChannelTlsFiles {
  /** CA bundle verifying the server (default: the system's roots). */
  ca?: PemFile;
  /** Client certificate and key (mTLS). */
  cert?: PemFile;
  key?: PemFile;
}

export function channelTls(f: ChannelTlsFiles): grpc.ChannelCredentials {
  if ((f.cert === undefined) !== (f.key === undefined)) {
    const missing = f.cert ? "key" : "certificate";
    const given = (f.cert ?? f.key)!;
    throw configError(given.variable, `a client ${missing} is needed too (mTLS needs both)`);
  }
  if (f.cert && f.key) checkKeyPair(f.cert, f.key);
  return grpc.credentials.createSsl(f.ca?.pem ?? null, f.key?.pem ?? null, f.cert?.pem ?? null);
}

/** The names a peer certificate was issued for: its subject CN and DNS subject alternative names. */
export function certificateNames(cert: PeerCertificate | undefined): string[] {
  if (!cert || Object.keys(cert).length === 0) return [];
  const names: string[] = [];
  const cn = cert.subject?.CN;
  if (typeof cn === "string") names.push(cn);
  else if (Array.isArray(cn)) names.push(...(cn as string[]));
  for (const part of (cert.subjectaltname ?? "").split(/,\s*/)) {
    if (part.startsWith("DNS:")) names.push(part.slice(4));
  }
  return names;
}
