// The trainer's checkpoints: what it writes beyond the model (each rank's codec state, an
// island's own parameters under an outer sync) and how a resume reads it back.
#include <map>

#include <fmt/format.h>

#include "comm/log.h"
#include "models/ops.h"
#include "trainer/loop/trainer.h"

namespace ft {

// What the checkpoint holds for this rank alone (same layout only): the gradient codecs'
// feedback state and the outer codecs'. All of it is restored on every rank or none of it
// anywhere: an estimate of feedback by difference must stay equal on every member of its
// ring. And, between outer syncs, the island's own parameters and
// optimizer state, which differ from replica 0's that the checkpoint holds for every layout:
// saved once per island and model position by its first member (and each ZeRO-1 shard by
// its owner), read back by every member.
void Trainer::restore_rank_state(const std::string& path) {
  const bool codecs = (sync_ && sync_->compressed()) || (outer_ && outer_->compressed());
  if (!codecs && !outer_) return;
  auto saved = load_rank_state(path, cfg_, mpi_.rank(), mpi_.size());
  if (codecs) {
    std::map<std::string, std::vector<float>> buckets;
    bool restored = saved.has_value();
    if (saved) {
      for (const auto& [name, values] : *saved) {
        if (name.rfind("bucket", 0) == 0)
          buckets.emplace(name, values);
        else if (name.rfind("outer/", 0) == 0)
          restored = restored && outer_ && outer_->restore_codec_state(name, values);
      }
      if (sync_ && sync_->compressed()) restored = restored && sync_->restore_codec_state(std::move(buckets));
    }
    if (max_over(MPI_COMM_WORLD, restored ? 0.0 : 1.0) > 0) {
      RankState all = sync_ ? sync_->codec_state() : RankState{};
      if (outer_)
        for (auto& entry : outer_->codec_state()) all.push_back(entry);
      for (auto& [name, v] : all) v->clear();  // sized and zeroed again on first use
      log::warn("{} was written by another layout or codec set: the codecs' feedback state starts from zero", path);
    }
  }
  if (!outer_) return;
  // Every member reads the same source for what the island shares, so the members stay equal.
  const int first = step_dp_->members().front();
  auto shared = first == mpi_.rank() ? std::move(saved) : load_rank_state(path, cfg_, first, mpi_.size());
  // What goes where, if it all fits on every rank; else nothing, on every rank.
  std::vector<std::pair<const Tensor*, const std::vector<float>*>> moves;
  auto find = [&](std::optional<std::map<std::string, std::vector<float>>>& from, const char* name, const Tensor& into) {
    if (!from || !from->count(name) || static_cast<std::int64_t>(from->at(name).size()) != into.numel()) return false;
    moves.emplace_back(&into, &from->at(name));
    return true;
  };
  bool fits = find(shared, "island/params", model_->params().flat_values());
  if (opt_->has_moments()) {
    // A ZeRO-1 shard's state is this rank's own (`saved`, unless it went to `shared`).
    auto& from = cfg_.parallel.zero > 0 && first != mpi_.rank() ? saved : shared;
    fits = find(from, "island/m", opt_->m()) && find(from, "island/v", opt_->v()) && fits;
  }
  if (max_over(MPI_COMM_WORLD, fits ? 0.0 : 1.0) > 0) {
    if (mpi_.rank() == 0)
      log::warn("{} was written by another layout: every island resumes from replica 0's parameters and optimizer "
                "state",
                path);
    return;
  }
  for (const auto& [into, values] : moves) ops::from_host(*into, std::vector<double>(values->begin(), values->end()));
}

std::string Trainer::save(int steps_done) {
  std::string path = cfg_.checkpoint.path;
  if (auto at = path.find("{step}"); at != std::string::npos) path.replace(at, 6, std::to_string(steps_done));
  CheckpointState st{steps_done, data_->position(steps_done), data_->tokens()};
  // One data-parallel replica writes parameters; with ZeRO-1 every replica writes its part
  // of the optimizer state.
  // (Tensor-parallel ranks each write their shards; replicated tensors arrive from every TP
  // rank with the same values.)
  // Under an outer sync the islands differ between syncs: the first island's replicas write
  // the optimizer state, and each rank adds its own (restore_rank_state).
  CheckpointRole role{layout_.coord.dp == 0, first_island_ && (cfg_.parallel.zero > 0 || step_dp_->rank() == 0)};
  RankState mine = sync_ ? sync_->codec_state() : RankState{};
  std::vector<FlatArray> flat;
  std::vector<float> island[3];
  if (outer_) {
    flat = outer_->checkpoint_arrays();  // first: it settles the syncs in flight, and their codecs' state with them
    for (auto& entry : outer_->codec_state()) mine.push_back(entry);
    // Once per island and model position; the optimizer state once per ZeRO-1 shard.
    const bool first = step_dp_->rank() == 0;
    const Tensor* own[3] = {&model_->params().flat_values(), &opt_->m(), &opt_->v()};
    const char* names[3] = {"island/params", "island/m", "island/v"};
    for (int i = 0; i < (opt_->has_moments() ? 3 : 1); ++i) {
      if (!first && (i == 0 || cfg_.parallel.zero == 0)) continue;
      std::vector<double> host = ops::to_host(*own[i]);
      island[i].assign(host.begin(), host.end());
      mine.emplace_back(names[i], &island[i]);
    }
  }
  // Writing may take long on a slow file system; it is no hang.
  watchdog_->pause(true);
  // ZeRO-3: replica 0 writes whole parameters. That gather is the checkpoint's, not the next step's traffic.
  const TrafficSnapshot before = traffic().snapshot();
  if (sync_) sync_->gather_all();
  traffic_mark_ = traffic().snapshot() - (before - traffic_mark_);
  save_checkpoint(MPI_COMM_WORLD, path, cfg_, *model_, *opt_, role, st, mine, flat);
  if (sync_) sync_->drop_all();
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0 writes after the others have sent their parts: they wait here, paused
  watchdog_->pause(false);
  return path;
}

}  // namespace ft
