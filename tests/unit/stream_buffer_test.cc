// StreamBuffer: bytes at stream offsets across 64 KiB chunks, dropped as acknowledged.
#include "server/quic/stream_buffer.h"

#include <gtest/gtest.h>

#include <string>

namespace alknet::quic {
namespace {

std::string Pattern(size_t size, uint64_t from) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>((from + i) * 131 % 251);
  return out;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Reads [offset, end) back through At(), chunk by chunk.
std::string ReadBack(const StreamBuffer& buffer, uint64_t offset) {
  std::string out;
  while (offset < buffer.end()) {
    std::span<const uint8_t> part = buffer.At(offset);
    EXPECT_FALSE(part.empty());
    if (part.empty()) break;
    EXPECT_LE(part.size(), StreamBuffer::kChunk);
    out.append(reinterpret_cast<const char*>(part.data()), part.size());
    offset += part.size();
  }
  return out;
}

TEST(StreamBufferTest, AppendedBytesReadBackAcrossChunks) {
  StreamBuffer buffer;
  std::string data = Pattern(3 * StreamBuffer::kChunk + 123, 0);
  buffer.Append(Bytes(data));
  EXPECT_EQ(buffer.begin(), 0u);
  EXPECT_EQ(buffer.end(), data.size());
  EXPECT_EQ(ReadBack(buffer, 0), data);
  EXPECT_EQ(ReadBack(buffer, 70000), data.substr(70000));
  EXPECT_TRUE(buffer.At(buffer.end()).empty());
}

TEST(StreamBufferTest, DroppingKeepsLaterOffsetsAndReusesChunks) {
  StreamBuffer buffer;
  uint64_t written = 0;
  // A sliding window: write 10 KiB, acknowledge up to 5 KiB behind, many times over, so whole
  // chunks go back to the spares and come out again.
  for (int round = 0; round < 200; ++round) {
    std::string part = Pattern(10 * 1024, written);
    std::span<uint8_t> tail = buffer.WritableTail(part.size());
    ASSERT_GT(tail.size(), 0u);
    std::copy(part.begin(), part.begin() + static_cast<long>(tail.size()), tail.begin());
    buffer.Commit(tail.size());
    written += tail.size();
    buffer.DropUntil(written > 5 * 1024 ? written - 5 * 1024 : 0);
    ASSERT_EQ(buffer.end(), written);
    ASSERT_EQ(ReadBack(buffer, buffer.begin()), Pattern(buffer.size(), buffer.begin()));
  }
  buffer.DropUntil(buffer.end() + 99);  // beyond the end: everything, no further
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.begin(), written);
  buffer.Append(Bytes(Pattern(100, written)));
  EXPECT_EQ(ReadBack(buffer, written), Pattern(100, written));
}

TEST(StreamBufferTest, WritableTailHonoursTheLimitAndTheChunkEnd) {
  StreamBuffer buffer;
  EXPECT_EQ(buffer.WritableTail(10).size(), 10u);
  buffer.Commit(StreamBuffer::kChunk - 4);
  EXPECT_EQ(buffer.WritableTail(100).size(), 4u);  // up to the chunk's end
  buffer.Commit(4);
  EXPECT_EQ(buffer.WritableTail(1 << 20).size(), StreamBuffer::kChunk);  // a new chunk
}

}  // namespace
}  // namespace alknet::quic
