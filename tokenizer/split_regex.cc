#include "tokenizer/split_regex.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "tokenizer/unicode_gc_table.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

// Unicode White_Space (PropList.txt), which is Oniguruma's \s for Unicode strings.
constexpr char kWhiteSpaceSet[] =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Per-thread PCRE2 match state: match data big enough for one match, and a JIT stack.
struct MatchState {
  MatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
    if (jit_stack != nullptr) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchState() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(context);
    if (jit_stack != nullptr) pcre2_jit_stack_free(jit_stack);
  }
  pcre2_match_data* match_data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
};

MatchState& ThreadMatchState() {
  thread_local MatchState state;
  return state;
}

absl::Status Unsupported(absl::string_view what, absl::string_view pattern) {
  return absl::UnimplementedError(
      absl::StrCat("pre-tokenizer regex: ", what, " is not supported (pattern: ", pattern, ")"));
}

// A set of General_Category values: bit k is GeneralCategory k.
using GcMask = uint32_t;

// The General_Category value or group a \p{..} name means, compared loosely as PCRE2 and
// Oniguruma do (case, spaces, '_' and '-' ignored); 0 for other properties (scripts, binary
// properties, Any), which keep PCRE2's tables.
GcMask GcMaskOf(absl::string_view name) {
  // GeneralCategory order.
  static constexpr const char* kNames[] = {
      "lu", "ll", "lt", "lm", "lo", "mn", "mc", "me", "nd", "nl", "no", "pc", "pd", "ps", "pe",
      "pi", "pf", "po", "sm", "sc", "sk", "so", "zs", "zl", "zp", "cc", "cf", "cs", "co", "cn"};
  std::string key;
  for (const char c : name) {
    if (c != ' ' && c != '_' && c != '-') key.push_back(absl::ascii_tolower(c));
  }
  if (key == "l&" || key == "lc") {
    return GcMask{1} << static_cast<int>(GeneralCategory::kLu) |
           GcMask{1} << static_cast<int>(GeneralCategory::kLl) |
           GcMask{1} << static_cast<int>(GeneralCategory::kLt);
  }
  GcMask mask = 0;
  for (int k = 0; k < static_cast<int>(std::size(kNames)); ++k) {
    if (key == kNames[k] || (key.size() == 1 && key[0] == kNames[k][0])) mask |= GcMask{1} << k;
  }
  return mask;
}

// One character class of the translated pattern; a \p{..} outside a class is a one-item class.
// The General_Category items are kept apart so the class can be redone for GcTable().
struct CharClass {
  bool negated = false;
  std::string items;   // every item, translated: what goes between "[" or "[^" and "]"
  std::string others;  // the items that are not General_Category properties
  std::vector<std::pair<GcMask, bool>> gc;  // {categories, complemented (\P{..})}
  std::string plain;                        // the text to emit when nothing changes
};

// `items` as the body of a positive class ('^' first would negate it).
std::string PositiveClass(absl::string_view items) {
  return absl::StrCat(absl::StartsWith(items, "^") ? "[\\" : "[", items, "]");
}

// A one-character class compiled to test single code points; null when it does not compile.
struct ClassTest {
  explicit ClassTest(const std::string& pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &error, &offset, nullptr);
    if (code == nullptr) return;
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    match_data = pcre2_match_data_create(1, nullptr);
  }
  ClassTest(const ClassTest&) = delete;
  ClassTest& operator=(const ClassTest&) = delete;
  ~ClassTest() {
    pcre2_match_data_free(match_data);
    pcre2_code_free(code);
  }
  bool Matches(uint32_t cp) const {
    std::string s;
    AppendCodePoint(cp, &s);
    return pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                       PCRE2_NO_UTF_CHECK, match_data, nullptr) >= 0;
  }
  pcre2_code* code = nullptr;
  pcre2_match_data* match_data = nullptr;
};

void AppendRange(uint32_t first, uint32_t last, std::string* out) {
  absl::StrAppend(out, "\\x{", absl::Hex(first), "}");
  if (last > first) absl::StrAppend(out, "-\\x{", absl::Hex(last), "}");
}

