"""The static kernel report (deepops.bench.kernels) on small SASS and ELF snippets written here: loop finding, the
hot loop's figures, spill bytes, names, occupancy (checked against NVIDIA's occupancy-calculator rules, worked out
by hand in the comments), the regression check and the README section.  No CUDA needed: the report on a real
binary runs in CI part (b) after the sm_90 build."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest

from deepops.bench import kernels as K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = "benchmarks/results/kernel_report_sm90.json"

# cuobjdump -sass with labels (a disassembler as new as the cubin): a loop of 10 instructions holding 2 HMMA,
# 2 LDS, 1 LDSM, 1 LDG and 1 LDGSTS, after a prologue and before the exit.
SASS_LABELS = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]

	code for sm_90
		Function : _Z4gemmPf
	.headerflags	@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                     /* 0x00000a00ff017b82 */
                                                                              /* 0x000fe20000000800 */
        /*0010*/                   S2R R0, SR_TID.X ;                         /* 0x0000000000007919 */
                                                                              /* 0x000e220000002100 */
.L_x_0:
        /*0020*/                   LDS R4, [R0] ;                             /* 0x0000000000047984 */
                                                                              /* 0x000fe80000000800 */
        /*0030*/                   LDS.64 R6, [R0+0x80] ;                     /* 0x0000800000067984 */
        /*0040*/                   LDSM.16.M88.4 R8, [R0+0x100] ;             /* 0x000100000008783b */
        /*0050*/                   HMMA.16816.F32 R12, R4, R8, R12 ;          /* 0x000000080404723c */
        /*0060*/                   HMMA.16816.F32 R16, R6, R10, R16 ;         /* 0x0000000a0610723c */
        /*0070*/                   LDG.E.128 R20, desc[UR4][R2.64] ;          /* 0x0000000402147981 */
        /*0080*/                   LDGSTS.E.BYPASS.LTC128B.128 [R0], desc[UR4][R2.64] ;
        /*0090*/                   IADD3 R3, R3, 0x1, RZ ;                    /* 0x0000000103037810 */
        /*00a0*/                   ISETP.NE.AND P0, PT, R3, R5, PT ;          /* 0x000000050300720c */
        /*00b0*/               @P0 BRA `(.L_x_0) ;                            /* 0xfffffffc00d80947 */
        /*00c0*/                   STG.E desc[UR4][R2.64], R12 ;              /* 0x0000000c02007986 */
        /*00d0*/                   EXIT ;                                     /* 0x000000000000794d */
.L_x_1:
        /*00e0*/                   BRA `(.L_x_1);                             /* 0xfffffffc00fc7947 */
        /*00f0*/                   NOP;                                       /* 0x0000000000007918 */
		..........
"""


def test_parse_sass_instructions_predicates_labels():
    (f,) = K.parse_sass(SASS_LABELS)
    assert (f.arch, f.name, len(f.instrs)) == ("sm_90", "_Z4gemmPf", 16)
    bra = f.instrs[11]
    assert (bra.addr, bra.pred, bra.opcode, bra.base) == (0xB0, "@P0", "BRA", "BRA")
    assert f.instrs[4].opcode == "LDSM.16.M88.4" and f.instrs[4].base == "LDSM"
    assert f.labels == {".L_x_0": 0x20, ".L_x_1": 0xE0}


def test_loop_of_ten_instructions_with_two_hmma_gives_five_per_hmma():
    (f,) = K.parse_sass(SASS_LABELS)
    # the branch to itself at 0xe0 (the trap after EXIT) is no loop
    assert [(lp.start, lp.end) for lp in K.find_loops(f)] == [(0x20, 0xB0)]
    loop, op = K.hot_loop(f)
    fig = K.loop_figures(f, loop, op)
    assert (fig["op"], fig["ops"], fig["instructions"]) == ("HMMA", 2, 10)
    assert fig["instructions_per_op"] == 5.0
    assert (fig["shared_loads"], fig["shared_loads_per_op"]) == (3, 1.5)  # LDS, LDS.64, LDSM
    assert (fig["global_loads"], fig["global_loads_per_op"]) == (2, 1.0)  # LDG, LDGSTS


