#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "comm/error.h"
#include "trainer/io/h5.h"
#include "trainer/io/metrics.h"

namespace ft {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const char* name) {
  return (fs::temp_directory_path() / (std::string("ft_h5_") + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(H5, AttributesAndArraysRoundTrip) {
  std::string path = temp_path("arrays.h5");
  {
    h5::File f(path, h5::Mode::create);
    f.set_attr("/", "config", std::string("model: {width: 64}\n"));
    f.set_attr("/", "world_size", std::int64_t{8});
    f.set_attr("/", "hostnames", std::vector<std::string>{"n1", "node-two"});
    f.write<float>("/weights/a/b", {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
    f.write<std::uint64_t>("/state/rng", {~0ull, 7ull}, {2});
  }
  h5::File f(path, h5::Mode::read);
  EXPECT_EQ(f.attr_string("/", "config"), "model: {width: 64}\n");
  EXPECT_EQ(f.attr_int("/", "world_size"), 8);
  EXPECT_EQ(f.read<float>("/weights/a/b"), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.shape("/weights/a/b"), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(f.read<std::uint64_t>("/state/rng"), (std::vector<std::uint64_t>{~0ull, 7ull}));
  EXPECT_FALSE(f.exists("/weights/c"));
  EXPECT_FALSE(f.exists("/nothing/below"));
  EXPECT_THROW(f.read<float>("/weights/c"), UserError);
  fs::remove(path);
}

TEST(H5, UncreatableFileIsAUserError) {
  EXPECT_THROW(h5::File("/proc/fibertrain/x.h5", h5::Mode::create), UserError);
  EXPECT_THROW(h5::File("/nonexistent/x.h5", h5::Mode::read), UserError);
}

MetricsSchema two_column_schema() {
  MetricsSchema s;
  s.add("loss", "nats", Scope::job, "mean cross-entropy");
  s.add("bytes_wire/inter_pod", "bytes", Scope::per_rank, "bytes sent across pods");
  return s;
}

std::vector<std::vector<double>> row(int step, int world) {
  std::vector<std::vector<double>> v(2, std::vector<double>(static_cast<std::size_t>(world)));
  v[0][0] = 10.0 - step;
  for (int r = 0; r < world; ++r) v[1][static_cast<std::size_t>(r)] = step * 100 + r;
  return v;
}

TEST(StepFile, RowsAndAttributesRoundTrip) {
  std::string path = temp_path("steps.h5");
  {
    StepFile f(path, two_column_schema(), 3, 4);
    for (int s = 0; s < 10; ++s) f.append(row(s, 3));
  }
  h5::File f(path, h5::Mode::read);
  EXPECT_EQ(f.shape("/steps/loss"), (std::vector<std::uint64_t>{10}));
  EXPECT_EQ(f.shape("/steps/bytes_wire/inter_pod"), (std::vector<std::uint64_t>{10, 3}));
  auto loss = f.read<double>("/steps/loss");
  auto bytes = f.read<double>("/steps/bytes_wire/inter_pod");
  for (int s = 0; s < 10; ++s) {
    EXPECT_EQ(loss[static_cast<std::size_t>(s)], 10.0 - s);
    for (int r = 0; r < 3; ++r) EXPECT_EQ(bytes[static_cast<std::size_t>(s * 3 + r)], s * 100 + r);
  }
  EXPECT_EQ(f.attr_string("/steps/loss", "units"), "nats");
  fs::remove(path);
}

// A writer killed with SIGKILL between flushes leaves a readable file holding exactly the
// flushed rows.
TEST(StepFile, SigkillBetweenFlushesKeepsEveryFlushedRow) {
  std::string path = temp_path("killed.h5");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    StepFile f(path, two_column_schema(), 4, 5);
    for (int s = 0; s < 13; ++s) f.append(row(s, 4));  // flushes after rows 5 and 10
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(3);
    for (;;) pause();  // rows 10..12 stay buffered until the kill
  }
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));

  h5::File f(path, h5::Mode::read);
  ASSERT_EQ(f.rows("/steps/loss"), 10u);
  ASSERT_EQ(f.shape("/steps/bytes_wire/inter_pod"), (std::vector<std::uint64_t>{10, 4}));
  auto bytes = f.read<double>("/steps/bytes_wire/inter_pod");
  for (int s = 0; s < 10; ++s)
    for (int r = 0; r < 4; ++r) EXPECT_EQ(bytes[static_cast<std::size_t>(s * 4 + r)], s * 100 + r);
  fs::remove(path);
}

}  // namespace
}  // namespace ft
