// The sharp side of pixpipe's rate-quality study (benchmarks/quality.py).
//
//   node quality.mjs JOB_JSON
//
// JOB_JSON: {"image": PNG, "out": DIR, "qualities": [q...], "write": bool,
//            "encoders": [{"name", "format": "jpeg"|"webp"|"avif", "options": {...}}]}.
// The PNG is decoded once to raw pixels; every encode starts from those pixels, so the clock
// (process.cpuUsage around one toBuffer, one libvips thread) sees the encoder and little else.
// Prints one JSON line per encode: {"encoder", "fmt", "q", "bytes", "cpu_ms", "path"}.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import sharp from "sharp";

sharp.cache(false);
sharp.concurrency(1);

const EXT = { jpeg: "jpg", webp: "webp", avif: "avif" };

async function main() {
  const job = JSON.parse(process.argv[2]);
  const { data, info } = await sharp(job.image).raw().toBuffer({ resolveWithObject: true });
  const raw = { width: info.width, height: info.height, channels: info.channels };
  for (const encoder of job.encoders) {
    for (const q of job.qualities) {
      const started = process.cpuUsage();
      const out = await sharp(data, { raw })[encoder.format]({ ...encoder.options, quality: q })
        .toBuffer();
      const cpu = process.cpuUsage(started);
      let path = null;
      if (job.write) {
        path = join(job.out, `${encoder.name}-q${q}.${EXT[encoder.format]}`);
        await writeFile(path, out);
      }
      const cpu_ms = (cpu.user + cpu.system) / 1000;
      const row = { encoder: encoder.name, fmt: encoder.format, q, bytes: out.length, cpu_ms, path };
      process.stdout.write(JSON.stringify(row) + "\n");
    }
  }
}

await main();
