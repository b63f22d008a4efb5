// Device-wide algorithms from CUB (stable radix sort of key/value pairs, selection by flags), behind one interface
// with a host implementation of the same contract for the emulated build.
//
// The CUB contract kept by both: called with temp == nullptr, only temp_bytes is set (the scratch the call needs);
// otherwise the call runs on `stream` using temp.  The radix sorts are stable and order by the key bits
// [begin_bit, end_bit) as unsigned integers; select_flagged keeps in[i] where flags[i] != 0, in order, and
// writes their number to *num_selected.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.h"
#if defined(DEEPOPS_EMULATE)
#include <algorithm>
#include <numeric>
#include <vector>
#else
#include <cub/cub.cuh>
#endif

namespace deepops {
namespace arch {

#if defined(DEEPOPS_EMULATE)
namespace detail {
template <typename K, typename V>
void host_sort_pairs(const K* keys_in, K* keys_out, const V* vals_in, V* vals_out, int n, int begin_bit,
                     int end_bit, bool descending) {
  const int width = end_bit - begin_bit;
  const K mask = width >= static_cast<int>(sizeof(K) * 8) ? ~K(0) : ((K(1) << width) - 1);
  auto key = [&](int i) { return static_cast<K>((keys_in[i] >> begin_bit) & mask); };
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (descending) std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
  else std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
  std::vector<K> k(static_cast<size_t>(n));
  std::vector<V> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) k[i] = keys_in[order[i]], v[i] = vals_in[order[i]];
  std::copy(k.begin(), k.end(), keys_out);
  std::copy(v.begin(), v.end(), vals_out);
}
}  // namespace detail
#endif

template <typename K, typename V>
cudaError_t sort_pairs_descending(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* vals_in,
                                  V* vals_out, int n, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                                  cudaStream_t stream = 0) {
#if defined(DEEPOPS_EMULATE)
  (void)stream;
  if (temp == nullptr) { temp_bytes = 0; return cudaSuccess; }
  detail::host_sort_pairs(keys_in, keys_out, vals_in, vals_out, n, begin_bit, end_bit, true);
  return cudaSuccess;
#else
  return cub::DeviceRadixSort::SortPairsDescending(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n,
                                                   begin_bit, end_bit, stream);
#endif
}

template <typename K, typename V>
cudaError_t sort_pairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* vals_in, V* vals_out,
                       int n, int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
#if defined(DEEPOPS_EMULATE)
  (void)stream;
  if (temp == nullptr) { temp_bytes = 0; return cudaSuccess; }
  detail::host_sort_pairs(keys_in, keys_out, vals_in, vals_out, n, begin_bit, end_bit, false);
  return cudaSuccess;
#else
  return cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, begin_bit,
                                         end_bit, stream);
#endif
}

template <typename T, typename F, typename O, typename N>
cudaError_t select_flagged(void* temp, size_t& temp_bytes, const T* in, const F* flags, O* out, N* num_selected,
                           int n, cudaStream_t stream = 0) {
#if defined(DEEPOPS_EMULATE)
  (void)stream;
  if (temp == nullptr) { temp_bytes = 0; return cudaSuccess; }
  N count = 0;
  for (int i = 0; i < n; ++i)
    if (flags[i]) out[count++] = static_cast<O>(in[i]);
  *num_selected = count;
  return cudaSuccess;
#else
  return cub::DeviceSelect::Flagged(temp, temp_bytes, in, flags, out, num_selected, n, stream);
#endif
}

}  // namespace arch
}  // namespace deepops
