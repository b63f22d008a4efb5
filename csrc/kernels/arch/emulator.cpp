// The emulated launch (see emulator.h for what it does and what it proves).  Host-only; built with DEEPOPS_EMULATE.
//
// One block at a time: the block's CUDA threads are fibers on the calling thread, driven by run_block's loop.  A fiber
// switch is a few instructions (deepops_emu_switch_context below, x86-64: the callee-saved registers, the stack
// pointer, MXCSR and the x87 control word), not ucontext's swapcontext, which costs a system call per switch and, under
// AddressSanitizer, a clear of the whole target stack's shadow.  A fiber runs until it must wait (block barrier, warp
// rendezvous) or finishes; when no fiber can run, the loop resolves what is complete (a warp rendezvous whose lanes
// have all arrived, a barrier that every thread waits at) or reports why nothing can (barrier divergence, a lane
// missing from a collective, deadlock).
#include "emulator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEEPOPS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DEEPOPS_ASAN 1
#endif
#if defined(DEEPOPS_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The built-in variables (config.h declares them).
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

#if !defined(__x86_64__)
#error "the emulated launch's context switch is written for x86-64"
#endif

// deepops_emu_switch_context(&save_sp, next_sp): pushes the callee-saved state on the current stack, stores the stack
// pointer in *save_sp, loads next_sp and pops the state saved there (a fiber's first "return" lands in its entry
// function).
extern "C" void deepops_emu_switch_context(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl deepops_emu_switch_context
  .type deepops_emu_switch_context, @function
deepops_emu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size deepops_emu_switch_context, .-deepops_emu_switch_context
  .section .note.GNU-stack,"",@progbits
  .text
)");

