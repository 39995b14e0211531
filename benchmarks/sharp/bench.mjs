// The sharp peer of pixpipe's benchmark.
//
//   node bench.mjs RECIPE_JSON OUT_DIR [CONCURRENCY] < list-of-files
//
// RECIPE_JSON: {"variants": [{"name", "width", "height", "fit": "inside"|"cover", "quality"}]}.
// Every input is read once and each variant is a sharp pipeline on that buffer (sharp's
// idiom: shrink-on-load per output), auto-oriented, stripped, progressive JPEG. CONCURRENCY
// images are in flight at once (default 2). Prints {"images", "failed", "seconds"} as JSON.
import { readFileSync } from "node:fs";
import { readFile, mkdir } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import sharp from "sharp";

sharp.cache(false);
// SHARP_MOZJPEG=1: mozjpeg's settings (trellis quantisation, optimised scans), like pixpipe's.
const MOZJPEG = process.env.SHARP_MOZJPEG === "1";

function pipeline(input, variant) {
  const fit = variant.fit === "cover" ? "cover" : "inside";
  return sharp(input)
    .rotate()
    .resize(variant.width, variant.height, {
      fit,
      position: "centre",
      withoutEnlargement: true,
    })
    .jpeg({ quality: variant.quality, progressive: true, optimiseCoding: true, mozjpeg: MOZJPEG });
}

async function processOne(file, variants, outDir) {
  const input = await readFile(file);
  const stem = basename(file, extname(file));
  for (const variant of variants) {
    await pipeline(input, variant).toFile(join(outDir, variant.name, `${stem}.jpg`));
  }
}

async function main() {
  const [recipeJson, outDir, concurrencyArg] = process.argv.slice(2);
  const { variants } = JSON.parse(recipeJson);
  const concurrency = Number(concurrencyArg ?? 2);
  const stdin = readFileSync(0, "utf8");
  const files = stdin.split("\n").filter(Boolean);
  for (const variant of variants) await mkdir(join(outDir, variant.name), { recursive: true });

  let next = 0;
  let failed = 0;
  const started = process.hrtime.bigint();
  const cpuStarted = process.cpuUsage();
  async function lane() {
    while (next < files.length) {
      const file = files[next++];
      try {
        await processOne(file, variants, outDir);
      } catch (err) {
        failed += 1;
        process.stderr.write(`${file}: ${err.message}\n`);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuStarted);
  const result = {
    images: files.length - failed,
    failed,
    seconds,
    cpu_seconds: (cpu.user + cpu.system) / 1e6,
    sharp: sharp.versions.sharp,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

await main();
