/**
 * `lavie models ...`: build a project model directory, report parameter counts, verify a directory
 * (project-built or exported real weights) against the contract.
 */
import { type Command, Option } from "commander";
import { buildModelDirectory, DEFAULT_EXTERNAL_DATA_THRESHOLD, paramReport } from "../../../models/build.ts";
import { writeExportManifest } from "../../../models/export_manifest.ts";
import { importLavie } from "../../../models/import/lavie.ts";
import { parseLoraSpec } from "../../../models/import/lora.ts";
import { loadModelDirectory } from "../../../models/loader.ts";
import { manifestFiles } from "../../../models/manifest.ts";
import { formatBytes, formatCount, formatMs, formatShort, table } from "../format.ts";
import { parseBytes, parsePreset, parseRunnablePreset, parseSeed } from "../options.ts";

const out = (s = "") => process.stdout.write(`${s}\n`);

/** --external-data-threshold, shared by build and import. */
const externalDataOption = () =>
  new Option(
    "--external-data-threshold <bytes>",
    "networks with more weight bytes use an external .onnx.data file",
  )
    .argParser(parseBytes)
    .default(DEFAULT_EXTERNAL_DATA_THRESHOLD, "1G");

export function registerModelsCommands(program: Command): void {
  const models = program.command("models").description("build, inspect and verify model directories");

  models
    .command("build")
    .description("build every network of a runnable preset into a model directory (seeded weights)")
    .addOption(
      new Option("--preset <name>", "preset: tiny or small")
        .argParser(parseRunnablePreset)
        .makeOptionMandatory(),
    )
    .addOption(new Option("--out <dir>", "output directory (created if missing)").makeOptionMandatory())
    .addOption(new Option("--seed <n>", "weight seed, integer 0..4294967295").argParser(parseSeed).default(0))
    .addOption(externalDataOption())
    .action(async (o: { preset: string; out: string; seed: number; externalDataThreshold: number }) => {
      out(`building preset ${o.preset} (seed ${o.seed}) into ${o.out}`);
      const summary = await buildModelDirectory(o.preset, o.out, {
        seed: o.seed,
        externalDataThreshold: o.externalDataThreshold,
        onProgress: (e) => {
          if (e.phase !== "done") return;
          const r = e.result;
          out(
            `  [${e.index + 1}/${e.total}] ${r.id.padEnd(14)} ${formatShort(r.parameters).padStart(8)} params  ` +
              `${formatBytes(r.bytes).padStart(10)}  ${formatMs(r.ms)}`,
          );
        },
      });
      out();
      const rows = summary.networks.map((n) => [
        n.id,
        n.kind,
        formatCount(n.parameters),
        n.files.map((f) => f.path).join(" + "),
        formatBytes(n.bytes),
      ]);
      for (const t of summary.tokenizers) rows.push(["tokenizer", "", "", t.path, formatBytes(t.bytes)]);
      out(table(["network", "kind", "parameters", "files", "size"], rows, [2, 4]));
      const params = summary.networks.reduce((a, n) => a + n.parameters, 0);
      out();
      out(
        `${summary.networks.length} networks, ${formatCount(params)} parameters, ${formatBytes(summary.totalBytes)} ` +
          `in ${formatMs(summary.ms)}; manifest: ${summary.dir}/manifest.json`,
      );
    });

  models
    .command("import")
    .description(
      "import the published LaVie weights (pretrained_models/ as the official instructions lay it out) into a model directory",
    )
    .addOption(
      new Option(
        "--from <dir>",
        "the pretrained_models directory (lavie_*.pt, stable-diffusion-v1-4/, stable-diffusion-x4-upscaler/)",
      ).makeOptionMandatory(),
    )
    .addOption(
      new Option("--out <dir>", "model directory to write (created if missing)").makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--vsr-unet-config <file>",
        "the VSR UNet config (LaVie's vsr/configs/unet_3d_config.json format); default: the published one",
      ),
    )
    .addOption(
      new Option(
        "--lora <file[:scale]>",
        "merge a LoRA (SD 1.x: kohya, diffusers or PEFT layout) into the base UNet; repeatable",
      ).argParser((v: string, prev: { file: string; scale: number }[] = []) => [
        ...prev,
        parseLoraSpec(v, "--lora"),
      ]),
    )
    .option("--fp16", "store weights as float16 (half the files, for GPU runners; computed in float32)")
    .addOption(externalDataOption())
    .action(
      async (o: {
        from: string;
        out: string;
        vsrUnetConfig?: string;
        lora?: { file: string; scale: number }[];
        fp16?: boolean;
        externalDataThreshold: number;
      }) => {
        const t0 = performance.now();
        out(`importing ${o.from} into ${o.out}`);
        const summary = await importLavie(o.from, o.out, {
          ...(o.vsrUnetConfig ? { vsrUnetConfig: o.vsrUnetConfig } : {}),
          ...(o.lora ? { lora: o.lora } : {}),
          weightDtype: o.fp16 ? "float16" : "float32",
          externalDataThreshold: o.externalDataThreshold,
          onProgress: (e) => {
            const r = e.result;
            out(
              `  [${e.index + 1}/${e.total}] ${r.id.padEnd(14)} ${formatShort(r.parameters).padStart(8)} params  ` +
                `${formatBytes(r.bytes).padStart(10)}  ${formatMs(r.ms)}`,
            );
          },
        });
        for (const l of summary.lora) out(`  LoRA merged into ${l.network}: ${l.keys.length} weights`);
        const bytes = summary.networks.reduce((a, n) => a + n.bytes, 0);
        out(
          `imported ${summary.networks.length} networks, ${formatBytes(bytes)} in ${formatMs(performance.now() - t0)}; ` +
            `manifest: ${summary.dir}/manifest.json`,
        );
      },
    );

  models
    .command("params")
    .description("parameter counts per network of a preset (no weights are built; works for lavie)")
    .addOption(
      new Option("--preset <name>", "preset: tiny, small or lavie")
        .argParser(parsePreset)
        .makeOptionMandatory(),
    )
    .option("--json", "print JSON instead of a table")
    .action((o: { preset: string; json?: boolean }) => {
      const report = paramReport(o.preset);
      if (o.json) {
        out(JSON.stringify(report, null, 2));
        return;
      }
      out(`preset ${report.preset}`);
      const rows = report.rows.map((r) => [
        r.id,
        r.kind,
        formatCount(r.parameters),
        formatShort(r.parameters),
      ]);
      rows.push(["total", "", formatCount(report.total), formatShort(report.total)]);
      out(table(["network", "kind", "parameters", ""], rows, [2, 3]));
    });

  models
    .command("verify")
    .description("validate a model directory against the contract (files, hashes, ONNX I/O, tokenizers)")
    .argument("<dir>", "model directory (contains manifest.json)")
    .option("--skip-hashes", "check file sizes only, not SHA-256 (faster for large exports)")
    .action(async (dir: string, o: { skipHashes?: boolean }) => {
      const t0 = performance.now();
      const m = await loadModelDirectory(dir, { verifyHashes: !o.skipHashes });
      const files = manifestFiles(m.manifest);
      const bytes = files.reduce((a, f) => a + f.bytes, 0);
      const rows = Object.values(m.networks).map((n) => [
        n!.id,
        n!.kind,
        formatCount(n!.parameters),
        n!.contract.inputs.map((t) => `${t.name}[${t.shape.join(",")}]`).join(" "),
      ]);
      out(table(["network", "kind", "parameters", "inputs"], rows, [2]));
      out();
      for (const s of Object.values(m.stages)) {
        const nets = [s!.text, s!.unet, s!.vaeEncoder, s!.vaeDecoder].filter((n) => n).map((n) => n!.id);
        out(
          `stage ${s!.name}: ${nets.join(", ")}; tokenizer ${s!.tokenizerPath} (${s!.tokenizer.vocabSize} tokens)`,
        );
      }
      out();
      const what = o.skipHashes ? "sizes checked, hashes skipped" : "sizes and sha256 checked";
      out(
        `OK: ${dir} (preset ${m.manifest.preset}): ${files.length} files, ${formatBytes(bytes)}, ${what}, ` +
          `contracts match, in ${formatMs(performance.now() - t0)}`,
      );
    });

  models
    .command("manifest")
    .description(
      "write manifest.json for exported networks (<id>.onnx, tokenizer.json) in DIR, then verify it",
    )
    .argument("<dir>", "directory of exported .onnx files")
    .addOption(
      new Option("--preset <name>", "preset whose configs and defaults apply (lavie for real weights)")
        .argParser(parsePreset)
        .default("lavie"),
    )
    .action(async (dir: string, o: { preset: string }) => {
      const m = await writeExportManifest(dir, o.preset);
      out(
        `wrote ${dir}/manifest.json: networks ${Object.keys(m.networks).join(", ")}; stages ${Object.keys(m.stages).join(", ")}`,
      );
      await loadModelDirectory(dir);
      out(`OK: ${dir} satisfies the contract`);
    });
}
