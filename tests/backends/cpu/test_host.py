"""Target specs and the IR -> object step: features, cross targets, LLVM errors as exceptions."""

from __future__ import annotations

import pytest

llvm = pytest.importorskip("llvmlite.binding")

from neuralc.backends.cpu import host  # noqa: E402
from neuralc.backends.cpu.host import CodegenError, TargetSpec  # noqa: E402

ELF_MACHINE = {"x86_64": 62, "aarch64": 183}

ADD_IR = """
define <4 x float> @add4(<4 x float> %a, <4 x float> %b) {
  %c = fadd <4 x float> %a, %b
  ret <4 x float> %c
}
"""

def _elf_machine(obj: bytes) -> int:
    assert obj[:4] == b"\x7fELF", "not an ELF object"
    return int.from_bytes(obj[18:20], "little")


def test_host_spec_matches_llvm_view_of_this_machine() -> None:
    spec = TargetSpec.host()
    assert spec.triple == llvm.get_process_triple()
    assert spec.cpu == llvm.get_host_cpu_name()
    flat = llvm.get_host_cpu_features().flatten().split(",")
    for feature in ("avx512f", "avx512bf16", "avx2", "fma"):
        assert spec.has(feature) == (f"+{feature}" in flat)
    if spec.arch == "aarch64":
        assert spec.has("neon")
    assert TargetSpec.host() is spec  # probed once per process


def test_host_vector_bits_follow_its_features() -> None:
    spec = TargetSpec.host()
    if spec.has("avx512f"):
        assert spec.vector_bits == 512 and spec.vector_width_f32 == 16
    elif spec.has("avx2"):
        assert spec.vector_bits == 256
    else:
        assert spec.vector_bits == 128


def test_named_portable_targets() -> None:
    v3 = TargetSpec.named("x86-64-v3")
    assert (v3.cpu, v3.vector_bits) == ("x86-64-v3", 256)
    assert v3.has("fma") and v3.has("avx2") and not v3.has("avx512f")
    base = TargetSpec.named("x86-64")
    assert base.vector_bits == 128 and not base.has("fma") and base.has("sse2")
    a64 = TargetSpec.named("aarch64")
    assert (a64.arch, a64.cpu, a64.vector_bits) == ("aarch64", "generic", 128)
    assert a64.has("neon") and not a64.has("dotprod")
    a76 = TargetSpec.named("aarch64:cortex-a76")
    assert a76.cpu == "cortex-a76" and a76.has("dotprod") and a76.has("fullfp16")
    assert TargetSpec.aarch64("neoverse-n1").has("dotprod")
    # NEON is architectural on AArch64 even when the string does not say so
    assert TargetSpec("aarch64-linux-gnu", "generic", "").has("neon")


@pytest.mark.parametrize("name", ["avx512", "aarch64:cortex-x9", "x86_64-v5", ""])
def test_unknown_target_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        TargetSpec.named(name)


def test_features_are_normalised_so_keys_are_stable() -> None:
    a = TargetSpec("x86_64-unknown-linux-gnu", "x86-64", "+sse2, +cmov,+sse2")
    b = TargetSpec("x86_64-unknown-linux-gnu", "x86-64", "+cmov,+sse2")
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    assert a.key() == "x86_64-unknown-linux-gnu|x86-64|+cmov,+sse2"
    assert a.key() != TargetSpec.x86_64_v3().key()


def test_runs_here() -> None:
    assert TargetSpec.host().runs_here()
    if TargetSpec.host().arch == "x86_64":
        assert TargetSpec.x86_64().runs_here()
        assert not TargetSpec.aarch64().runs_here()
        # a feature the host lacks (AVX10.2 is on no Zen 4) makes a spec not runnable
        fake = TargetSpec("x86_64-unknown-linux-gnu", "x86-64", "+avx10.2,+sse2")
        assert fake.runs_here() == TargetSpec.host().has("avx10.2")


def test_llvm_has_aarch64_for_cross_compilation() -> None:
    assert host.has_target("aarch64-linux-gnu")
    assert host.has_target("x86_64-unknown-linux-gnu")
    assert not host.has_target("nosucharch-unknown-linux-gnu")


