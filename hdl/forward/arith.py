"""Amaranth expressions for the forward's one rounding and its saturation (:mod:`golden.int_ops`).

These build combinational logic inside a component's ``elaborate``; they are
not components. Widths are the caller's: every function returns a value wide
enough to hold its exact result.
"""

from amaranth import Cat, Const, Mux, Value, signed

__all__ = ["at_least", "check_int", "check_range", "round_shift", "round_shift_above", "round_shift_within", "row_address",
           "saturate", "saturate_limits", "shift_right"]


def check_int(name, value, low, high=None):
    """`value` as an int if it is an integer in ``[low, high]``; else TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {allowed}, not {value}")
    return value


def round_shift(x, shift):
    """``floor((x + 2**(shift-1)) / 2**shift)`` (round half up), ``x`` for ``shift == 0``; `x` signed.

    Formed as ``((x >> (shift - 1)) + 1) >> 1``: one arithmetic barrel shift
    and an increment, no half-step constant of variable position. Equal to
    golden's because ``floor((floor(y) + 1) / 2) = floor((y + 1) / 2)``.
    `shift` may be a constant or a (unsigned) signal.
    """
    if isinstance(shift, int):
        return x if shift == 0 else ((x >> (shift - 1)) + 1) >> 1
    partial = x >> (shift - 1)[:len(shift)]
    return Mux(shift == 0, x, (partial + 1) >> 1)


def check_range(name, value, low, high):
    """`value` as a ``(lo, hi)`` pair of ints with ``low <= lo <= hi <= high``; else TypeError / ValueError."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair of integers, not {value!r}")
    lo, hi = check_int(name, value[0], low, high), check_int(name, value[1], low, high)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, not {value!r}")
    return lo, hi


def round_shift_within(x, shift, low, high):
    """`round_shift` of `x` by `shift` when `shift` is known to lie in ``[low, high]``.

    The constant part of the shift is wiring: ``x >> (low - 1)`` first, then
    a barrel shift of only ``high - low`` places (none when ``low == high``),
    so a unit whose shifts come from a compiled artefact pays for the range
    its artefact uses, not for all 64 shifts. Exact because
    ``floor(floor(x / 2**a) / 2**b) = floor(x / 2**(a + b))``. `shift` outside
    the range gives a wrong result: the caller guarantees the range.
    """
    if low == high:
        return round_shift(x, low)
    if low == 0:
        return round_shift(x, shift)
    return round_shift_above(x, low, (shift - low)[:(high - low).bit_length()], high)


def round_shift_above(x, low, offset, high, width=None):
    """`round_shift` of `x` by ``low + offset``, `offset` an unsigned signal known to lie in ``[0, high - low]``.

    What `round_shift_within` builds, for a caller that holds the shift as
    its offset above `low` (a counter that starts there): no subtractor in
    front of the barrel shifter. `low` is at least 1. With `width`, only the
    low `width` bits of the result (as ``signed(width)``), from a
    `shift_right` of ``width + 1`` bits (Yosys's own shifter keeps every
    stage as wide as `x`).
    """
    offset = offset[:max(1, (high - low).bit_length())]
    pre = Value.cast(x) >> (low - 1)
    if width is None:
        return (pre >> offset) + 1 >> 1
    partial = shift_right(pre, offset, width + 1).as_signed()
    return ((partial + 1) >> 1)[:width].as_signed()


def shift_right(x, amount, width):
    """The low `width` bits of ``x >> amount`` (arithmetic when `x` is signed), unsigned.

    A log shifter built by hand: the largest step first, each stage only as
    wide as the output and the smaller steps after it need
    (``width + 2**k - 1`` bits), so a shifter whose result is narrow costs
    about ``width`` 2:1 multiplexers a stage. Yosys's own mapping of a wide
    variable shift keeps every stage as wide as `x` (a layer norm's 33-bit
    sum to 17 bits: about three times the LUTs).
    """
    x = Value.cast(x)
    sign = x[-1] if x.shape().signed else Const(0)

    def window(value, low, count):              # value[low:low + count], extended by x's sign
        bits = value[low:low + count]
        return Cat(bits, sign.replicate(count - len(bits))) if len(bits) < count else bits

    value = x
    for k in reversed(range(len(amount))):
        step = 1 << k
        need = width + step - 1
        value = Mux(amount[k], window(value, step, need), window(value, 0, need))
    return window(value, 0, width)


def at_least(value, constant):
    """``value >= constant`` for an unsigned `value` and an int `constant`, as gates, not an adder.

    Yosys maps a comparison to a carry chain (``$alu``), one SB_CARRY a bit
    that packs with no LUT of its own, so a compare against a constant costs
    a logic cell per bit. Built from the lowest bit up, ``ge_i = v_i & ge_{i-1}``
    where the constant's bit is 1 and ``v_i | ge_{i-1}`` where it is 0, it is
    an AND-OR tree that ABC packs into a few LUT4s (``v >= 16`` of 15 bits: an
    OR of the top 11).
    """
    value = Value.cast(value)
    if value.shape().signed:
        raise TypeError(f"at_least takes an unsigned value, not {value.shape()!r}")
    if constant <= 0:
        return Const(1)
    if constant >= 1 << len(value):
        return Const(0)
    result = Const(1)                           # value's bits below 0 are >= the constant's (none)
    for i in range(len(value)):
        result = (value[i] & result) if constant >> i & 1 else (value[i] | result)
    return result


def row_address(row, stride, offset):
    """``row * stride + offset`` for ``0 <= offset < stride``: wiring alone when `stride` is a power of two."""
    if stride & (stride - 1):
        return row * stride + offset
    return Cat(offset[:(stride - 1).bit_length()], row)


def saturate_limits(bits):
    """``(-2**(bits-1), 2**(bits-1) - 1)``."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x, bits):
    """`x` clipped to ``bits``-bit two's complement, as a ``signed(bits)`` value.

    `x` fits when its bits from ``bits - 1`` up are all equal (all its sign):
    a reduction of those bits, no comparator as wide as `x`.
    """
    x = Value.cast(x)
    low, high = saturate_limits(bits)
    signed_ = x.shape().signed
    if len(x) < bits or (len(x) == bits and signed_):
        return x.as_signed() if signed_ else x.as_unsigned()
    top = x[bits - 1:]
    if signed_:
        fits, negative = top.all() | ~top.any(), x[-1]
    else:
        fits, negative = ~top.any(), Const(0)
    return Mux(fits, x[:bits].as_signed(), Mux(negative, Const(low, signed(bits)), Const(high, signed(bits))))