# The same shape as a disassembler older than the cubin prints it: branch targets as addresses, no labels.
# An outer loop (0x10-0xa0) holds an inner one (0x20-0x70) with the 2 FFMA, and a second inner loop (0x80-0x90)
# without any; the hot loop is the innermost one holding the FFMAs.
SASS_ADDRESSES = """
	code for sm_80
		Function : nested
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   IMAD.MOV.U32 R2, RZ, RZ, RZ ;
        /*0020*/                   LDS R4, [R0] ;
        /*0030*/                   FFMA R5, R4, R4, R5 ;
        /*0040*/                   FFMA R6, R4, R5, R6 ;
        /*0050*/                   IADD3 R3, R3, 0x1, RZ ;
        /*0060*/                   ISETP.NE.AND P0, PT, R3, R7, PT ;
        /*0070*/               @P0 BRA 0x20 ;
        /*0080*/                   IADD3 R8, R8, 0x1, RZ ;
        /*0090*/              @!P1 BRA 0x80 ;
        /*00a0*/               @P2 BRA 0x10 ;
        /*00b0*/                   EXIT ;
        /*00c0*/                   BRA 0xc0;
"""


def test_nested_loops_pick_the_innermost_holding_the_fmas():
    (f,) = K.parse_sass(SASS_ADDRESSES)
    assert f.arch == "sm_80" and f.labels == {}
    assert [(lp.start, lp.end) for lp in K.find_loops(f)] == [(0x10, 0xA0), (0x20, 0x70), (0x80, 0x90)]
    assert K.kernel_op(f) == "FFMA"
    loop, op = K.hot_loop(f)
    assert (loop.start, loop.end, op) == (0x20, 0x70, "FFMA")
    fig = K.loop_figures(f, loop, op)
    assert (fig["instructions"], fig["ops"], fig["instructions_per_op"]) == (6, 2, 3.0)


def test_the_loop_with_most_mmas_wins_over_an_inner_one_with_fewer():
    # outer loop 0x00-0x60 holds 3 HMMA, its inner loop 0x10-0x30 only 1: the outer one is the hot loop
    sass = """
	code for sm_90
		Function : k
        /*0000*/                   HMMA.1688.F32.TF32 R0, R4, R8, R0 ;
        /*0010*/                   HMMA.1688.F32.TF32 R0, R4, R8, R0 ;
        /*0020*/                   IADD3 R3, R3, 0x1, RZ ;
        /*0030*/               @P0 BRA 0x10 ;
        /*0040*/                   HMMA.1688.F32.TF32 R0, R4, R8, R0 ;
        /*0050*/                   IADD3 R9, R9, 0x1, RZ ;
        /*0060*/               @P1 BRA 0x0 ;
        /*0070*/                   EXIT ;
"""
    (f,) = K.parse_sass(sass)
    loop, op = K.hot_loop(f)
    assert (loop.start, loop.end, op) == (0x0, 0x60, "HMMA")
    assert K.loop_figures(f, loop, op)["instructions_per_op"] == pytest.approx(7 / 3, abs=1e-3)


def test_a_loop_around_the_main_loop_with_a_peeled_iteration_is_not_the_hot_loop():
    # outer loop 0x00-0x70 holds a peeled copy of the step (2 HMMA) and the inner k-tile loop 0x30-0x60 (2 HMMA):
    # the outer one holds 4 in all but only 2 of its own, a tie with the inner one, which wins as the innermost
    sass = """
	code for sm_90
		Function : k
        /*0000*/                   HMMA.16816.F32 R0, R4, R8, R0 ;
        /*0010*/                   HMMA.16816.F32 R0, R4, R8, R0 ;
        /*0020*/                   STS [R2], R3 ;
        /*0030*/                   HMMA.16816.F32 R0, R4, R8, R0 ;
        /*0040*/                   HMMA.16816.F32 R0, R4, R8, R0 ;
        /*0050*/                   IADD3 R3, R3, 0x1, RZ ;
        /*0060*/               @P0 BRA 0x30 ;
        /*0070*/               @P1 BRA 0x0 ;
        /*0080*/                   EXIT ;
"""
    (f,) = K.parse_sass(sass)
    loop, op = K.hot_loop(f)
    assert (loop.start, loop.end, op) == (0x30, 0x60, "HMMA")
    assert K.loop_figures(f, loop, op)["instructions_per_op"] == pytest.approx(2.0)


