// The common Node.js pattern a user would otherwise write: a queue of frames, 5 concurrent
// writes, one file per frame. Each frame is made durable (open, write, fdatasync, close) and
// the directory is fsync'd at the end, so it is compared with framerec like for like.
//
// usage: node node_writer.js OUT_DIR FRAMES FRAME_BYTES [CONCURRENCY=5]
// prints JSON: frames, bytes, seconds, write latency percentiles (ns) per frame file.
"use strict";
const fs = require("fs");
const path = require("path");

const [outDir, framesArg, bytesArg, concArg] = process.argv.slice(2);
const frames = Number(framesArg);
const frameBytes = Number(bytesArg);
const concurrency = Number(concArg || 5);
fs.mkdirSync(outDir, { recursive: true });

// Frame content: the same table-shift scheme as framerec's synthetic source (cheap to make).
const table = Buffer.alloc(65521 * 2);
for (let j = 0; j < 65521; j++) table.writeUInt16LE((j * 2654435761) % 2048, j * 2);
function frame(seq) {
  const out = Buffer.allocUnsafe(frameBytes);
  let k = ((seq * 7919) % 65521) * 2;
  for (let at = 0; at < frameBytes; ) {
    const n = Math.min(table.length - k, frameBytes - at);
    table.copy(out, at, k, k + n);
    at += n;
    k = 0;
  }
  return out;
}

const latencies = [];
let next = 0;
async function worker() {
  while (next < frames) {
    const seq = next++;
    const data = frame(seq);
    const started = process.hrtime.bigint();
    const fh = await fs.promises.open(path.join(outDir, `d-${seq}.pgm`), "w");
    await fh.writeFile(data);
    await fh.datasync();
    await fh.close();
    latencies.push(Number(process.hrtime.bigint() - started));
  }
}

(async () => {
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const dir = fs.openSync(outDir, "r");
  fs.fsyncSync(dir);
  fs.closeSync(dir);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)];
  console.log(JSON.stringify({
    frames, bytes: frames * frameBytes, seconds,
    p50: q(0.5), p99: q(0.99), p999: q(0.999), max: latencies[latencies.length - 1],
  }));
})();
