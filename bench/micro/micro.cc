// Google Benchmark micro-benchmarks of the allocation calls. The binary links
// no allocator: bench/run.sh runs it under each one with LD_PRELOAD, so every
// allocator runs the same code. Each benchmark reports the time per
// operation named in its comment.
//
// Pointers go through benchmark::DoNotOptimize, so the compiler can neither
// elide a malloc/free pair nor fold a calloc into anything cheaper.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

// malloc(size) + free: one pair per iteration, sizes 8 B .. 1 MiB.
void BM_malloc_free(benchmark::State &state)
{
  const auto size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void *block = malloc(size);
    benchmark::DoNotOptimize(block);
    free(block);
  }
}
BENCHMARK(BM_malloc_free)->RangeMultiplier(4)->Range(8, 1 << 20)->Arg(24)->Arg(48)->Arg(96)
    ->Arg(200)->Arg(400)->Arg(3000)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);

// A batch of `kBatch` 64-byte blocks, then freed in an order: the time per
// block (malloc + free). The order decides which free-list paths run.
constexpr int kBatch = 1000;
enum class Order { lifo, fifo, random };

void batch(benchmark::State &state, Order order, size_t size)
{
  std::vector<void *> blocks(kBatch);
  std::vector<int> permutation(kBatch);
  for (int i = 0; i < kBatch; i++)
    permutation[i] = i;
  std::shuffle(permutation.begin(), permutation.end(), std::mt19937(42));
  for (auto _ : state) {
    for (int i = 0; i < kBatch; i++) {
      blocks[i] = malloc(size);
      benchmark::DoNotOptimize(blocks[i]);
    }
    switch (order) {
    case Order::lifo:
      for (int i = kBatch - 1; i >= 0; i--)
        free(blocks[i]);
      break;
    case Order::fifo:
      for (int i = 0; i < kBatch; i++)
        free(blocks[i]);
      break;
    case Order::random:
      for (int i = 0; i < kBatch; i++)
        free(blocks[permutation[i]]);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_batch_lifo(benchmark::State &state) { batch(state, Order::lifo, state.range(0)); }
void BM_batch_fifo(benchmark::State &state) { batch(state, Order::fifo, state.range(0)); }
void BM_batch_random(benchmark::State &state) { batch(state, Order::random, state.range(0)); }
BENCHMARK(BM_batch_lifo)->Arg(64)->Arg(1024);
BENCHMARK(BM_batch_fifo)->Arg(64)->Arg(1024);
BENCHMARK(BM_batch_random)->Arg(64)->Arg(1024);

// calloc(1, size) + free: the zeroing is part of the cost, and an allocator
// that knows fresh memory is zero can skip it.
void BM_calloc_free(benchmark::State &state)
{
  const auto size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void *block = calloc(1, size);
    benchmark::DoNotOptimize(block);
    free(block);
  }
}
BENCHMARK(BM_calloc_free)->Arg(64)->Arg(4096)->Arg(1 << 20);

// A buffer grown by realloc from 16 B to range(0) bytes, +50% each step, then
// freed: the time per buffer (about 20 reallocs to 64 KiB).
void BM_realloc_growth(benchmark::State &state)
{
  const auto limit = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    size_t size = 16;
    char *buffer = static_cast<char *>(malloc(size));
    buffer[0] = 1;
    while (size < limit) {
      size += size / 2;
      buffer = static_cast<char *>(realloc(buffer, size));
      buffer[size - 1] = 1; // the program writes what it grew
      benchmark::DoNotOptimize(buffer);
    }
    free(buffer);
  }
}
BENCHMARK(BM_realloc_growth)->Arg(64 << 10)->Arg(4 << 20);

// aligned_alloc(alignment, alignment) + free: against BM_malloc_free of
// the same size (64 B .. 4 KiB), and one alignment past the small classes.
void BM_aligned_alloc(benchmark::State &state)
{
  const auto alignment = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void *block = aligned_alloc(alignment, alignment);
    benchmark::DoNotOptimize(block);
    free(block);
  }
}
BENCHMARK(BM_aligned_alloc)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)->Arg(1 << 16);

// Producer/consumer: thread 0 mallocs 64-byte blocks and passes them through
// a single-producer single-consumer ring to thread 1, which frees them; every
// free is remote. Each thread runs the same iteration count, so the consumer
// frees exactly what the producer made. Time per block.
class Ring {
 public:
  bool push(void *block)
  {
    size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_.load(std::memory_order_acquire) == kSlots)
      return false;
    slots_[tail % kSlots] = block;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }
  void *pop()
  {
    size_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_.load(std::memory_order_acquire))
      return nullptr;
    void *block = slots_[head % kSlots];
    head_.store(head + 1, std::memory_order_release);
    return block;
  }

 private:
  static constexpr size_t kSlots = 4096;
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
  alignas(64) void *slots_[kSlots];
};

Ring ring;

void BM_producer_consumer(benchmark::State &state)
{
  const bool producer = state.thread_index() == 0;
  for (auto _ : state) {
    if (producer) {
      void *block = malloc(64);
      benchmark::DoNotOptimize(block);
      while (!ring.push(block))
        std::this_thread::yield();
    } else {
      void *block;
      while ((block = ring.pop()) == nullptr)
        std::this_thread::yield();
      free(block);
    }
  }
}
BENCHMARK(BM_producer_consumer)->Threads(2)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
