"""A static report of the CUDA kernels: what ptxas made of them, read from the built extension, no GPU needed.

For every kernel and architecture in the binary (``deepops/_C*.so`` of a CUDA build by default, or any file that
``cuobjdump`` reads: a ``.so``, a static library, a cubin) it gives:

* registers, the stack frame and the spill traffic (bytes of ``STL`` stores and ``LDL`` loads in the SASS: ptxas'
  "spill stores / spill loads" whenever the kernel has no local arrays), static shared memory, and dynamic shared
  memory where it is knowable: the extension launches ``DEEPOPS_DYNAMIC_SHARED`` kernels with a size that exists
  only in the host code, so the report evaluates the launcher's own expression (``DYNAMIC_SMEM`` below) by
  compiling it against the kernel sources, or says that the size depends on the call;
* the theoretical occupancy on an H100 (SM 9.0; sm_80 code: on an A100) at the block size of the kernel's
  ``__launch_bounds__`` (the ELF's ``EIATTR_MAX_THREADS``): every deepops launcher launches exactly that many
  threads (the launch and the bounds name the same constant);
* the hot loop: among the loops of the SASS (a backward ``BRA`` to a label), the one holding the most tensor-core
  MMAs (HMMA, ...) or, in kernels without MMA, the most FFMA / DFMA of its own (not counting those of loops nested
  in it), the innermost one on a tie; for it, the
  instructions per MMA (FMA), shared-memory loads (LDS, LDSM) per MMA and global loads (LDG, LDGSTS) per MMA.
  These are static counts of one pass through the loop body, with every branch inside it counted once.

    python -m deepops.bench.kernels                            # the table for the installed extension
    python -m deepops.bench.kernels path/to/_C.so --json out.json
    python -m deepops.bench.kernels --check benchmarks/results/kernel_report_sm90.json   # CI: no regression
    python -m deepops.bench.kernels --readme benchmarks/results/kernel_report_sm90.json  # README section

``--check`` fails when a hot loop needs more than 10% more instructions per MMA / FMA than the committed figure,
when any kernel spills, or when a committed kernel is gone.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import glob
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .._report import replace_section, write_json

# ----------------------------------------------------------------------------------------------- the GPU model
# Theoretical occupancy follows the rules of NVIDIA's occupancy calculator (cuda_occupancy.h) for SM 9.0 (H100,
# H200): registers are given to warps in units of 256 and each of the 4 SM sub-partitions holds 16384 of them;
# shared memory is given to blocks in units of 128 bytes, 1 KiB per block is reserved for the system, and the SM
# is assumed to run with its largest carveout (228 KiB of shared memory).
H100 = {
    "name": "H100 / H200 (SM 9.0)",
    "warp_size": 32,
    "regs_per_sm": 65536,
    "regs_per_block": 65536,
    "reg_alloc_unit": 256,  # per warp
    "sub_partitions": 4,
    "max_regs_per_thread": 255,
    "max_warps_per_sm": 64,
    "max_blocks_per_sm": 32,
    "smem_per_sm": 228 * 1024,
    "smem_reserved_per_block": 1024,
    "smem_per_block_max": 227 * 1024,
    "smem_alloc_unit": 128,
}
# sm_80 code cannot run on an H100: its occupancy is given for an A100 (SM 8.0), which differs in shared memory only.
A100 = dict(H100, name="A100 (SM 8.0)", smem_per_sm=164 * 1024, smem_per_block_max=163 * 1024)
GPU_MODELS = {"sm_80": A100, "sm_90": H100}  # any other architecture: H100

# Opcodes (the part before the first '.') that the report counts.
MMA_OPS = ("HMMA", "IMMA", "DMMA", "BMMA", "HGMMA", "IGMMA", "QGMMA")
FMA_OPS = ("FFMA", "DFMA")  # not HFMA2: ptxas uses "HFMA2.MMA Rx, -RZ, RZ, ..." to move constants
SHARED_LOADS = ("LDS", "LDSM")
GLOBAL_LOADS = ("LDG", "LDGSTS")

# Kernels that take dynamic shared memory (DEEPOPS_DYNAMIC_SHARED), by their template's qualified name, and what
# their launcher passes as the size: a C++ expression of the kernel's template arguments {0}, {1}, ... (evaluated by
# compiling it against the kernel sources, see dynamic_smem_table) or, where the size depends on the call, None
# and the reason.  A test checks that every DEEPOPS_DYNAMIC_SHARED kernel of csrc/kernels is listed here and that
# each expression is the one its launcher passes.
DYNAMIC_SMEM = {
    "deepops::conv::conv_igemm_kernel": {
        "expr": "deepops::conv::IgemmSmem<{0}, {1}, {2}>::kBytes",
        "launcher": "launch_igemm_cfg (csrc/kernels/conv_igemm.cuh)",
        "header": "kernels/conv_igemm.cuh",
        "launcher_source": ("csrc/kernels/conv_igemm.cuh", "IgemmSmem<T, Op, kNarrow>::kBytes"),
    },
    "deepops::conv::conv_igemm_vec_kernel": {
        "expr": "deepops::conv::VecSmem<{0}, {1}, {2}>::kBytes",
        "launcher": "launch_igemm_vec (csrc/kernels/conv_igemm_vec.cuh)",
        "header": "kernels/conv_igemm_vec.cuh",
        "launcher_source": ("csrc/kernels/conv_igemm_vec.cuh", "VecSmem<T, kNarrow, kPass>::kBytes"),
    },
    "deepops::conv::conv_fewchan_kernel": {
        "expr": None,
        "launcher": "fewchan_layout(...).smem (csrc/kernels/conv_fewchan.cu)",
        "why": "depends on the kernel size, stride and dilation (the input window of a tile)",
        "launcher_source": ("csrc/kernels/conv_fewchan.cu", "a.smem"),
    },
    "deepops::nms_small_kernel": {
        "expr": None,
        "launcher": "small_smem_bytes<T>(n, batched) (csrc/kernels/nms.cu)",
        "why": "depends on the number of boxes",
        "launcher_source": ("csrc/kernels/nms.cu", "small_smem_bytes<T>(n, idxs != nullptr)"),
    },
    "deepops::sweep_kernel": {
        "expr": None,
        "launcher": "tiles * sizeof(uint64_t) (csrc/kernels/nms.cu)",
        "why": "depends on the number of boxes",
        "launcher_source": ("csrc/kernels/nms.cu", "static_cast<size_t>(tiles) * sizeof(uint64_t)"),
    },
}


# ----------------------------------------------------------------------------------------------- SASS parsing
@dataclass
class Instr:
    addr: int
    opcode: str  # with its modifiers, e.g. "HMMA.16816.F32.BF16"
    operands: str
    pred: str = ""  # "@P0", "@!P1", ...

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]


@dataclass
class Function:
    arch: str
    name: str  # mangled
    instrs: list[Instr] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # label -> address of the instruction that follows it


@dataclass
class Loop:
    start: int  # address of the label (first instruction of the body)
    end: int  # address of the last backward branch to it


_CODE_FOR = re.compile(r"^\s*code for (sm_\w+)")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_LABEL = re.compile(r"^\s*(\.L[\w.$]*)\s*:")
_INSTR = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(.*?)\s*;")
_PRED = re.compile(r"^(@!?U?P[0-9T]+)\s+")
_TARGET = re.compile(r"`\(([^)]+)\)")
_ADDRESS = re.compile(r"(?:^|[\s,])(0x[0-9a-fA-F]+)\s*$")


def parse_sass(text: str) -> list[Function]:
    """The functions of ``cuobjdump -sass`` output, with their instructions and labels."""
    funcs: list[Function] = []
    arch = "?"
    cur: Function | None = None
    pending: list[str] = []  # labels waiting for their instruction
    for line in text.splitlines():
        m = _CODE_FOR.match(line)
        if m:
            arch, cur = m.group(1), None
            continue
        m = _FUNCTION.match(line)
        if m:
            cur = Function(arch, m.group(1))
            funcs.append(cur)
            pending = []
            continue
        if cur is None:
            continue
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        addr, body = int(m.group(1), 16), m.group(2).strip()
        pred = ""
        pm = _PRED.match(body)
        if pm:
            pred, body = pm.group(1), body[pm.end():]
        opcode, _, operands = body.partition(" ")
        cur.instrs.append(Instr(addr, opcode, operands.strip(), pred))
        for lab in pending:
            cur.labels[lab] = addr
        pending = []
    return funcs


def branch_target(f: Function, ins: Instr) -> int | None:
    """The address a branch jumps to: a label (``BRA `(.L_x_3)``) or an address (``BRA 0x1f90``; cuobjdump prints
    these when its disassembler is older than the cubin)."""
    t = _TARGET.search(ins.operands)
    if t:
        return f.labels.get(t.group(1))
    t = _ADDRESS.search(ins.operands)
    return int(t.group(1), 16) if t else None


def find_loops(f: Function) -> list[Loop]:
    """The loops of f: a label that a later BRA jumps back to, up to the last such branch."""
    ends: dict[int, int] = {}
    for ins in f.instrs:
        if ins.base != "BRA":
            continue
        start = branch_target(f, ins)
        if start is None:
            continue
        if start < ins.addr:  # backward (a branch to itself, the end-of-kernel trap, is no loop)
            ends[start] = max(ends.get(start, start), ins.addr)
    return [Loop(s, e) for s, e in sorted(ends.items())]


def loop_instrs(f: Function, loop: Loop) -> list[Instr]:
    return [i for i in f.instrs if loop.start <= i.addr <= loop.end]


def count_ops(instrs, names) -> int:
    return sum(1 for i in instrs if i.base in names)


def kernel_op(f: Function) -> str | None:
    """The kernel's arithmetic: its most frequent MMA opcode, else its most frequent FMA opcode, else None."""
    for family in (MMA_OPS, FMA_OPS):
        counts = {op: count_ops(f.instrs, (op,)) for op in family}
        op = max(counts, key=counts.get)
        if counts[op]:
            return op
    return None


def hot_loop(f: Function, op: str | None = None) -> tuple[Loop, str] | None:
    """The loop holding the most `op` (default: kernel_op(f)) of its own, not counting those of the loops nested
    in it; on a tie the innermost (shortest) one.  (A loop around the main loop, over images or over the parts of
    a table with the first k-tile of each part peeled off, holds as many MMAs of its own as the main loop, or
    fewer, but runs once per several passes of it.)"""
    op = op or kernel_op(f)
    if op is None:
        return None
    loops = find_loops(f)

    def innermost(addr: int) -> Loop | None:
        around = [lp for lp in loops if lp.start <= addr <= lp.end]
        return min(around, key=lambda lp: lp.end - lp.start) if around else None

    own: dict[int, int] = {}
    for ins in f.instrs:
        if ins.base == op:
            lp = innermost(ins.addr)
            if lp is not None:
                own[id(lp)] = own.get(id(lp), 0) + 1
    best = None
    for lp in loops:
        n = own.get(id(lp), 0)
        if n and (best is None or (n, -(lp.end - lp.start)) > (best[0], -(best[1].end - best[1].start))):
            best = (n, lp)
    return (best[1], op) if best else None


def loop_figures(f: Function, loop: Loop, op: str) -> dict:
    body = loop_instrs(f, loop)
    n_op = count_ops(body, (op,))
    lds, ldg = count_ops(body, SHARED_LOADS), count_ops(body, GLOBAL_LOADS)
    return {
        "op": op,
        "ops": n_op,
        "instructions": len(body),
        "instructions_per_op": round(len(body) / n_op, 3),
        "shared_loads": lds,
        "shared_loads_per_op": round(lds / n_op, 3),
        "global_loads": ldg,
        "global_loads_per_op": round(ldg / n_op, 3),
        "barriers": count_ops(body, ("BAR",)),
        "start": f"{loop.start:#06x}",
        "end": f"{loop.end:#06x}",
    }


def _access_bytes(ins: Instr) -> int:
    """Bytes moved by one STL / LDL (width suffix .64 / .128, .U8 / .S16 ...; 4 without one)."""
    mods = ins.opcode.split(".")[1:]
    for m in mods:
        if m in ("64", "128"):
            return int(m) // 8
        if m in ("U8", "S8"):
            return 1
        if m in ("U16", "S16"):
            return 2
    return 4


def local_traffic(f: Function) -> tuple[int, int]:
    """(bytes stored by STL, bytes loaded by LDL) in the whole kernel, each instruction counted once."""
    st = sum(_access_bytes(i) for i in f.instrs if i.base == "STL")
    ld = sum(_access_bytes(i) for i in f.instrs if i.base == "LDL")
    return st, ld


# ----------------------------------------------------------------------------------------------- other cuobjdump views
def parse_res_usage(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """``cuobjdump -res-usage``: {(arch, mangled name): {"REG": .., "STACK": .., "SHARED": .., "LOCAL": .., ...}}."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    arch, name = "?", None
    for line in text.splitlines():
        m = re.match(r"^\s*arch\s*=\s*(sm_\w+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"^\s*Function\s+(\S+?):?\s*$", line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            out.setdefault((arch, name), {k: int(v) for k, v in re.findall(r"([A-Z]+(?:\[\d+\])?):(\d+)", line)})
            name = None
    return out


def parse_elf(text: str) -> dict[tuple[str, str], dict]:
    """What ``cuobjdump -elf`` says about each kernel: {(arch, mangled name): {"attrs": {EIATTR_*: value},
    "shared_section": size of its .nv.shared.<name> section or None, "reserved_window": whether its cubin
    declares the reserved shared-memory window (.nv.shared.reserved.0)}}.  The first cubin that holds a kernel
    counts (as in parse_sass)."""
    out: dict[tuple[str, str], dict] = {}
    module: dict[tuple[str, str], dict] = {}
    arch, name, attr, reserved = "?", None, None, False

    def close():
        for k, v in module.items():
            v["reserved_window"] = reserved
            out.setdefault(k, v)

    for line in text.splitlines():
        m = re.match(r"^\s*arch\s*=\s*(sm_\w+)", line)
        if m:  # the next cubin
            close()
            module, arch, name, attr, reserved = {}, m.group(1), None, None, False
            continue
        # a row of the section table: index offset size entsize align type ... name
        m = re.match(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+NOBITS\s.*\s"
                     r"\.nv\.shared\.(\S+)\s*$", line)
        if m:
            if m.group(2).startswith("reserved."):
                reserved = True
            else:
                module.setdefault((arch, m.group(2)), {"attrs": {}, "shared_section": None})["shared_section"] = \
                    int(m.group(1), 16)
            continue
        m = re.match(r"^\s*\.nv\.info\.(\S+)\s*$", line)
        if m:
            name, attr = m.group(1), None
            module.setdefault((arch, name), {"attrs": {}, "shared_section": None})
            continue
        if name is None:
            continue
        if line.strip().startswith("."):  # another section
            name = None
            continue
        m = re.match(r"^\s*Attribute:\s*(\w+)", line)
        if m:
            attr = m.group(1)
            continue
        m = re.match(r"^\s*Value:\s*(.*?)\s*$", line)
        if m and attr:
            module[(arch, name)]["attrs"].setdefault(attr, m.group(1))
            attr = None
    close()
    return out


def static_smem(elf_entry: dict | None, reserved: int = 1024) -> int | None:
    """ptxas' static shared memory of a kernel: its .nv.shared section, less the 1 KiB window that sm_90 cubins
    reserve for the system at the start of every kernel's shared memory (the occupancy rules add it per block)."""
    if not elf_entry:
        return None
    size = elf_entry.get("shared_section") or 0
    if elf_entry.get("reserved_window") and size >= reserved:
        size -= reserved
    return size


def max_threads(attrs: dict[str, str]) -> int | None:
    """Threads per block of __launch_bounds__ (EIATTR_MAX_THREADS "0x100 0x1 0x1" -> 256)."""
    v = attrs.get("EIATTR_MAX_THREADS")
    if not v:
        return None
    dims = [int(x, 0) for x in v.split()[:3]]
    return math.prod(dims)


# ----------------------------------------------------------------------------------------------- occupancy
def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(threads: int, regs: int, smem_bytes: int, gpu: dict = H100) -> dict:
    """Theoretical occupancy of a kernel of `threads` threads per block, `regs` registers per thread and
    `smem_bytes` of shared memory per block (static + dynamic): blocks per SM, the limit that binds, active warps
    and their fraction of the SM's maximum."""
    warps = -(-threads // gpu["warp_size"])
    limits = {"warps": gpu["max_warps_per_sm"] // warps, "blocks": gpu["max_blocks_per_sm"]}
    if regs > 0:
        per_warp = _round_up(regs * gpu["warp_size"], gpu["reg_alloc_unit"])
        # a launch must fit the block's register limit with its warps spread over all sub-partitions
        fits = (regs <= gpu["max_regs_per_thread"]
                and per_warp * _round_up(warps, gpu["sub_partitions"]) <= gpu["regs_per_block"])
        per_sub = gpu["regs_per_sm"] // gpu["sub_partitions"] // per_warp
        limits["registers"] = per_sub * gpu["sub_partitions"] // warps if fits else 0
    if smem_bytes > gpu["smem_per_block_max"]:
        limits["shared memory"] = 0
    else:
        alloc = _round_up(smem_bytes + gpu["smem_reserved_per_block"], gpu["smem_alloc_unit"])
        limits["shared memory"] = gpu["smem_per_sm"] // alloc
    blocks = min(limits.values())
    limiter = min(limits, key=limits.get)  # on a tie the first of warps, blocks, registers, shared memory
    return {
        "blocks_per_sm": blocks,
        "warps_per_sm": blocks * warps,
        "occupancy": blocks * warps / gpu["max_warps_per_sm"],
        "limited_by": limiter,
        "limits": limits,
    }


# ----------------------------------------------------------------------------------------------- names
def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled names (c++filt; names left as they are without it)."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    res = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True, check=True)
    dem = res.stdout.splitlines()
    return dict(zip(names, dem)) if len(dem) == len(names) else {n: n for n in names}


def _split_template(s: str) -> tuple[str, list[str], str]:
    """'a::f<x, g<y, z>, 1>(args)' -> ('a::f', ['x', 'g<y, z>', '1'], '(args)')."""
    lt = s.find("<")
    paren = s.find("(")
    if lt < 0 or (0 <= paren < lt):
        return (s[:paren] if paren >= 0 else s), [], (s[paren:] if paren >= 0 else "")
    depth, args, cur, i = 0, [], "", lt
    while i < len(s):
        c = s[i]
        if c in "<(":
            depth += 1
            if depth > 1:
                cur += c
        elif c in ">)":
            depth -= 1
            if depth == 0:
                args.append(cur.strip())
                break
            cur += c
        elif c == "," and depth == 1:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    return s[:lt], args, s[i + 1:]


def kernel_template(demangled: str) -> tuple[str, list[str]]:
    """'void deepops::conv::conv_igemm_kernel<__half, 1, false, true>(deepops::conv::IgemmParams)' ->
    ('deepops::conv::conv_igemm_kernel', ['__half', '1', 'false', 'true']); anonymous namespaces are dropped
    ('deepops::(anonymous namespace)::sweep_kernel(...)' -> 'deepops::sweep_kernel')."""
    s = demangled.replace("(anonymous namespace)::", "")
    if s.startswith("void "):
        s = s[5:]
    name, args, _ = _split_template(s)
    return name.strip(), args


_TYPES = {"__half": "f16", "__nv_bfloat16": "bf16", "float": "f32", "double": "f64", "long": "i64", "int": "i32",
          "unsigned int": "u32", "unsigned long": "u64", "long long": "i64", "unsigned char": "u8", "bool": "bool"}
_CONV_OPS = {"0": "fma", "1": "mma", "2": "tf32"}  # OpKind of conv_igemm.cuh
_CONV_MAPS = {"1": "map:rows,k", "2": "map:k,k", "3": "map:rows,rows"}  # LoadMap of conv_igemm.cuh (0: per launch)


def _short_arg(a: str) -> str:
    a = re.sub(r"\b[A-Za-z_]\w*::", "", a)  # namespaces and enclosing classes
    if a in _TYPES:
        return _TYPES[a]
    if a.endswith("*"):
        return _short_arg(a[:-1].replace(" const", "").strip()) + "*"
    if "<" in a:  # a nested template: its own name only
        a = a[: a.find("<")] + "<..>"
    return a


def short_name(demangled: str, max_args: int = 4) -> str:
    """A readable kernel name: the template without namespaces, its first arguments abbreviated; the implicit-GEMM
    convolution as 'conv_igemm <dtype> <fma|mma|tf32> <wide|narrow> [map:A,B]' (the element gather; the map: which
    side of A and B neighbouring threads load, when fixed at compile time) and 'conv_igemm <dtype>
    <mma|tf32> <wide|narrow> cp.async [dw|dwT]' (the 16-byte vector kernel; dw: backward-weight dw = dy x, dwT:
    dw^T = x^T dy); the few-channel forward as 'conv_fewchan <dtype> <mma|tf32> <2|4> slots' (channel slots per
    pixel of its input window)."""
    name, args = kernel_template(demangled)
    base = name.rsplit("::", 1)[-1]
    if base == "conv_igemm_kernel" and len(args) in (3, 4):
        t, op, narrow = args[:3]
        parts = [_TYPES.get(t, t), _CONV_OPS.get(op, op), "narrow" if narrow == "true" else "wide"]
        parts += [_CONV_MAPS[args[3]]] if len(args) == 4 and args[3] in _CONV_MAPS else []
        return "conv_igemm " + " ".join(parts)
    if base == "conv_igemm_vec_kernel" and len(args) == 3:
        t, narrow, vec_pass = args
        parts = [_TYPES.get(t, t), "tf32" if t == "float" else "mma", "narrow" if narrow == "true" else "wide",
                 "cp.async"] + {"1": ["dw"], "2": ["dwT"]}.get(vec_pass, [])
        return "conv_igemm " + " ".join(parts)
    if base == "conv_fewchan_kernel" and len(args) == 2:
        t, cs = args
        return f"conv_fewchan {_TYPES.get(t, t)} {'tf32' if t == 'float' else 'mma'} {cs} slots"
    if not args:
        return base
    shown = [_short_arg(a) for a in args]
    if name.startswith("cub::"):  # the tuning policy says nothing to a reader
        shown = [x for x in shown if not x.startswith("policy_hub")]
    more = ", ..." if len(shown) > max_args else ""
    return f"{base}<{', '.join(shown[:max_args])}{more}>"


# ----------------------------------------------------------------------------------------------- tools
def find_tool(name: str) -> str | None:
    """A CUDA binary tool: $DEEPOPS_<NAME>, $CUDA_HOME/bin, PATH, then the copy that triton's wheel bundles."""
    env = os.environ.get("DEEPOPS_" + name.upper())
    if env:
        return env
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    cand = os.path.join(cuda_home, "bin", name)
    if os.access(cand, os.X_OK):
        return cand
    if shutil.which(name):
        return shutil.which(name)
    spec = importlib.util.find_spec("triton")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = os.path.join(loc, "backends", "nvidia", "bin", name)
            if os.access(cand, os.X_OK):
                return cand
    return None


def tool_version(path: str | None) -> str | None:
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except OSError:
        return None
    m = re.search(r"release [\d.]+, V([\d.]+)", out)
    return m.group(1) if m else out.strip().splitlines()[-1] if out.strip() else None


def _run(tool: str, *args: str) -> str:
    res = subprocess.run([tool, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{os.path.basename(tool)} {' '.join(args)} failed:\n{res.stderr.strip()}")
    return res.stdout


def default_binary() -> str | None:
    """The CUDA extension of the deepops that Python imports (located without importing it)."""
    spec = importlib.util.find_spec("deepops")
    if not spec or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        hits = [p for p in glob.glob(os.path.join(loc, "_C.*.so")) + glob.glob(os.path.join(loc, "_C.so"))]
        if hits:
            return sorted(hits)[0]
    return None


def default_sources() -> str | None:
    """The repository root with csrc/kernels: next to the deepops package (an editable install), else the
    current directory."""
    spec = importlib.util.find_spec("deepops")
    roots = [os.path.dirname(loc) for loc in (spec.submodule_search_locations or [])] if spec else []
    for root in roots + [os.getcwd()]:
        if os.path.isdir(os.path.join(root, "csrc", "kernels")):
            return root
    return None


# ----------------------------------------------------------------------------------------------- dynamic shared memory
def dynamic_smem_kernels(src_root: str) -> dict[str, str]:
    """The __global__ kernels of csrc/kernels that declare DEEPOPS_DYNAMIC_SHARED: {qualified name: file}.  (The
    namespace is read from the file's ``namespace`` lines; the kernel body is the text up to the next kernel.)"""
    found = {}
    kdir = os.path.join(src_root, "csrc", "kernels")
    for path in sorted(glob.glob(os.path.join(kdir, "*.cu")) + glob.glob(os.path.join(kdir, "*.cuh"))):
        with open(path) as f:
            text = f.read()
        ns = [n for n in re.findall(r"^namespace (\w+) \{", text, re.M)]
        heads = list(re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(",
                                 text))
        for k, h in enumerate(heads):
            body = text[h.end(): heads[k + 1].start() if k + 1 < len(heads) else len(text)]
            if "DEEPOPS_DYNAMIC_SHARED(" in body:
                found["::".join(ns + [h.group(1)])] = os.path.relpath(path, src_root)
    return found


def dynamic_smem_table(templates: dict[str, list[list[str]]], src_root: str | None) -> tuple[dict, str | None]:
    """Evaluates the launchers' dynamic shared memory expressions for the given kernel instantiations
    ({template: [template arguments, ...]}) by compiling them as host C++ (DEEPOPS_EMULATE) against the kernel
    sources.  Returns ({(template, tuple(args)): bytes}, None) or ({}, why not)."""
    wanted = [(t, a) for t, lst in templates.items() if DYNAMIC_SMEM.get(t, {}).get("expr") for a in lst]
    if not wanted:
        return {}, None
    if not src_root:
        return {}, "no kernel sources (csrc/kernels) found; pass --src"
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        return {}, "no C++ compiler to evaluate the launchers' sizes"
    cuda_home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    lines = [f'#include "{DYNAMIC_SMEM[t]["header"]}"' for t in sorted({t for t, _ in wanted})]
    lines += ["#include <cstdio>", "int main() {"]
    for i, (t, a) in enumerate(wanted):
        expr = DYNAMIC_SMEM[t]["expr"].format(*a)
        lines.append(f'  std::printf("%d %zu\\n", {i}, static_cast<size_t>({expr}));')
    lines += ["  return 0;", "}"]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "smem.cpp"), os.path.join(tmp, "smem")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        cmd = [cxx, "-std=c++17", "-O0", "-DDEEPOPS_EMULATE", "-I", os.path.join(src_root, "csrc"),
               "-I", os.path.join(cuda_home, "include"), src, "-o", exe]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return {}, "could not compile the launchers' size expressions: " + res.stderr.strip()[-300:]
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    table = {}
    for ln in out.splitlines():
        i, v = ln.split()
        t, a = wanted[int(i)]
        table[(t, tuple(a))] = int(v)
    return table, None


# ----------------------------------------------------------------------------------------------- the report
def analyse(sass: str, res_usage: str, elf: str, src_root: str | None = None) -> list[dict]:
    """One record per (arch, kernel) of the binary, sorted by architecture and name."""
    funcs: dict[tuple[str, str], Function] = {}
    for f in parse_sass(sass):
        funcs.setdefault((f.arch, f.name), f)  # a kernel compiled into several objects: the first copy
    usage = parse_res_usage(res_usage)
    elf_info = parse_elf(elf)
    dem = demangle(sorted({n for _, n in funcs}))
    templates: dict[str, list[list[str]]] = {}
    for (_, n) in funcs:
        t, a = kernel_template(dem[n])
        if t in DYNAMIC_SMEM and a not in templates.setdefault(t, []):
            templates[t].append(a)
    smem_table, smem_why = dynamic_smem_table(templates, src_root)
    records = []
    for (arch, name), f in sorted(funcs.items()):
        gpu = GPU_MODELS.get(arch, H100)
        u = usage.get((arch, name), {})
        regs = u.get("REG")
        st, ld = local_traffic(f)
        t, targs = kernel_template(dem[name])
        rec = {
            "arch": arch,
            "kernel": short_name(dem[name]),
            "demangled": dem[name],
            "mangled": name,
            "registers": regs,
            "stack_bytes": u.get("STACK"),
            "spill_store_bytes": st,
            "spill_load_bytes": ld,
            "static_smem_bytes": static_smem(elf_info.get((arch, name)), gpu["smem_reserved_per_block"]),
            "dynamic_smem_bytes": 0,
            "dynamic_smem_note": "none (no DEEPOPS_DYNAMIC_SHARED)",
            "block_threads": max_threads((elf_info.get((arch, name)) or {}).get("attrs", {})),
            "sass_instructions": len(f.instrs),
        }
        if t in DYNAMIC_SMEM:
            d = DYNAMIC_SMEM[t]
            if d["expr"] is None:
                rec["dynamic_smem_bytes"] = None
                rec["dynamic_smem_note"] = f"per call, {d['why']}: {d['launcher']}"
            elif (t, tuple(targs)) in smem_table:
                rec["dynamic_smem_bytes"] = smem_table[(t, tuple(targs))]
                rec["dynamic_smem_note"] = f"from {d['launcher']}"
            else:
                rec["dynamic_smem_bytes"] = None
                rec["dynamic_smem_note"] = f"unknown: {smem_why}"
        occ = None
        if rec["block_threads"] and regs is not None:
            smem = (rec["static_smem_bytes"] or 0) + (rec["dynamic_smem_bytes"] or 0)
            occ = occupancy(rec["block_threads"], regs, smem, gpu)
            occ["gpu"] = gpu["name"]
            occ["upper_bound"] = rec["dynamic_smem_bytes"] is None  # shared memory only partly known
        rec["occupancy"] = occ
        hl = hot_loop(f)
        rec["hot_loop"] = loop_figures(f, *hl) if hl else None
        records.append(rec)
    return records


def build_report(binary: str, src_root: str | None = None, cuobjdump: str | None = None) -> dict:
    cuobjdump = cuobjdump or find_tool("cuobjdump")
    if not cuobjdump:
        raise SystemExit("cuobjdump not found: set CUDA_HOME, put it on PATH or set DEEPOPS_CUOBJDUMP")
    sass = _run(cuobjdump, "-sass", binary)
    res = _run(cuobjdump, "-res-usage", binary)
    elf = _run(cuobjdump, "-elf", binary)
    records = analyse(sass, res, elf, src_root)
    if not records:
        raise SystemExit(f"{binary}: no SASS found (a build without CUDA, or PTX only?)")
    nvcc = find_tool("nvcc")
    return {
        "generator": "python -m deepops.bench.kernels",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "binary": os.path.basename(binary),
        "archs": sorted({r["arch"] for r in records}),
        "build": _build_config(binary),
        "tools": {
            "cuobjdump": tool_version(cuobjdump), "cuobjdump_path": cuobjdump,
            "nvcc": tool_version(nvcc), "nvcc_path": nvcc,
            "ptxas_of_the_binary": _tkinfo(elf, "Tool Version"),
            "ptxas_options": _tkinfo(elf, "Tool Command Line Arguments"),
        },
        "sources": {"root": src_root, "commit": _git_commit(src_root)},
        "gpu_models": {arch: GPU_MODELS.get(arch, H100) for arch in sorted({r["arch"] for r in records})},
        "assumptions": [
            "block size = the kernel's __launch_bounds__ (EIATTR_MAX_THREADS); every deepops launcher launches that "
            "many threads",
            "occupancy: NVIDIA's occupancy-calculator rules, sm_90 code on an H100, sm_80 code on an A100, with the "
            "largest shared-memory carveout (228 / 164 KiB per SM) and 1 KiB reserved per block; with dynamic shared "
            "memory that depends on the call it is an upper bound",
            "static shared memory = the kernel's .nv.shared section less the 1 KiB reserved window that sm_90 "
            "cubins place in it (equal to ptxas -v's 'bytes smem')",
            "spill bytes = bytes of the kernel's STL / LDL instructions in the SASS, each counted once (ptxas' "
            "spill stores / loads when the kernel has no local arrays)",
            "hot loop = the loop (backward BRA to a label) with the most MMA (else FFMA / DFMA) instructions of its "
            "own (those of loops nested in it not counted), the innermost on a tie; its figures count each "
            "instruction of the body once, every branch and switch case inside it included",
        ],
        "kernels": records,
    }


def _build_config(binary: str) -> dict | None:
    """deepops/_build_config.py next to the binary (written by setup.py), if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(binary)), "_build_config.py")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        m = re.search(r"^CONFIG = (.*)$", f.read(), re.M)  # setup.py writes one dict literal
    cfg = ast.literal_eval(m.group(1)) if m else {}
    return {k: cfg.get(k) for k in ("torch_version", "cuda_version", "cuda_arch_list")}


def _tkinfo(elf: str, field_name: str) -> list[str]:
    """A field of the cubins' .note.nv.tkinfo (the ptxas that made them), each distinct value once."""
    return sorted(set(re.findall(rf"{field_name}:\s*(.+?)\s*$", elf, re.M)))


def _git_commit(root: str | None) -> str | None:
    if not root:
        return None
    try:
        res = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


# ----------------------------------------------------------------------------------------------- output
def _fmt_smem(r: dict) -> str:
    st = r.get("static_smem_bytes") or 0
    dyn = r.get("dynamic_smem_bytes")
    d = "?" if dyn is None else (f"{dyn / 1024:.1f}K" if dyn >= 1024 else str(dyn))
    s = f"{st / 1024:.1f}K" if st >= 1024 else str(st)
    return f"{s}+{d}"


def _fmt_occ(r: dict) -> str:
    o = r.get("occupancy")
    if not o:
        return "?"
    pre = "<=" if o.get("upper_bound") else ""
    short = {"registers": "regs", "shared memory": "smem"}.get(o["limited_by"], o["limited_by"])
    return f"{pre}{100 * o['occupancy']:g}% ({o['blocks_per_sm']} x {short})"


def _fmt_loop(r: dict) -> tuple[str, str, str, str]:
    h = r.get("hot_loop")
    if not h:
        return "-", "", "", ""
    return (f"{h['instructions']}/{h['ops']} {h['op']}", f"{h['instructions_per_op']:.1f}",
            f"{h['shared_loads_per_op']:.2f}", f"{h['global_loads_per_op']:.2f}")


def table_rows(report: dict, hot_only: bool = False) -> list[list[str]]:
    rows = []
    for r in sorted(report["kernels"], key=lambda r: (r["arch"], r["kernel"], r["mangled"])):
        if hot_only and not r.get("hot_loop"):
            continue
        loop = _fmt_loop(r)
        rows.append([r["arch"], r["kernel"], str(r["registers"]), f"{r['spill_store_bytes']}/{r['spill_load_bytes']}",
                     _fmt_smem(r), str(r["block_threads"] or "?"), _fmt_occ(r), *loop])
    return rows


HEADER = ["arch", "kernel", "regs", "spill st/ld", "smem st+dyn", "threads", "occupancy", "hot loop",
          "instr/op", "LDS/op", "LDG/op"]


def format_table(report: dict, hot_only: bool = False) -> str:
    rows = [HEADER] + table_rows(report, hot_only)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    left = {1, 7}
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


README_START = "<!-- kernels:start (generated by python -m deepops.bench.kernels --readme; do not edit by hand) -->"
README_END = "<!-- kernels:end -->"


def readme_section(report: dict, path: str) -> str:
    """The README's table: the kernels with a hot loop (MMA / FMA), then one line for the others."""
    t = report["tools"]
    ptxas = ", ".join(v.rsplit(" ", 1)[-1] for v in t.get("ptxas_of_the_binary") or []) or f"nvcc {t.get('nvcc')}"
    lines = [README_START, "",
             f"From [`{path}`]({path}) ({report['date']}; {', '.join(report['archs'])}, compiled by ptxas "
             f"{ptxas}, read with cuobjdump {t.get('cuobjdump') or '?'}). smem: static + dynamic "
             "bytes per block; theoretical occupancy on an H100 (sm_80 code: an A100) at the `__launch_bounds__` block "
             "size (blocks per SM x the limit that binds; <= where the dynamic shared memory depends on the call); "
             "hot loop: SASS instructions / MMA or FMA instructions of the loop that holds "
             "the most of them of its own (not counting loops nested in it); LDS/op, LDG/op: shared (LDS, LDSM) and global (LDG, LDGSTS) loads per MMA/FMA.",
             "", "| " + " | ".join(HEADER) + " |",
             "| " + " | ".join("---" if i in (0, 1, 7) else "---:" for i in range(len(HEADER))) + " |"]
    for row in table_rows(report, hot_only=True):
        row[1] = f"`{row[1]}`"  # template brackets are not HTML
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    rest = [r for r in report["kernels"] if not r.get("hot_loop")]
    if rest:
        regs = [r["registers"] for r in rest if r["registers"] is not None]
        spills = [r["kernel"] for r in rest if r["spill_store_bytes"] or r["spill_load_bytes"]]
        lines += ["", f"The other {len(rest)} kernels (no MMA / FMA loop: element-wise, pooling, NMS, reductions, "
                  f"sorting): {min(regs)}-{max(regs)} registers, "
                  + (f"spills in {', '.join(spills)}." if spills else "no spills.")]
    lines += ["", README_END]
    return "\n".join(lines)


def update_readme(root: str, report_path: str, check: bool = False) -> bool:
    """Rewrite (with check: compare) the README's kernel section from a committed report. True if up to date."""
    with open(os.path.join(root, report_path)) as f:
        report = json.load(f)
    return replace_section(os.path.join(root, "README.md"), README_START, README_END,
                           readme_section(report, report_path), check)


# ----------------------------------------------------------------------------------------------- check
# A kernel in an anonymous namespace is mangled with a hash of its translation unit (nvcc:
# ``47_GLOBAL__N__447cc8f4_14_conv_direct_cu_b22c7433``), which changes with the directory the tree was built in;
# the check compares names with the hashes taken out (the file name stays, so two files' kernels stay apart).
_ANON = re.compile(r"\d+_GLOBAL__N__[0-9a-f]+_\d+_(\w+?)_[0-9a-f]{8}(?=\d)")


def stable_name(mangled: str) -> str:
    """``mangled`` without the build-directory hash of its anonymous namespace, if it has one."""
    return _ANON.sub(lambda m: f"(anon:{m.group(1)})", mangled)


def check(report: dict, committed: dict, tolerance: float = 0.10) -> tuple[list[str], list[str]]:
    """Compares a fresh report with a committed one: (failures, notes).  Fails when a committed kernel is gone
    (same arch and mangled name), when its hot loop needs more than (1 + tolerance) x the committed instructions
    per MMA / FMA or lost its MMA / FMA, or when any kernel spills at all (the issue's bar is no spills: comparing
    with the committed figure alone let a spill through once it had been committed)."""
    now = {(r["arch"], stable_name(r["mangled"])): r for r in report["kernels"]}
    fails, notes = [], []
    for r in report["kernels"]:
        if (r.get("spill_store_bytes") or 0) or (r.get("spill_load_bytes") or 0):
            fails.append(f"{r['arch']} {r['kernel']}: spills {r.get('spill_store_bytes') or 0} bytes stored / "
                         f"{r.get('spill_load_bytes') or 0} loaded (no spills allowed)")
    for old in committed["kernels"]:
        key = (old["arch"], stable_name(old["mangled"]))
        label = f"{old['arch']} {old['kernel']}"
        new = now.get(key)
        if new is None:
            fails.append(f"{label}: kernel disappeared from the binary ({old['mangled']})")
            continue
        oh, nh = old.get("hot_loop"), new.get("hot_loop")
        if oh:
            if not nh or nh["op"] != oh["op"]:
                fails.append(f"{label}: hot loop of {oh['op']} is gone (now: {nh and nh['op']})")
                continue
            a, b = oh["instructions_per_op"], nh["instructions_per_op"]
            if b > a * (1 + tolerance):
                fails.append(f"{label}: instructions per {oh['op']} in the hot loop {a:.2f} -> {b:.2f} "
                             f"(+{100 * (b / a - 1):.0f}%, more than {100 * tolerance:.0f}% worse)")
            elif b < a * (1 - tolerance):
                notes.append(f"{label}: instructions per {oh['op']} {a:.2f} -> {b:.2f} (better: update the "
                             "committed report)")
    old_keys = {(r["arch"], stable_name(r["mangled"])) for r in committed["kernels"]}
    new_only = [r for k, r in now.items() if k not in old_keys]
    if new_only:
        names = ", ".join(f"{r['arch']} {r['kernel']}" for r in new_only[:8])
        notes.append(f"{len(new_only)} kernels not in the committed report: {names}"
                     + (" ..." if len(new_only) > 8 else ""))
    return fails, notes


# ----------------------------------------------------------------------------------------------- command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepops.bench.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("binary", nargs="?", help="the built extension or any file cuobjdump reads "
                   "(default: deepops/_C*.so of the deepops that Python finds)")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--check", metavar="JSON", help="fail when a kernel regressed against this committed report")
    p.add_argument("--tolerance", type=float, default=0.10, help="--check: allowed growth of instructions per "
                   "MMA/FMA (default 0.10)")
    p.add_argument("--src", help="repository root with csrc/kernels, for the launchers' dynamic shared memory "
                   "(default: next to the deepops package, else the current directory)")
    p.add_argument("--all", action="store_true", help="print every kernel, not only those with a hot loop")
    p.add_argument("--readme", metavar="JSON", help="only rewrite README.md's kernel section from this committed "
                   "report (path relative to --root)")
    p.add_argument("--readme-check", metavar="JSON", help="only check that README.md's kernel section is current")
    p.add_argument("--root", default=".", help="repository root for --readme (default: the current directory)")
    a = p.parse_args(argv)

    if a.readme or a.readme_check:
        ok = update_readme(a.root, a.readme or a.readme_check, check=bool(a.readme_check))
        if a.readme_check and not ok:
            print(f"README.md's kernel section is out of date: run python -m deepops.bench.kernels --readme "
                  f"{a.readme_check}", file=sys.stderr)
            return 1
        print("README.md is up to date" if ok else "README.md's kernel section regenerated")
        return 0

    binary = a.binary or default_binary()
    if not binary or not os.path.isfile(binary):
        print("no CUDA extension found (deepops/_C*.so): build with FORCE_CUDA=1 or pass the binary's path",
              file=sys.stderr)
        return 2
    report = build_report(binary, a.src or default_sources())
    print(f"{binary}: {len(report['kernels'])} kernels, {', '.join(report['archs'])}; cuobjdump "
          f"{report['tools']['cuobjdump']}")
    print(format_table(report, hot_only=not a.all))
    if not a.all:
        print(f"({sum(1 for r in report['kernels'] if not r['hot_loop'])} kernels without an MMA/FMA loop not shown: "
              "--all)")
    if a.json:
        write_json(a.json, report)
        print(f"wrote {a.json}")
    if a.check:
        with open(a.check) as f:
            committed = json.load(f)
        fails, notes = check(report, committed, a.tolerance)
        for n in notes:
            print("note:", n)
        if fails:
            for m in fails:
                print("FAIL:", m, file=sys.stderr)
            print(f"kernel report check against {a.check}: {len(fails)} regression(s)", file=sys.stderr)
            return 1
        print(f"kernel report check against {a.check}: {len(committed['kernels'])} committed kernels, "
              "no regression")
    return 0


if __name__ == "__main__":
    sys.exit(main())
