"""A dot product with its weights hard-wired: the PoT design point where the shifter becomes wiring."""

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits, int8_acc_bits, pot_acc_bits
from golden.pot_format import PotFormat

__all__ = ["HardwiredDot"]


class HardwiredDot(wiring.Component):
    """``y = sum_k w_k * x_k`` over `K` activations in one cycle, the weights constants of the circuit.

    With PoT codes a term is the activation shifted by a constant and perhaps
    negated: no shifter and no weight storage remain, only the adder tree. With
    INT8 weights each term is a constant multiplication (shift-and-add networks
    after synthesis). ``y`` is registered: it holds the sum of the activations
    present one cycle earlier, exact (never wraps), equal to
    ``golden.datapath.pot_matmul`` (or ``int8_matmul``) of those activations.

    Parameters
    ----------
    weights : array of int, shape (K,)
        PoT codes (``pe="pot"``, `bits` wide) or INT8 weights (``pe="int8"``).
    pe : str
        ``"pot"`` or ``"int8"``.
    bits : int or None
        PoT code width (3 to 8); None for INT8.
    act_bits : int
        Activation width, 2 to 16.

    Members
    -------
    x : ``In(signed(act_bits)).array(K)``
    y : ``Out(signed(acc_bits))``

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, weights, pe="pot", bits=4, act_bits=8):
        if pe not in ("pot", "int8"):
            raise ValueError(f"PE kind must be 'pot' or 'int8', not {pe!r}")
        self._act_bits = check_act_bits(act_bits)
        weights = np.asarray(weights)
        if weights.ndim != 1 or weights.size < 1 or not np.issubdtype(weights.dtype, np.integer):
            raise ValueError(f"Weights must be a non-empty 1-D integer array, not {weights!r}")
        if pe == "pot":
            self._format = PotFormat(bits)
            self._values = [int(v) for v in self._format.to_int(self._format.check_codes(weights))]
            self._acc_bits = pot_acc_bits(weights.size, self._act_bits, self._format.bits)
        else:
            if bits is not None:
                raise ValueError(f"An INT8 dot product takes no code width (bits=None), not {bits!r}")
            if weights.min() < -128 or weights.max() > 127:
                raise ValueError(f"INT8 weights must lie in -128..127, not {weights.min()}..{weights.max()}")
            self._format = None
            self._values = [int(v) for v in weights]
            self._acc_bits = int8_acc_bits(weights.size, self._act_bits)
        self._pe = pe
        super().__init__({
            "x": In(signed(self._act_bits)).array(weights.size),
            "y": Out(signed(self._acc_bits)),
        })

    @property
    def k(self):
        return len(self._values)

    @property
    def pe(self):
        return self._pe

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def values(self):
        """The weights as the integers they multiply by (a PoT code's ``±2**(Emax - e)`` or 0)."""
        return tuple(self._values)

    def elaborate(self, platform):
        m = Module()
        terms = []
        for x, value in zip(self.x, self._values):
            if value == 0:
                continue
            if self._pe == "pot":
                shift = abs(value).bit_length() - 1
                term = x << shift                  # a constant shift: wiring
                terms.append(-term if value < 0 else term)
            else:
                terms.append(x * value)
        total = Signal(signed(self._acc_bits))
        m.d.comb += total.eq(sum(terms) if terms else 0)
        m.d.sync += self.y.eq(total)
        return m