def test_kernel_op_prefers_mma_and_ignores_hfma2_moves():
    sass = """
	code for sm_90
		Function : k
        /*0000*/                   HFMA2.MMA R3, -RZ, RZ, 0, 0 ;
        /*0010*/                   HFMA2.MMA R4, -RZ, RZ, 0, 0 ;
        /*0020*/                   DFMA R6, R2, R4, R6 ;
        /*0030*/               @P0 BRA 0x0 ;
        /*0040*/                   EXIT ;
"""
    (f,) = K.parse_sass(sass)
    assert K.kernel_op(f) == "DFMA"
    (g,) = K.parse_sass(sass.replace("DFMA R6", "HMMA.16816.F32.BF16 R6").replace("HFMA2.MMA R4", "DFMA R4"))
    assert K.kernel_op(g) == "HMMA"
    (h,) = K.parse_sass(sass.replace("DFMA R6, R2, R4, R6", "IMAD R6, R2, R4, R6"))
    assert K.kernel_op(h) is None and K.hot_loop(h) is None


def test_spill_bytes_are_the_widths_of_stl_and_ldl():
    sass = """
	code for sm_90
		Function : k
        /*0000*/                   STL [R1], R2 ;
        /*0010*/                   STL.64 [R1+0x8], R4 ;
        /*0020*/                   STL.128 [R1+0x10], R8 ;
        /*0030*/                   LDL.LU R2, [R1] ;
        /*0040*/                   LDL.U8 R3, [R1+0x4] ;
        /*0050*/               @P0 LDL.64 R4, [R1+0x8] ;
        /*0060*/                   EXIT ;
"""
    (f,) = K.parse_sass(sass)
    # stores 4 + 8 + 16, loads 4 + 1 + 8 (a ptxas -v check of this rule: a kernel with "396 bytes spill stores,
    # 420 bytes spill loads" had 99 STL and 105 LDL / LDL.LU of 4 bytes each)
    assert K.local_traffic(f) == (28, 13)


RES_USAGE = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]

Resource usage:
 Common:
  GLOBAL:0
 Function _Z4gemmPf:
  REG:168 STACK:0 SHARED:5120 LOCAL:0 CONSTANT[0]:536 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _Z5emptyv:
  REG:8 STACK:16 SHARED:0 LOCAL:0 CONSTANT[0]:528 TEXTURE:0 SURFACE:0 SAMPLER:0
"""

ELF = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]

64-bit ELF: type=ET_EXEC, ABI=8, sm=90, toolkit=0.2, flags=0x6005a04
Sections:
Index Offset   Size ES Align                      Type    Flags Link     Info Name
    9    b34     64  0  4                    CUDA_INFO       40    3       11 .nv.info._Z4gemmPf
   15   3c80   1400  0 10                       NOBITS       43    0       11 .nv.shared._Z4gemmPf
   16   3c80      0  0  1                       NOBITS        3    0        0 .nv.shared.reserved.0

.nv.info._Z4gemmPf
	<0x1>
	Attribute:	EIATTR_CUDA_API_VERSION
	Format:	EIFMT_SVAL
	Value:	0x82 
	<0x2>
	Attribute:	EIATTR_MAX_THREADS
	Format:	EIFMT_SVAL
	Value:	0x80 0x1 0x1 
	<0x3>
	Attribute:	EIATTR_INDIRECT_BRANCH_TARGETS
	Format:	EIFMT_SVAL
	Value:	
		Offset of Indirect Branch: 0x700	 Number of targets: 3

.nv.constant0._Z4gemmPf
0x00000000 0x00000000

Fatbin elf code:
================
arch = sm_80
code version = [1,8]

Sections:
Index Offset   Size ES Align                      Type    Flags Link     Info Name
   15   3c80    800  0 10                       NOBITS       43    0       11 .nv.shared._Z4gemmPf

.nv.info._Z4gemmPf
	<0x1>
	Attribute:	EIATTR_MAX_THREADS
	Format:	EIFMT_SVAL
	Value:	0x100 0x1 0x1 
"""