namespace deepops {
namespace emu {
namespace {

// ------------------------------------------------------------------------------------------------- limits
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr size_t kDefaultDynamicSmem = 48 * 1024;    // without cudaFuncSetAttribute
constexpr size_t kMaxDynamicSmem = 227 * 1024;       // sm_90's opt-in maximum per block
#if defined(DEEPOPS_ASAN)
constexpr size_t kStackBytes = 512 * 1024;           // ASan's redzones make frames several times larger
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

// ------------------------------------------------------------------------------------------------- stacks
// mmap'ed, with a guard page below (a stack overflow faults instead of corrupting a neighbour); pooled per OS
// thread and reused by every block.
struct Stack {
  char* base = nullptr;  // the guard page
  char* lo() const { return base + page(); }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  Stack() {
    void* p = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "deepops emulator: cannot map a fiber stack\n");
      std::abort();
    }
    base = static_cast<char*>(p);
    mprotect(base, page(), PROT_NONE);
  }
  ~Stack() { munmap(base, kStackBytes + page()); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
};

// ------------------------------------------------------------------------------------------------- fibers
enum class State { kReady, kBarrier, kWarp, kDone };

struct PendingCopy {
  void* dst;
  unsigned char bytes[16];
  long long group;  // -1 while not yet committed
};

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
  State state = State::kReady;
  uint3 tid;
  int linear = 0;
  // at a barrier
  int barrier_kind = 0;  // 1 = __syncthreads, 2 = __syncthreads_or
  int predicate = 0;
  int barrier_result = 0;
  // at a warp rendezvous
  unsigned mask = 0;
  WarpResolver resolve = nullptr;
  void* data = nullptr;
  const char* what = nullptr;
  // cp.async
  std::vector<PendingCopy> copies;
  long long groups_committed = 0;
  void* fake_stack = nullptr;  // ASan's fake stack of this fiber while switched out
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<unsigned char> smem;  // dynamic shared memory
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  void* scheduler_sp = nullptr;
  const void* sched_stack_bottom = nullptr;  // the scheduler's stack, for ASan's fiber switches
  size_t sched_stack_size = 0;
  void* sched_fake_stack = nullptr;
  Fiber* current = nullptr;
  std::string error;  // set by a fiber (trap) or the scheduler
};

thread_local Block* t_block = nullptr;
thread_local std::vector<std::unique_ptr<Stack>>* t_stacks = nullptr;
thread_local std::string t_last_error;
thread_local bool t_stacks_dirty = false;  // a fiber was abandoned mid-run: its stack may hold ASan redzones

std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

struct Settings {
  std::mutex m;
  Schedule schedule = Schedule::kForward;
  uint64_t seed = 0;
  std::map<std::string, long long> launches;
  std::map<std::string, size_t> smem_optin;
  Settings() {
    if (const char* s = std::getenv("DEEPOPS_EMU_SCHEDULE")) {
      if (!parse_schedule(s, &schedule, &seed)) {
        std::fprintf(stderr, "deepops emulator: DEEPOPS_EMU_SCHEDULE=%s is not forward, reverse or shuffle[:SEED]\n",
                     s);
        std::abort();
      }
    }
  }
};
Settings& settings() {
  static Settings s;
  return s;
}

std::vector<std::unique_ptr<Stack>>& stacks(size_t n) {
  if (!t_stacks) t_stacks = new std::vector<std::unique_ptr<Stack>>();  // lives as long as the thread's pool
  while (t_stacks->size() < n) t_stacks->push_back(std::make_unique<Stack>());
  return *t_stacks;
}

// -------------------------------------------------------------------------------------- switching (ASan-aware)
void switch_to_fiber(Block& b, Fiber& f, const Stack& s) {
  b.current = &f;
  threadIdx = f.tid;
#if defined(DEEPOPS_ASAN)
  __sanitizer_start_switch_fiber(&b.sched_fake_stack, s.lo(), kStackBytes);
#else
  (void)s;
#endif
  deepops_emu_switch_context(&b.scheduler_sp, f.sp);
#if defined(DEEPOPS_ASAN)
  __sanitizer_finish_switch_fiber(b.sched_fake_stack, nullptr, nullptr);
#endif
  b.current = nullptr;
}

// From the running fiber back to the scheduler; returns when the scheduler resumes this fiber.
void yield_to_scheduler() {
  Block& b = *t_block;
  Fiber& f = *b.current;
#if defined(DEEPOPS_ASAN)
  __sanitizer_start_switch_fiber(&f.fake_stack, b.sched_stack_bottom, b.sched_stack_size);
#endif
  deepops_emu_switch_context(&f.sp, b.scheduler_sp);
#if defined(DEEPOPS_ASAN)
  __sanitizer_finish_switch_fiber(f.fake_stack, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
}

// The fiber leaves for good (finished or trapped): it is never resumed.
[[noreturn]] void leave_fiber() {
  Block& b = *t_block;
#if defined(DEEPOPS_ASAN)
  __sanitizer_start_switch_fiber(nullptr, b.sched_stack_bottom, b.sched_stack_size);
#endif
  void* dead_sp;
  deepops_emu_switch_context(&dead_sp, b.scheduler_sp);
  std::abort();  // unreachable: the scheduler never switches back
}

void flush_copies(Fiber& f, long long up_to_group) {
  size_t kept = 0;
  for (auto& c : f.copies) {
    if (c.group >= 0 && c.group <= up_to_group) std::memcpy(c.dst, c.bytes, 16);
    else f.copies[kept++] = c;
  }
  f.copies.resize(kept);
}

extern "C" void deepops_emu_fiber_entry() {
  Block& b = *t_block;
#if defined(DEEPOPS_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
  b.body(b.ctx);
  deepops::emu::Fiber& f = *b.current;
  for (auto& c : f.copies) std::memcpy(c.dst, c.bytes, 16);  // copies never waited for still land
  f.copies.clear();
  f.state = State::kDone;
  leave_fiber();
}

std::string where(const Fiber& f) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z, blockIdx.x,
                blockIdx.y, blockIdx.z);
  return buf;
}

