#include <gtest/gtest.h>

#include "trainer/loop/schedule.h"

namespace ft {
namespace {

using A = PipeAction;
constexpr auto F = PipeAction::forward;
constexpr auto B = PipeAction::backward;

TEST(Schedule, GPipeRunsAllForwardsThenAllBackwards) {
  EXPECT_EQ(make_schedule("gpipe", 4, 2, 3), (std::vector<A>{{F, 0}, {F, 1}, {F, 2}, {B, 0}, {B, 1}, {B, 2}}));
}

TEST(Schedule, OneFOneBWarmsUpThenAlternatesThenCoolsDown) {
  // 4 stages, 6 micro-batches: stage 0 warms up with 3 forwards, the last stage with none.
  EXPECT_EQ(make_schedule("1f1b", 4, 0, 6),
            (std::vector<A>{{F, 0}, {F, 1}, {F, 2}, {F, 3}, {B, 0}, {F, 4}, {B, 1}, {F, 5}, {B, 2}, {B, 3}, {B, 4}, {B, 5}}));
  EXPECT_EQ(make_schedule("1f1b", 4, 3, 6),
            (std::vector<A>{{F, 0}, {B, 0}, {F, 1}, {B, 1}, {F, 2}, {B, 2}, {F, 3}, {B, 3}, {F, 4}, {B, 4}, {F, 5}, {B, 5}}));
  // Fewer micro-batches than warm-up slots.
  EXPECT_EQ(make_schedule("1f1b", 4, 0, 2), (std::vector<A>{{F, 0}, {F, 1}, {B, 0}, {B, 1}}));
}

TEST(Schedule, EveryMicroBatchRunsForwardThenBackwardOnce) {
  for (const char* kind : {"gpipe", "1f1b"})
    for (int pp : {1, 2, 4, 8})
      for (int stage = 0; stage < pp; ++stage)
        for (int m : {1, 2, 3, 4, 8, 13}) {
          auto s = make_schedule(kind, pp, stage, m);
          ASSERT_EQ(s.size(), static_cast<std::size_t>(2 * m));
          std::vector<int> fwd_at(static_cast<std::size_t>(m), -1), bwd_at(static_cast<std::size_t>(m), -1);
          for (std::size_t i = 0; i < s.size(); ++i)
            (s[i].kind == F ? fwd_at : bwd_at)[static_cast<std::size_t>(s[i].microbatch)] = static_cast<int>(i);
          for (int k = 0; k < m; ++k) {
            EXPECT_GE(fwd_at[static_cast<std::size_t>(k)], 0);
            EXPECT_GT(bwd_at[static_cast<std::size_t>(k)], fwd_at[static_cast<std::size_t>(k)]) << kind;
            if (k > 0) {
              EXPECT_GT(bwd_at[static_cast<std::size_t>(k)], bwd_at[static_cast<std::size_t>(k) - 1]);
            }
          }
        }
}

TEST(Schedule, OneFOneBHoldsAtMostPpMinusStageMicroBatchesGPipeHoldsAll) {
  for (int pp : {2, 4, 8})
    for (int stage = 0; stage < pp; ++stage)
      for (int m : {1, 4, 16}) {
        EXPECT_EQ(max_live(make_schedule("1f1b", pp, stage, m)), std::min(m, pp - stage));
        EXPECT_EQ(max_live(make_schedule("gpipe", pp, stage, m)), m);
      }
}

TEST(Schedule, BubbleFraction) {
  EXPECT_DOUBLE_EQ(bubble_fraction(4, 8), 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(bubble_fraction(1, 8), 0.0);
}

}  // namespace
}  // namespace ft
