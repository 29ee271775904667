// Generates the tokenizer test corpus: strings in every category issue 4 names, from a seeded
// PRNG (the same strings on every run). Used by gen_tokenizer_reference.mjs and the bench.
import { rng } from "./js_reference.mjs";

const WORDS = (
  "the of and to in is that it was for on are as with his they at be this from have or by " +
  "one had not but what all were when we there can an your which their said if do will each " +
  "about how up out them then she many some so these would other into has more her two like " +
  "him see time could no make than first been its who now people my made over did down only " +
  "way find use may water long little very after words called just where most know get through " +
  "back much before go good new write our used me man too any day same right look think also " +
  "around another came come work three word must because does part even place well such here " +
  "take why things help put years different away again off went old number great tell men say " +
  "small every found still between name should Mr home big give air line set own under read " +
  "tokenizer serving cluster DeepSeek latency throughput Kubernetes GPU transformer attention " +
  "naïve café résumé Zürich São Paulo Ελληνικά русский язык Türkçe Việt Nam"
).split(" ");
const CONTRACTIONS = ["don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "can't", "O'Neil", "'quoted'"];
const PUNCT = [".", ",", "!", "?", ";", ":", "...", " -", " —", "…", "!?", ")", "\"", "'"];

function prose(r) {
  const n = r.int(3, 40);
  let s = "";
  for (let i = 0; i < n; i++) {
    let w = r.next() < 0.08 ? r.pick(CONTRACTIONS) : r.pick(WORDS);
    if (i === 0 || r.next() < 0.1) w = w[0].toUpperCase() + w.slice(1);
    if (r.next() < 0.05) w = String(r.int(0, 100000));
    if (r.next() < 0.03) w = "(" + w + ")";
    s += (i ? " " : "") + w;
    if (r.next() < 0.12) s += r.pick(PUNCT);
  }
  return s + r.pick([".", "!", "?", "", "\n", ".\n\n"]);
}

const IDENTS = ["x", "i", "count", "buffer_size", "kMaxTokens", "getValue", "self", "std::vector",
  "absl::Status", "ptr", "_private", "__init__", "HTTPServer", "json", "np", "tf", "a1b2", "résultat"];
function code(r) {
  const id = () => r.pick(IDENTS);
  const num = () => String(r.int(0, r.pick([9, 99, 9999, 1e9])));
  const indent = () => r.pick(["", "  ", "    ", "\t", "\t\t", "        "]);
  const templates = [
    () => `${indent()}for (int ${id()} = 0; ${id()} < ${num()}; ++${id()}) {\n${indent()}  ${id()} += ${num()};\n${indent()}}`,
    () => `def ${id()}(${id()}, ${id()}=None):\n    return [${id()} ** 2 for ${id()} in range(${num()})]`,
    () => `const ${id()} = await fetch("https://example.com/api/v${num()}?q=${id()}&n=${num()}");`,
    () => `{"${id()}": ${num()}, "${id()}": [${num()}, ${num()}], "nested": {"k": "v\\n"}}`,
    () => `#include <${id()}.h>\n#define ${id().toUpperCase()}(x) ((x) << ${num()})`,
    () => `$ ls -la /usr/lib | grep -E '^d.*${id()}' && echo "$${id().toUpperCase()}" >> out.log`,
    () => `<div class="${id()}"><span id='${id()}'>${prose(r)}</span></div>`,
    () => `SELECT ${id()}, COUNT(*) FROM t WHERE ${id()} >= ${num()} GROUP BY 1;`,
    () => `${indent()}if ${id()} != nil && ${id()}.${id()}() {\r\n${indent()}\treturn fmt.Errorf("%w", err)\r\n}`,
    () => `// TODO(${id()}): ${prose(r)}\n/* ${id()} */ x=${num()}+${num()}*(${num()}-${num()})/${num()};`,
    () => `    ${id()}->${id()}[${num()}] = 0x${r.int(0, 0xffffff).toString(16)};  # ${id()}`,
  ];
  let s = "";
  const n = r.int(1, 4);
  for (let i = 0; i < n; i++) s += (i ? r.pick(["\n", "\n\n", "\r\n", "\n    "]) : "") + r.pick(templates)();
  return s;
}

const cp = (c) => String.fromCodePoint(c);
function run(r, ranges, lo, hi) {
  let s = "";
  const n = r.int(lo, hi);
  for (let i = 0; i < n; i++) {
    const [a, b] = r.pick(ranges);
    s += cp(r.int(a, b));
  }
  return s;
}
function mixWith(r, chunks) {
  return chunks.map((c) => c + r.pick(["", " ", "，", "。", ", ", "\n", "1", "abc", "「", "」"])).join("");
}

const CJK_IN = [[0x4e00, 0x9fa5]];
const CJK_OUT = [[0x9fa6, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0xf900, 0xfaff],
  [0xac00, 0xd7a3], [0x3000, 0x303f], [0xff01, 0xff5e], [0x2f00, 0x2fd5], [0x3100, 0x312f]];
const KANA = [[0x3041, 0x3096], [0x30a1, 0x30fa], [0x3099, 0x309f], [0x30fb, 0x30ff],
  [0xff66, 0xff9d], [0x31f0, 0x31ff]];
function cjkIn(r) { return mixWith(r, [run(r, CJK_IN, 1, 30), run(r, CJK_IN, 0, 20)]); }
function cjkOut(r) { return mixWith(r, [run(r, CJK_OUT, 1, 20), run(r, CJK_IN.concat(CJK_OUT), 0, 20)]); }
function kana(r) { return mixWith(r, [run(r, KANA, 1, 20), run(r, KANA.concat(CJK_IN), 1, 20), run(r, KANA, 0, 5)]); }

const EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "❤", "🇯🇵", "🇺🇸", "🏳️‍🌈", "👨‍👩‍👧‍👦", "👩🏾‍💻",
  "🧑‍🤝‍🧑", "1️⃣", "#️⃣", "©️", "™", "🫠", "🦀", "🐍", "🤷‍♀️", "👁️‍🗨️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✈️", "⭐", "🔥🔥🔥"];
