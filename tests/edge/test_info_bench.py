"""``--info`` and ``--bench`` of standalone executables."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from edge_helpers import ROOT, run


def test_info_of_an_image_model(builds: dict[str, Any]) -> None:
    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.runtime.weights import init_weights

    rec = builds["host"]["mnist_cnn"]
    p = run([rec["exe"], "--info"])
    assert (p.returncode, p.stderr) == (0, "")
    host = TargetSpec.host()
    lines = p.stdout.splitlines()
    assert lines[:9] == [
        "model: DigitNet (neuralc 0.1.0, -O2, precision fp32)",
        f"target: {host.triple}, cpu {host.cpu}, {host.vector_bits}-bit vectors",
        "inputs:",
        "  input: float32 (batch, 28, 28, 1)",
        "outputs:",
        "  output: float32 (batch, 10)",
        "dims (the order of the sizes array):",
        "  batch: any size (nominal 1)",
        lines[8],
    ]
    assert re.fullmatch(r"arena: batch \* \d+ bytes per run", lines[8])
    # The digest is the SHA-256 of the weights as the safetensors file --external-weights
    # writes, from the seeded weights the build used.
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.cmodel import weights_blob
    from neuralc.driver import compile_file

    model = compile_file(ROOT / "examples" / "mnist_cnn.nr")
    program = compile_for_cpu(model).program
    blob = weights_blob(program.weights, program.weight_types,
                        init_weights(model.module, seed=0))
    digest = hashlib.sha256(blob.safetensors).hexdigest()
    assert lines[9] == (f"weights: embedded, {len(program.weights)} tensors, "
                        f"{blob.tensor_bytes} bytes, sha256 {digest}")
    assert lines[10] == (f"threads: {os.cpu_count()} (NEURALC_THREADS or --threads sets the "
                         "pool; the kernels run on one thread in this version)")
    assert len(lines) == 11


def test_info_shows_ranges_steps_and_several_inputs(builds: dict[str, Any]) -> None:
    out = run([builds["host"]["unet_symbolic"]["exe"], "--info"]).stdout
    assert "  h: 16..256 step 8 (nominal 64)\n  w: 16..256 step 8 (nominal 64)\n" in out
    out = run([builds["host"]["seq2seq_decoder"]["exe"], "--info", "--threads", "3"]).stdout
    assert "inputs:\n  src: int64 (batch, src_len)\n  tgt: int64 (batch, tgt_len)\n" in out
    assert "outputs:\n  dense: float32 (batch, tgt_len, 500)\n" in out
    assert "threads: 3 (" in out


BENCH = re.compile(r"bench: (\d+) runs after 1 warm-up, sizes (.*): min ([\d.e+-]+) ms, median "
                   r"([\d.e+-]+) ms, p90 ([\d.e+-]+) ms \(threads (\d+); the kernels use 1\)")


def test_bench_on_given_inputs(builds: dict[str, Any]) -> None:
    rec = builds["host"]["mnist_cnn"]
    p = run([rec["exe"], *rec["inputs"], "--bench", "25"], env={**os.environ,
                                                                "NEURALC_THREADS": "2"})
    assert p.returncode == 0, p.stderr
    m = BENCH.fullmatch(p.stdout.strip())
    assert m, p.stdout
    n, sizes, lo, mid, p90, threads = m.groups()
    assert (n, sizes, threads) == ("25", "batch=2", "2")
    assert 0 < float(lo) <= float(mid) <= float(p90)


def test_bench_without_inputs_uses_the_nominal_sizes(builds: dict[str, Any]) -> None:
    exe = builds["host"]["sequence_dims"]["exe"]
    m = BENCH.fullmatch(run([exe, "--bench", "5"]).stdout.strip())
    assert m and m.group(2) == "batch=1, seq=64"
    m = BENCH.fullmatch(run([exe, "--bench", "5", "--dim", "seq=16", "--dim", "batch=4"])
                        .stdout.strip())
    assert m and m.group(2) == "batch=4, seq=16"
    p = run([exe, "--bench", "5", "--dim", "seq=4"])
    assert (p.returncode, p.stderr) == (1, "sequence_dims: error: size seq=4 is outside the "
                                           "range of seq (8..512)\n")
    m = BENCH.fullmatch(run([builds["host"]["text_embedding"]["exe"], "--bench", "3"])
                        .stdout.strip())
    assert m and m.group(2) == "batch=1, seq=64"
