"""``neuralc bench`` on bad input: one clear line, exit 2 for usage and 1 for the model or its
data, never a traceback; and the recorded command repeats the run's configuration."""

from __future__ import annotations

import shlex

import pytest
from bench_helpers import run_cli

from neuralc.bench.options import config_from_args
from neuralc.cli import build_parser


@pytest.mark.parametrize("argv, message", [
    (["nope.nr"], "no such file: nope.nr"),
    (["{model}", "--targets", "cpu,gpu"],
     "--targets: unknown name 'gpu'; known: reference, onnx, cpu, cuda, tensorrt"),
    (["{model}", "--targets", "pytorch"],
     "--targets pytorch: the pytorch target writes source code; neuralc's PyTorch module is "
     "timed by the peers torch and torch-compile"),
    (["{model}", "--peers", "tensorflow"],
     "--peers: unknown name 'tensorflow'; known: torch, torch-compile, onnxruntime"),
    (["{model}", "--batch", "0"], "--batch expects positive integers; got 0"),
    (["{model}", "--batch", "1,x"], "--batch expects positive integers like 1,32; got '1,x'"),
    (["{model}", "--precision", "fp8"],
     "--precision: unknown precision 'fp8'; known: fp32, fp16, bf16, mixed"),
    (["{model}", "--dim", "seq"], "--dim expects NAME=N with a positive N, got 'seq'"),
    (["{model}", "--targets", "reference", "--peers", "none", "--dim", "seq=4"],
     "--dim seq: the model has no symbolic dim 'seq'; it has: batch"),
    (["{model}", "--targets", "onnx", "--kernels"],
     "--kernels times the fused kernels of the cpu target; add cpu to --targets"),
    (["{model}", "--targets", "none", "--peers", "none"],
     "nothing to time: give --targets or --peers"),
    (["{model}", "--json", "/no/such/folder/r.json"],
     "--json /no/such/folder/r.json: no folder /no/such/folder"),
    (["{model}", "--hparam", "dense"], None),
])
def test_usage_errors_are_one_line_with_status_2(tiny_model, argv, message):
    code, out, err = run_cli("bench", *[a.format(model=tiny_model) for a in argv])
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("neuralc: error: ")
    if message is not None:
        assert last == f"neuralc: error: {message}"


@pytest.mark.parametrize("flags", [["--repeat", "3", "--min-time", "1"], ["--repeat", "0"],
                                   ["--timeout", "-1"], ["--threads", "0"]])
def test_bad_flag_values_are_argparse_usage_errors(tiny_model, flags):
    code, _, err = run_cli("bench", tiny_model, *flags)
    assert code == 2
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("neuralc: error:")


def test_a_model_error_is_located_with_status_1(tmp_path):
    bad = tmp_path / "bad.nr"
    bad.write_text("network Bad {\n  input: (4,)\n  layers:\n    Dense(0)\n}\n")
    code, out, err = run_cli("bench", bad, "--targets", "reference", "--peers", "none")
    assert code == 1 and out == ""
    assert f"{bad}:4:" in err and "error" in err and "Traceback" not in err


def test_weights_that_do_not_fit_are_status_1(tiny_model, tmp_path):
    import numpy as np

    from neuralc.runtime.weights import save_weights

    w = tmp_path / "w.safetensors"
    save_weights(w, {"dense.weight": np.zeros((2, 2), np.float32)})
    code, out, err = run_cli("bench", tiny_model, "--targets", "reference", "--peers", "none",
                             "--weights", w)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith(f"neuralc: error: weights file '{w}' does not fit network 'Tiny'")


def test_the_recorded_command_repeats_the_configuration(tiny_model):
    parser = build_parser()["bench"]
    first = config_from_args(parser.parse_args(
        [str(tiny_model), "--targets", "cpu,reference", "--peers", "onnxruntime", "--batch",
         "1,4", "--precision", "fp32,fp16", "--min-time", "0.2", "--kernels", "-O3",
         "--seed", "7", "--hparam", "dense.units=16"]))
    again = config_from_args(parser.parse_args(shlex.split(first.command())[2:]))
    assert again == first
    assert first.command().startswith(f"neuralc bench {tiny_model} --targets cpu,reference ")