// Resolves the warp rendezvous that are complete; returns true if one was, sets b.error if one cannot complete.
bool resolve_warps(Block& b) {
  bool progress = false;
  const int n = static_cast<int>(b.fibers.size());
  for (int w = 0; w * 32 < n && b.error.empty(); ++w) {
    const int first = w * 32, last = std::min(n, first + 32);
    for (int i = first; i < last; ++i) {
      Fiber& f = b.fibers[i];
      if (f.state != State::kWarp) continue;
      // the lanes named in f's mask: all must wait at the same collective with the same mask
      bool complete = true;
      for (int lane = 0; lane < 32; ++lane) {
        if (!((f.mask >> lane) & 1u)) continue;
        const int j = first + lane;
        if (j >= last) {
          b.error = std::string(f.what) + ": mask names lane " + std::to_string(lane) + " that the block lacks, " +
                    where(f);
          return progress;
        }
        const Fiber& g = b.fibers[j];
        if (g.state == State::kWarp) {
          if (g.mask != f.mask || g.resolve != f.resolve) {
            b.error = std::string(f.what) + " of " + where(f) + " meets " + g.what + " with mask " +
                      std::to_string(g.mask) + " of " + where(g) + " (mask " + std::to_string(f.mask) + ")";
            return progress;
          }
        } else {
          complete = false;
          if (g.state == State::kDone) {
            b.error = std::string(f.what) + " of " + where(f) + " waits for lane " + std::to_string(lane) +
                      ", which has exited";
            return progress;
          }
        }
      }
      if (!complete) continue;
      void* lanes[32] = {};
      for (int lane = 0; lane < 32; ++lane)
        if ((f.mask >> lane) & 1u) lanes[lane] = b.fibers[first + lane].data;
      const unsigned mask = f.mask;
      f.resolve(lanes, mask);
      for (int lane = 0; lane < 32; ++lane)
        if ((mask >> lane) & 1u) b.fibers[first + lane].state = State::kReady;
      progress = true;
    }
  }
  return progress;
}

void run_block(Block& b, const std::vector<int>& order) {
  std::vector<std::unique_ptr<Stack>>& st = stacks(b.fibers.size());
  for (size_t i = 0; i < b.fibers.size(); ++i) {
    Fiber& f = b.fibers[i];
    const Stack& s = *st[i];
#if defined(DEEPOPS_ASAN)
    if (t_stacks_dirty) __asan_unpoison_memory_region(s.lo(), kStackBytes);
#endif
    // the initial frame that deepops_emu_switch_context pops: MXCSR / x87 control word, six callee-saved registers,
    // then the "return address" deepops_emu_fiber_entry, entered with the stack aligned as after a call
    uint64_t* top = reinterpret_cast<uint64_t*>(s.lo() + kStackBytes);
    top[-1] = 0;
    top[-2] = reinterpret_cast<uint64_t>(&deepops_emu_fiber_entry);
    for (int r = 3; r <= 8; ++r) top[-r] = 0;
    top[-9] = 0x1F80ull | (0x037Full << 32);  // default MXCSR (low word), x87 control word (next)
    f.sp = top - 9;
  }
  t_stacks_dirty = false;
  for (;;) {
    bool ran = false;
    for (int i : order) {
      Fiber& f = b.fibers[i];
      if (f.state != State::kReady) continue;
      switch_to_fiber(b, f, *st[i]);
      ran = true;
      if (!b.error.empty()) return;
    }
    if (ran) continue;
    if (resolve_warps(b)) continue;
    if (!b.error.empty()) return;
    int done = 0, at_barrier = 0, at_warp = 0;
    for (const Fiber& f : b.fibers) {
      done += f.state == State::kDone;
      at_barrier += f.state == State::kBarrier;
      at_warp += f.state == State::kWarp;
    }
    if (done == static_cast<int>(b.fibers.size())) return;
    if (at_barrier > 0 && at_warp == 0 && done == 0) {
      int kind = 0, any = 0;
      for (const Fiber& f : b.fibers) {
        if (kind && f.barrier_kind != kind) {
          b.error = "barrier mismatch: __syncthreads and __syncthreads_or meet (" + where(f) + ")";
          return;
        }
        kind = f.barrier_kind;
        any |= f.predicate != 0;
      }
      for (Fiber& f : b.fibers) {
        f.barrier_result = any;
        f.state = State::kReady;
      }
      continue;
    }
    // nothing can run: report the first waiting thread
    for (const Fiber& f : b.fibers) {
      if (f.state == State::kBarrier && done > 0) {
        b.error = "barrier divergence: " + where(f) + " waits at __syncthreads while " + std::to_string(done) +
                  " thread(s) of the block have exited";
        return;
      }
      if (f.state == State::kWarp) {
        b.error = std::string("deadlock: ") + f.what + " of " + where(f) + " never completes (a lane of mask " +
                  std::to_string(f.mask) + " waits elsewhere)";
        return;
      }
    }
    b.error = "deadlock: no thread of the block can run";
    return;
  }
}

}  // namespace

