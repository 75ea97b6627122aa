/**
 * gRPC health checking (grpc.health.v1, grpc-health-check) and server reflection
 * (grpc.reflection.v1 and v1alpha, @grpc/reflection) for the coordinator and the runners.
 *
 * Reflection needs FileDescriptorProtos: @grpc/reflection reads them from a proto-loader package
 * definition's `fileDescriptorProtos`; the protobuf-es descriptors in gen/ carry each file's
 * FileDescriptorProto (`file.proto`), so the definition is built from them (with their imports).
 * Reflection lists the lavie.v1 services given here; grpc.health.v1.Health is served but not
 * described (its descriptors would need @grpc/proto-loader, not a dependency of this project).
 */
import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";

export type { ServingStatus };

/** Health statuses of a server: "" (the whole server) and each named service. */
export class Health {
  private readonly impl: HealthImplementation;

  constructor(
    private readonly services: readonly string[],
    initial: ServingStatus,
  ) {
    const map: Record<string, ServingStatus> = { "": initial };
    for (const s of services) map[s] = initial;
    this.impl = new HealthImplementation(map);
  }

  addToServer(server: grpc.Server): void {
    this.impl.addToServer(server);
  }

  /** Sets the server's and every service's status (never throws). */
  set(status: ServingStatus): void {
    try {
      this.impl.setStatus("", status);
      for (const s of this.services) this.impl.setStatus(s, status);
    } catch {
      // never fails the caller
    }
  }
}

function filesOf(services: readonly DescService[]): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    for (const d of f.dependencies) visit(d);
  };
  for (const s of services) visit(s.file);
  return [...seen.values()];
}

/**
 * Adds server reflection for the given generated services (and the health service). Returns false
 * (and adds nothing) when the descriptors cannot be used.
 */
export function addReflection(server: grpc.Server, services: readonly DescService[]): boolean {
  try {
    const protos = filesOf(services).map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
    const pkg: Record<string, { fileDescriptorProtos: Buffer[] }> = {};
    for (const s of services) pkg[s.typeName] = { fileDescriptorProtos: protos };
    new ReflectionService(pkg as never).addToServer(server);
    return true;
  } catch {
    return false;
  }
}

const attached = new WeakMap<grpc.Server, { health: Health; cleanups: (() => void)[] }>();

/**
 * Adds health checking (initially `initial`) and reflection for `services` to server; `cleanups`
 * run when serverStopping() is called. Returns the Health (also found by the server later).
 */
export function instrumentServer(
  server: grpc.Server,
  services: readonly DescService[],
  initial: ServingStatus,
  cleanups: (() => void)[] = [],
): Health {
  const health = new Health(
    services.map((s) => s.typeName),
    initial,
  );
  health.addToServer(server);
  addReflection(server, services);
  attached.set(server, { health, cleanups });
  return health;
}

/** Sets the server's health status (no-op for a server without instrumentServer). */
export function setServing(server: grpc.Server, status: ServingStatus): void {
  attached.get(server)?.health.set(status);
}

/** NOT_SERVING, and the cleanups registered with instrumentServer run (once). */
export function serverStopping(server: grpc.Server): void {
  const a = attached.get(server);
  if (!a) return;
  a.health.set("NOT_SERVING");
  for (const fn of a.cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // ignore
    }
  }
}
