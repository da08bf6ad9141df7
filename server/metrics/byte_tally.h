// Per-worker byte counts of the data path, folded into Prometheus counters at scrape time.
// A relay adds to its worker's cells with a plain load and store (one writer per cell, the
// worker's loop thread), so the per-chunk cost is an add, not a locked read-modify-write on a
// counter every worker shares; EngineMetrics::Collect() sums the cells of every worker.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace alknet {

class ByteTally {
 public:
  using Cell = std::atomic<uint64_t>;
  static constexpr size_t kDirections = 2;  // Direction::kUpstream, kDownstream

  // `series`: how many labelled series (transports and keys) the tally counts for.
  explicit ByteTally(size_t series) : cells_(series) {}

  Cell* cell(size_t series, size_t direction) { return &cells_[series][direction]; }
  uint64_t value(size_t series, size_t direction) const {
    return cells_[series][direction].load(std::memory_order_relaxed);
  }

  // Only the owning loop thread adds to a cell; readers on other threads see a whole value.
  static void Add(Cell* cell, uint64_t bytes) {
    if (cell != nullptr) cell->store(cell->load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
  }

 private:
  std::vector<std::array<Cell, kDirections>> cells_;
};

}  // namespace alknet