// ================================================================================================== public API

bool parse_schedule(const std::string& text, Schedule* s, uint64_t* seed) {
  if (text == "forward") { *s = Schedule::kForward; *seed = 0; return true; }
  if (text == "reverse") { *s = Schedule::kReverse; *seed = 0; return true; }
  if (text.rfind("shuffle", 0) == 0) {
    *s = Schedule::kShuffle;
    *seed = 12345;
    if (text.size() == 7) return true;
    if (text[7] != ':' || text.size() == 8) return false;
    char* end = nullptr;
    *seed = std::strtoull(text.c_str() + 8, &end, 10);
    return *end == '\0';
  }
  return false;
}

void set_schedule(Schedule s, uint64_t seed) {
  std::lock_guard<std::mutex> lock(settings().m);
  settings().schedule = s;
  settings().seed = seed;
}

Schedule schedule(uint64_t* seed) {
  std::lock_guard<std::mutex> lock(settings().m);
  if (seed) *seed = settings().seed;
  return settings().schedule;
}

namespace {
std::vector<std::string>& registry() {
  static std::vector<std::string> r;
  return r;
}
bool g_force_64bit = false;
}  // namespace

bool register_kernel(const char* kernel_name) {
  std::lock_guard<std::mutex> lock(settings().m);
  registry().emplace_back(kernel_name);
  return true;
}

