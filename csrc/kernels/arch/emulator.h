// The emulated launch: CUDA kernels run on the CPU, from the same sources (built with DEEPOPS_EMULATE).
//
// How a grid runs.  The blocks run one after the other on the calling thread (a process-wide lock serialises
// launches, because __shared__ arrays are `static` in this build).  Each CUDA thread of a block is a fiber with a
// stack of its own (a small x86-64 context switch; not an OS thread per CUDA thread).  A fiber runs until it
// reaches a point where it must wait for others, then hands control back to the block's scheduler:
//   * a block barrier (__syncthreads, __syncthreads_or): released when every thread of the block waits there; a
//     thread that exits while others wait at a barrier is reported (barrier divergence), as is a barrier that
//     never fills (deadlock);
//   * a warp collective (shuffles, __syncwarp, mma.sync): a per-warp rendezvous; once every lane of the mask has
//     arrived, a resolver sees all lanes' data at once (for mma: the 32 lanes' fragments, in the PTX ISA layout)
//     and writes each lane's result; a lane of the mask that has exited or waits elsewhere is reported.
// The order in which the runnable threads of a block run between two such points is selectable (in order,
// reversed, seeded shuffle), so that a missing barrier shows up as a difference between two schedules.
// cp.async copies are read when issued and written to shared memory only at the cp.async.wait_group that
// retires their group (the strictest legal schedule), so a read of a stage that was not waited for sees stale data.
// Dynamic shared memory is allocated per block at its exact size (AddressSanitizer sees overflows) and filled
// with 0xFF bytes (NaN for floats) so that reads of never-written shared memory show up.
//
// What this proves and what not: the kernels' index math, bounds, fragment layouts, barrier placement between
// phases, warp-collective participation and numerics, on every path a test reaches.  Not timing, not the real
// memory model (global writes are visible at once; no caching, no reordering), not concurrency between warps
// beyond the interleavings at the rendezvous points.
#pragma once

#if defined(DEEPOPS_EMULATE)

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config.h"

namespace deepops {
namespace emu {

// Runs body(ctx) as every thread of every block of the grid.  Returns cudaSuccess, or an error whose message
// last_error_message() gives (a trap, barrier divergence, a deadlock, a bad configuration).
cudaError_t run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t dynamic_smem_bytes, void (*body)(void*),
                     void* ctx);

// The dynamic shared memory of the running block.
void* dynamic_shared();

// Block barrier; with a predicate: returns non-zero when any thread's predicate was non-zero.
void barrier();
int barrier_or(int predicate);

// A warp collective: every lane of `mask` calls it with its own `data`; when all have arrived, resolve(lane_data,
// mask) runs once with the 32 lanes' pointers (nullptr for lanes outside the mask) and may write through them.
using WarpResolver = void (*)(void* const* lane_data, unsigned mask);
void warp_collective(unsigned mask, WarpResolver resolve, void* data, const char* what);

// Lane index of the running thread in its warp.
int lane_id();

// Aborts the running kernel (__trap): the launch returns cudaErrorLaunchFailure with `why`.
[[noreturn]] void trap(const char* why);

// cp.async, 16 bytes: src_bytes (0..16) bytes read now, the rest zero; written at the wait that retires the group.
void cp_async16(void* dst, const void* src, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups_allowed);

// Opt-in of a kernel to more than 48 KiB of dynamic shared memory (cudaFuncSetAttribute's contract).
cudaError_t allow_dynamic_smem(const char* kernel_name, size_t bytes);

enum class Schedule : int { kForward = 0, kReverse = 1, kShuffle = 2 };
// The thread order for later launches (all threads of the process).  The initial one comes from the environment:
// DEEPOPS_EMU_SCHEDULE = forward | reverse | shuffle[:SEED].
void set_schedule(Schedule s, uint64_t seed = 0);
Schedule schedule(uint64_t* seed = nullptr);
// Parses "forward" / "reverse" / "shuffle" / "shuffle:SEED"; false if not one of them.
bool parse_schedule(const std::string& text, Schedule* s, uint64_t* seed);

// Every kernel instantiation that a launcher of the library can launch (registered at load time by arch::launch's
// instantiations), whether it ran or not: the denominator of the coverage report.
bool register_kernel(const char* kernel_name);
std::vector<std::string> registered_kernels();

// Test hook: kernels with a 32-bit and a 64-bit index variant take the 64-bit one even for small tensors (pool),
// so that the variant meant for tensors of 2^31 elements and more runs on test-sized inputs.
void set_force_64bit_indices(bool on);
bool force_64bit_indices();

// Number of launches per kernel (name as written in the source, template arguments included) since the start or
// the last reset.
std::vector<std::pair<std::string, long long>> kernel_launch_counts();
void reset_kernel_launch_counts();

// The message of the last failed launch on this thread.
const char* last_error_message();

// Emulated device attributes (an H100 SXM: 132 SMs, compute capability 9.0); DEEPOPS_EMU_SM_COUNT overrides the
// SM count.
int sm_count();
int compute_capability_major();

}  // namespace emu
}  // namespace deepops

#endif  // DEEPOPS_EMULATE
