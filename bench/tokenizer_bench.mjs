// JS side of the tokenizer bench: writes a ~10 MB mixed corpus (tests/tokenizer/corpus.mjs
// strings, repeated with different seeds) and measures @huggingface/tokenizers on it, single
// thread. usage: node tokenizer_bench.mjs CORPUS_OUT [MB]
import fs from "node:fs";
import { loadReferenceTokenizer } from "../tests/tokenizer/js_reference.mjs";
import { makeCorpus } from "../tests/tokenizer/corpus.mjs";

const out = process.argv[2];
const targetBytes = Number(process.argv[3] ?? 10) * 1e6;
const { tokenizer, tokenizerJson } = loadReferenceTokenizer();
const added = tokenizerJson.added_tokens.map((t) => t.content);
const docs = [];
let bytes = 0;
for (let seed = 1; bytes < targetBytes; seed++) {
  for (const { text } of makeCorpus(added, seed)) {
    docs.push(text);
    bytes += Buffer.byteLength(text);
  }
}
fs.writeFileSync(out, docs.map((d) => JSON.stringify(d)).join("\n") + "\n");
let t0 = performance.now();
let tokens = 0;
const allIds = [];
for (const d of docs) {
  const ids = tokenizer.encode(d, { add_special_tokens: false }).ids;
  tokens += ids.length;
  allIds.push(ids);
}
const encodeS = (performance.now() - t0) / 1e3;
t0 = performance.now();
for (const ids of allIds) if (ids.length) tokenizer.decode(ids);
const decodeS = (performance.now() - t0) / 1e3;
console.log(JSON.stringify({ impl: "js @huggingface/tokenizers", docs: docs.length, bytes, tokens,
  encode_mb_s: bytes / 1e6 / encodeS, decode_mb_s: bytes / 1e6 / decodeS }));