def test_res_usage_and_elf_attributes():
    use = K.parse_res_usage(RES_USAGE)
    assert use[("sm_90", "_Z4gemmPf")]["REG"] == 168 and use[("sm_90", "_Z5emptyv")]["STACK"] == 16
    elf = K.parse_elf(ELF)
    e90, e80 = elf[("sm_90", "_Z4gemmPf")], elf[("sm_80", "_Z4gemmPf")]
    assert K.max_threads(e90["attrs"]) == 128 and K.max_threads(e80["attrs"]) == 256
    # sm_90: a 0x1400-byte section in a cubin with the reserved window = 4096 bytes of the kernel's own (what
    # ptxas -v prints as "4096 bytes smem") + the 1 KiB window; the sm_80 cubin has none
    assert (e90["shared_section"], e90["reserved_window"], K.static_smem(e90)) == (0x1400, True, 4096)
    assert (e80["reserved_window"], K.static_smem(e80)) == (False, 2048)


# ------------------------------------------------------------------------------------------------ occupancy
# NVIDIA's occupancy-calculator rules for SM 9.0 (cuda_occupancy.h): registers per warp = regs x 32 rounded up to
# 256; each of the 4 sub-partitions holds 65536 / 4 = 16384 registers, so warps per SM (registers) =
# 4 x floor(16384 / per-warp); a block's warps rounded up to 4 must fit 65536 registers; at most 64 warps and 32
# blocks per SM; shared memory per block = static + dynamic + 1 KiB reserved, rounded up to 128 bytes, from 228 KiB
# per SM; at most 227 KiB (static + dynamic) per block.
@pytest.mark.parametrize(
    "threads, regs, smem, blocks, warps, limiter",
    [
        # 4 warps x 168 regs: 168*32 = 5376 per warp (a multiple of 256); floor(16384/5376) = 3 warps per
        # sub-partition = 12 per SM = 3 blocks -> 12/64 = 18.75%
        (128, 168, 0, 3, 12, "registers"),
        # the wide mma kernel: 220*32 = 7040 -> 7168; floor(16384/7168) = 2 -> 8 warps = 1 block of 8 -> 12.5%
        (256, 220, 49152, 1, 8, "registers"),
        # the narrow / cp.async kernels: 128*32 = 4096; 4 per sub-partition -> 16 warps = 2 blocks -> 25%;
        # smem 37376 + 1024 = 38400 (= 300 x 128) -> floor(233472 / 38400) = 6 blocks
        (256, 128, 37376, 2, 16, "registers"),
        # granularity: 64 threads x 100 regs: 3200 -> 3328; floor(16384/3328) = 4 -> 16 warps -> 8 blocks of 2
        # warps (without the rounding it would be 5 -> 20 warps -> 10 blocks)
        (64, 100, 0, 8, 16, "registers"),
        # sub-partitions: 1 warp x 192 regs = 6144; floor(16384/6144) = 2 -> 8 warps -> 8 blocks (a pool of
        # 65536 registers would give floor(65536/6144) = 10)
        (32, 192, 0, 8, 8, "registers"),
        # shared memory: 100 KiB + 1 KiB = 103424 -> floor(233472/103424) = 2 blocks of 4 warps -> 12.5%
        (128, 32, 100 * 1024, 2, 8, "shared memory"),
        # blocks: 1 warp of 16 regs fits 64 by warps and registers, but at most 32 blocks -> 50%
        (32, 16, 0, 32, 32, "blocks"),
        # warps: 1024 threads x 32 regs: 32 warps per block, floor(64/32) = 2 blocks -> 100%
        (1024, 32, 0, 2, 64, "warps"),
        # a block too big for the register file: 1024 threads x 72 regs = 32 x 2304 = 73728 > 65536 -> 0
        (1024, 72, 0, 0, 0, "registers"),
        # 227 KiB fits (1 block); one byte more does not
        (256, 32, 227 * 1024, 1, 8, "shared memory"),
        (256, 32, 227 * 1024 + 1, 0, 0, "shared memory"),
    ],
)
def test_occupancy_follows_the_calculator(threads, regs, smem, blocks, warps, limiter):
    o = K.occupancy(threads, regs, smem)
    assert (o["blocks_per_sm"], o["warps_per_sm"], o["limited_by"]) == (blocks, warps, limiter)
    assert o["occupancy"] == warps / 64


