#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

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
  EXPECT_DOUBLE_EQ(bubble_fraction(4, 8, 2), 3.0 / 19.0);
}

TEST(Schedule, InterleavedTakesMicroBatchesInGroupsOfPpChunkByChunk) {
  // Megatron's order, 2 stages, 2 chunks, 4 micro-batches: stage 0 warms up with 2 (2 - 0 - 1)
  // + (2 - 1) 2 = 4 forwards, then pairs each forward with a backward (joined to it).
  const std::vector<A> got = make_schedule("1f1b", 2, 0, 4, 2);
  const std::vector<A> want = {{F, 0, 0}, {F, 1, 0}, {F, 0, 1}, {F, 1, 1},        {F, 2, 0}, {B, 0, 1, true},
                               {F, 3, 0}, {B, 1, 1, true}, {F, 2, 1}, {B, 0, 0, true}, {F, 3, 1}, {B, 1, 0, true},
                               {B, 2, 1}, {B, 3, 1}, {B, 2, 0}, {B, 3, 0}};
  EXPECT_EQ(got, want);
  // m = pp: every forward first.
  EXPECT_EQ(make_schedule("1f1b", 2, 1, 2, 2),
            (std::vector<A>{{F, 0, 0}, {F, 1, 0}, {F, 0, 1}, {F, 1, 1}, {B, 0, 1}, {B, 1, 1}, {B, 0, 0}, {B, 1, 0}}));
  EXPECT_THROW(make_schedule("1f1b", 4, 0, 6, 2), std::invalid_argument);
}

TEST(Schedule, InterleavedRunsEachChunkOfEachMicroBatchForwardThenBackwardOnce) {
  for (const char* kind : {"gpipe", "1f1b"})
    for (int pp : {2, 3, 4})
      for (int v : {2, 3})
        for (int m : {pp, 2 * pp, 3 * pp})
          for (int stage = 0; stage < pp; ++stage) {
            auto s = make_schedule(kind, pp, stage, m, v);
            ASSERT_EQ(s.size(), static_cast<std::size_t>(2 * m * v));
            std::map<std::pair<int, int>, int> fwd_at, bwd_at;
            for (std::size_t i = 0; i < s.size(); ++i)
              ((s[i].kind == F ? fwd_at : bwd_at)[std::make_pair(s[i].microbatch, s[i].chunk)]) = static_cast<int>(i) + 1;
            for (int k = 0; k < m; ++k)
              for (int c = 0; c < v; ++c) {
                const int f = fwd_at[std::make_pair(k, c)], b = bwd_at[std::make_pair(k, c)];
                EXPECT_GT(f, 0);
                EXPECT_GT(b, f);
                if (k > 0) {
                  EXPECT_GT(b, bwd_at[std::make_pair(k - 1, c)]);  // a chunk's slots are reused in order
                }
              }
          }
}

TEST(Schedule, PeersFollowTheVirtualStagesRoundTheRing) {
  // 4 stages, 2 chunks: virtual stage 3 (chunk 0 of stage 3) feeds virtual stage 4 (chunk 1 of stage 0).
  EXPECT_EQ(pipe_destination(4, 2, 3, {F, 0, 0}).stage, 0);
  EXPECT_EQ(pipe_destination(4, 2, 3, {F, 0, 0}).chunk, 1);
  EXPECT_EQ(pipe_source(4, 2, 0, {F, 0, 1}).stage, 3);
  EXPECT_EQ(pipe_source(4, 2, 0, {F, 0, 0}).stage, -1);       // the embedding's
  EXPECT_EQ(pipe_destination(4, 2, 3, {F, 0, 1}).stage, -1);  // the head's
  EXPECT_EQ(pipe_source(4, 2, 3, {B, 0, 1}).stage, -1);
  EXPECT_EQ(pipe_destination(4, 2, 0, {B, 0, 1}).stage, 3);
  EXPECT_EQ(pipe_destination(4, 2, 0, {B, 0, 0}).stage, -1);
}

