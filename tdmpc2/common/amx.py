"""bfloat16 matmuls on Intel AMX tiles for `matmul_precision=medium` inference (optional).

At `medium`, torch rounds the inputs of every float32 matmul to bfloat16 and sums in float32.
On a CPU that goes through oneDNN, which converts the float32 weight and input on every call: a
536 x 384 x 384 product took 0.30-0.33 ms there against 0.12 ms for the same product on
bfloat16 tensors. In planning the weights do not change between updates, so the kernel below
keeps each weight as bfloat16 tiles packed once per change of the weight, rounds the input rows to
bfloat16 as it reads them (round to nearest even, as oneDNN does), multiplies on AMX with float32
sums and writes float32: the same function as torch's `medium` matmul (the tests require equal
results), 0.06-0.19 ms for the plan's shapes on the development CPU (Sapphire Rapids).

It applies only where it computes what torch would: float32 CPU tensors, no autograd, torch at
`medium` precision, 1 torch thread (the kernel is single-threaded), and a product shape that torch
itself rounds (`torch_rounds`: small or thin products stay float32 in torch); everything else
takes torch's own matmul. out_features that are not a multiple of 16 are padded with zero rows.
`available()` is False without a C compiler that knows AMX, on CPUs without AMX-BF16, or when
the OS refuses the tile state.

Layout: W (N, K) float32 is packed into bfloat16 tiles of 16 columns x 32-deep K blocks (K padded
with zeros to a multiple of 32), each tile 16 rows of K pairs x 16 columns x 2 (AMX's VNNI form).
C tiles are 32 rows x 32 columns (2 x 2 tiles of 16 x 16 float32 sums).
"""
from __future__ import annotations

import ctypes
import subprocess

import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from tdmpc2.common import kernels

_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int amx_enable(void) {  /* ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: 0 when granted */
    return (int)syscall(SYS_arch_prctl, 0x1023, 18);
}

typedef struct { uint8_t palette, start; uint8_t pad[14]; uint16_t colsb[16]; uint8_t rows[16]; } tilecfg;

static void configure(void) {  /* 8 tiles of 16 rows x 64 bytes */
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.colsb[t] = 64; c.rows[t] = 16; }
    _tile_loadconfig(&c);
}

static inline uint16_t to_bf16(float f) {  /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* P[((nb KB + kb) 16 + k2) 32 + 2 n + e] = bf16(W[16 nb + n, 32 kb + 2 k2 + e]), 0 beyond K */
void amx_pack(const float *W, int64_t N, int64_t K, uint16_t *P) {
    int64_t KB = (K + 31) / 32;
    for (int64_t nb = 0; nb < N / 16; nb++)
        for (int64_t kb = 0; kb < KB; kb++) {
            uint16_t *tile = P + (nb * KB + kb) * 512;
#ifdef __AVX512BF16__
            if (kb * 32 + 32 <= K) {  /* a row's 32 values are 16 k pairs: one per tile row */
                const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                        _mm512_set1_epi32(16));
                for (int n = 0; n < 16; n++) {
                    const float *src = W + (nb * 16 + n) * K + kb * 32;
                    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src));
                    _mm512_i32scatter_epi32((void *)((uint32_t *)tile + n), rows, (__m512i)v, 4);
                }
                continue;
            }
#endif
            for (int k2 = 0; k2 < 16; k2++)
                for (int n = 0; n < 16; n++)
                    for (int e = 0; e < 2; e++) {
                        int64_t k = kb * 32 + 2 * k2 + e;
                        tile[k2 * 32 + n * 2 + e] = k < K ? to_bf16(W[(nb * 16 + n) * K + k]) : 0;
                    }
        }
}

/* rows r0 .. r0 + 31 of A (float32, row stride lda) -> Ab (32, Kp) bfloat16, zeros past M and K */
static void round_rows(const float *A, int64_t lda, int64_t r0, int64_t M, int64_t K, int64_t Kp, uint16_t *Ab) {
    for (int64_t r = 0; r < 32; r++) {
        uint16_t *dst = Ab + r * Kp;
        if (r0 + r >= M) { memset(dst, 0, Kp * 2); continue; }
        const float *src = A + (r0 + r) * lda;
        int64_t k = 0;
#ifdef __AVX512BF16__
        for (; k + 32 <= K; k += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + k + 16), _mm512_loadu_ps(src + k));
            _mm512_storeu_si512((void *)(dst + k), (__m512i)v);
        }
