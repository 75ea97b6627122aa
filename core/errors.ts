/**
 * One error type for the whole project, with a closed set of codes and a retryable flag.
 * Adapters (gRPC, CLI) map codes to their own status vocabulary; the core only throws LavieError.
 */
export type ErrorCode =
  | "invalid_argument" // bad input from a user: names the field and what is allowed
  | "not_found"
  | "failed_precondition" // e.g. a model directory that does not satisfy the contract
  | "resource_exhausted"
  | "cancelled"
  | "deadline_exceeded"
  | "unavailable" // transient: a runner or server went away; retry elsewhere
  | "unauthenticated" // no or invalid credentials
  | "permission_denied" // valid credentials, but not for this (e.g. another tenant's job)
  | "data_loss" // a tensor or blob failed its digest/shape check (corrupt or wrong output)
  | "internal";

export class LavieError extends Error {
  override readonly name = "LavieError";
  readonly code: ErrorCode;
  /** The input field or file the error is about, when there is one. */
  readonly field: string | undefined;
  readonly retryable: boolean;
  /** For resource_exhausted: how long the caller should wait before retrying (ms). */
  readonly retryAfterMs: number | undefined;
  /**
   * The request never reached its peer (the connection was refused), so nothing ran there: a
   * retry elsewhere is not a new attempt. Set once, by the transport adapter that can tell.
   */
  readonly undelivered: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      field?: string;
      retryable?: boolean;
      retryAfterMs?: number;
      undelivered?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.field = opts.field;
    this.retryAfterMs = opts.retryAfterMs;
    this.undelivered = opts.undelivered ?? false;
    this.retryable =
      opts.retryable ?? (code === "unavailable" || code === "deadline_exceeded" || code === "data_loss");
  }

  /** Normalises anything thrown at a boundary into a LavieError. */
  static from(err: unknown): LavieError {
    if (err instanceof LavieError) return err;
    if (err instanceof Error) return new LavieError("internal", err.message, { cause: err });
    return new LavieError("internal", String(err));
  }
}

/** Shorthand for the most common error: a named field with a value outside what is allowed. */
export function invalidArgument(field: string, message: string): LavieError {
  return new LavieError("invalid_argument", `${field}: ${message}`, { field });
}