std::vector<std::string> registered_kernels() {
  std::lock_guard<std::mutex> lock(settings().m);
  std::vector<std::string> r = registry();
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

void set_force_64bit_indices(bool on) { g_force_64bit = on; }
bool force_64bit_indices() { return g_force_64bit; }

std::vector<std::pair<std::string, long long>> kernel_launch_counts() {
  std::lock_guard<std::mutex> lock(settings().m);
  return {settings().launches.begin(), settings().launches.end()};
}

void reset_kernel_launch_counts() {
  std::lock_guard<std::mutex> lock(settings().m);
  settings().launches.clear();
}

const char* last_error_message() { return t_last_error.c_str(); }

int sm_count() {
  static const int n = [] {
    const char* s = std::getenv("DEEPOPS_EMU_SM_COUNT");
    const int v = s ? std::atoi(s) : 0;
    return v > 0 ? v : 132;
  }();
  return n;
}

int compute_capability_major() { return 9; }

cudaError_t allow_dynamic_smem(const char* kernel_name, size_t bytes) {
  t_last_error.clear();
  if (bytes > kMaxDynamicSmem) {
    t_last_error = std::string(kernel_name) + ": " + std::to_string(bytes) + " bytes of dynamic shared memory exceed " +
                   std::to_string(kMaxDynamicSmem);
    return cudaErrorInvalidValue;
  }
  std::lock_guard<std::mutex> lock(settings().m);
  settings().smem_optin[kernel_name] = bytes;
  return cudaSuccess;
}

cudaError_t run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* ctx) {
  t_last_error.clear();
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  auto fail = [&](cudaError_t e, const std::string& why) {
    t_last_error = std::string(kernel_name) + ": " + why;
    return e;
  };
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.z > 64)
    return fail(cudaErrorInvalidConfiguration, "block " + std::to_string(block.x) + "x" + std::to_string(block.y) +
                                                   "x" + std::to_string(block.z) + " is not a valid block shape");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    return fail(cudaErrorInvalidConfiguration, "grid " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
                                                   std::to_string(grid.z) + " is not a valid grid shape");
  Schedule sched;
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(settings().m);
    sched = settings().schedule;
    seed = settings().seed;
    settings().launches[kernel_name] += 1;
    size_t limit = kDefaultDynamicSmem;
    auto it = settings().smem_optin.find(kernel_name);
    if (it != settings().smem_optin.end()) limit = std::max(limit, it->second);
    if (smem > limit)
      return fail(cudaErrorInvalidValue, std::to_string(smem) + " bytes of dynamic shared memory exceed the " +
                                             std::to_string(limit) + " allowed (cudaFuncSetAttribute)");
  }

  std::lock_guard<std::mutex> lock(launch_mutex());
  Block b;
  b.body = body;
  b.ctx = ctx;
  b.fibers.resize(static_cast<size_t>(threads));
  std::vector<int> order(b.fibers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  if (sched == Schedule::kReverse) std::reverse(order.begin(), order.end());
  std::mt19937_64 rng(seed);

  Block* const saved_block = t_block;
  const uint3 saved_tid = threadIdx, saved_bid = blockIdx;
  const dim3 saved_bdim = blockDim, saved_gdim = gridDim;
  t_block = &b;
  gridDim = grid;
  blockDim = block;
  std::string error;
  for (unsigned bz = 0; bz < grid.z && error.empty(); ++bz)
    for (unsigned by = 0; by < grid.y && error.empty(); ++by)
      for (unsigned bx = 0; bx < grid.x && error.empty(); ++bx) {
        blockIdx = make_uint3(bx, by, bz);
        b.smem.assign(smem, 0xFF);  // NaN / all-ones: a read of never-written shared memory shows
        int linear = 0;
        for (unsigned z = 0; z < block.z; ++z)
          for (unsigned y = 0; y < block.y; ++y)
            for (unsigned x = 0; x < block.x; ++x) {
              Fiber& f = b.fibers[linear];
              f.state = State::kReady;
              f.tid = make_uint3(x, y, z);
              f.linear = linear++;
              f.copies.clear();
              f.groups_committed = 0;
              f.fake_stack = nullptr;
            }
        if (sched == Schedule::kShuffle) std::shuffle(order.begin(), order.end(), rng);
        run_block(b, order);
        error = b.error;
      }
  t_block = saved_block;
  threadIdx = saved_tid;
  blockIdx = saved_bid;
  blockDim = saved_bdim;
  gridDim = saved_gdim;
  if (!error.empty()) {
    t_stacks_dirty = true;
    return fail(cudaErrorLaunchFailure, error);
  }
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------- called from running fibers
namespace {
Fiber& running(const char* what) {
  if (!t_block || !t_block->current) {
    std::fprintf(stderr, "deepops emulator: %s called outside an emulated kernel\n", what);
    std::abort();
  }
  return *t_block->current;
}
}  // namespace

void* dynamic_shared() {
  running("dynamic shared memory");
  return t_block->smem.empty() ? nullptr : t_block->smem.data();
}

int barrier_or(int predicate) {
  Fiber& f = running("__syncthreads");
  f.state = State::kBarrier;
  f.barrier_kind = 2;
  f.predicate = predicate;
  yield_to_scheduler();
  return f.barrier_result;
}

void barrier() {
  Fiber& f = running("__syncthreads");
  f.state = State::kBarrier;
  f.barrier_kind = 1;
  f.predicate = 0;
  yield_to_scheduler();
}

void warp_collective(unsigned mask, WarpResolver resolve, void* data, const char* what) {
  Fiber& f = running(what);
  const int lane = f.linear & 31;
  if (!((mask >> lane) & 1u)) trap((std::string(what) + ": the calling lane is not in the mask").c_str());
  f.state = State::kWarp;
  f.mask = mask;
  f.resolve = resolve;
  f.data = data;
  f.what = what;
  yield_to_scheduler();
}

int lane_id() { return running("lane_id").linear & 31; }

void trap(const char* why) {
  Fiber& f = running("__trap");
  t_block->error = std::string("trap (") + why + ") in " + where(f);
  f.state = State::kDone;
  leave_fiber();
}

void cp_async16(void* dst, const void* src, int src_bytes) {
  Fiber& f = running("cp.async");
  if (src_bytes < 0 || src_bytes > 16) trap("cp.async with a source size outside 0..16");
  if (reinterpret_cast<uintptr_t>(dst) % 16 || (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % 16))
    trap("cp.async.cg 16 with an address that is not 16-byte aligned");
  PendingCopy c{};
  c.dst = dst;
  if (src_bytes > 0) std::memcpy(c.bytes, src, static_cast<size_t>(src_bytes));
  c.group = -1;
  f.copies.push_back(c);
}

void cp_async_commit() {
  Fiber& f = running("cp.async.commit_group");
  for (auto& c : f.copies)
    if (c.group < 0) c.group = f.groups_committed;
  ++f.groups_committed;
}

void cp_async_wait(int pending_groups_allowed) {
  Fiber& f = running("cp.async.wait_group");
  flush_copies(f, f.groups_committed - 1 - pending_groups_allowed);
}

}  // namespace emu
}  // namespace deepops