#endif
        for (; k < K; k++) dst[k] = to_bf16(src[k]);
        for (; k < Kp; k++) dst[k] = 0;
    }
}

/* C (M, N) float32, row stride ldc = bf16(A) @ bf16(W)^T (+ bias), W packed by amx_pack;
   N a multiple of 16. Returns -1 when out of memory (C untouched), 0 otherwise. */
int amx_linear(const float *A, int64_t lda, int64_t M, int64_t K, const uint16_t *P, int64_t N,
               float *C, int64_t ldc, const float *bias) {
    int64_t KB = (K + 31) / 32, Kp = KB * 32, NB = N / 16;
    uint16_t *Ab = aligned_alloc(64, 32 * Kp * 2);
    float *tail = aligned_alloc(64, 32 * 16 * 4);
    if (!Ab || !tail) { free(Ab); free(tail); return -1; }
    configure();
    for (int64_t m0 = 0; m0 < M; m0 += 32) {
        round_rows(A, lda, m0, M, K, Kp, Ab);
        int64_t rows = M - m0 < 32 ? M - m0 : 32;
        for (int64_t nb = 0; nb < NB; nb += 2) {
            int two = nb + 1 < NB;
            const uint16_t *B0 = P + nb * KB * 512, *B1 = B0 + KB * 512;
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (int64_t kb = 0; kb < KB; kb++) {
                _tile_loadd(4, Ab + kb * 32, Kp * 2);
                _tile_loadd(5, Ab + 16 * Kp + kb * 32, Kp * 2);
                _tile_loadd(6, B0 + kb * 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(2, 5, 6);
                if (two) {
                    _tile_loadd(7, B1 + kb * 512, 64);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            float *c = C + m0 * ldc + nb * 16;
            if (rows == 32) {
                _tile_stored(0, c, ldc * 4);
                _tile_stored(2, c + 16 * ldc, ldc * 4);
                if (two) { _tile_stored(1, c + 16, ldc * 4); _tile_stored(3, c + 16 + 16 * ldc, ldc * 4); }
                continue;
            }
            for (int j = 0; j < (two ? 2 : 1); j++) {  /* the last rows: through a buffer */
                if (j == 0) { _tile_stored(0, tail, 64); _tile_stored(2, tail + 256, 64); }
                else { _tile_stored(1, tail, 64); _tile_stored(3, tail + 256, 64); }
                for (int64_t r = 0; r < rows; r++) memcpy(c + r * ldc + j * 16, tail + r * 16, 64);
            }
        }
        if (bias)
            for (int64_t r = m0; r < m0 + rows; r++)
                for (int64_t n = 0; n < N; n++) C[r * ldc + n] += bias[n];
    }
    _tile_release();
    free(Ab);
    free(tail);
    return 0;
}
"""

_FLAGS = (["-O3", "-march=native", "-mamx-tile", "-mamx-bf16"],)
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_tile" in flags and "amx_bf16" in flags


def _build() -> ctypes.CDLL | None:
    if not _cpu_has_amx():
        return None
    lib = kernels.compile_library(_SOURCE, "amx", _FLAGS)
    if lib is None:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.amx_enable.restype = ctypes.c_int
    lib.amx_pack.argtypes, lib.amx_pack.restype = [ptr, i64, i64, ptr], None
    lib.amx_linear.argtypes = [ptr, i64, i64, i64, ptr, i64, ptr, i64, ptr]
    lib.amx_linear.restype = ctypes.c_int
    return lib if lib.amx_enable() == 0 else None


def available() -> bool:
    """Build (once per process, cached on disk) and load the kernel, with the tile state granted."""
    global _lib, _tried
    if not _tried:
        _tried = True
        try:
            _lib = _build()
        except (OSError, subprocess.SubprocessError):
            _lib = None
    return _lib is not None


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The kernel computes what torch's matmul would here (see the module docstring)."""
    return (_lib is not None and torch.get_float32_matmul_precision() == "medium" and not torch.is_grad_enabled()
            and torch.get_num_threads() == 1 and x.dtype == weight.dtype == torch.float32
            and x.device.type == "cpu" and weight.dim() == 2 and x.shape[-1] == weight.shape[1]
            and torch_rounds(x.numel() // max(x.shape[-1], 1), *weight.shape[::-1]))


_rounds: dict[tuple[int, int, int], bool] = {}


def torch_rounds(m: int, k: int, n: int) -> bool:
    """Whether torch's own CPU matmul at `medium` rounds the inputs of an (m, k) x (k, n) product to
    bfloat16. It does not always: its backend picks oneDNN (rounding) or a float32 BLAS path per
    shape (a 512 x 1 x 384 product stays float32, 1 x 128 x 384 is rounded). Probed once per shape
    on inputs that bfloat16 cannot hold exactly, so the kernel takes exactly the products torch rounds."""
    key = (m, k, n)
    if key not in _rounds:
        if min(key) < 1:
            _rounds[key] = False
            return False
        g = torch.Generator().manual_seed(0)
        x, w = torch.rand(m, k, generator=g) + 1.0, torch.rand(n, k, generator=g) + 1.0
        exact = F.linear(x.bfloat16().double(), w.bfloat16().double())  # the rounded product
        previous = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("medium")
            medium = (F.linear(x, w).double() - exact).abs().max()
            torch.set_float32_matmul_precision("highest")
            unrounded = (F.linear(x, w).double() - exact).abs().max()
        finally:
            torch.set_float32_matmul_precision(previous)
        _rounds[key] = bool(medium * 64 < unrounded)  # rounding errors ~2^-9, summation order ~2^-24
    return _rounds[key]


def _padded(n: int) -> int:
    return -(-n // 16) * 16


def pack(weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) float32 -> its bfloat16 AMX tiles (stored as int16), N padded with zero rows to a
    multiple of 16; into `out` (the tiles of an earlier packing of this shape) when given."""
    N, K = weight.shape
    weight = weight.detach().contiguous()
    if N % 16:
        weight = torch.cat([weight, weight.new_zeros(_padded(N) - N, K)])
    size = weight.shape[0] // 16 * ((K + 31) // 32) * 512
    tiles = out if out is not None and out.numel() == size else torch.empty(size, dtype=torch.int16)
    _lib.amx_pack(weight.data_ptr(), weight.shape[0], K, tiles.data_ptr())
    return tiles


_optimizer_steps = 0


def _count_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


# torch's fused optimisers (Adam(fused=True), this agent's) write the parameters without bumping
# their version counters, so every optimiser step anywhere in the process also marks tiles stale
register_optimizer_step_post_hook(_count_step)


class PackedWeights:
    """Each weight's tiles, packed again when the weight may have changed: a new storage, shape or
    version (in-place writes bump it: load_state_dict's copy_, the target EMA's lerp_), or any
    optimiser step since the packing (fused optimisers leave the version as it was)."""

    def __init__(self):
        self._tiles: dict = {}

    def get(self, key, weight: torch.Tensor) -> torch.Tensor:
        stamp = (weight.data_ptr(), weight._version, tuple(weight.shape), _optimizer_steps)
        entry = self._tiles.get(key)
        if entry is None or entry[0] != stamp:  # repack into the same memory: no allocation per update
            entry = (stamp, pack(weight, None if entry is None else entry[1]))
            self._tiles[key] = entry
        return entry[1]

    def linear(self, key, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """`linear` of x with `weight` (N, K), through the tiles kept under `key`."""
        return linear(x, self.get(key, weight), weight.shape[0], bias=bias, out=out)


def linear(x: torch.Tensor, tiles: torch.Tensor, out_features: int, bias: torch.Tensor | None = None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """bf16(x) @ bf16(W)^T (+ bias) with float32 sums, x (..., K), W given by its tiles -> (..., N);
    bias (N,) or a tensor like the output; into `out` (contiguous, float32) when given. N not a
    multiple of 16 goes through a padded buffer."""
    if bias is not None and bias.dim() > 1:  # an addend per row: added after the float32 sums
        return linear(x, tiles, out_features, out=out).add_(bias)
    K, N, Np = x.shape[-1], out_features, _padded(out_features)
    rows = x.reshape(-1, K)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    if bias is not None:
        bias = bias.detach().contiguous()
        if Np != N:
            bias = torch.cat([bias, bias.new_zeros(Np - N)])
    if Np == N and out is None:
        out = torch.empty(*x.shape[:-1], N, dtype=torch.float32)
    target = out if Np == N else torch.empty(rows.shape[0], Np, dtype=torch.float32)
    status = _lib.amx_linear(rows.data_ptr(), rows.stride(0), rows.shape[0], K, tiles.data_ptr(), Np,
                             target.data_ptr(), Np, None if bias is None else bias.data_ptr())
    if status != 0:
        raise MemoryError("amx.linear: could not allocate its row buffer")
    if Np == N:
        return out
    result = target[:, :N].reshape(*x.shape[:-1], N)
    if out is None:
        return result
    return out.copy_(result)
