"""The models potgen ships: the float default model and its QAT versions, which the hardware runs.

Each QAT model must be what its ``qat.json`` says: weights already on the PoT grid of its bit width (so
the board build quantizes them to exactly the trained codes), and the val CE recorded at the end of
training reproduced by ``golden.eval``, within the issue's targets against the float model."""

import json

import numpy as np
import pytest

from golden.checkpoint import load_checkpoint
from golden.eval import main as eval_main
from golden.paths import DEFAULT_MODEL_DIR, HARDWARE_MODEL_DIR
from golden.quantize import quantize

QAT_MODELS = {  # bits: (folder, largest ΔCE against the float model on the whole val split)
    4: (DEFAULT_MODEL_DIR.with_name("shakespeare_char_qat4"), 0.03),
    3: (DEFAULT_MODEL_DIR.with_name("shakespeare_char_qat3"), 0.08),
}


def test_the_hardware_runs_the_4_bit_qat_model():
    assert HARDWARE_MODEL_DIR == QAT_MODELS[4][0]


@pytest.mark.parametrize("bits", sorted(QAT_MODELS))
def test_qat_model_weights_are_their_own_pot_quantization(bits):
    folder, _ = QAT_MODELS[bits]
    record = json.loads((folder / "qat.json").read_text())
    assert record["settings"]["bits"] == bits
    model, source = load_checkpoint(folder), load_checkpoint(DEFAULT_MODEL_DIR)
    assert model.config == source.config
    for name in model.linear_names:
        weight = model.weight(name)
        np.testing.assert_array_equal(quantize(weight, bits, "pot-channel").dequantize(), weight)
        assert weight.shape == source.weight(name).shape


@pytest.mark.parametrize("bits", sorted(QAT_MODELS))
def test_eval_reproduces_the_recorded_qat_val_ce(bits, tmp_path):
    folder, target = QAT_MODELS[bits]
    record = json.loads((folder / "qat.json").read_text())
    out = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(folder), "--reference", str(DEFAULT_MODEL_DIR), "--bits", str(bits),
                      "--methods", "pot-channel", "--act-bits", "0", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["float"]["ce"] == pytest.approx(record["final_val_ce"], abs=1e-6)
    assert result["reference"]["ce"] == pytest.approx(record["float_val_ce"], abs=1e-6)
    (row,) = result["rows"]
    assert row["ce"] == result["float"]["ce"]              # quantizing changed nothing
    assert 0 < row["delta"] <= target
