#!/usr/bin/env python3
"""Make the seed corpus of the goprobe fuzz targets from real Go binaries.

Real Go binaries are 2-90 MB; libFuzzer wants inputs of kilobytes. This script cuts a
real binary down to a *valid* miniature Go executable that the reader accepts as a
whole: an ELF file with the real code, pc-value tables, names, file tables, inline
trees and build info of the functions goprobe hooks (runtime.retake, runtime.signalM,
both runtime.asyncPreempt2, ...), with every table re-laid out and re-indexed:

  ELF header, PT_LOAD R-X (the functions' code), PT_LOAD R (pclntab, inline trees
  "go:func.*", the version string), PT_LOAD RW (.go.buildinfo, moduledata, the
  runtime.buildVersion string header), then optionally .symtab/.strtab, synthetic
  DWARF for runtime.g/m/p (plain, SHF_COMPRESSED or .zdebug_), section headers.

Each source binary gives several variants (with and without .symtab, without section
headers, PIE, pclntab found only through the runtime.pclntab symbol, with DWARF), and
one binary is also re-encoded in the older pclntab layouts the reader supports (Go
1.16 and 1.18 formats, with the pre-1.18 pointer-based build info) and in the
unsupported Go 1.2 one. Every seed is 8-40 KB.

Usage: fuzz/make_seeds.py [--out DIR] [--check GOPROBE] [BINARY...]
Without BINARY it takes the fixtures of `cargo xtask fixtures` (target/fixtures/
<release>/<variant>/spinner) and the go commands under .goprobe/go/<release>/go/bin.
"""

import argparse
import glob
import os
import struct
import subprocess
import sys
import zlib

# Functions kept in every seed: the probe table of tracer/src/probes.rs plus the
# neighbours that the planner and symbolisation care about.
KEEP = {
    "runtime.retake", "runtime.preemptone", "runtime.preemptM", "runtime.signalM",
    "runtime.suspendG", "runtime.execute", "runtime.doSigPreempt",
    "runtime.asyncPreempt2", "runtime.asyncPreempt", "runtime.goschedImpl",
    "runtime.gopreempt_m", "runtime.preemptPark", "runtime.tgkill",
}

MAGIC_GO12, MAGIC_GO116, MAGIC_GO118, MAGIC_GO120 = (
    0xFFFFFFFB, 0xFFFFFFFA, 0xFFFFFFF0, 0xFFFFFFF1)
PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3
FUNC_FLAG_ASM = 1 << 2
BUILDINFO_MAGIC = b"\xff Go buildinf:"


def u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


def varint(b, pos):
    v = shift = 0
    while True:
        x = b[pos]
        pos += 1
        v |= (x & 0x7F) << shift
        if not x & 0x80:
            return v, pos
        shift += 7


def uvarint_bytes(n):
    out = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            out.append(x | 0x80)
        else:
            out.append(x)
            return bytes(out)


def align(n, a):
    return (n + a - 1) // a * a


class Elf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        assert d[:4] == b"\x7fELF" and d[4] == 2 and d[5] == 1, f"{path}: not ELF64 LE"
        self.e_type = struct.unpack_from("<H", d, 16)[0]
        phoff, shoff = u64(d, 32), u64(d, 40)
        phnum, shnum, shstrndx = (struct.unpack_from("<H", d, o)[0] for o in (56, 60, 62))
        self.segments = []
        for i in range(phnum):
            p_type, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from(
                "<IIQQQQQQ", d, phoff + 56 * i)
            if p_type == 1:
                self.segments.append((vaddr, off, filesz, flags))
        raw = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + 64 * i) for i in range(shnum)]
        stroff = raw[shstrndx][4] if raw else 0
        self.sections = {}
        for s in raw:
            name = d[stroff + s[0]: d.index(b"\0", stroff + s[0])].decode()
            self.sections[name] = dict(type=s[1], flags=s[2], addr=s[3], off=s[4], size=s[5],
                                       link=s[6])
        self.symbols = []
        if ".symtab" in self.sections:
            st = self.sections[".symtab"]
            strs = self.sections[".strtab"]["off"]
            for o in range(st["off"], st["off"] + st["size"], 24):
                name_off, info, _, _, value, size = struct.unpack_from("<IBBHQQ", d, o)
                name = d[strs + name_off: d.index(b"\0", strs + name_off)]
                self.symbols.append((name.decode("utf-8", "replace"), value, size, info & 0xF))

    def off(self, vaddr):
        for v, o, sz, _ in self.segments:
            if v <= vaddr < v + sz:
                return o + vaddr - v
        raise KeyError(hex(vaddr))

    def read(self, vaddr, n):
        o = self.off(vaddr)
        return self.data[o:o + n]

    def symbol(self, name):
        return next((v for n, v, _, _ in self.symbols if n == name), None)


