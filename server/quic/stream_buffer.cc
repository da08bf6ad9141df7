// The chunked stream buffer: offsets map to chunk index (offset - first_chunk_) / kChunk.
#include "server/quic/stream_buffer.h"

#include <algorithm>
#include <cstring>

namespace alknet::quic {

uint8_t* StreamBuffer::ChunkFor(uint64_t offset) const {
  return chunks_[static_cast<size_t>((offset - first_chunk_) / kChunk)].get();
}

std::span<uint8_t> StreamBuffer::WritableTail(size_t limit) {
  if (chunks_.empty()) first_chunk_ = end_ - end_ % kChunk;
  size_t in_chunk = static_cast<size_t>(end_ % kChunk);
  if (first_chunk_ + chunks_.size() * kChunk <= end_) {  // no chunk holds end_ yet
    if (!spares_.empty()) {
      chunks_.push_back(std::move(spares_.back()));
      spares_.pop_back();
    } else {
      chunks_.push_back(std::make_unique_for_overwrite<uint8_t[]>(kChunk));  // no zeroing: written before read
    }
  }
  return {ChunkFor(end_) + in_chunk, std::min(kChunk - in_chunk, limit)};
}

void StreamBuffer::Append(std::span<const uint8_t> data) {
  while (!data.empty()) {
    std::span<uint8_t> tail = WritableTail(data.size());
    std::memcpy(tail.data(), data.data(), tail.size());
    Commit(tail.size());
    data = data.subspan(tail.size());
  }
}

std::span<const uint8_t> StreamBuffer::At(uint64_t offset) const {
  if (offset >= end_) return {};
  size_t in_chunk = static_cast<size_t>(offset % kChunk);
  size_t length = static_cast<size_t>(std::min<uint64_t>(kChunk - in_chunk, end_ - offset));
  return {ChunkFor(offset) + in_chunk, length};
}

void StreamBuffer::DropUntil(uint64_t offset) {
  begin_ = std::min(std::max(offset, begin_), end_);
  while (!chunks_.empty() && first_chunk_ + kChunk <= begin_) {
    if (spares_.size() < 2) spares_.push_back(std::move(chunks_.front()));
    chunks_.pop_front();
    first_chunk_ += kChunk;
  }
}

}  // namespace alknet::quic
