// A bounded tail of bytes waiting to be written: filled from a chunk, consumed from the front
// without moving memory; storage is allocated on first use and kept (no allocation per chunk).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

namespace alknet {

class PendingBytes {
 public:
  // `capacity` is what Assign() holds without reallocating (a relay's chunk size).
  explicit PendingBytes(size_t capacity) : capacity_(capacity) {}

  bool empty() const { return begin_ == end_; }
  size_t size() const { return end_ - begin_; }
  const char* data() const { return storage_.get() + begin_; }

  // Replaces the contents with `len` bytes. A tail longer than the capacity (only a relay's
  // first, pre-relay bytes can be) grows the storage once to that length.
  void Assign(const void* bytes, size_t len) {
    if (len > capacity_) {
      capacity_ = len;
      storage_.reset();
    }
    if (!storage_) storage_ = std::make_unique_for_overwrite<char[]>(capacity_);
    if (len > 0) std::memcpy(storage_.get(), bytes, len);
    begin_ = 0;
    end_ = len;
  }
  // Drops `n` bytes from the front (n <= size()).
  void Consume(size_t n) {
    begin_ += n < size() ? n : size();
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void Clear() { begin_ = end_ = 0; }

 private:
  size_t capacity_;
  std::unique_ptr<char[]> storage_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace alknet
