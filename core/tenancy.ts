/**
 * Who is calling: the tenant a credential belongs to. The client API authenticates every call
 * (coordinator/api/auth.ts); jobs are owned by a tenant, admission and fair scheduling count per
 * tenant. Without authentication every caller is the "default" tenant with admin rights.
 */
export interface Principal {
  /** Tenant name: 1-63 characters of [a-z0-9._-], starting and ending with a letter or digit. */
  readonly tenant: string;
  /** Admins may list and act on every tenant's jobs. */
  readonly admin: boolean;
  /** How the caller was authenticated. */
  readonly method: "none" | "api-key" | "jwt" | "mtls";
  /** The credential's subject (API key name, JWT "sub", certificate CN), for logs; never a secret. */
  readonly subject: string;
}

export const DEFAULT_TENANT = "default";

/** The caller when authentication is off. */
export const ANONYMOUS: Principal = {
  tenant: DEFAULT_TENANT,
  admin: true,
  method: "none",
  subject: "anonymous",
};

export const TENANT_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;

export type Priority = "low" | "normal" | "high";
export const PRIORITIES: readonly Priority[] = ["low", "normal", "high"];
/** Higher runs first. */
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { low: 0, normal: 1, high: 2 };
