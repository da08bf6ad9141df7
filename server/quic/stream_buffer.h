// Bytes of one QUIC stream direction at their stream offsets, in 64 KiB chunks: what was read
// from the SSH side and not yet acknowledged (ngtcp2 needs it until the ack), or what arrived
// and the SSH side has not taken yet. The owner bounds its size; chunks are reused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

namespace alknet::quic {

class StreamBuffer {
 public:
  static constexpr size_t kChunk = 64 * 1024;

  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  size_t size() const { return static_cast<size_t>(end_ - begin_); }
  bool empty() const { return begin_ == end_; }

  // Free space after end() in the last chunk (a new chunk when it is full), at most `limit`.
  std::span<uint8_t> WritableTail(size_t limit);
  // end() moves by `n` bytes just written into WritableTail().
  void Commit(size_t n) { end_ += n; }
  // Copies `data` in at end().
  void Append(std::span<const uint8_t> data);
  // The contiguous bytes from `offset` (begin() <= offset <= end()) to the end of its chunk or
  // end(), whichever comes first.
  std::span<const uint8_t> At(uint64_t offset) const;
  // Forgets everything before `offset` (at most end()); whole chunks go back to the spares.
  void DropUntil(uint64_t offset);

 private:
  uint8_t* ChunkFor(uint64_t offset) const;

  std::deque<std::unique_ptr<uint8_t[]>> chunks_;  // chunk i starts at first_chunk_ + i*kChunk
  std::vector<std::unique_ptr<uint8_t[]>> spares_;  // at most two, reused before allocating
  uint64_t first_chunk_ = 0;  // stream offset of chunks_[0], a multiple of kChunk
  uint64_t begin_ = 0;
  uint64_t end_ = 0;
};

}  // namespace alknet::quic