// Appends `cls` so that it matches what it means in the table's (node's) Unicode version.
// For each code point of GcTable() the class's item union is judged anew: General_Category
// items by the table, the other items by PCRE2. Code points that join the union are added to
// the class as ranges (the common case: new letters, symbols...; the class stays one PCRE2-JIT
// class). Code points that leave it (a character whose category moved, or a \P{..} item) are
// kept out by a lookahead, or for a negated class matched by an alternative.
void AppendClass(const CharClass& cls, std::string* out) {
  if (cls.gc.empty()) {
    out->append(cls.plain);
    return;
  }
  const ClassTest old_union(PositiveClass(cls.items));
  std::optional<ClassTest> others;
  if (!cls.others.empty()) others.emplace(PositiveClass(cls.others));
  if (old_union.code == nullptr || (others && others->code == nullptr)) {
    out->append(cls.plain);  // the final compile reports the error
    return;
  }
  std::string joined, left;
  uint32_t run_first = 0, run_last = 0;
  std::string* run = nullptr;
  auto flush = [&] {
    if (run != nullptr) AppendRange(run_first, run_last, run);
    run = nullptr;
  };
  for (const GcRange& r : GcTable()) {
    bool by_category = false;
    for (const auto& [mask, complemented] : cls.gc) {
      by_category |= ((mask >> static_cast<int>(r.category)) & 1) != complemented;
    }
    for (uint32_t cp = r.first; cp <= r.last; ++cp) {
      const bool now = by_category || (others && others->Matches(cp));
      std::string* target = nullptr;
      if (now != old_union.Matches(cp)) target = now ? &joined : &left;
      if (target != run || (run != nullptr && cp != run_last + 1)) {
        flush();
        run = target;
        run_first = cp;
      }
      run_last = cp;
    }
  }
  flush();
  if (joined.empty() && left.empty()) {
    out->append(cls.plain);
    return;
  }
  const std::string klass = absl::StrCat(cls.negated ? "[^" : "[", cls.items, joined, "]");
  if (left.empty()) {
    out->append(klass);
  } else if (cls.negated) {
    absl::StrAppend(out, "(?:", klass, "|[", left, "])");
  } else {
    absl::StrAppend(out, "(?:(?![", left, "])", klass, ")");
  }
}

}  // namespace

