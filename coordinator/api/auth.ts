/**
 * The client API's authentication port: turns a call's metadata into a Principal or refuses it
 * (LavieError "unauthenticated"). Implementations: NO_AUTH (every caller is the default tenant) and
 * the API-key / JWT authenticator in transport/security. Authorization (which jobs a principal may
 * touch) is the service's: coordinator/api/service.ts.
 */
import type * as grpc from "@grpc/grpc-js";
import { ANONYMOUS, type Principal } from "../../core/tenancy.ts";

export interface Authenticator {
  authenticate(metadata: grpc.Metadata): Promise<Principal>;
}

export const NO_AUTH: Authenticator = {
  authenticate: () => Promise.resolve(ANONYMOUS),
};
