/**
 * Static checks of the container images in deploy/ (no Docker engine can build them here): each
 * image's entrypoint is the command the Helm chart runs, the runtime user is the chart's non-root
 * uid, dependencies come from `npm ci --omit=dev`, CPU images skip onnxruntime-node's CUDA
 * download and the GPU image does not, and the per-Dockerfile ignore files match .dockerignore.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { CHART_DIR, REPO_ROOT } from "../support/helm.ts";

const DEPLOY = join(REPO_ROOT, "deploy");
const IMAGES = {
  coordinator: { main: "coordinator/main.ts", gpu: false },
  "runner-cpu": { main: "stage-runners/main.ts", gpu: false },
  "runner-gpu": { main: "stage-runners/main.ts", gpu: true },
} as const;

function read(file: string): string {
  return readFileSync(file, "utf8");
}

for (const [image, { main, gpu }] of Object.entries(IMAGES)) {
  test(`deploy/Dockerfile.${image}`, () => {
    const df = read(join(DEPLOY, `Dockerfile.${image}`));
    const entrypoint = df.match(/^ENTRYPOINT (.*)$/m)?.[1];
    assert.deepEqual(JSON.parse(entrypoint ?? "null"), ["node", "--import", "tsx", main]);
    assert.match(df, /^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    assert.match(df, /npm ci --omit=dev/);
    assert.match(df, /^USER 10001:10001$/m);
    assert.ok(!/^USER (root|0)\b/m.test(df), "no stage switches back to root after USER");
    // The main.ts exists and every copied folder exists.
    assert.ok(existsSync(join(REPO_ROOT, main)));
    for (const m of df.matchAll(/^COPY (?!--from)(?:--\S+ )*(\S+) /gm)) {
      for (const src of m[1]!.split(" "))
        assert.ok(existsSync(join(REPO_ROOT, src)), `${image}: COPY ${src}`);
    }
    if (gpu) {
      assert.ok(!/ONNXRUNTIME_NODE_INSTALL=/.test(df), "the GPU image leaves ONNXRUNTIME_NODE_INSTALL unset");
      assert.match(df, /^ARG CUDA_IMAGE=nvidia\/cuda:12\.[0-9.]+-cudnn-runtime-/m);
      assert.match(df, /libonnxruntime_providers_cuda\.so/);
    } else {
      assert.match(df, /^ENV ONNXRUNTIME_NODE_INSTALL=skip$/m);
    }
    assert.equal(read(join(DEPLOY, `Dockerfile.${image}.dockerignore`)), read(join(DEPLOY, ".dockerignore")));
  });
}

test("the chart's commands and uid match the images", () => {
  const values = read(join(CHART_DIR, "values.yaml"));
  assert.match(values, /runAsUser: 10001/);
  const templates = join(CHART_DIR, "templates");
  assert.match(
    read(join(templates, "coordinator.yaml")),
    /\["node", "--import", "tsx", "coordinator\/main\.ts"\]/,
  );
  assert.match(
    read(join(templates, "runners.yaml")),
    /\["node", "--import", "tsx", "stage-runners\/main\.ts"\]/,
  );
});