absl::StatusOr<std::string> TranslateOnigurumaPattern(absl::string_view pattern,
                                                      bool update_categories) {
  std::string out;
  out.reserve(pattern.size() * 2);
  bool in_class = false;
  CharClass cls;
  // Where translated text goes: inside a class, its items (and others, unless a property).
  auto emit = [&](absl::string_view text) {
    if (!in_class) {
      out.append(text.data(), text.size());
      return;
    }
    cls.items.append(text.data(), text.size());
    cls.others.append(text.data(), text.size());
  };
  // A \p{name} (\P{name} when `complemented`).
  auto emit_property = [&](absl::string_view name, bool complemented) {
    if (absl::ConsumePrefix(&name, "^")) complemented = !complemented;
    const std::string text = absl::StrCat(complemented ? "\\P{" : "\\p{", name, "}");
    const GcMask mask = update_categories ? GcMaskOf(name) : 0;
    if (mask == 0) return emit(text);
    if (in_class) {
      cls.items.append(text);
      cls.gc.emplace_back(mask, complemented);
      return;
    }
    // Alone, \P{X} is the class [^\p{X}], which new characters of X join as ranges.
    CharClass single;
    single.negated = complemented;
    single.items = absl::StrCat("\\p{", name, "}");
    single.gc.emplace_back(mask, false);
    single.plain = text;
    AppendClass(single, &out);
  };
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '[') {
      if (in_class) {
        if (i + 1 < pattern.size() && pattern[i + 1] == ':') {
          return Unsupported("a POSIX bracket class", pattern);
        }
        return Unsupported("a nested character class", pattern);
      }
      in_class = true;
      cls = CharClass();
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') cls.negated = true, ++i;
      // A ']' right after '[' or '[^' is a literal in both dialects.
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') emit("\\]"), ++i;
      continue;
    }
    if (c == ']' && in_class) {
      in_class = false;
      cls.plain = absl::StrCat(cls.negated ? "[^" : "[", cls.items, "]");
      AppendClass(cls, &out);
      continue;
    }
    if (in_class && c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&') {
      return Unsupported("character class intersection (&&)", pattern);
    }
    if (c != '\\') {
      emit(absl::string_view(&c, 1));
      continue;
    }
    if (i + 1 >= pattern.size()) return Unsupported("a trailing backslash", pattern);
    const char e = pattern[++i];
    switch (e) {
      case 's':
        emit(in_class ? kWhiteSpaceSet : absl::StrCat("[", kWhiteSpaceSet, "]"));
        break;
      case 'S':
        if (in_class) return Unsupported("\\S inside a character class", pattern);
        emit(absl::StrCat("[^", kWhiteSpaceSet, "]"));
        break;
      case 'd':
        emit_property("Nd", false);
        break;
      case 'D':
        emit_property("Nd", true);
        break;
      case 'w':
      case 'W':
      case 'b':
      case 'B':
      case 'h':
      case 'H':
      case 'G':
      case 'K':
      case 'R':
      case 'X':
      case 'y':
      case 'Y':
      case 'O':
      case 'N':
        return Unsupported(absl::StrCat("\\", absl::string_view(&e, 1)), pattern);
      case 'p':
      case 'P': {
        absl::string_view name;
        if (i + 1 < pattern.size() && pattern[i + 1] == '{') {
          const size_t close = pattern.find('}', i + 1);
          if (close == absl::string_view::npos) return Unsupported("an unterminated \\p{", pattern);
          name = pattern.substr(i + 2, close - i - 2);
          i = close;
        } else if (i + 1 < pattern.size()) {
          name = pattern.substr(++i, 1);  // \pL
        } else {
          return Unsupported("a \\p without a name", pattern);
        }
        emit_property(name, e == 'P');
        break;
      }
      case 'x': {
        std::string text = "\\x";
        if (i + 1 < pattern.size() && pattern[i + 1] == '{') {
          const size_t close = pattern.find('}', i + 1);
          if (close == absl::string_view::npos) return Unsupported("an unterminated \\x{", pattern);
          absl::StrAppend(&text, pattern.substr(i + 1, close - i));
          i = close;
        }
        emit(text);
        break;
      }
      default: {
        const char escaped[] = {'\\', e};
        emit(absl::string_view(escaped, 2));
      }
    }
  }
  if (in_class) return Unsupported("an unterminated character class", pattern);
  return out;
}