// The exchanges of a whole step, as PipelineRunner issues them: before each action that is
// not joined, one group with what the actions since the last group produced (sends) and
// what this action and those joined to it need (receives). Messages between two stages
// match in order, whatever they carry.
struct Exchange {
  std::vector<std::tuple<int, int, int>> sends, recvs;  // (from, to, ordinal on that pair)
};
std::vector<std::vector<Exchange>> exchanges(const char* kind, int pp, int m, int v) {
  std::vector<std::vector<Exchange>> out(static_cast<std::size_t>(pp));
  std::map<std::pair<int, int>, int> sent, received;
  for (int s = 0; s < pp; ++s) {
    const auto actions = make_schedule(kind, pp, s, m, v);
    std::vector<std::tuple<int, int, int>> produced;
    for (std::size_t i = 0; i < actions.size(); ++i) {
      if (!actions[i].joined) {
        Exchange e;
        e.sends = std::move(produced);
        produced.clear();
        for (std::size_t j = i; j < actions.size() && (j == i || actions[j].joined); ++j)
          if (const PipePeer from = pipe_source(pp, v, s, actions[j]); from.stage >= 0)
            e.recvs.emplace_back(from.stage, s, received[{from.stage, s}]++);
        out[static_cast<std::size_t>(s)].push_back(std::move(e));
      }
      if (const PipePeer to = pipe_destination(pp, v, s, actions[i]); to.stage >= 0)
        produced.emplace_back(s, to.stage, sent[{s, to.stage}]++);
    }
    out[static_cast<std::size_t>(s)].push_back({std::move(produced), {}});
  }
  return out;
}

TEST(Schedule, PeersAgreeOnWhatEachMessageCarries) {
  // Two stages exchange activations and gradients in both directions: the k-th message one
  // sends the other must be the k-th that one receives, in what it is for.
  for (const char* kind : {"gpipe", "1f1b"})
    for (int pp : {2, 3, 4})
      for (int v : {1, 2, 3})
        for (int m : {pp, 2 * pp, 3 * pp}) {
          std::map<std::pair<int, int>, std::vector<std::tuple<int, int, int>>> sent, received;
          for (int s = 0; s < pp; ++s)
            for (const A& a : make_schedule(kind, pp, s, m, v)) {
              if (const PipePeer to = pipe_destination(pp, v, s, a); to.stage >= 0)
                sent[{s, to.stage}].emplace_back(a.kind, a.microbatch, to.chunk);
              if (const PipePeer from = pipe_source(pp, v, s, a); from.stage >= 0)
                received[{from.stage, s}].emplace_back(a.kind, a.microbatch, a.chunk);
            }
          EXPECT_EQ(sent, received) << kind << " pp " << pp << " v " << v << " m " << m;
        }
}

TEST(Schedule, ExchangesNeverWaitInACycleWhenSendsWaitForTheirReceives) {
  // Above NCCL's eager size a send completes only once its receive is issued. A group that
  // receives is waited for whole; one that only sends is not. Every stage must get through
  // its step: pairing the interleaved steady state's forward and backward is what makes it so.
  for (const char* kind : {"gpipe", "1f1b"})
    for (int pp : {2, 3, 4, 8})
      for (int v : {1, 2, 3, 4})
        for (int m : {pp, 2 * pp, 3 * pp}) {
          const auto ex = exchanges(kind, pp, m, v);
          std::set<std::tuple<int, int, int>> sends_issued, recvs_issued;
          std::vector<std::size_t> at(static_cast<std::size_t>(pp), 0);
          auto issue = [&](int s) {
            const Exchange& e = ex[static_cast<std::size_t>(s)][at[static_cast<std::size_t>(s)]];
            sends_issued.insert(e.sends.begin(), e.sends.end());
            recvs_issued.insert(e.recvs.begin(), e.recvs.end());
          };
          for (int s = 0; s < pp; ++s) issue(s);
          for (bool moved = true; moved;) {
            moved = false;
            for (int s = 0; s < pp; ++s) {
              auto& i = at[static_cast<std::size_t>(s)];
              if (i == ex[static_cast<std::size_t>(s)].size()) continue;
              const Exchange& e = ex[static_cast<std::size_t>(s)][i];
              bool done = true;
              if (!e.recvs.empty()) {
                for (const auto& r : e.recvs) done = done && sends_issued.count(r);
                for (const auto& x : e.sends) done = done && recvs_issued.count(x);
              }
              if (!done) continue;
              moved = true;
              if (++i < ex[static_cast<std::size_t>(s)].size()) issue(s);
            }
          }
          for (int s = 0; s < pp; ++s)
            EXPECT_EQ(at[static_cast<std::size_t>(s)], ex[static_cast<std::size_t>(s)].size())
                << kind << " pp " << pp << " v " << v << " m " << m << ": stage " << s << " waits for ever";
        }
}

}  // namespace
}  // namespace ft
