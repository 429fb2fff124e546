"""The design points the ASIC flow maps: PEs, arrays, engines and the hard-wired dot product.

Each is the project's own Amaranth component, built with the sizes asked for:
`hdl.pot_pe.PotPE` / `hdl.int8_pe.Int8PE`, `hdl.systolic_array.SystolicArray`,
`hdl.engine.Engine` (over a one-layer layout of seeded random weights, ``K =
ENGINE_K`` inputs, ``2C`` outputs) and `hdl.hardwired_dot.HardwiredDot`
(``HARDWIRED_K`` weights of a seeded Gaussian layer, quantized by golden).
"""

from dataclasses import dataclass

import numpy as np

from golden.pot_format import PotFormat
from golden.quantize import quantize, quantize_int8
from golden.rom_layout import RomLayout

__all__ = ["PE_CHOICES", "Design", "designs", "ENGINE_K", "HARDWIRED_K"]

#: PE kinds of the command line: the PoT barrel shifter, the INT8 multiplier as Yosys maps it,
#: and the INT8 multiplier Booth-encoded (``synth -booth``).
PE_CHOICES = ("pot", "int8", "int8-booth")

ENGINE_K = 64
HARDWIRED_K = 64
_SEED = 0


@dataclass(frozen=True)
class Design:
    """One design point: what it is, its sizes, and how to build and map it."""

    kind: str           # "pe", "array", "engine" or "hardwired"
    pe: str             # one of PE_CHOICES
    bits: int           # PoT code width, None for INT8
    rows: int
    cols: int
    act_bits: int
    acc_bits: int

    @property
    def booth(self):
        return self.pe == "int8-booth"

    @property
    def base_pe(self):
        """The component's PE kind: "pot" or "int8"."""
        return "pot" if self.pe == "pot" else "int8"

    @property
    def macs_per_cycle(self):
        """Multiply-accumulates per clock cycle at full rate."""
        if self.kind == "pe":
            return 1
        if self.kind == "hardwired":
            return HARDWIRED_K
        return self.rows * self.cols

    @property
    def name(self):
        size = {"pe": "", "hardwired": f"-k{HARDWIRED_K}"}.get(self.kind, f"-{self.rows}x{self.cols}")
        return f"{self.kind}{size}-{self.pe}" + (f"-b{self.bits}" if self.bits else "")

    @property
    def keep_memories(self):
        return self.kind == "engine"

    @property
    def provable(self):
        """Whether the flow can prove the netlist against the RTL.

        Not the engine (its memories stay RTL cells) and not the hard-wired dot product
        (SAT does not finish on a 64-operand adder tree that abc has restructured)."""
        return self.kind in ("pe", "array")

    def build(self):
        """A fresh component for this point."""
        bits = self.bits if self.base_pe == "pot" else None
        if self.kind == "pe":
            from ..int8_pe import Int8PE
            from ..pot_pe import PotPE
            if bits is None:
                return Int8PE(act_bits=self.act_bits, acc_bits=self.acc_bits)
            return PotPE(act_bits=self.act_bits, bits=bits, acc_bits=self.acc_bits)
        if self.kind == "array":
            from ..systolic_array import SystolicArray
            return SystolicArray(rows=self.rows, columns=self.cols, act_bits=self.act_bits,
                                 acc_bits=self.acc_bits, bits=bits, pe=self.base_pe)
        rng = np.random.default_rng(_SEED)
        if self.kind == "engine":
            from ..engine import Engine
            weight = rng.standard_normal((ENGINE_K, 2 * self.cols)).astype(np.float32)
            codes = quantize(weight, bits).codes if bits else quantize_int8(weight).weights
            bias = rng.integers(-1000, 1000, size=2 * self.cols)
            layout = RomLayout([("layer", codes, bias)], columns=self.cols, bits=bits)
            return Engine(layout=layout, rows=self.rows, act_bits=self.act_bits, acc_bits=self.acc_bits,
                          pe=self.base_pe)
        from ..hardwired_dot import HardwiredDot
        weight = rng.standard_normal((HARDWIRED_K, 1)).astype(np.float32)
        if bits:
            return HardwiredDot(weights=quantize(weight, bits).codes[:, 0], pe="pot", bits=bits,
                                act_bits=self.act_bits)
        return HardwiredDot(weights=quantize_int8(weight).weights[:, 0], pe="int8", bits=None,
                            act_bits=self.act_bits)


def designs(*, pes, bits, sizes, act_bits, acc_bits, engine=True, hardwired=True):
    """The design points for `pes` and array `sizes` ([(rows, cols)]): PE, arrays, engines, hard-wired.

    The hard-wired point is built for PoT only (`HardwiredDot` also takes INT8 weights, but
    64 constant multipliers took Yosys over 7 minutes here)."""
    PotFormat(bits)                                   # validate the code width before any work
    points = []
    for pe in pes:
        if pe not in PE_CHOICES:
            raise ValueError(f"PE kind must be one of {', '.join(PE_CHOICES)}, not {pe!r}")
        b = bits if pe == "pot" else None
        points.append(Design("pe", pe, b, 1, 1, act_bits, acc_bits))
        points += [Design("array", pe, b, r, c, act_bits, acc_bits) for r, c in sizes]
        if engine:
            points += [Design("engine", pe, b, r, c, act_bits, acc_bits) for r, c in sizes]
        if hardwired and pe == "pot":
            points.append(Design("hardwired", pe, b, 1, HARDWIRED_K, act_bits, acc_bits))
    return points
