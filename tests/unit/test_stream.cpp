// The stream/event contract every device path orders its work by (comm/stream.h), checked
// on the two host kinds: host runs at once; cpu_async runs nothing until something waits,
// then in issue order, across streams through events, with errors at the wait.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "comm/stream.h"

namespace ft {
namespace {

TEST(Stream, HostRunsWorkAtOnce) {
  Stream s(StreamKind::host);
  int x = 0;
  s.launch([&] { x = 1; });
  EXPECT_EQ(x, 1);
  Event e = s.record();
  e.synchronize();
  Event none;
  none.synchronize();  // an empty event marks nothing
}

TEST(Stream, CpuAsyncRunsOnlyWhenWaitedForAndInOrder) {
  Stream s(StreamKind::cpu_async);
  std::vector<int> order;
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i)
    s.launch([&, i] {
      order.push_back(i);
      ++ran;
    });
  Event third = [&] {
    // The mark is taken after the 5 items above; two more come after it.
    Event e = s.record();
    s.launch([&] { order.push_back(5); ++ran; });
    s.launch([&] { order.push_back(6); ++ran; });
    return e;
  }();
  EXPECT_EQ(ran.load(), 0) << "cpu_async ran work nobody waited for";
  third.synchronize();
  EXPECT_EQ(ran.load(), 5) << "an event's wait ran work issued after its mark";
  s.synchronize();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(Stream, WaitOrdersOneStreamAfterAnother) {
  Stream producer(StreamKind::cpu_async), consumer(StreamKind::cpu_async);
  int value = 0, seen = -1;
  producer.launch([&] { value = 42; });
  consumer.wait(producer.record());
  consumer.launch([&] { seen = value; });
  consumer.synchronize();  // demands the producer's work through the wait
  EXPECT_EQ(seen, 42);
}

TEST(Stream, ErrorsSurfaceAtTheWait) {
  Stream s(StreamKind::cpu_async);
  s.launch([] { throw std::runtime_error("kernel failed"); });
  int after = 0;
  s.launch([&] { after = 1; });  // later work still runs, so no waiter hangs
  EXPECT_THROW(s.synchronize(), std::runtime_error);
  EXPECT_EQ(after, 1);
}

TEST(Stream, DestructionRunsWhatWasIssued) {
  int x = 0;
  {
    Stream s(StreamKind::cpu_async);
    s.launch([&] { x = 7; });
  }
  EXPECT_EQ(x, 7);
}

}  // namespace
}  // namespace ft