function emoji(r) {
  let s = "";
  const n = r.int(1, 12);
  for (let i = 0; i < n; i++) s += r.pick(EMOJI) + (r.next() < 0.4 ? r.pick([" ", "", "ok", "\n", "!", "\u200d"]) : "");
  return s;
}

const MARKS = [[0x300, 0x36f], [0x1ab0, 0x1abd], [0x20d0, 0x20f0], [0xfe20, 0xfe2f]];
const SCRIPTS_WITH_MARKS = ["नमस्ते दुनिया", "สวัสดีครับ", "مَرْحَبًا بِالْعَالَمِ", "שָׁלוֹם", "ខ្មែរ", "한국어 ㅎㅏㄴ", "Tiếng Việt",
  "e\u0301", "n\u0303o", "A\u030a", "ä", "ﬁ", "Å", "ǅ"];
function marks(r) {
  let s = "";
  const n = r.int(1, 8);
  for (let i = 0; i < n; i++) {
    if (r.next() < 0.5) s += r.pick(SCRIPTS_WITH_MARKS);
    else s += r.pick(["a", "Z", " ", "1", "x", "中", "-"]) + run(r, MARKS, 1, r.pick([1, 3, 12]));
    s += r.pick(["", " ", ".", "\n"]);
  }
  return s;
}

const DIGIT_SETS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹¼½¾", "ⅠⅡⅢⅫ", "①②③", "𝟎𝟏𝟐"];
function digits(r, len) {
  const set = r.next() < 0.7 ? DIGIT_SETS[0] : r.pick(DIGIT_SETS);
  const chars = [...set];
  let d = "";
  for (let i = 0; i < len; i++) d += r.pick(chars);
  return r.pick(["", " ", "x", "$", "v", "a ", "-", "("]) + d + r.pick(["", " ", ".", "%", "px", ",000", ".5", "e10", ")"]);
}

const WS = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u000b", "\u000c", "\u00a0", "\u3000",
  "\u2028", "\u2029", "\u0085", "\u180e", "\ufeff", "\u200b", "\u2003", "\u202f", "\u205f", "\u1680"];