class Func:
    pass


def table_len_and_values(pctab, off):
    """Byte length of the pc-value table at `off` (with its terminator) and its values."""
    pos, first, val, values = off, True, -1, []
    while True:
        uv, pos = varint(pctab, pos)
        if uv == 0 and not first:
            return pos - off, values
        vdelta = -(uv >> 1) - 1 if uv & 1 else uv >> 1
        _, pos = varint(pctab, pos)
        val += vdelta
        values.append(val)
        first = False


class GoBin:
    def __init__(self, path):
        self.elf = e = Elf(path)
        sec = next((s for n, s in e.sections.items() if n.endswith(".gopclntab")), None)
        if sec:
            self.pcaddr = sec["addr"]
        else:
            self.pcaddr = e.symbol("runtime.pclntab") or e.symbol("runtime.pcheader")
        h = e.read(self.pcaddr, 72)
        assert u32(h, 0) == MAGIC_GO120, f"{path}: only Go 1.20+ sources are supported"
        self.quantum = h[6]
        (self.nfunc, self.nfiles, self.header_text, funcname, cu, filetab, pctab,
         pcln) = struct.unpack_from("<8Q", h, 8)
        base = e.off(self.pcaddr)
        self.funcnametab = base + funcname
        self.cutab = base + cu
        self.filetab = base + filetab
        self.pctab = base + pctab
        self.pcln = base + pcln
        self.buildinfo = self._buildinfo()
        self.version = self._version()
        self.minor = int(self.version.split(".")[1])
        self.moduledata = self._moduledata()
        self.text = u64(e.read(self.moduledata, 200), 176)
        gofunc_off = 344 if self.minor >= 27 else 320
        self.gofunc = e.symbol("go:func.*") or u64(e.read(self.moduledata + gofunc_off, 8), 0)
        abi0 = {}
        for n, v, _, kind in e.symbols:
            if kind == 2 and n.endswith(".abi0"):
                abi0[v] = True
        self.abi0 = abi0
        self.funcs = self._funcs()

    def _buildinfo(self):
        e = self.elf
        sec = e.sections.get(".go.buildinfo")
        o = sec["off"] if sec else e.data.index(BUILDINFO_MAGIC)
        d = e.data
        assert d[o + 15] & 2, "inline build info expected"
        pos = o + 32
        n, pos = varint(d, pos)
        version = d[pos:pos + n]
        pos += n
        n, pos = varint(d, pos)
        modinfo = d[pos:pos + n]
        return version, modinfo

    def _version(self):
        v = self.buildinfo[0].decode()
        assert v.startswith("go1."), v
        return v

    def _moduledata(self):
        e = self.elf
        needle = struct.pack("<QQ", self.pcaddr, self.pcaddr + (self.funcnametab - e.off(self.pcaddr)))
        for vaddr, off, filesz, flags in e.segments:
            if flags & 1:
                continue
            i = e.data.find(needle, off, off + filesz)
            while i >= 0:
                if (i - off) % 8 == 0:
                    return vaddr + i - off
                i = e.data.find(needle, i + 1, off + filesz)
        raise SystemExit(f"{e.path}: moduledata not found")

    def name(self, off):
        d = self.elf.data
        a = self.funcnametab + off
        return d[a:d.index(b"\0", a)].decode("utf-8", "replace")

    def _funcs(self):
        d = self.elf.data
        out = []
        for i in range(self.nfunc):
            entryoff, funcoff = struct.unpack_from("<II", d, self.pcln + 8 * i)
            nxt = u32(d, self.pcln + 8 * (i + 1))
            a = self.pcln + funcoff
            f = Func()
            (f.entryoff, f.nameoff, f.args, f.deferreturn, f.pcsp, f.pcfile, f.pcln, f.npcdata,
             f.cuoff, f.startline, f.funcid, f.flag, _, f.nfuncdata) = struct.unpack_from(
                "<IiiIIIIIIiBBBB", d, a)
            f.pcdata = list(struct.unpack_from(f"<{f.npcdata}I", d, a + 44))
            f.funcdata = list(struct.unpack_from(f"<{f.nfuncdata}I", d, a + 44 + 4 * f.npcdata))
            f.size = nxt - entryoff
            f.name = self.name(f.nameoff)
            f.entry = self.text + entryoff
            out.append(f)
        return out

    def pc_table(self, off):
        if off == 0:
            return b"", []
        n, values = table_len_and_values(self.elf.data, self.pctab + off)
        return self.elf.data[self.pctab + off:self.pctab + off + n], values

    def file_name(self, cuoff, fileno):
        d = self.elf.data
        o = u32(d, self.cutab + 4 * (cuoff + fileno))
        if o == 0xFFFFFFFF:
            return None
        a = self.filetab + o
        return d[a:d.index(b"\0", a)]


