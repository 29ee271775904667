// Helper of gen_unicode_gc_table.mjs (not part of the build): prints PCRE2's Unicode version on
// the first line, then one byte per code point 0..0x10FFFF: the index, in kCategories order, of
// the General_Category PCRE2's tables give it. Surrogates (not valid in UTF-8) print as Cs.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace {

// Same order as CATEGORIES in gen_unicode_gc_table.mjs.
constexpr const char* kCategories[] = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl",
                                       "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc",
                                       "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};
constexpr int kNumCategories = sizeof(kCategories) / sizeof(kCategories[0]);

std::string Utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

int main() {
  char version[64] = {};
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, version);
  std::printf("%s\n", version);
  pcre2_code* code[kNumCategories];
  for (int k = 0; k < kNumCategories; ++k) {
    const std::string pattern = std::string("\\p{") + kCategories[k] + "}";
    int error = 0;
    PCRE2_SIZE offset = 0;
    code[k] = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                            PCRE2_UTF | PCRE2_ANCHORED, &error, &offset, nullptr);
    if (code[k] == nullptr) return 1;
    pcre2_jit_compile(code[k], PCRE2_JIT_COMPLETE);
  }
  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    int k = 27;  // Cs
    if (cp < 0xD800 || cp > 0xDFFF) {
      const std::string s = Utf8(cp);
      for (k = 0; k < kNumCategories; ++k) {
        if (pcre2_match(code[k], reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, match,
                        nullptr) >= 0) {
          break;
        }
      }
      if (k == kNumCategories) return 1;
    }
    std::putchar(k);
  }
  return 0;
}
