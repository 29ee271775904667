// A forward step's reused temporaries: one buffer per site across calls for the large ones,
// never the same buffer to two users at once, and small ones zero-filled per call.

#include "engine/scratch.h"

#include <gtest/gtest.h>

#include <thread>

namespace dsv3::engine {
namespace {

constexpr size_t kLarge = (size_t{16} << 20) / sizeof(float);  // the least a site reuses

TEST(ScratchTest, ASiteKeepsALargeBufferBetweenCallsAndGrowsOnDemand) {
  ScratchSite site;
  float* first = nullptr;
  {
    Scratch a(site, kLarge + 1000);
    first = a.data();
    a.data()[kLarge + 999] = 5.0f;
  }
  EXPECT_EQ(site.kept_bytes(), (kLarge + 1000) * sizeof(float));
  {
    Scratch b(site, kLarge);  // smaller: the same buffer
    EXPECT_EQ(b.data(), first);
  }
  {
    Scratch c(site, 2 * kLarge);  // larger: a new buffer, its ends writable
    c.data()[0] = 1.0f;
    c.data()[2 * kLarge - 1] = 1.0f;
    EXPECT_EQ(site.kept_bytes(), 2 * kLarge * sizeof(float));
  }
  Scratch d(site, 2 * kLarge);
  EXPECT_EQ(d.data()[2 * kLarge - 1], 1.0f);  // the grown buffer stays
}

TEST(ScratchTest, SmallBuffersAreZeroFilledPerCall) {
  ScratchSite site;
  {
    Scratch a(site, 1000);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(a.data()[i], 0.0f);
    a.data()[10] = 3.0f;
  }
  Scratch b(site, 1000);
  EXPECT_EQ(b.data()[10], 0.0f);
  EXPECT_EQ(site.kept_bytes(), 0u);
  Scratch zero(site, 0);  // a size of 0 still gives a valid pointer
  EXPECT_NE(zero.data(), nullptr);
}

TEST(ScratchTest, ANestedUseGetsABufferOfItsOwn) {
  ScratchSite site;
  Scratch outer(site, kLarge);
  outer.data()[0] = 7.0f;
  {
    Scratch inner(site, kLarge);
    EXPECT_NE(inner.data(), outer.data());
    inner.data()[0] = 9.0f;
  }
  EXPECT_EQ(outer.data()[0], 7.0f);
}

TEST(ScratchTest, AVeryLargeBufferIsNotKept) {
  ScratchSite site;
  const size_t big = (size_t{300} << 20) / sizeof(float);  // 300 MB, over what a site keeps
  {
    Scratch a(site, big);
    EXPECT_EQ(site.kept_bytes(), big * sizeof(float));
  }
  EXPECT_EQ(site.kept_bytes(), 0u);  // freed at the end of its call
}

// Each thread passes through the declaration, as the engine's call sites do: its own site,
// freed when the thread ends.
float* ThisThreadsLargeBuffer() {
  thread_local ScratchSite site;
  Scratch s(site, kLarge);
  return s.data();
}

TEST(ScratchTest, EachThreadHasItsOwnSite) {
  float* main_data = ThisThreadsLargeBuffer();
  EXPECT_EQ(ThisThreadsLargeBuffer(), main_data);
  bool other_differs = false;
  std::thread t([&] { other_differs = ThisThreadsLargeBuffer() != main_data; });
  t.join();
  EXPECT_TRUE(other_differs);
}

}  // namespace
}  // namespace dsv3::engine