class Strtab:
    """A NUL-terminated string table with de-duplication; offset 0 optional."""

    def __init__(self, leading_nul=False):
        self.buf = bytearray(b"\0" if leading_nul else b"")
        self.index = {}

    def add(self, s):
        if isinstance(s, str):
            s = s.encode()
        if s not in self.index:
            self.index[s] = len(self.buf)
            self.buf += s + b"\0"
        return self.index[s]


def synth_dwarf(version, minor):
    """A small .debug_info/.debug_abbrev/.debug_str pair describing runtime.g, runtime.m,
    runtime.p (with a typedef'd nested runtime.sysmontick and runtime.gobuf), shaped
    like Go's: DW_FORM_string names, ref_addr types, udata member locations, plus a
    strp name and a DW_OP_plus_uconst location to reach the other decoding paths."""
    g_extra = 8 if minor in (23, 24) else 0
    g = [("goid", 152 + g_extra, "uint64"), ("atomicstatus", 144 + g_extra, "uint32"),
         ("preempt", 177 + g_extra, "bool"), ("preemptStop", 178 + g_extra, "bool"),
         ("m", 48, "uintptr"), ("sched", 56, "runtime.gobuf")]
    m = [("procid", 64 if minor >= 25 else 72, "uint64"), ("id", 232, "int64"),
         ("curg", 192, "uintptr"), ("p", 208, "uintptr")]
    p = [("id", 0, "int32"), ("status", 4, "uint32"), ("m", 48 if minor >= 23 else 56, "uintptr"),
         ("schedtick", 16, "uint32"), ("sysmontick", 24, "runtime.sysmontick_t")]
    gobuf = [("sp", 0, "uintptr"), ("pc", 8, "uintptr")]
    sysmontick = [("schedtick", 0, "uint32"), ("schedwhen", 8, "int64")]
    strs = Strtab()
    abbrev = bytearray()

    def ab(code, tag, children, attrs):
        abbrev.extend(uvarint_bytes(code) + uvarint_bytes(tag) + bytes([children]))
        for at, form in attrs:
            abbrev.extend(uvarint_bytes(at) + uvarint_bytes(form))
        abbrev.extend(b"\0\0")

    DW_FORM_string, DW_FORM_udata, DW_FORM_ref_addr, DW_FORM_data1, DW_FORM_ref4 = 0x08, 0x0F, 0x10, 0x0B, 0x13
    DW_FORM_strp, DW_FORM_exprloc = 0x0E, 0x18
    ab(1, 0x11, 1, [(0x03, DW_FORM_string), (0x13, DW_FORM_data1)])  # compile_unit
    ab(2, 0x13, 1, [(0x03, DW_FORM_string), (0x0B, DW_FORM_udata)])  # structure_type
    ab(3, 0x0D, 0, [(0x03, DW_FORM_string), (0x38, DW_FORM_udata), (0x49, DW_FORM_ref_addr)])
    ab(4, 0x24, 0, [(0x03, DW_FORM_string), (0x0B, DW_FORM_data1), (0x3E, DW_FORM_data1)])
    ab(5, 0x16, 0, [(0x03, DW_FORM_string), (0x49, DW_FORM_ref4)])  # typedef
    ab(6, 0x0D, 0, [(0x03, DW_FORM_strp), (0x38, DW_FORM_exprloc), (0x49, DW_FORM_ref4)])
    abbrev.append(0)

    v5 = minor >= 25
    hdr_len = 8 if v5 else 7  # header bytes after unit_length
    body = bytearray()
    body += bytes([1]) + b"runtime\0" + bytes([0x16])  # DW_LANG_Go
    types = {}
    fixups = []  # (position in body, type name, form)

    def die_off():
        return 4 + hdr_len + len(body)  # offset from the unit (= section) start

    for name, size in (("uint64", 8), ("uint32", 4), ("bool", 1), ("uintptr", 8),
                       ("int64", 8), ("int32", 4)):
        types[name] = die_off()
        body += bytes([4]) + name.encode() + b"\0" + bytes([size, 7])

    def struct_die(name, size, members, strp_first=False):
        types[name] = die_off()
        body.extend(bytes([2]) + name.encode() + b"\0" + uvarint_bytes(size))
        for i, (mname, off, ty) in enumerate(members):
            if strp_first and i == 0:
                body.extend(bytes([6]) + struct.pack("<I", strs.add(mname)))
                expr = bytes([0x23]) + uvarint_bytes(off)  # DW_OP_plus_uconst
                body.extend(uvarint_bytes(len(expr)) + expr)
                fixups.append((len(body), ty, "ref4"))
                body.extend(b"\0\0\0\0")
            else:
                body.extend(bytes([3]) + mname.encode() + b"\0" + uvarint_bytes(off))
                fixups.append((len(body), ty, "ref_addr"))
                body.extend(b"\0\0\0\0")
        body.append(0)

    struct_die("runtime.gobuf", 48, gobuf)
    struct_die("runtime.sysmontick", 32, sysmontick, strp_first=True)
    types["runtime.sysmontick_t"] = die_off()
    body.extend(bytes([5]) + b"runtime.sysmontick_t\0")
    fixups.append((len(body), "runtime.sysmontick", "ref4"))
    body.extend(b"\0\0\0\0")
    struct_die("runtime.g", 440, g)
    struct_die("runtime.m", 1000, m, strp_first=True)
    struct_die("runtime.p", 10000, p)
    body.append(0)
    for pos, ty, _form in fixups:
        # The unit starts at section offset 0, so ref4 and ref_addr hold the same number.
        struct.pack_into("<I", body, pos, types[ty])
    if v5:
        head = struct.pack("<HBBI", 5, 1, 8, 0)  # version, DW_UT_compile, addr size, abbrev
    else:
        head = struct.pack("<HIB", 4, 0, 8)
    info = struct.pack("<I", len(head) + len(body)) + head + bytes(body)
    return {".debug_info": info, ".debug_abbrev": bytes(abbrev), ".debug_str": bytes(strs.buf)}


