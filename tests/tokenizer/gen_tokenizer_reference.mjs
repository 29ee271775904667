// Writes the expected ids of the tokenizer corpus (corpus.mjs) as computed by the JS reference,
// @huggingface/tokenizers, on the DeepSeek-V3 tokenizer.json; one JSON object per line:
//   {"category", "text", "ids", "unassigned"?}  encode with add_special_tokens=false;
//                                               "unassigned": code points of `text` that are
//                                               unassigned in node's Unicode version
//   {"category": "decode", "ids", "text"}      decode of random ids
// usage: node gen_tokenizer_reference.mjs OUT_FILE
import fs from "node:fs";
import { loadReferenceTokenizer, rng } from "./js_reference.mjs";
import { makeCorpus } from "./corpus.mjs";

const out = process.argv[2];
if (!out) throw new Error("usage: node gen_tokenizer_reference.mjs OUT_FILE");
const { tokenizer, tokenizerJson } = loadReferenceTokenizer();
const added = tokenizerJson.added_tokens.map((t) => t.content);
const lines = [];
for (const { category, text } of makeCorpus(added)) {
  const ids = text.length ? tokenizer.encode(text, { add_special_tokens: false }).ids : [];
  const unassigned = [...text].filter((c) => !/\p{Assigned}/u.test(c)).map((c) => c.codePointAt(0));
  lines.push(JSON.stringify(unassigned.length ? { category, text, ids, unassigned } : { category, text, ids }));
}
// Decode of random non-added ids (single byte tokens included, so broken UTF-8 appears).
const addedIds = new Set(tokenizerJson.added_tokens.map((t) => t.id));
const vocabSize = Object.keys(tokenizerJson.model.vocab).length;
const r = rng(7);
for (let i = 0; i < 500; i++) {
  const ids = [];
  const n = r.int(1, 30);
  while (ids.length < n) {
    const id = r.next() < 0.3 ? r.int(0, 400) : r.int(0, vocabSize - 1);
    if (!addedIds.has(id)) ids.push(id);
  }
  lines.push(JSON.stringify({ category: "decode", ids, text: tokenizer.decode(ids) }));
}
fs.writeFileSync(out, lines.join("\n") + "\n");
console.log(`wrote ${lines.length} reference lines to ${out}`);