function whitespace(r) {
  let s = r.next() < 0.3 ? r.pick(WS) : "";
  const n = r.int(1, 10);
  for (let i = 0; i < n; i++) {
    s += r.pick(["word", "x", "中文", "1", "!", "", "ab cd", "é"]);
    let w = "";
    const k = r.int(1, 6);
    for (let j = 0; j < k; j++) w += r.pick(WS);
    s += w;
  }
  return s;
}
function crlf(r) {
  let s = "";
  const n = r.int(1, 10);
  for (let i = 0; i < n; i++) s += r.pick([prose(r), "line", " ", "x = 1;", "中文", "", "  indented"]) + r.pick(["\r\n", "\n", "\r", "\r\n\r\n", "\n\r", " \r\n", "\r\r\n", "\t\r\n"]);
  return s;
}

function specials(r, addedTokens) {
  const tok = () => r.pick(addedTokens);
  let s = "";
  const n = r.int(1, 6);
  for (let i = 0; i < n; i++) {
    const roll = r.next();
    if (roll < 0.4) s += tok();
    else if (roll < 0.5) s += tok().slice(0, r.int(1, 5));  // a broken prefix
    else if (roll < 0.6) s += " " + tok() + " ";
    else s += r.pick([prose(r), "x", "\n", " ", "<", "<|User|>", "<｜", "｜>", "<think>", "</think>", "中文"]);
  }
  return s;
}

function longWord(r) {
  const len = r.pick([64, 100, 257, 1000, 3000, r.int(50, 5000)]);
  const kind = r.int(0, 7);
  let s = "";
  const letters = "abcdefghijklmnopqrstuvwxyz";
  for (let i = 0; s.length < len; i++) {
    switch (kind) {
      case 0: s += "a"; break;
      case 1: s += letters[r.int(0, 25)]; break;
      case 2: s += cp(r.int(0x4e00, 0x9fa5)); break;
      case 3: s += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[r.int(0, 63)]; break;
      case 4: s += r.pick(["pneumono", "ultra", "microscopic", "silico", "volcano", "coniosis"]); break;
      case 5: s += r.pick(EMOJI); break;
      case 6: s += r.pick(["-", "=", "*", "_", "~", "#"]); break;
      default: s += cp(r.int(0x430, 0x44f)); break;
    }
  }
  return r.next() < 0.5 ? s : " " + s + r.pick(["", ".", " end"]);
}

function randomUnicode(r) {
  let s = "";
  const n = r.int(1, 40);
  for (let i = 0; i < n; i++) {
    const roll = r.next();
    let c;
    if (roll < 0.3) c = r.int(0x20, 0x7e);
    else if (roll < 0.75) c = r.int(0x80, 0xffff);
    else if (roll < 0.95) c = r.int(0x10000, 0x3ffff);
    else c = r.int(0x40000, 0x10ffff);
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    s += cp(c);
  }
  return s;
}

// Returns [{category, text}], at least `perCategory`-proportional counts.
export function makeCorpus(addedTokens, seed = 20240807) {
  const r = rng(seed);
  const out = [];
  const add = (category, count, fn) => {
    for (let i = 0; i < count; i++) out.push({ category, text: fn(i) });
  };
  add("prose", 600, () => prose(r));
  add("code", 500, () => code(r));
  add("cjk_in_range", 300, () => cjkIn(r));
  add("cjk_outside_range", 300, () => cjkOut(r));
  add("kana", 300, () => kana(r));
  add("emoji_zwj", 300, () => emoji(r));
  add("combining_marks", 300, () => marks(r));
  add("digit_runs", 400, (i) => digits(r, 1 + (i % 80)));
  add("whitespace_runs", 400, () => whitespace(r));
  add("crlf_mix", 300, () => crlf(r));
  add("special_token_text", 400, () => specials(r, addedTokens));
  add("long_words", 200, () => longWord(r));
  add("random_unicode", 800, () => randomUnicode(r));
  add("mixed", 300, () => [prose(r), code(r), cjkIn(r), emoji(r), kana(r), digits(r, r.int(1, 12))].filter(() => r.next() < 0.5).join(r.pick([" ", "\n", ""])));
  out.push({ category: "edge", text: "" }, { category: "edge", text: " " }, { category: "edge", text: "\n" });
  return out;
}