def build(src, layout="go120", sections=True, symtab=True, pie=False, dwarf=None,
          pclntab_section=True, old_buildinfo=False, magic=None, buildinfo=True, keep=None):
    """Lay out a miniature Go executable from `src` (a GoBin). Returns bytes."""
    keep = [f for f in src.funcs if (keep or (lambda name: name in KEEP))(f.name)]
    base = 0 if pie else 0x400000
    minor = src.minor
    # ---- text: the kept functions' code, 32-byte aligned, in original order.
    text_off = 0x100
    pos = text_off
    code = bytearray()
    for f in keep:
        pos = align(pos, 32)
        f.new_entryoff = pos - text_off
        body = src.elf.read(f.entry, f.size)
        code += b"\xcc" * (pos - text_off - len(code)) + body
        pos += f.size
    text_end = text_off + len(code)
    etext_off = text_end - text_off
    text_vaddr = base + text_off

    # ---- pclntab pieces.
    names = Strtab()
    cutab = []
    files = Strtab()
    pctab = bytearray(b"\0")
    pc_moved = {}
    inl_trees = bytearray()

    def move_table(off):
        if off == 0:
            return 0, []
        if off not in pc_moved:
            raw, values = src.pc_table(off)
            pc_moved[off] = (len(pctab), values)
            pctab.extend(raw)
        return pc_moved[off]

    recs = []
    for f in keep:
        r = {"name": names.add(f.name)}
        r["pcsp"], _ = move_table(f.pcsp)
        r["pcfile"], filenos = move_table(f.pcfile)
        r["pcln"], _ = move_table(f.pcln)
        cu_start = len(cutab)
        for fileno in range(max(filenos, default=-1) + 1):
            fn = src.file_name(f.cuoff, fileno) if fileno in filenos else None
            cutab.append(0xFFFFFFFF if fn is None else files.add(fn))
        r["cuoff"] = cu_start
        pcdata = []
        inl_count = 0
        for i, off in enumerate(f.pcdata):
            new, values = move_table(off)
            pcdata.append(new)
            if i == PCDATA_INL_TREE_INDEX:
                inl_count = max(values, default=-1) + 1
        r["pcdata"] = pcdata
        funcdata = [0xFFFFFFFF] * f.nfuncdata
        if layout == "go120" and f.nfuncdata > FUNCDATA_INL_TREE and inl_count:
            old = f.funcdata[FUNCDATA_INL_TREE]
            if old != 0xFFFFFFFF:
                tree = src.elf.read(src.gofunc + old, 16 * inl_count)
                funcdata[FUNCDATA_INL_TREE] = len(inl_trees)
                for k in range(inl_count):
                    fid, _, name_off, parent_pc, start_line = struct.unpack_from(
                        "<B3siii", tree, 16 * k)
                    inl_trees.extend(struct.pack("<B3xiii", fid, names.add(src.name(name_off)),
                                                 parent_pc, start_line))
        if layout != "go120":
            funcdata = []
        r["funcdata"] = funcdata
        r["f"] = f
        recs.append(r)

    nfunc = len(keep)
    if layout == "go116":
        hdr_words = 7
        field = 8
    else:
        hdr_words = 8
        field = 4
    hdr_len = 8 + 8 * hdr_words
    o_names = hdr_len
    o_cu = align(o_names + len(names.buf), 4)
    o_files = o_cu + 4 * len(cutab)
    o_pctab = o_files + len(files.buf)
    o_pcln = align(o_pctab + len(pctab), 8)
    functab_len = (2 * nfunc + 1) * field
    fixed = {"go116": 44, "go118": 40, "go120": 44}[layout]
    func_recs = bytearray()
    funcoffs = []
    for r in recs:
        f = r["f"]
        at = align(functab_len + len(func_recs), 8 if layout == "go116" else 4)
        func_recs += b"\0" * (at - functab_len - len(func_recs))
        funcoffs.append(at)
        entry = text_vaddr + f.new_entryoff
        head = (struct.pack("<Q", entry) if layout == "go116"
                else struct.pack("<I", f.new_entryoff))
        mid = struct.pack("<iiIIIIII", r["name"], f.args, f.deferreturn, r["pcsp"], r["pcfile"],
                          r["pcln"], len(r["pcdata"]), r["cuoff"])
        if layout == "go120":
            tail = struct.pack("<iBBBB", f.startline, f.funcid, f.flag, 0, len(r["funcdata"]))
        elif layout == "go118":
            tail = struct.pack("<BBBB", f.funcid, f.flag, 0, 0)
        else:
            tail = struct.pack("<BBBB", f.funcid, 0, 0, 0)
        rec = head + mid + tail
        assert len(rec) == fixed, (layout, len(rec))
        rec += struct.pack(f"<{len(r['pcdata'])}I", *r["pcdata"])
        rec += struct.pack(f"<{len(r['funcdata'])}I", *r["funcdata"])
        func_recs += rec
    functab = bytearray()
    for r, fo in zip(recs, funcoffs):
        f = r["f"]
        if layout == "go116":
            functab += struct.pack("<QQ", text_vaddr + f.new_entryoff, fo)
        else:
            functab += struct.pack("<II", f.new_entryoff, fo)
    functab += (struct.pack("<Q", text_vaddr + etext_off) if layout == "go116"
                else struct.pack("<I", etext_off))
    pclntable = bytes(functab) + bytes(func_recs)

    if magic is None:
        magic = {"go116": MAGIC_GO116, "go118": MAGIC_GO118, "go120": MAGIC_GO120}[layout]
    offs = [o_names, o_cu, o_files, o_pctab, o_pcln]
    header = struct.pack("<IBBBB", magic, 0, 0, src.quantum, 8)
    if layout == "go116":
        header += struct.pack("<7Q", nfunc, len(cutab), *offs)
    else:
        header_text = text_vaddr if src.header_text else 0
        header += struct.pack("<8Q", nfunc, len(cutab), header_text, *offs)
    pcln = bytearray(header)
    pcln += names.buf
    pcln += b"\0" * (o_cu - len(pcln))
    pcln += struct.pack(f"<{len(cutab)}I", *cutab)
    pcln += files.buf
    pcln += pctab
    pcln += b"\0" * (o_pcln - len(pcln))
    pcln += pclntable

    # ---- rodata segment: pclntab, go:func.* (inline trees), version bytes.
    ro_off = align(text_end, 0x40)
    pcln_off = ro_off
    gofunc_off = align(pcln_off + len(pcln), 8)
    rodata_blob = bytes(pcln) + b"\0" * (gofunc_off - pcln_off - len(pcln)) + bytes(inl_trees)
    verstr_off = gofunc_off + len(inl_trees)
    version, modinfo = src.buildinfo
    rodata_blob += version + modinfo
    ro_end = ro_off + len(rodata_blob)

    # ---- data segment: .go.buildinfo, moduledata, runtime.buildVersion.
    data_off = align(ro_end, 0x20)
    bi_off = data_off
    if old_buildinfo:
        # Pre-1.18: two pointers to Go string headers, placed right after the header.
        ptrs = struct.pack("<QQ", base + bi_off + 32, base + bi_off + 48)
        bi = BUILDINFO_MAGIC + bytes([8, 0]) + ptrs
        bi += struct.pack("<QQ", base + verstr_off, len(version))
        bi += struct.pack("<QQ", base + verstr_off + len(version), len(modinfo))
    else:
        bi = BUILDINFO_MAGIC + bytes([8, 2]) + b"\0" * 16
        bi += uvarint_bytes(len(version)) + version + uvarint_bytes(len(modinfo)) + modinfo
    if not buildinfo:
        # Like esbuild's releases: the version survives only as runtime.buildVersion.
        bi = b""
    md_off = align(bi_off + len(bi), 32)
    md = bytearray(0x240)
    pcheader = base + pcln_off
    struct.pack_into("<QQQQ", md, 0, pcheader, pcheader + o_names, len(names.buf),
                     len(names.buf))
    struct.pack_into("<QQ", md, 160, text_vaddr + recs[0]["f"].new_entryoff,
                     text_vaddr + etext_off)
    struct.pack_into("<QQ", md, 176, text_vaddr, text_vaddr + etext_off)
    rodata_field, gofunc_field = (336, 344) if minor >= 27 else (312, 320)
    struct.pack_into("<Q", md, rodata_field, base + ro_off)
    struct.pack_into("<Q", md, gofunc_field, base + gofunc_off)
    bv_off = md_off + len(md)
    bv = struct.pack("<QQ", base + verstr_off, len(version))
    data_blob = bi + b"\0" * (md_off - bi_off - len(bi)) + bytes(md) + bv
    data_end = data_off + len(data_blob)

    # ---- non-loaded: symtab, DWARF, shstrtab, section headers.
    extra = []  # (name, type, flags, addr, bytes, link, entsize, align)
    if symtab:
        strtab = Strtab(leading_nul=True)
        syms = [b"\0" * 24]

        def sym(name, value, size, kind, shndx=1):
            syms.append(struct.pack("<IBBHQQ", strtab.add(name), (1 << 4) | kind, 0, shndx,
                                    value, size))

        sym("runtime.text", text_vaddr, 0, 2)
        for f in keep:
            name = f.name + (".abi0" if src.abi0.get(f.entry) else "")
            sym(name, text_vaddr + f.new_entryoff, f.size, 2)
        sym("runtime.etext", text_vaddr + etext_off, 0, 2)
        sym("runtime.pclntab", pcheader, len(pcln), 1, 2)
        sym("go:func.*", base + gofunc_off, len(inl_trees), 1, 2)
        sym("runtime.buildVersion", base + bv_off, 16, 1, 3)
        extra.append((".symtab", 2, 0, 0, b"".join(syms), "strtab", 24, 8))
        extra.append((".strtab", 3, 0, 0, bytes(strtab.buf), None, 0, 1))
    if dwarf:
        for name, blob in synth_dwarf(version, minor).items():
            flags = 0
            if dwarf == "compressed" and name != ".debug_str":
                blob = struct.pack("<IIQQ", 1, 0, len(blob), 1) + zlib.compress(blob)
                flags = 0x800  # SHF_COMPRESSED
            elif dwarf == "zdebug" and name != ".debug_str":
                blob = b"ZLIB" + struct.pack(">Q", len(blob)) + zlib.compress(blob)
                name = ".z" + name[1:]
            extra.append((name, 1, flags, 0, blob, None, 0, 1))

    file = bytearray(data_end)
    file[text_off:text_end] = code
    file[ro_off:ro_end] = rodata_blob
    file[data_off:data_end] = data_blob
    placed = []
    for name, typ, flags, addr, blob, link, entsize, al in extra:
        off = align(len(file), al)
        file += b"\0" * (off - len(file)) + blob
        placed.append((name, typ, flags, addr, off, len(blob), link, entsize, al))

    shdrs = b""
    shnum = shstrndx = 0
    shoff = 0
    if sections:
        shstr = Strtab(leading_nul=True)
        pcln_name = ".data.rel.ro.gopclntab" if pie and minor < 26 else ".gopclntab"
        secs = [
            (".text", 1, 6, base + text_off, text_off, len(code), None, 0, 32),
            (".rodata", 1, 2, base + ro_off, ro_off, pcln_off - ro_off, None, 0, 32),
        ]
        if pclntab_section:
            secs.append((pcln_name, 1, 2, base + pcln_off, pcln_off, len(pcln), None, 0, 8))
        secs += [
            (".go.func", 1, 2, base + gofunc_off, gofunc_off, len(inl_trees), None, 0, 8),
            (".go.module", 1, 3, base + md_off, md_off, len(md) + 16, None, 0, 32),
        ]
        if bi:
            secs.append((".go.buildinfo", 1, 3, base + bi_off, bi_off, len(bi), None, 0, 16))
        secs += placed
        names_idx = {s[0]: i + 1 for i, s in enumerate(secs)}
        shstr_off = len(file)
        for s in secs:
            shstr.add(s[0])
        shstr.add(".shstrtab")
        file += shstr.buf
        shoff = align(len(file), 8)
        file += b"\0" * (shoff - len(file))
        hdrs = [b"\0" * 64]
        for name, typ, flags, addr, off, size, link, entsize, al in secs:
            link_idx = names_idx[".strtab"] if link == "strtab" else 0
            info = 1 if typ == 2 else 0
            hdrs.append(struct.pack("<IIQQQQIIQQ", shstr.add(name), typ, flags, addr, off, size,
                                    link_idx, info, al, entsize))
        hdrs.append(struct.pack("<IIQQQQIIQQ", shstr.add(".shstrtab"), 3, 0, 0, shstr_off,
                                len(shstr.buf), 0, 0, 1, 0))
        shdrs = b"".join(hdrs)
        shnum = len(hdrs)
        shstrndx = shnum - 1
        file += shdrs

    phdrs = b""
    for off, end, flags in ((0, text_end, 5), (ro_off, ro_end, 4), (data_off, data_end, 6)):
        memsz = end - off + (0x100 if flags == 6 else 0)  # a little .bss
        phdrs += struct.pack("<IIQQQQQQ", 1, flags, off, base + off, base + off, end - off,
                             memsz, 0x1000)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr += struct.pack("<HHIQQQIHHHHHH", 3 if pie else 2, 62, 1, text_vaddr, 64,
                        shoff, 0, 64, 56, 3, 64 if sections else 0, shnum, shstrndx)
    file[0:64] = ehdr
    file[64:64 + len(phdrs)] = phdrs
    return bytes(file)