def test_data_layouts_are_the_targets() -> None:
    assert "n8:16:32:64" in TargetSpec.x86_64().data_layout
    assert "n32:64" in TargetSpec.aarch64().data_layout


def test_target_machine_is_made_once_per_spec() -> None:
    spec = TargetSpec.x86_64_v3()
    assert host.target_machine(spec) is host.target_machine(spec)
    assert host.target_machine(spec, 0) is not host.target_machine(spec)
    assert host.fresh_target_machine(spec) is not host.target_machine(spec)
    with pytest.raises(ValueError):
        host.target_machine(spec, 4)


@pytest.mark.parametrize(
    "spec",
    [TargetSpec.host(), TargetSpec.x86_64(), TargetSpec.x86_64_v3(), TargetSpec.aarch64()],
    ids=["host", "x86-64", "x86-64-v3", "aarch64"],
)
def test_compile_object_emits_an_elf_for_the_target(spec: TargetSpec) -> None:
    obj = host.compile_object(ADD_IR, spec)
    assert _elf_machine(obj) == ELF_MACHINE[spec.arch]


WIDE_ADD_IR = """
define void @add16(ptr %a, ptr %b) {
  %x = load <16 x float>, ptr %a, align 4
  %y = load <16 x float>, ptr %b, align 4
  %z = fadd <16 x float> %x, %y
  store <16 x float> %z, ptr %a, align 4
  ret void
}
"""

FOLDABLE_IR = """
define i32 @f(i32 %x) {
  %a = add i32 %x, 1
  %b = add i32 %a, 2
  ret i32 %b
}
"""


def test_code_uses_the_target_vector_width() -> None:
    # The schedule writes <16 x float>; each target splits it into its own registers (LLVM's
    # own loop vectoriser is off: the schedule vectorises).
    wide = host.emit_assembly(WIDE_ADD_IR, TargetSpec.x86_64_v3())
    narrow = host.emit_assembly(WIDE_ADD_IR, TargetSpec.x86_64())
    assert "ymm" in wide  # AVX2: 256-bit registers
    assert "ymm" not in narrow and "xmm" in narrow
    assert 'target triple = "x86_64-unknown-linux-gnu"' in host.optimised_ir(
        WIDE_ADD_IR, TargetSpec.x86_64_v3())


def test_opt_levels_change_the_code() -> None:
    o0 = host.optimised_ir(FOLDABLE_IR, TargetSpec.x86_64_v3(), opt=0)
    o2 = host.optimised_ir(FOLDABLE_IR, TargetSpec.x86_64_v3(), opt=2)
    assert "add i32 %x, 1" in o0 and "add i32 %x, 3" in o2


def test_emit_assembly_for_a_cross_target() -> None:
    asm = host.emit_assembly(ADD_IR, TargetSpec.aarch64())
    assert "fadd\tv0.4s, v0.4s, v1.4s" in asm


def test_parse_error_is_a_codegen_error_with_llvm_message() -> None:
    bad = "define i32 @f() {\n  ret i32 %nope\n}\n"
    with pytest.raises(CodegenError) as info:
        host.compile_object(bad, TargetSpec.host())
    assert "could not parse" in str(info.value)
    assert "use of undefined value '%nope'" in info.value.llvm_message
    assert "2:11" in info.value.llvm_message  # line:column from LLVM


def test_verifier_error_is_a_codegen_error() -> None:
    bad = """
define i32 @f(i1 %c) {
entry:
  br i1 %c, label %a, label %b
a:
  %x = add i32 1, 2
  br label %b
b:
  ret i32 %x
}
"""
    with pytest.raises(CodegenError) as info:
        host.emit_assembly(bad, TargetSpec.host())
    assert "rejected" in str(info.value)
    assert "does not dominate" in info.value.llvm_message


def test_unknown_triple_is_a_codegen_error() -> None:
    spec = TargetSpec("nosucharch-unknown-linux-gnu", "generic", "")
    with pytest.raises(CodegenError, match="no target"):
        host.compile_object(ADD_IR, spec)
