#ifndef DSV3_ROUTER_TEXT_MARKERS_H_
#define DSV3_ROUTER_TEXT_MARKERS_H_

// Streaming text parsers (tool calls, reasoning) hold back what may be the start of a
// marker until the next chunk tells.

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace dsv3::router {

// Length of the longest suffix of `text` that is a proper prefix of `marker`.
inline size_t PartialMarkerSuffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_TEXT_MARKERS_H_
