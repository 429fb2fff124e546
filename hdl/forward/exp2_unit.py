"""Base-2 exp of a non-negative logit gap: a table of the fraction and a right shift by the integer part."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int

__all__ = ["Exp2Unit"]


class Exp2Unit(wiring.Component):
    """``golden.int_ops.exp2``: ``table[z mod 2**frac_bits] >> (z >> frac_bits)``, one value per cycle.

    Stage 1 reads the table (a synchronous ROM: one EBR for 256 x 16) and
    registers the integer part; stage 2 shifts. An integer part of
    `exp_bits` or more gives 0 (every entry is below ``2**exp_bits``), which is
    golden's ``min(z >> f, 62)`` shift for these tables: a flag clearing the
    output register, so the shifter covers ``0 .. exp_bits - 1`` only and
    `z_bits` may be wide without a wide shifter.

    With `multiplier`, stage 2 shifts by multiplying instead: ``(entry *
    2**(exp_bits - 1 - n)) >> (exp_bits - 1)`` (``n`` the integer part, the
    factor 0 when ``n >= exp_bits``) is ``entry >> n`` exactly; the factor
    is a one-hot decode of the registered ``n`` and the product an
    ``exp_bits x exp_bits`` multiplier with its output register (one iCE40
    SB_MAC16 for 16-bit entries), in place of the barrel shifter's LUTs.

    Parameters
    ----------
    table : sequence of int
        ``golden.int_ops.exp2_table(frac_bits, exp_bits)`` (the artefact's ``exp2.lut``).
    frac_bits : int
        Fraction bits of ``z`` (the table has ``2**frac_bits`` entries), 1 to 12.
    exp_bits : int
        Width of the entries and the output (unsigned), 2 to 32.
    z_bits : int
        Width of the unsigned input, more than `frac_bits`, at most 64.
    multiplier : bool
        Shift by a multiplier (a DSP) rather than by a barrel shifter (LUTs); same ports, latency and results.

    Members
    -------
    i : ``In(stream.Signature(unsigned(z_bits)))``
    o : ``Out(stream.Signature(unsigned(exp_bits)))``
    """

    def __init__(self, *, table, frac_bits=8, exp_bits=16, z_bits=16, multiplier=False):
        self._frac_bits = check_int("frac_bits", frac_bits, 1, 12)
        self._exp_bits = check_int("exp_bits", exp_bits, 2, 32)
        self._z_bits = check_int("z_bits", z_bits, frac_bits + 1, 64)
        table = tuple(int(v) for v in table)
        if len(table) != 1 << frac_bits:
            raise ValueError(f"table must have {1 << frac_bits} entries for frac_bits {frac_bits}, not {len(table)}")
        bad = [v for v in table if not 0 <= v < 1 << exp_bits]
        if bad:
            raise ValueError(f"table entry {bad[0]} does not fit {exp_bits} unsigned bits")
        self._table = table
        if not isinstance(multiplier, bool):
            raise TypeError(f"multiplier must be True or False, not {multiplier!r}")
        self._multiplier = multiplier
        super().__init__({"i": In(stream.Signature(unsigned(z_bits))),
                          "o": Out(stream.Signature(unsigned(exp_bits)))})

    @property
    def frac_bits(self):
        return self._frac_bits

    @property
    def exp_bits(self):
        return self._exp_bits

    @property
    def z_bits(self):
        return self._z_bits

    @property
    def multiplier(self):
        """Whether stage 2 shifts by a multiplier (a DSP) rather than a barrel shifter."""
        return self._multiplier

    @property
    def latency(self):
        """Cycles from an accepted input to its output being valid (2: table read, shift)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        f, e = self._frac_bits, self._exp_bits
        m.submodules.rom = rom = memory.Memory(shape=unsigned(e), depth=1 << f, init=self._table)
        read = rom.read_port()
        advance = ~self.o.valid | self.o.ready
        whole = self.i.payload[f:]
        shift = Signal(range(e))                      # the integer part, when below e
        zero = Signal()                               # an integer part of e or more: the result is 0
        stage1_valid = Signal()
        m.d.comb += [self.i.ready.eq(advance), read.en.eq(advance), read.addr.eq(self.i.payload[:f])]
        if self._multiplier:
            factor = Signal(e)                        # 2**(e - 1 - shift), 0 for an integer part of e or more
            m.d.comb += factor.eq(Mux(zero, 0, (1 << (e - 1)) >> shift))
            result = (read.data * factor)[e - 1:2 * e - 1]
        else:
            result = Mux(zero, 0, read.data >> shift)
        with m.If(advance):
            m.d.sync += [shift.eq(whole[:len(shift)]), zero.eq(whole >= e), stage1_valid.eq(self.i.valid),
                         self.o.payload.eq(result), self.o.valid.eq(stage1_valid)]
        return m