def variants(src, tag, all_kinds, old_layouts):
    yield f"{tag}-stripped", build(src, symtab=False)
    yield f"{tag}-pie-zdwarf", build(src, pie=True, dwarf="compressed")
    if all_kinds:
        yield f"{tag}-stripped-nobuildinfo", build(src, symtab=False, buildinfo=False)
        yield f"{tag}-symtab-dwarf", build(src, dwarf="plain")
        yield f"{tag}-nosections", build(src, sections=False, symtab=False)
        yield f"{tag}-symbol-pclntab-zdebug", build(src, pclntab_section=False, dwarf="zdebug")
    if old_layouts:
        # One large seed (for runs with -max_len=1048576): the runtime functions (no methods).
        yield f"{tag}-large-runtime", build(src, symtab=False,
                                          keep=lambda name: name.startswith("runtime.") and "(" not in name)
        yield f"{tag}-layout-go118", build(src, layout="go118", symtab=False)
        yield f"{tag}-layout-go116", build(src, layout="go116", old_buildinfo=True)
        yield f"{tag}-layout-go116-nosections", build(src, layout="go116", sections=False,
                                                      symtab=False, old_buildinfo=True)
        yield f"{tag}-magic-go12", build(src, magic=MAGIC_GO12, symtab=False)


def buildinfo_tail(path):
    """The version and modinfo strings of a Go 1.18+ `.go.buildinfo` blob, as they follow
    its 32-byte header (the input format of the `buildinfo` fuzz target), or None."""
    with open(path, "rb") as f:
        d = f.read()
    o = d.find(BUILDINFO_MAGIC)
    while o >= 0 and o % 16:
        o = d.find(BUILDINFO_MAGIC, o + 1)
    if o < 0 or not d[o + 15] & 2:
        return None
    pos = o + 32
    for _ in range(2):
        n, pos = varint(d, pos)
        pos += n
    return d[o + 32:pos]