def test_occupancy_fractions():
    assert K.occupancy(128, 168, 0)["occupancy"] == 0.1875
    assert K.occupancy(256, 220, 49152)["occupancy"] == 0.125


# ------------------------------------------------------------------------------------------------ names
def test_short_names():
    assert (K.short_name("void deepops::conv::conv_igemm_vec_kernel<__half, false, 0>(deepops::conv::IgemmParams)")
            == "conv_igemm f16 mma wide cp.async")
    assert (K.short_name("void deepops::conv::conv_igemm_vec_kernel<float, true, 0>(deepops::conv::IgemmParams)")
            == "conv_igemm f32 tf32 narrow cp.async")
    assert (K.short_name("void deepops::conv::conv_igemm_vec_kernel<__nv_bfloat16, true, 2>"
                         "(deepops::conv::IgemmParams)") == "conv_igemm bf16 mma narrow cp.async dwT")
    assert (K.short_name("void deepops::conv::conv_igemm_kernel<float, 2, true, 0>(deepops::conv::IgemmParams)")
            == "conv_igemm f32 tf32 narrow")
    assert (K.short_name("void deepops::conv::conv_igemm_kernel<double, 0, false, 3>(deepops::conv::IgemmParams)")
            == "conv_igemm f64 fma wide map:rows,rows")
    assert (K.short_name("void deepops::(anonymous namespace)::fwd_nhwc<__nv_bfloat16, long, 8, true>"
                         "(__nv_bfloat16 const*, __nv_bfloat16*, long*, deepops::Pool2dShape, long)")
            == "fwd_nhwc<bf16, i64, 8, true>")
    assert K.short_name("deepops::(anonymous namespace)::sweep_kernel(unsigned long const*, int)") == "sweep_kernel"
    assert (K.kernel_template("void deepops::binary_kernel<__half, 8, deepops::(anonymous namespace)::"
                              "ReluBackwardOp>(__half const*)")
            == ("deepops::binary_kernel", ["__half", "8", "deepops::ReluBackwardOp"]))


# ------------------------------------------------------------------------------------------------ dynamic smem
def test_every_dynamic_shared_kernel_has_its_launcher_size():
    found = K.dynamic_smem_kernels(ROOT)
    assert "deepops::conv::conv_igemm_kernel" in found
    assert set(found) == set(K.DYNAMIC_SMEM), "add the kernel's launcher size to deepops.bench.kernels.DYNAMIC_SMEM"
    for name, d in K.DYNAMIC_SMEM.items():
        path, text = d["launcher_source"]
        with open(os.path.join(ROOT, path)) as f:
            assert text in f.read(), f"{name}: its launcher no longer passes {text!r}"


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")) or not os.path.isfile(
    os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include", "cuda_fp16.h")),
    reason="needs a C++ compiler and the CUDA headers")
def test_dynamic_smem_table_from_the_sources():
    table, why = K.dynamic_smem_table({"deepops::conv::conv_igemm_kernel": [["__half", "1", "false", "0"],
                                                                           ["float", "0", "false", "1"]],
                                       "deepops::conv::conv_igemm_vec_kernel": [["__half", "false", "0"],
                                                                               ["float", "true", "0"],
                                                                               ["__half", "false", "1"]]}, ROOT)
    assert why is None
    # wide 16-bit gather tile: tables (128 + 128) x 16 + 2 x 32 x 2 x 16 + 256 x 8 = 8192, stages 2 x 2 x 128 x 40 x
    # 2 bytes = 40960: 49152 (the docs' 48 KiB)
    assert table[("deepops::conv::conv_igemm_kernel", ("__half", "1", "false", "0"))] == 49152
    # FFMA tile 128 x 128 x 32: tables (128 + 128) x 16 + 2 x 32 x 2 x 16 + 256 x 8 = 8192, stages 2 x 32 x (132 +
    # 132) x 4 = 67584: 75776
    assert table[("deepops::conv::conv_igemm_kernel", ("float", "0", "false", "1"))] == 75776
    # vector kernel: output offsets (128 + 128) x 8 = 2048, 4 stages of (128 + 128) rows x 64 bytes = 65536: 67584;
    # narrow (128 + 64) x 8 = 1536 + 4 x 192 x 64 = 49152: 50688
    assert table[("deepops::conv::conv_igemm_vec_kernel", ("__half", "false", "0"))] == 67584
    assert table[("deepops::conv::conv_igemm_vec_kernel", ("float", "true", "0"))] == 50688
    # backward-weight adds the two-part table of x entries: 2 parts x 8 k-tiles x 32 pixels x 16 bytes = 8192
    assert table[("deepops::conv::conv_igemm_vec_kernel", ("__half", "false", "1"))] == 75776