bool HasGcTableCodePoint(absl::string_view text) {
  // Most text has none, and the pre-tokenizer asks for every text, so: ASCII is skipped eight
  // bytes at a time, other characters by their lead byte when no code point of the table has
  // that lead byte (e.g. all of U+4000..U+9FFF, the common CJK ideographs), and the table is
  // searched only for code points whose 256-code-point block holds one of its ranges.
  struct Filter {
    // Bytes to skip at a lead byte, or 0 where a code point of the table may start. ASCII and
    // stray continuation bytes count 1 (the text is valid UTF-8, ForEachMatch's contract; the
    // bounds check below only keeps a broken one from being read past its end).
    std::array<uint8_t, 256> skip;
    std::bitset<(0x10FFFF >> 8) + 1> blocks;
  };
  static const Filter* const filter = [] {
    auto* f = new Filter();
    for (int b = 0; b < 256; ++b) f->skip[b] = b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    auto lead = [](uint32_t cp) {
      return cp < 0x80      ? cp
             : cp < 0x800   ? 0xC0 | cp >> 6
             : cp < 0x10000 ? 0xE0 | cp >> 12
                            : 0xF0 | cp >> 18;
    };
    for (const GcRange& r : GcTable()) {
      for (uint32_t block = r.first >> 8; block <= r.last >> 8; ++block) f->blocks.set(block);
      for (uint32_t b = lead(r.first); b <= lead(r.last); ++b) f->skip[b] = 0;
    }
    return f;
  }();
  const absl::Span<const GcRange> table = GcTable();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    uint64_t word;
    if (n - i >= sizeof(word)) {
      std::memcpy(&word, p + i, sizeof(word));
      if ((word & 0x8080808080808080u) == 0) {
        i += sizeof(word);
        continue;
      }
    }
    const uint8_t lead = p[i];
    if (filter->skip[lead] != 0) {
      i += filter->skip[lead];
      continue;
    }
    const size_t length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    if (n - i < length) break;
    uint32_t cp = lead & (0x7Fu >> length);
    for (size_t k = 1; k < length; ++k) cp = cp << 6 | (p[i + k] & 0x3Fu);
    i += length;
    if (cp > 0x10FFFF || !filter->blocks.test(cp >> 8)) continue;
    const auto after = std::upper_bound(table.begin(), table.end(), cp,
                                        [](uint32_t c, const GcRange& r) { return c < r.first; });
    if (after != table.begin() && cp <= std::prev(after)->last) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<SplitRegex>> SplitRegex::Create(absl::string_view pattern,
                                                               bool literal) {
  std::string updated, plain;
  uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK;
  if (literal) {
    updated = std::string(pattern);
    options |= PCRE2_LITERAL;
  } else {
    DSV3_ASSIGN_OR_RETURN(updated, TranslateOnigurumaPattern(pattern));
    DSV3_ASSIGN_OR_RETURN(std::string t,
                          TranslateOnigurumaPattern(pattern, /*update_categories=*/false));
    if (t != updated) plain = std::move(t);
    options |= PCRE2_UCP | PCRE2_MULTILINE;
  }
  auto compile = [&](const std::string& translated) -> absl::StatusOr<Compiled> {
    pcre2_compile_context* ccontext = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(ccontext, PCRE2_NEWLINE_LF);  // Oniguruma: only \n ends a line
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()),
                                     translated.size(), options, &error, &error_offset, ccontext);
    pcre2_compile_context_free(ccontext);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return absl::InvalidArgumentError(
          absl::StrCat("pre-tokenizer regex does not compile at offset ", error_offset, ": ",
                       reinterpret_cast<const char*>(message), " (pattern: ", pattern, ")"));
    }
    return Compiled{code, pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0};
  };
  // The plain pattern first, so that errors name offsets into the translation without ranges.
  Compiled plain_code;
  if (!plain.empty()) {
    DSV3_ASSIGN_OR_RETURN(plain_code, compile(plain));
  }
  absl::StatusOr<Compiled> updated_code = compile(updated);
  if (!updated_code.ok()) {
    pcre2_code_free(plain_code.code);
    return updated_code.status();
  }
  return std::unique_ptr<SplitRegex>(new SplitRegex(*updated_code, plain_code));
}

SplitRegex::~SplitRegex() {
  pcre2_code_free(updated_.code);
  pcre2_code_free(plain_.code);
}

absl::Status SplitRegex::ForEachMatch(absl::string_view text,
                                      absl::FunctionRef<void(size_t, size_t)> on_match) const {
  return ForEachMatch(text, plain_.code != nullptr && HasGcTableCodePoint(text), on_match);
}

absl::Status SplitRegex::ForEachMatch(absl::string_view text, bool has_gc_table_code_point,
                                      absl::FunctionRef<void(size_t, size_t)> on_match) const {
  const Compiled& c = plain_.code != nullptr && !has_gc_table_code_point ? plain_ : updated_;
  MatchState& state = ThreadMatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE length = text.size();
  PCRE2_SIZE offset = 0;
  while (offset <= length) {
    const int rc =
        c.jit ? pcre2_jit_match(c.code, subject, length, offset, 0, state.match_data, state.context)
              : pcre2_match(c.code, subject, length, offset, PCRE2_NO_UTF_CHECK, state.match_data,
                            state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::ResourceExhaustedError(
          absl::StrCat("pre-tokenizer regex failed at byte ", offset, " of a ", length,
                       "-byte piece: ", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t start = ovector[0], end = ovector[1];
    if (end > start) {
      on_match(start, end);
      offset = end;
    } else {
      // Empty match: step over one character.
      if (start >= length) break;
      offset = start + 1;
      while (offset < length && (static_cast<uint8_t>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::tokenizer