def default_sources(root):
    out = []
    fixtures = sorted(glob.glob(os.path.join(root, "target/fixtures/*/default/spinner")))
    out += fixtures
    out += sorted(glob.glob(os.path.join(root, ".goprobe/go/*/go/bin/go")))
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "fuzz/corpus/gobinary"))
    ap.add_argument("--check", metavar="GOPROBE",
                    help="run `GOPROBE --list-probes -- SEED` on each seed and show the verdict")
    ap.add_argument("binaries", nargs="*")
    args = ap.parse_args()
    sources = args.binaries or default_sources(root)
    if not sources:
        sys.exit("no Go binaries: run `cargo xtask fixtures` or pass paths")
    os.makedirs(args.out, exist_ok=True)
    seen_versions = set()
    done_old = False
    total = 0
    for path in sources:
        src = GoBin(path)
        if src.version in seen_versions:
            continue
        seen_versions.add(src.version)
        tag = src.version + ("-" + os.path.basename(path))
        # Every kind for the cargo xtask fixtures (1.21, 1.24, 1.27), two for the others.
        all_kinds = "/fixtures/" in os.path.abspath(path)
        for name, blob in variants(src, tag, all_kinds, old_layouts=not done_old):
            dst = os.path.join(args.out, name)
            with open(dst, "wb") as f:
                f.write(blob)
            os.chmod(dst, 0o755)
            total += len(blob)
            line = f"{len(blob):7d}  {dst}"
            if args.check:
                r = subprocess.run([args.check, "--list-probes", "--", dst], capture_output=True,
                                   text=True)
                first = (r.stdout + r.stderr).strip().splitlines()
                line += f"  [{r.returncode}] {first[0] if first else ''}"
            print(line)
        done_old = True
    print(f"{total} bytes in {args.out}")
    # Seeds of the `buildinfo` target: real version + modinfo strings, including those of
    # the registry binaries of tests/realworld when fetched (hugo's lists 150 modules).
    bi_out = os.path.join(os.path.dirname(args.out), "buildinfo")
    os.makedirs(bi_out, exist_ok=True)
    extra = glob.glob(os.path.join(root, "target/realworld/x/*/*/bin/*"))
    extra += glob.glob(os.path.join(root, "target/realworld/x/*/*.data/scripts/*"))
    extra += glob.glob(os.path.join(root, "target/realworld/x/hugo-*/hugo/binaries/*"))
    n = 0
    for path in sources + extra:
        tail = buildinfo_tail(path)
        if tail:
            rel = os.path.relpath(path, root).split(os.sep)
            name = "-".join(p for p in rel[-5:] if p not in ("bin", "package", "x", "go"))
            with open(os.path.join(bi_out, name), "wb") as f:
                f.write(tail)
            n += 1
    print(f"{n} build info seeds in {bi_out}")


if __name__ == "__main__":
    main()