# ------------------------------------------------------------------------------------------------ check
def _report(ipo=5.0, spill=0, kernels=("_Z4gemmPf",)):
    return {"kernels": [{"arch": "sm_90", "kernel": k, "mangled": k, "spill_store_bytes": spill,
                         "spill_load_bytes": 0, "hot_loop": {"op": "HMMA", "instructions_per_op": ipo}}
                        for k in kernels]}


def test_check_passes_within_ten_percent_and_fails_beyond():
    old = _report(5.0)
    assert K.check(_report(5.5), old) == ([], [])
    fails, _ = K.check(_report(5.51), old)
    assert len(fails) == 1 and "_Z4gemmPf" in fails[0] and "instructions per HMMA" in fails[0]
    _, notes = K.check(_report(4.0), old)
    assert notes and "better" in notes[0]


def test_check_fails_on_spills_and_lost_kernels():
    old = _report(kernels=("_Z4gemmPf", "_Z5otherv"))
    fails, _ = K.check(_report(spill=8, kernels=("_Z4gemmPf", "_Z5otherv")), old)
    assert any("spills 8 bytes stored" in m for m in fails)
    # a spill fails even when the committed report already had it, and in a kernel the committed report lacks
    fails, _ = K.check(_report(spill=8), _report(spill=8))
    assert len(fails) == 1 and "no spills allowed" in fails[0]
    fails, _ = K.check(_report(spill=4, kernels=("_Z3newv",)), _report(kernels=()))
    assert any("_Z3newv: spills 4" in m for m in fails)
    fails, _ = K.check(_report(kernels=("_Z4gemmPf",)), old)
    assert fails == ["sm_90 _Z5otherv: kernel disappeared from the binary (_Z5otherv)"]
    lost = copy.deepcopy(old)
    lost["kernels"][0]["hot_loop"] = None
    fails, _ = K.check(lost, old)
    assert any("hot loop of HMMA is gone" in m for m in fails)



def test_committed_report_and_readme_agree():
    with open(os.path.join(ROOT, COMMITTED)) as f:
        rep = json.load(f)
    assert rep["archs"] == ["sm_90"] and rep["kernels"]
    assert K.update_readme(ROOT, COMMITTED, check=True), f"run: python -m deepops.bench.kernels --readme {COMMITTED}"


def test_check_ignores_the_build_directory_hash_of_anonymous_namespaces():
    # nvcc names an anonymous namespace after its translation unit with hashes that change with the build directory
    # (seen: CI's build in a temporary directory against the committed report of another checkout)
    a = "_ZN7deepops4conv47_GLOBAL__N__447cc8f4_14_conv_direct_cu_b22c743320depthwise_fwd_kernelIfEEvNS0_10DirectArgsE"
    b = a.replace("447cc8f4", "0c1d2e3f").replace("b22c7433", "9a8b7c6d")
    other_file = a.replace("14_conv_direct_cu", "14_conv_others_cu")
    assert K.stable_name(a) == K.stable_name(b) != K.stable_name(other_file)
    assert K.stable_name("_Z6kernelPf") == "_Z6kernelPf"
    row = {"arch": "sm_90", "kernel": "k", "mangled": a, "spill_store_bytes": 0, "spill_load_bytes": 0,
           "hot_loop": None}
    fails, _ = K.check({"kernels": [dict(row, mangled=b)]}, {"kernels": [row]})
    assert fails == []
    fails, _ = K.check({"kernels": [dict(row, mangled=other_file)]}, {"kernels": [row]})
    assert len(fails) == 1 and "disappeared" in fails[0]
